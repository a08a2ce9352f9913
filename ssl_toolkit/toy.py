"""The toy experiment of the rMCL paper (Letzelter et al. 2023, after Rupprecht et al. 2017).

Input ``t ~ U[0, 1]``. Given t, there are 2 targets with probability ``|1 - 2t|``, else 1;
each target is uniform in one quadrant of ``[-1, 1]^2``: the (-,-) and (+,+) quadrants with
probability ``(1 - t) / 2`` each, the (+,-) and (-,+) quadrants with ``t / 2`` each.

Four predictors with K = 20 hypotheses on a small MLP are compared:

- ``smcl``: WTA (Rupprecht's MCL) on the Euclidean distance; its hypotheses weigh 1/K each;
- ``rmcl``: WTA + BCE on K confidences (target 1 for hypotheses that win a target);
- ``rmcl*``: as rmcl, but the BCE's negatives are ``negatives`` non-winners drawn uniformly;
- ``ie``: 20 independent single-hypothesis MLPs (different initializations), equal weights.

Each predictor is scored by the earth mover's distance (POT ``ot.emd2``, Euclidean ground cost)
between its hypotheses weighted by normalized confidences and 1,000 samples of the target
distribution, at 50 values of t. The paper reports mean EMDs of about 0.17 (rMCL),
0.19 (sMCL) and 0.62 (IE).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import Manifest, build_artifact
from .config import ConfigError, to_dict

METHODS = ("smcl", "rmcl", "rmcl*", "ie")
#: Quadrant centres' signs, in the order (-,-), (+,+), (+,-), (-,+).
QUADRANTS = np.array([[-1, -1], [1, 1], [1, -1], [-1, 1]], dtype=np.float32)
PAPER_EMD = {"rmcl": 0.17, "smcl": 0.19, "ie": 0.62}


@dataclass(frozen=True)
class ToyConfig:
    """Options of ``ssl toy`` (defaults: a few minutes on a laptop CPU)."""

    K: int = 20
    methods: tuple[str, ...] = METHODS
    steps: int = 2000
    batch_size: int = 512
    lr: float = 1e-3
    hidden: int = 128
    layers: int = 3
    negatives: int = 1
    ie_members: int = 20
    n_eval_t: int = 50
    n_gt_samples: int = 1000
    plot_t: tuple[float, ...] = (0.1, 0.5, 0.9)
    seed: int = 0

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid option."""
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"toy option methods: {bad[0]!r} unknown; choose from {METHODS}")
        for name in ("K", "steps", "batch_size", "hidden", "layers", "ie_members", "n_eval_t"):
            if getattr(self, name) < 1:
                raise ConfigError(f"toy option {name} must be >= 1")
        if self.n_gt_samples < 1 or self.lr <= 0:
            raise ConfigError("toy options n_gt_samples and lr must be positive")
        if not 0 <= self.negatives <= self.K - 1:
            raise ConfigError(f"toy option negatives must be in [0, K - 1], got {self.negatives}")
        if any(not 0 <= t <= 1 for t in self.plot_t):
            raise ConfigError("toy option plot_t: values must lie in [0, 1]")


QUICK = {"steps": 150, "batch_size": 128, "hidden": 32, "n_eval_t": 8, "n_gt_samples": 200}


# --------------------------------------------------------------------------- data


