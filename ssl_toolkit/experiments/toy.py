"""The toy experiment of the rMCL paper (Letzelter et al. 2023, after Rupprecht et al. 2017).

Input ``t ~ U[0, 1]``. Given t, there are 2 targets with probability ``|1 - 2t|``, else 1;
each target, independently, is uniform in one quadrant of ``[-1, 1]^2``: the (-,-) and (+,+)
quadrants with probability ``(1 - t) / 2`` each, the (+,-) and (-,+) quadrants with ``t / 2``.

Four predictors with K = 20 hypotheses on an MLP (``t`` -> ReLU hidden layers -> K linear
position heads and K confidence logits) are compared, each trained with Adam on fresh batches:

- ``smcl``: WTA (Rupprecht's MCL) on the Euclidean distance; its hypotheses weigh 1/K each;
- ``rmcl``: WTA + BCE on K confidences (target 1 for hypotheses that win a target, 0 for all
  the others);
- ``rmcl*``: as rmcl, but the BCE's negatives are ``negatives`` non-winners drawn uniformly;
- ``ie``: 20 independent single-hypothesis MLPs of the same architecture (their own
  initializations and their own data), equal weights. As in the authors' code, a member is
  updated towards the closest of the active targets (``ie_target = "closest"``);
  ``"all"`` averages over the targets instead, and every member then collapses onto the
  geometric median, the origin (EMD about 0.76).

Each predictor is scored by the earth mover's distance (POT ``ot.emd2``, Euclidean ground cost)
between its hypotheses weighted by normalized confidences and ``n_gt_samples`` samples of the
target law at each of ``n_eval_t`` evenly spaced values of t. The paper reports mean EMDs of
about 0.17 (rMCL), 0.19 (sMCL) and 0.62 (IE). For reference, 20 geometric-median
(k-medians) centres, the optimum of the WTA loss, score 0.162 with their cell masses as
weights and 0.175 with weights 1/20.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import Manifest, build_artifact
from ..core.config import ConfigError, to_dict

TOY_METHODS = ("smcl", "rmcl", "rmcl*", "ie")
IE_TARGETS = ("closest", "all")
#: Quadrant centres' signs, in the order (-,-), (+,+), (+,-), (-,+).
QUADRANTS = np.array([[-1, -1], [1, 1], [1, -1], [-1, 1]], dtype=np.float32)
PAPER_EMD = {"rmcl": 0.17, "smcl": 0.19, "ie": 0.62}


@dataclass(frozen=True)
class ToyConfig:
    """Options of ``ssl toy``.

    The defaults take about 80 s (78-84 s over seeds 0-2) on 2 shared CPU cores: one training
    thread, 5-7 s per K = 20 model, about 55 s for the 20 IE members, a few seconds of EMD;
    mean EMDs over seeds 0-2: rMCL 0.171, rMCL* 0.172, sMCL 0.191, IE 0.645. ``PAPER`` holds
    the authors' sizes (two hidden layers of 256, batch 128, 20 epochs of 100,000 samples:
    15,625 steps): 11.5 min, rMCL 0.166, rMCL* 0.168, sMCL 0.187, IE 0.654 (seed 0);
    ``QUICK`` takes a few seconds, for tests.

    Attributes:
        K: hypotheses of the multi-hypothesis MLPs (sMCL, rMCL, rMCL*).
        methods: predictors trained, among smcl, rmcl, rmcl*, ie.
        steps: optimizer steps per model.
        batch_size: samples (values of t with their targets) per step.
        lr: Adam learning rate.
        hidden: units of each hidden layer.
        layers: hidden layers of the MLP.
        negatives: negatives drawn per sample by rMCL*.
        ie_members: single-hypothesis members of the independent ensemble.
        ie_target: what an IE member learns: the ``closest`` target (the authors' code)
            or ``all`` (the mean loss over the targets).
        n_eval_t: values of t where the EMD is measured.
        n_gt_samples: ground-truth samples per value of t for the EMD.
        plot_t: values of t drawn in hypotheses.png.
        seed: seed of data, initialization and drawn negatives.
    """

    K: int = 20
    methods: tuple[str, ...] = TOY_METHODS
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    hidden: int = 128
    layers: int = 2
    negatives: int = 1
    ie_members: int = 20
    ie_target: str = "closest"
    n_eval_t: int = 50
    n_gt_samples: int = 1000
    plot_t: tuple[float, ...] = (0.1, 0.6, 0.9)
    seed: int = 0

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid option."""
        bad = [m for m in self.methods if m not in TOY_METHODS]
        if bad:
            raise ConfigError(f"toy option methods: {bad[0]!r} unknown; choose from {TOY_METHODS}")
        for name in ("K", "steps", "batch_size", "hidden", "layers", "ie_members", "n_eval_t"):
            if getattr(self, name) < 1:
                raise ConfigError(f"toy option {name} must be >= 1")
        if self.n_gt_samples < 1 or self.lr <= 0:
            raise ConfigError("toy options n_gt_samples and lr must be positive")
        if not 0 <= self.negatives <= self.K - 1:
            raise ConfigError(f"toy option negatives must be in [0, K - 1], got {self.negatives}")
        if self.ie_target not in IE_TARGETS:
            raise ConfigError(f"toy option ie_target must be one of {IE_TARGETS}")
        if any(not 0 <= t <= 1 for t in self.plot_t):
            raise ConfigError("toy option plot_t: values must lie in [0, 1]")


QUICK = {"steps": 150, "batch_size": 128, "hidden": 32, "n_eval_t": 8, "n_gt_samples": 200}
PAPER = {"steps": 15625, "batch_size": 128, "hidden": 256, "layers": 2}


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
        plus the mean BCE over the hypotheses used (winners and negatives).
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
def _one_thread():
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


# --------------------------------------------------------------------------- evaluation


def emd_plane(hyps: np.ndarray, weights: np.ndarray, samples: np.ndarray) -> float:
    """Earth mover's distance between weighted points and equally weighted samples.

    Args:
        hyps: ``[H, 2]`` points; weights: ``[H]`` summing to 1; samples: ``[N, 2]``.

    Returns:
        The optimal transport cost with Euclidean ground cost (POT ``ot.emd2``).
    """
    import ot

    uniform = np.full(len(samples), 1.0 / len(samples))
    return float(ot.emd2(weights, uniform, ot.dist(hyps, samples, metric="euclidean")))


def emd_curve(trained: Trained, ts: np.ndarray, n_gt: int, seed: int) -> np.ndarray:
    """EMD between the predicted distribution and ``n_gt`` true samples at each t: ``[len(ts)]``."""
    gt = sample_points(np.random.default_rng(seed), ts, n_gt).astype(np.float64)  # (N, n_gt, 2)
    hyps, w = trained.predict(ts)  # (N, H, 2), (N, H)
    return np.array([emd_plane(hyps[i], w[i], gt[i]) for i in range(len(ts))])


LABELS = {"smcl": "sMCL", "rmcl": "rMCL", "rmcl*": "rMCL*", "ie": "IE"}


def plot_hypotheses(trained: dict[str, Trained], plot_t, path: Path, seed: int) -> Path:
    """One panel per (t, method): true samples (grey) and the hypotheses, whose marker area
    and colour show their weight relative to uniform (H x weight: 1 for sMCL and IE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    rows, cols = len(plot_t), len(trained)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols + 0.9, 2.6 * rows + 0.3), squeeze=False
    )
    gt = sample_points(np.random.default_rng(seed), np.asarray(plot_t), 1000)
    norm, cmap = Normalize(0, 2), plt.get_cmap("viridis")
    for j, (name, tr) in enumerate(trained.items()):
        hyps, w = tr.predict(np.asarray(plot_t, dtype=np.float64))
        rel = w * w.shape[1]  # (T, H), 1 = uniform weight
        for i, t in enumerate(plot_t):
            ax = axes[i, j]
            ax.scatter(gt[i, :, 0], gt[i, :, 1], s=2, c="0.65", lw=0)
            order = np.argsort(rel[i])  # the heaviest on top
            ax.scatter(
                hyps[i, order, 0],
                hyps[i, order, 1],
                s=10 + 45 * np.clip(rel[i, order], 0, 3),
                c=rel[i, order],
                cmap=cmap,
                norm=norm,
                edgecolors="k",
                linewidths=0.5,
            )
            ax.axhline(0, c="0.85", lw=0.5, zorder=0)
            ax.axvline(0, c="0.85", lw=0.5, zorder=0)
            ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), xticks=[], yticks=[])
            ax.set_aspect("equal")
            if i == 0:
                ax.set_title(LABELS.get(name, name), fontsize=11)
            if j == 0:
                ax.set_ylabel(f"t = {t:g}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 0.9 / fig.get_figwidth(), 1))
    cax = fig.add_axes((1 - 0.75 / fig.get_figwidth(), 0.15, 0.15 / fig.get_figwidth(), 0.7))
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax, extend="max")
    bar.set_label("H x normalized confidence")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_emd(emd_by_method: dict[str, np.ndarray], ts: np.ndarray, path: Path) -> Path:
    """EMD against t, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, e in emd_by_method.items():
        ax.plot(ts, e, marker="o", ms=3, label=f"{LABELS.get(name, name)} ({e.mean():.3f})")
    ax.set(xlabel="t", ylabel="EMD", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=9,
        title="mean EMD",
        title_fontsize=9,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_toy(out: str | os.PathLike, cfg: ToyConfig, force: bool = False) -> Manifest:
    """Train every method, score it by EMD at ``n_eval_t`` values of t, write tables and plots.

    Writes into a ``toy`` artifact: ``emd.csv`` (t, method, emd), ``summary.csv`` and
    ``summary.md`` (method, mean EMD and its std over t, the paper's figure, final training
    loss), ``hypotheses.png`` (hypotheses and confidences over true samples at ``plot_t``)
    and ``emd.png`` (EMD against t); the manifest's ``extra`` has the mean EMD per method.
    """
    import pandas as pd

    from ..core.console import log, progress

    cfg.validate()
    ts = np.linspace(0.0, 1.0, cfg.n_eval_t)
    with build_artifact(out, "toy", to_dict(cfg), force=force, log=log) as b:
        if b.reused:
            return b.manifest
        trained = {}
        with _one_thread(), progress() as bar:
            for i, method in enumerate(cfg.methods):
                trained[method] = train_method(method, cfg, cfg.seed + 1000 * i, bar)
        curves = {m: emd_curve(tr, ts, cfg.n_gt_samples, cfg.seed + 7) for m, tr in trained.items()}
        rows = [
            {"t": t, "method": m, "emd": e[i]} for m, e in curves.items() for i, t in enumerate(ts)
        ]
        pd.DataFrame(rows).to_csv(b.dir / "emd.csv", index=False)
        summary = pd.DataFrame(
            {
                "method": list(curves),
                "mean_emd": [float(e.mean()) for e in curves.values()],
                "std_emd": [float(e.std()) for e in curves.values()],
                "paper_mean_emd": [PAPER_EMD.get(m, float("nan")) for m in curves],
                "final_loss": [trained[m].final_loss for m in curves],
            }
        )
        summary.to_csv(b.dir / "summary.csv", index=False)
        (b.dir / "summary.md").write_text(summary_markdown(summary))
        plot_hypotheses(trained, cfg.plot_t, b.dir / "hypotheses.png", cfg.seed + 11)
        plot_emd(curves, ts, b.dir / "emd.png")
        b.extra["mean_emd"] = dict(zip(summary.method, summary.mean_emd, strict=True))
    return b.manifest


def summary_markdown(summary) -> str:
    """The summary table as Markdown (EMD to the true law, lower is better)."""
    lines = [
        "| method | mean EMD | std over t | paper |",
        "|---|---:|---:|---:|",
    ]
    for r in summary.itertuples():
        paper = "" if math.isnan(r.paper_mean_emd) else f"{r.paper_mean_emd:.2f}"
        lines.append(
            f"| {LABELS.get(r.method, r.method)} | {r.mean_emd:.3f} | {r.std_emd:.3f} | {paper} |"
        )
    return "\n".join(lines) + "\n"


def summary_table(manifest: Manifest):
    """A rich table of the toy's mean EMD per method next to the paper's figures."""
    import pandas as pd
    from rich.table import Table

    df = pd.read_csv(manifest.file("summary.csv"))
    table = Table(title="Toy experiment: EMD to the true distribution (lower is better)")
    for col in ("method", "mean EMD", "std over t", "paper"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in df.itertuples():
        paper = "" if math.isnan(r.paper_mean_emd) else f"{r.paper_mean_emd:.2f}"
        table.add_row(r.method, f"{r.mean_emd:.3f}", f"{r.std_emd:.3f}", paper)
    return table
