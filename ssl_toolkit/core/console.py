"""One rich console (stderr) for logs and progress bars; tables go to stdout."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

err = Console(stderr=True)
out = Console()


def log(message: str) -> None:
    """A log line on stderr."""
    err.log(message)


def warn(line: str) -> None:
    """One warning line on stderr (``warning:`` in yellow; ``line`` printed as is)."""
    from rich.markup import escape

    err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


class _Progress(Progress):
    """A progress bar that vanishes when its block fails, so that the error is the only
    line a failed command prints (in a terminal and in a log file alike)."""

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        if exc_type is not None:
            self.live.transient = True
        super().__exit__(exc_type, exc_val, exc_tb)


def progress(transient: bool = False) -> Progress:
    """A progress bar on stderr with count, elapsed and remaining time (erased when the
    block it wraps raises)."""
    return _Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=transient,
        disable=not err.is_terminal and False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    with progress() as p:
        task = p.add_task(description, total=total if total is not None else len(items), info="")
        for item in items:
            yield item
            p.advance(task)


def print_metrics(
    metrics: dict, title: str = "results", subsets: tuple[str, ...] = ("D1", "D2", "D3", "overall")
) -> None:
    """A rich table of ``metrics.json`` content: one row per subset, one column per metric."""
    from rich.table import Table

    rows = [(s, metrics[s]) for s in subsets if isinstance(metrics.get(s), dict)]
    if not rows:
        return
    columns = [k for k, v in rows[-1][1].items() if isinstance(v, (int, float))]
    table = Table(title=title)
    table.add_column("subset", style="bold")
    for c in columns:
        table.add_column(c, justify="right")
    for name, vals in rows:
        cells = []
        for c in columns:
            v = vals.get(c)
            cells.append(
                "-" if v is None or v != v else (f"{v:d}" if isinstance(v, int) else f"{v:.2f}")
            )
        table.add_row(name, *cells)
    out.print(table)
