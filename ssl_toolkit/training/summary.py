"""A rich table summarizing a run."""

from __future__ import annotations

from rich.table import Table

from ..core import console
from ..core.artifacts import Manifest


def print_run(man: Manifest) -> None:
    """Print the run's method, K, best epoch, val loss and oracle error to stdout."""
    e = man.extra
    t = Table(title=f"run {man.path}")
    cols = ("method", "K", "epochs", "steps", "best epoch", "val loss", "val oracle°", "threshold")
    for col in cols:
        t.add_column(col, justify="right")
    oracle = e.get("val_oracle_deg")
    t.add_row(
        str(e.get("method")),
        str(e.get("K")),
        str(e.get("epochs_run")),
        str(e.get("steps")),
        _best_epoch(e.get("best_epoch")),
        f"{e.get('best_val_loss', float('nan')):.4f}",
        "-" if oracle is None else f"{oracle:.2f}",
        f"{e.get('threshold', 0.5):.2f}",
    )
    console.out.print(t)


def _best_epoch(best) -> str:
    """``7``, or each IE member's best epoch: ``per member 3, 5, 2``."""
    if isinstance(best, list):
        return "per member " + ", ".join(map(str, best))
    return str(best)
