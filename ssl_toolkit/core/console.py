"""One rich console (stderr) for logs and progress bars; tables go to stdout."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

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

err = Console(stderr=True, log_path=False)  # log lines carry no source location
out = Console()

#: Seconds between two plain progress lines when stderr is not a terminal (a log file, a
#: pipe, a job scheduler's output): ``SSL_PROGRESS_SECONDS`` overrides it.
PLAIN_INTERVAL_S = 10.0


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


class _PlainProgress(_Progress):
    """Progress for a stderr that is not a terminal: no bar (it would only be drawn once, at
    the end), but one plain line per task at a steady interval and one when the task is done:
    ``features: 12/60 (20%)  elapsed 0:00:40  ETA 0:02:40  <info>``."""

    def __init__(self, *args: Any, interval_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interval_s = interval_s
        self._last: dict[Any, float | None] = {}  # None: the task's final line is out

    def add_task(self, description: str, *args: Any, **kwargs: Any):
        task = super().add_task(description, *args, **kwargs)
        self._last[task] = time.monotonic()
        return task

    def update(self, task_id, *args: Any, **kwargs: Any) -> None:
        super().update(task_id, *args, **kwargs)
        self._maybe_line(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_line(task_id)

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        if exc_type is None:  # the last word on tasks still open (no total, or stopped early)
            for task in self.tasks:
                if self._last.get(task.id) is not None and task.completed:
                    self._last[task.id] = None
                    self._line(task)
        super().__exit__(exc_type, exc_val, exc_tb)

    def _maybe_line(self, task_id) -> None:
        last = self._last.get(task_id)
        if last is None:  # its final line is out already
            return
        now, task = time.monotonic(), self._tasks[task_id]
        if task.finished or now - last >= self.interval_s:
            self._last[task_id] = None if task.finished else now
            self._line(task)

    def _line(self, task) -> None:
        total = (
            f"/{task.total:.0f} ({100 * task.completed / task.total:.0f}%)" if task.total else ""
        )
        elapsed = task.elapsed or 0.0
        eta_s = ""
        if task.total and 0 < task.completed < task.total:  # the mean pace so far
            eta_s = f"  ETA {_hms(elapsed / task.completed * (task.total - task.completed))}"
        info = task.fields.get("info", "")
        err.print(
            f"{task.description}: {task.completed:.0f}{total}  elapsed {_hms(elapsed)}"
            f"{eta_s}{'  ' + info if info else ''}",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress(transient: bool = False) -> Progress:
    """Progress on stderr: in a terminal a bar with count, elapsed and remaining time (erased
    when the block it wraps raises); elsewhere plain lines every :data:`PLAIN_INTERVAL_S`
    seconds (see :class:`_PlainProgress`)."""
    if not err.is_terminal:
        interval = float(os.environ.get("SSL_PROGRESS_SECONDS", PLAIN_INTERVAL_S))
        return _PlainProgress(console=err, disable=True, interval_s=interval)
    return _Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=err,
        transient=transient,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    with progress() as p:
        task = p.add_task(description, total=total if total is not None else len(items), info="")
        for item in items:
            yield item
            p.advance(task)


def print_table(
    title: str,
    columns: list[str],
    rows: list[list[str]],
    *,
    keys: int = 1,
    right: Iterable[str] = (),
    full: str | None = None,
    console: Console | None = None,
) -> None:
    """A rich table that never cuts a cell: each cell keeps its whole text (no wrapping, no
    ellipsis). When the table is wider than the console, its columns are split over several
    tables stacked one under the other, each repeating the first ``keys`` columns (the row
    names), with a line saying where the full table is (``full``, e.g. ``report/report.md``).

    Args:
        columns: the column titles; rows: the cells, already formatted.
        right: columns aligned right (numbers).
    """
    from rich.measure import Measurement
    from rich.table import Table

    console = console or out
    right = set(right)

    def table(cols: list[int], part: str = "") -> Table:
        t = Table(title=part or None)
        for i in cols:
            t.add_column(columns[i], justify="right" if columns[i] in right else "left",
                         no_wrap=True)  # fmt: skip
        for r in rows:
            t.add_row(*[r[i] for i in cols])
        return t

    def width(t: Table) -> int:
        options = console.options.update_width(1 << 16)
        return Measurement.get(console, options, t).maximum

    key_cols, rest = list(range(min(keys, len(columns)))), list(range(keys, len(columns)))
    groups: list[list[int]] = [[]]
    for i in rest:  # greedy: as many columns per table as the console's width allows
        if groups[-1] and width(table(key_cols + groups[-1] + [i])) > console.width:
            groups.append([])
        groups[-1].append(i)
    tables = [table(key_cols + g, f"({n}/{len(groups)})" if len(groups) > 1 else "")
              for n, g in enumerate(groups, 1)]  # fmt: skip
    widest = max(width(t) for t in tables)
    if len(tables) == 1 and len(title) <= widest:
        tables[0].title = title  # centred above its table
    else:  # on a line of its own: a table narrower than its title would wrap it
        console.print(title, style="italic", markup=False, highlight=False, soft_wrap=True)
    for t in tables:
        _print_whole(console, t, width(t))
    if full and len(groups) > 1:
        console.print(f"(split to fit {console.width} columns; the full table: {full})",
                      markup=False, highlight=False)  # fmt: skip


def _print_whole(console: Console, renderable: Any, width: int) -> None:
    """Print ``renderable`` at ``width`` columns even where the console is narrower (a table
    that cannot be split further is printed whole: the terminal wraps it, nothing is cut)."""
    if width <= console.width:
        console.print(renderable)
        return
    narrow = console.width
    console.width = width
    try:
        console.print(renderable, crop=False)
    finally:
        console.width = narrow


def print_metrics(
    metrics: dict,
    title: str = "results",
    subsets: tuple[str, ...] = ("D1", "D2", "D3", "overall"),
    full: str | None = None,
) -> None:
    """A rich table of ``metrics.json`` content: one row per subset, one column per metric
    (split over several tables rather than cut when the console is narrow)."""
    rows = [(s, metrics[s]) for s in subsets if isinstance(metrics.get(s), dict)]
    if not rows:
        return
    columns = [k for k, v in rows[-1][1].items() if isinstance(v, (int, float))]
    cells = [[name] + [_number(vals.get(c)) for c in columns] for name, vals in rows]
    print_table(title, ["subset", *columns], cells, right=columns, full=full)


def _number(v: Any) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:d}" if isinstance(v, int) else f"{v:.2f}"
