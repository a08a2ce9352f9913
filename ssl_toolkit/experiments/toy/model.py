"""The toy's predictors: batched MLPs, their losses (the sphere's WTA pieces on the plane)
and their training with Adam on fresh batches."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import ToyConfig
from .data import sample_batch


def make_mlp(cfg: ToyConfig, members: int, K: int):
    """``members`` independent MLPs run as one batched module.

    ``t [B, 1]`` (shared by the members) or ``[members, B, 1]`` (one batch per member) ->
    ``(hyps [members, B, K, 2], logits [members, B, K])``: ``layers`` ReLU hidden layers of
    ``hidden`` units, then linear position heads and confidence logits, as the authors' MLP.
    """
    import torch
    from torch import nn

    class BatchedMLP(nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [1] + [cfg.hidden] * cfg.layers + [K * 3]
            self.weights = nn.ParameterList()
            self.biases = nn.ParameterList()
            for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
                bound = 1 / math.sqrt(n_in)  # PyTorch's Linear initialization, per member
                self.weights.append(nn.Parameter(torch.empty(members, n_in, n_out)))
                self.biases.append(nn.Parameter(torch.empty(members, 1, n_out)))
                nn.init.uniform_(self.weights[-1], -bound, bound)
                nn.init.uniform_(self.biases[-1], -bound, bound)

        def forward(self, t):
            h = t if t.dim() == 3 else t.expand(members, *t.shape)  # (M, B, 1)
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = torch.baddbmm(b, h, w)
                if i < len(self.weights) - 1:
                    h = torch.relu(h)
            h = h.unflatten(-1, (K, 3))  # (M, B, K, 3)
            return h[..., :2], h[..., 2]

    return BatchedMLP()


def toy_loss(hyps, logits, targets, active, *, confidence: bool, negatives: int | None, gen=None):
    """WTA on the Euclidean distance plus BCE on the confidences (rMCL), vectorized: the
    sphere's WTA pieces (:mod:`ssl_toolkit.losses.wta`) on the plane's distance matrix.

    Args:
        hyps: ``[B, K, 2]`` hypotheses.
        logits: ``[B, K]`` confidence logits.
        targets: ``[B, S, 2]`` target positions.
        active: ``[B, S]`` bool, which targets exist.
        confidence: add the BCE term (rMCL) or not (sMCL).
        negatives: None to use all non-winners as negatives, else that many drawn uniformly.
        gen: torch Generator for drawing negatives.

    Returns:
        Scalar: mean over active targets of the distance to the closest hypothesis,
        plus the mean BCE over the hypotheses used (winners and negatives).
    """
    import torch

    from ...losses.wta import assigned_distance, confidence_loss, winner_indicator

    dist = torch.linalg.vector_norm(targets[:, :, None] - hyps[:, None] + 1e-9, dim=-1)  # B,S,K
    wta = assigned_distance(dist, active)
    if not confidence:
        return wta
    won = winner_indicator(dist, active)  # (B, K)
    drawn = "all" if negatives is None else negatives
    return wta + confidence_loss(logits, won, drawn, gen, logits=True)


def single_hypothesis_loss(hyp, targets, active, *, closest: bool):
    """Loss of a single-hypothesis model (an IE member).

    Args:
        hyp: ``[B, 2]`` the hypothesis.
        targets: ``[B, S, 2]`` target positions.
        active: ``[B, S]`` bool, which targets exist (at least one per row).
        closest: distance to the closest active target (the authors' IE: WTA over the
            targets), else the mean distance over the active targets.

    Returns:
        Scalar, averaged over the batch (``closest``) or over the active targets.
    """
    import torch

    dist = torch.linalg.vector_norm(hyp[:, None] - targets + 1e-9, dim=-1)  # (B, S)
    if closest:
        return dist.masked_fill(~active, math.inf).amin(1).mean()
    act = active.float()
    return (dist * act).sum() / act.sum().clamp(min=1)


@dataclass
class Trained:
    """A trained toy predictor: ``predict(t [N]) -> (hyps [N, H, 2], weights [N, H])``."""

    method: str
    model: Any
    final_loss: float

    def predict(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            hyps, logits = self.model(torch.as_tensor(t, dtype=torch.float32)[:, None])
        hyps = hyps.permute(1, 0, 2, 3).flatten(1, 2)  # (N, M*K, 2)
        logits = logits.permute(1, 0, 2).flatten(1)  # (N, M*K)
        if self.method.startswith("rmcl"):
            w = torch.sigmoid(logits)
        else:  # sMCL and IE: equal weights
            w = torch.ones_like(logits)
        w = w / w.sum(-1, keepdim=True)
        as64 = lambda a: np.ascontiguousarray(a.numpy(), dtype=np.float64)  # noqa: E731
        return as64(hyps), as64(w)


@contextmanager
def one_thread():
    """Train on one intra-op thread: these MLPs gain nothing from more, and on a busy machine
    spinning OpenMP threads slowed a K = 20 model's training 10-30 times."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def train_method(method: str, cfg: ToyConfig, seed: int, progress=None) -> Trained:
    """Train one predictor of the toy experiment with Adam on fresh batches.

    Every method sees ``steps`` batches of ``batch_size`` samples; each IE member draws its own.
    """
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    members, K = (cfg.ie_members, 1) if method == "ie" else (1, cfg.K)
    model = make_mlp(cfg, members, K)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    task = progress.add_task(method, total=cfg.steps, info="") if progress else None
    loss = torch.zeros(())
    for step in range(cfg.steps):
        batch = sample_batch(rng, members * cfg.batch_size)
        t, targets, active = (torch.from_numpy(a) for a in batch)
        if method == "ie":  # member m trains on rows m*B .. (m+1)*B - 1
            hyps, _ = model(t.view(members, cfg.batch_size, 1))  # (M, B, 1, 2)
            loss = (
                single_hypothesis_loss(
                    hyps.reshape(-1, 2), targets, active, closest=cfg.ie_target == "closest"
                )
                * members
            )  # each member's own mean loss, summed: the same step size as alone
        else:
            hyps, logits = model(t)  # (1, B, K, 2), (1, B, K)
            loss = toy_loss(
                hyps[0],
                logits[0],
                targets,
                active,
                confidence=method != "smcl",
                negatives=cfg.negatives if method == "rmcl*" else None,
                gen=gen,
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (step % 50 == 0 or step == cfg.steps - 1):
            progress.update(task, completed=step + 1, info=f"loss {loss.item() / members:.3f}")
    model.eval()
    return Trained(method, model, float(loss.detach()) / members)
