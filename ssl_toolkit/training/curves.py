"""``curves.png``: a run's ``history.csv`` plotted at the end of training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_curves(history: str | Path, png: str | Path, title: str = "") -> Path:
    """Loss (train dashed, val solid) and val oracle error per epoch, best epochs starred.

    IE runs (a ``member`` column) overlay their members, one colour and label each.
    Matplotlib is imported here, and only its object API is used (no pyplot state,
    no backend switch): the PNG is drawn by Agg.

    Args:
        history: ``history.csv`` (columns ``epoch``, ``train_loss``, ``val_loss``,
            ``val_oracle_deg``, ``best``; optionally ``member``).
        png: the file to write.
        title: of the figure.

    Returns:
        ``png``.
    """
    from matplotlib.figure import Figure

    df = pd.read_csv(history)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_err = fig.subplots(1, 2)
    groups = df.groupby("member") if "member" in df else [(None, df)]
    for i, (member, g) in enumerate(groups):
        color = f"C{i}"
        name = "" if member is None else f"member {member} "
        best = g[g["best"].astype(bool)]
        ax_loss.plot(g["epoch"], g["train_loss"], "--", color=color, label=f"{name}train")
        ax_loss.plot(g["epoch"], g["val_loss"], "-o", ms=3, color=color, label=f"{name}val")
        ax_err.plot(g["epoch"], g["val_oracle_deg"], "-o", ms=3, color=color, label=f"{name}val")
        ax_loss.plot(best["epoch"], best["val_loss"], "*", ms=9, color=color)
    ax_loss.plot([], [], "*", color="gray", label="best so far")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_err.set(xlabel="epoch", ylabel="oracle error (deg)", title="val oracle error")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    fig.savefig(png, dpi=110)
    return Path(png)
