"""The toy experiment: its options, the EMD on the plane, plots and the ``toy`` artifact
(see the package docstring for the setting and the paper's figures)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ...core.artifacts import Manifest, build_artifact
from ...core.config import to_dict
from .config import ToyConfig
from .data import sample_points
from .model import Trained, one_thread, train_method

PAPER_EMD = {"rmcl": 0.17, "smcl": 0.19, "ie": 0.62}

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

    from ...core.console import log, progress

    cfg.validate()
    ts = np.linspace(0.0, 1.0, cfg.n_eval_t)
    with build_artifact(out, "toy", to_dict(cfg), force=force, log=log) as b:
        if b.reused:
            return b.manifest
        trained = {}
        with one_thread(), progress() as bar:
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
