"""Winner-takes-all losses (MCL and its relaxations) and rMCL's confidence loss.

References:
    Guzman-Rivera et al., "Multiple Choice Learning", NeurIPS 2012 (WTA).
    Rupprecht et al., "Learning in an Uncertain World", ICCV 2017 (relaxed epsilon-WTA).
    Makansi et al., "Overcoming Limitations of Mixture Density Networks", CVPR 2019 (top-n).
    Letzelter et al., "Resilient Multiple Choice Learning", NeurIPS 2023 (rMCL).

The assignment, the winner indicator, the drawn negatives and the confidence term work on a
distance matrix ``dist [..., S, K]`` (targets x hypotheses, any leading axes): great-circle
distances on the sphere (:func:`distance_matrix`, for the models) or Euclidean ones on the
plane (the toy experiment). Random draws take their generator as an argument.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.geometry import great_circle
from .annealed import amcl_weights

#: Assignment modes of the distance term.
MODES = ("wta", "relaxed", "top-n", "amcl")


def full_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (AMP outputs) as float32; others unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def distance_matrix(hyps: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Great-circle distance between every target and every hypothesis.

    Args:
        hyps: ``[B, T, K, 3]`` unit vectors.
        targets: ``[B, T, S, 3]`` unit vectors.

    Returns:
        ``[B, T, S, K]`` distances in radians.
    """
    hyps, targets = full_precision(hyps), full_precision(targets)
    return great_circle(targets.unsqueeze(-2), hyps.unsqueeze(-3))  # (B, T, S, K)


def assignment_weights(
    dist: torch.Tensor,
    mode: str = "wta",
    *,
    epsilon: float = 0.05,
    top_n: int = 1,
    temperature: float = 0.0,
) -> torch.Tensor:
    """How much each hypothesis is pulled towards each target (no gradient).

    Args:
        dist: ``[..., S, K]`` distances.
        mode: ``wta`` (1 on the closest), ``relaxed`` (1 - epsilon on the closest,
            epsilon / (K - 1) on each other), ``top-n`` (1 / n on each of the n
            closest), ``amcl`` (softmin of dist / temperature; WTA at temperature 0).
        epsilon: share of the non-winners in ``relaxed``.
        top_n: number of winners in ``top-n``.
        temperature: of ``amcl``.

    Returns:
        ``[..., S, K]`` weights summing to 1 over K.
    """
    d = dist.detach()
    k = d.shape[-1]
    if mode == "amcl" and temperature > 0:
        return amcl_weights(d, temperature)
    if mode == "top-n":
        n = min(top_n, k)
        idx = d.topk(n, dim=-1, largest=False).indices  # (B, T, S, n)
        return torch.zeros_like(d).scatter_(-1, idx, 1.0 / n)
    one_hot = F.one_hot(d.argmin(-1), k).to(d.dtype)  # (B, T, S, K)
    if mode == "relaxed" and k > 1:
        return one_hot * (1.0 - epsilon) + (1.0 - one_hot) * (epsilon / (k - 1))
    if mode in MODES:
        return one_hot
    raise ValueError(f"unknown WTA mode {mode!r}; known: {', '.join(MODES)}")