def quadrant_probs(t: np.ndarray) -> np.ndarray:
    """Probabilities of the quadrants (-,-), (+,+), (+,-), (-,+) given t: ``[N, 4]``."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    return np.concatenate([(1 - t) / 2, (1 - t) / 2, t / 2, t / 2], axis=-1)


def sample_points(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    """``n`` target positions for each t: ``[N, n, 2]``, uniform in quadrants drawn per point."""
    p = quadrant_probs(t)  # (N, 4)
    u = rng.random((len(p), n, 1))
    quad = (u > np.cumsum(p, axis=-1)[:, None, :]).sum(-1).clip(max=3)  # (N, n)
    return (QUADRANTS[quad] * rng.random((len(p), n, 2))).astype(np.float32)


def sample_batch(rng: np.random.Generator, size: int):
    """A training batch: ``t [B, 1]``, ``targets [B, 2, 2]``, ``active [B, 2]`` bool."""
    t = rng.random(size)
    targets = sample_points(rng, t, 2)
    two = rng.random(size) < np.abs(1 - 2 * t)
    active = np.stack([np.ones(size, bool), two], axis=1)
    return t[:, None].astype(np.float32), targets, active


# --------------------------------------------------------------------------- models


def make_mlp(cfg: ToyConfig, members: int, K: int):
    """``members`` independent MLPs run as one batched module: ``t [B, 1]`` ->
    ``(hyps [B, members * K, 2] in [-1, 1]^2, logits [B, members * K])``."""
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
            h = t.expand(members, *t.shape)  # (M, B, 1)
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = torch.baddbmm(b, h, w)
                if i < len(self.weights) - 1:
                    h = torch.relu(h)
            h = h.unflatten(-1, (K, 3)).permute(1, 0, 2, 3).flatten(1, 2)  # (B, M*K, 3)
            return torch.tanh(h[..., :2]), h[..., 2]

    return BatchedMLP()


# --------------------------------------------------------------------------- loss


def toy_loss(hyps, logits, targets, active, *, confidence: bool, negatives: int | None, gen=None):
    """WTA on the Euclidean distance plus BCE on the confidences (rMCL), vectorized.

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
        plus the mean BCE over the hypotheses used.
    """
    import torch
    import torch.nn.functional as F

    dist = torch.linalg.vector_norm(hyps[:, :, None] - targets[:, None] + 1e-9, dim=-1)  # (B,K,S)
    winner = dist.argmin(dim=1)  # (B, S)
    best = dist.gather(1, winner[:, None]).squeeze(1)  # (B, S)
    act = active.float()
    wta = (best * act).sum() / act.sum().clamp(min=1)
    if not confidence:
        return wta
    won = torch.zeros_like(logits).scatter_add_(1, winner, act) > 0  # (B, K)
    mask = torch.ones_like(logits)
    if negatives is not None:  # winners plus `negatives` non-winners drawn uniformly
        score = torch.rand(logits.shape, generator=gen).masked_fill(won, -1.0)
        rank = score.argsort(1, descending=True).argsort(1)  # winners rank last
        mask = (won | (rank < negatives)).float()
    bce = F.binary_cross_entropy_with_logits(logits, won.float(), reduction="none")
    return wta + (bce * mask).sum() / mask.sum()


# --------------------------------------------------------------------------- training


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
        if self.method.startswith("rmcl"):
            w = torch.sigmoid(logits)
        else:  # sMCL and IE: equal weights
            w = torch.ones_like(logits)
        w = w / w.sum(-1, keepdim=True)
        as64 = lambda a: np.ascontiguousarray(a.numpy(), dtype=np.float64)  # noqa: E731
        return as64(hyps), as64(w)


def train_method(method: str, cfg: ToyConfig, seed: int, progress=None) -> Trained:
    """Train one predictor of the toy experiment with Adam on fresh batches."""
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
        t, targets, active = (torch.from_numpy(a) for a in sample_batch(rng, cfg.batch_size))
        hyps, logits = model(t)  # (B, H, 2), (B, H)
        if method == "ie":  # each member regresses onto every target on its own
            b, s = active.shape
            loss = toy_loss(
                hyps.reshape(b * members, 1, 2),
                logits.reshape(b * members, 1),
                targets.repeat_interleave(members, 0),
                active.repeat_interleave(members, 0),
                confidence=False,
                negatives=None,
            )
        else:
            loss = toy_loss(
                hyps,
                logits,
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
            progress.update(task, completed=step + 1, info=f"loss {loss.item():.3f}")
    model.eval()
    return Trained(method, model, float(loss.detach()))


# --------------------------------------------------------------------------- evaluation


def emd_curve(trained: Trained, ts: np.ndarray, n_gt: int, seed: int) -> np.ndarray:
    """EMD between the predicted distribution and ``n_gt`` true samples at each t: ``[len(ts)]``."""
    import ot

    rng = np.random.default_rng(seed)
    gt = sample_points(rng, ts, n_gt).astype(np.float64)  # (N, n_gt, 2)
    hyps, w = trained.predict(ts)  # (N, H, 2), (N, H)
    uniform = np.full(n_gt, 1.0 / n_gt)
    return np.array(
        [
            ot.emd2(w[i], uniform, ot.dist(hyps[i], gt[i], metric="euclidean"))
            for i in range(len(ts))
        ]
    )


def plot_hypotheses(trained: dict[str, Trained], plot_t, path: Path, seed: int) -> Path:
    """Hypotheses (marker area and colour: normalized confidence) over true samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(plot_t), len(trained)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    gt = sample_points(np.random.default_rng(seed), np.asarray(plot_t), 500)
    for j, (name, tr) in enumerate(trained.items()):
        hyps, w = tr.predict(np.asarray(plot_t, dtype=np.float64))
        for i, t in enumerate(plot_t):
            ax = axes[i, j]
            ax.scatter(gt[i, :, 0], gt[i, :, 1], s=2, c="0.75")
            sc = ax.scatter(
                hyps[i, :, 0],
                hyps[i, :, 1],
                s=20 + 400 * w[i],
                c=w[i],
                cmap="plasma",
                vmin=0,
                vmax=w[i].max(),
                edgecolors="k",
            )
            ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xticks=[], yticks=[])
            ax.set_aspect("equal")
            ax.set_title(f"{name}, t = {t:g}", fontsize=9)
            fig.colorbar(sc, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_toy(out: str | os.PathLike, cfg: ToyConfig, force: bool = False) -> Manifest:
    """Train every method, score it by EMD at ``n_eval_t`` values of t, write tables and plots.

    Writes ``emd.csv`` (t, method, emd), ``summary.csv`` (method, mean/std EMD, the paper's
    figure) and ``hypotheses.png`` into a ``toy`` artifact; the manifest's ``extra`` has the
    mean EMD per method.
    """
    import pandas as pd

    from .console import log, progress

    cfg.validate()
    ts = np.linspace(0.0, 1.0, cfg.n_eval_t)
    with build_artifact(out, "toy", to_dict(cfg), force=force, log=log) as b:
        if b.reused:
            return b.manifest
        trained = {}
        with progress() as bar:
            for i, method in enumerate(cfg.methods):
                trained[method] = train_method(method, cfg, cfg.seed + 1000 * i, bar)
        emd = {m: emd_curve(tr, ts, cfg.n_gt_samples, cfg.seed + 7) for m, tr in trained.items()}
        rows = [
            {"t": t, "method": m, "emd": e[i]} for m, e in emd.items() for i, t in enumerate(ts)
        ]
        pd.DataFrame(rows).to_csv(b.dir / "emd.csv", index=False)
        summary = pd.DataFrame(
            {
                "method": list(emd),
                "mean_emd": [float(e.mean()) for e in emd.values()],
                "std_emd": [float(e.std()) for e in emd.values()],
                "paper_mean_emd": [PAPER_EMD.get(m, float("nan")) for m in emd],
                "final_loss": [trained[m].final_loss for m in emd],
            }
        )
        summary.to_csv(b.dir / "summary.csv", index=False)
        plot_hypotheses(trained, cfg.plot_t, b.dir / "hypotheses.png", cfg.seed + 11)
        b.extra["mean_emd"] = dict(zip(summary.method, summary.mean_emd, strict=True))
    return b.manifest


def summary_table(manifest: Manifest):
    """A rich table of the toy's mean EMD per method next to the paper's figures."""
    import pandas as pd
    from rich.table import Table

    df = pd.read_csv(manifest.file("summary.csv"))
    table = Table(title="Toy experiment: EMD to the true distribution (lower is better)")
    for col in ("method", "mean EMD", "std", "paper"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in df.itertuples():
        paper = "" if math.isnan(r.paper_mean_emd) else f"{r.paper_mean_emd:.2f}"
        table.add_row(r.method, f"{r.mean_emd:.3f}", f"{r.std_emd:.3f}", paper)
    return table
