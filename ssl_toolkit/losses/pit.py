"""Permutation-invariant training (PIT) with S output slots.

Each slot predicts an activity (``conf`` = sigmoid of its logit) and a direction.
For every frame the loss is the minimum over all S! assignments of slots to
target positions of ``sum_s [active_s * d(target_s, slot_pi(s)) + beta * BCE(conf_pi(s),
active_s)]`` — a real search over permutations, not a fixed onset order.

Reference:
    Yu et al., "Permutation invariant training of deep models for speaker-independent
    multi-talker speech separation", ICASSP 2017.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from .wta import distance_matrix, full_precision


def permutations(n: int, device=None) -> torch.Tensor:
    """All permutations of ``range(n)``, ``[n!, n]`` long."""
    return torch.tensor(list(itertools.permutations(range(n))), device=device, dtype=torch.long)


def pit_costs(
    hyps: torch.Tensor, conf: torch.Tensor, targets: torch.Tensor, active: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance and activity costs of every permutation.

    Returns:
        ``(dist_cost, bce_cost)``, each ``[B, T, P]`` with P = S!; entry p sums over
        target positions s the cost of giving target s to slot ``perm[p, s]``.
    """
    s = targets.shape[-2]
    perm = permutations(s, hyps.device)  # (P, S)
    dist = distance_matrix(hyps, targets)  # (B, T, S, K=S)
    idx = perm.T.expand(*dist.shape[:2], s, perm.shape[0])  # (B, T, S, P)
    d_sp = dist.gather(-1, idx)  # (B, T, S, P): distance of target s to slot perm[p, s]
    dist_cost = (d_sp * active.unsqueeze(-1)).sum(-2)  # (B, T, P)
    c = full_precision(conf).unsqueeze(-2).expand(*conf.shape[:2], s, s)  # (B, T, S, K)
    y = active.to(c.dtype).unsqueeze(-1).expand_as(c)
    bce = F.binary_cross_entropy(c, y, reduction="none")  # (B, T, S, K): slot k labelled as s
    bce_cost = bce.gather(-1, idx).sum(-2)  # (B, T, P)
    return dist_cost, bce_cost


def pit_loss(
    hyps: torch.Tensor,
    conf: torch.Tensor,
    targets: torch.Tensor,
    active: torch.Tensor,
    *,
    beta: float = 1.0,
) -> torch.Tensor:
    """PIT loss, minimized over all slot permutations per frame.

    Args:
        hyps: ``[B, T, S, 3]`` slot directions (unit vectors).
        conf: ``[B, T, S]`` slot activities in (0, 1).
        targets: ``[B, T, S, 3]``.
        active: ``[B, T, S]`` bool.
        beta: weight of the activity BCE.

    Returns:
        Scalar: the best permutation's distance summed over active targets divided
        by their number, plus ``beta`` times its BCE averaged over ``(b, t, s)``.
    """
    if hyps.shape[-2] != targets.shape[-2]:
        raise ValueError(
            f"PIT needs as many slots as source slots: got {hyps.shape[-2]} slots "
            f"for {targets.shape[-2]} sources"
        )
    dist_cost, bce_cost = pit_costs(hyps, conf, targets, active, beta)
    best = (dist_cost + beta * bce_cost).detach().argmin(-1, keepdim=True)  # (B, T, 1)
    n_active = active.sum().clamp_min(1)
    d = dist_cost.gather(-1, best).sum() / n_active
    b = bce_cost.gather(-1, best).sum() / active.numel()
    return d + beta * b