def winner_indicator(dist: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """1 for each hypothesis closest to at least one active target of its frame.

    Args:
        dist: ``[..., S, K]`` distances.
        active: ``[..., S]`` bool.

    Returns:
        ``[..., K]`` float in {0, 1}.
    """
    one_hot = F.one_hot(dist.detach().argmin(-1), dist.shape[-1]).bool()  # (B, T, S, K)
    return (one_hot & active.unsqueeze(-1)).any(-2).to(dist.dtype)


def assigned_distance(dist: torch.Tensor, active: torch.Tensor, mode: str = "wta", **kw):
    """Mean over active targets of their distance to the hypotheses, weighted by
    :func:`assignment_weights` (``mode`` and its options ``kw``): WTA's distance term.

    Args:
        dist: ``[..., S, K]`` distances; active: ``[..., S]`` bool.

    Returns:
        Scalar tensor (0 when nothing is active).
    """
    w = assignment_weights(dist, mode, **kw)
    return masked_mean((w * dist).sum(-1), active)


def negative_mask(positive: torch.Tensor, n: int, generator=None) -> torch.Tensor:
    """Positives plus ``n`` negatives drawn uniformly per frame (rMCL*).

    Args:
        positive: ``[..., K]`` in {0, 1}.
        n: negatives drawn among the non-positives of each frame (all of them if fewer).
        generator: the random source (``None``: torch's global one).

    Returns:
        ``[..., K]`` bool mask of the terms kept in the confidence loss.
    """
    noise = torch.rand(positive.shape, device=positive.device, generator=generator)
    score = torch.where(positive > 0, torch.full_like(noise, -1.0), noise)  # positives last
    n = min(n, positive.shape[-1])
    idx = score.topk(n, dim=-1).indices  # n random negatives (fewer if not enough)
    picked = torch.zeros_like(positive, dtype=torch.bool).scatter_(-1, idx, True)
    return (picked & (positive == 0)) | (positive > 0)


def confidence_loss(
    conf: torch.Tensor,
    positive: torch.Tensor,
    negatives: str | int = "all",
    generator: torch.Generator | None = None,
    *,
    logits: bool = False,
) -> torch.Tensor:
    """rMCL's confidence term: BCE between ``conf`` and the winner indicator.

    Args:
        conf: ``[..., K]`` confidences in (0, 1), or their logits if ``logits``.
        positive: ``[..., K]`` winner indicator (targets of the BCE).
        negatives: ``"all"`` (every hypothesis is a term) or an int n: per frame,
            the positives and n negatives drawn uniformly (rMCL*).
        generator: random source for the drawn negatives.

    Returns:
        Scalar: the mean BCE over the kept ``(b, t, k)``.
    """
    c = full_precision(conf)
    bce_of = F.binary_cross_entropy_with_logits if logits else F.binary_cross_entropy
    bce = bce_of(c, positive.to(c.dtype), reduction="none")  # (..., K)
    if negatives == "all":
        return bce.mean()
    mask = negative_mask(positive, int(negatives), generator)
    return (bce * mask).sum() / mask.sum().clamp_min(1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask``; 0 (with a gradient path) when the mask is empty."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def rmcl_loss(
    hyps: torch.Tensor,
    conf: torch.Tensor,
    targets: torch.Tensor,
    active: torch.Tensor,
    *,
    mode: str = "wta",
    epsilon: float = 0.05,
    top_n: int = 1,
    beta: float = 1.0,
    negatives: str | int = "all",
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Resilient MCL loss: a WTA variant on the sphere plus ``beta`` times a confidence BCE.

    With ``mode="wta"`` the value is the mean, over all active ``(b, t, s)``, of
    the great-circle distance (radians) from target s to its closest hypothesis,
    plus ``beta`` times the mean over all ``(b, t, k)`` of the BCE between
    ``conf`` and the indicator "hypothesis k is the closest to at least one active
    target of frame (b, t)". Frames with no active target add no distance term,
    and all their confidences are pushed to 0.

    Args:
        hyps: ``[B, T, K, 3]`` unit vectors.
        conf: ``[B, T, K]`` confidences in (0, 1).
        targets: ``[B, T, S, 3]`` unit vectors (any value where inactive).
        active: ``[B, T, S]`` bool.
        mode: ``wta``, ``relaxed`` (epsilon-WTA), ``top-n`` or ``amcl`` (see
            :func:`assignment_weights`).
        epsilon: relaxed-WTA share of the non-winners.
        top_n: number of winners of top-n WTA.
        beta: weight of the confidence term (0 = plain MCL).
        negatives: ``"all"`` or n, see :func:`confidence_loss`.
        temperature: annealed-MCL temperature (``mode="amcl"``); 0 is WTA.
        generator: random source for drawn negatives.

    Returns:
        Scalar tensor.
    """
    dist = distance_matrix(hyps, targets)  # (B, T, S, K)
    kw = {"epsilon": epsilon, "top_n": top_n, "temperature": temperature}
    loss = assigned_distance(dist, active, mode, **kw)
    if beta:
        positive = winner_indicator(dist, active)
        loss = loss + beta * confidence_loss(conf, positive, negatives, generator)
    return loss


def oracle_angle(hyps: torch.Tensor, targets: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Mean over active targets of the distance (radians) to the closest hypothesis.

    Returns:
        Scalar tensor (0 when nothing is active).
    """
    dist = distance_matrix(hyps, targets)  # (B, T, S, K)
    return masked_mean(dist.min(-1).values, active)
