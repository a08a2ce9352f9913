"""What a user sees of a training run while it runs.

A banner at the start (device, precision, threads, workers, world size, data and
steps); per epoch one plain line (epoch, losses, val oracle error, throughput,
elapsed, ETA, best mark), above a progress bar when stderr is a terminal, and plain
progress lines within the epoch (steps, ETA, loss) every few seconds when it is a file
(batch jobs: see ``core.console.progress``); optionally TensorBoard scalars.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from ..core import console
from ..core.errors import UserError
from .data import LoaderOptions
from .runtime import Runtime

TENSORBOARD_HINT = "pip install tensorboard (or pip install 'ssl-toolkit[tensorboard]')"


def device_name(rt: Runtime) -> str:
    """``cpu``, ``mps`` or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    if rt.device.type == "cuda":
        return f"{rt.device} ({torch.cuda.get_device_name(rt.device)})"
    return str(rt.device)


def precision_name(rt: Runtime) -> str:
    """``fp32``, ``bf16 autocast`` or ``fp16 autocast`` (with loss scaling)."""
    if rt.amp_dtype is None:
        return "fp32"
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[rt.amp_dtype]


def banner(
    rt: Runtime,
    cfg,
    n_chunks: tuple[int, int],
    steps: int,
    per_epoch: int,
    n_bins: int,
    loader: LoaderOptions | None = None,
) -> str:
    """The line ``ssl train`` starts with.

    Args:
        rt: the runtime.
        cfg: the TrainConfig.
        n_chunks: ``(train, val)`` chunk counts.
        steps: optimizer steps planned (per IE member).
        per_epoch: optimizer steps per epoch.
        n_bins: F, frequency bins of the features (pooled by ``cfg.pools``).
        loader: the training loader's options (workers, prefetching, pinning).
    """
    loader = loader or LoaderOptions()
    members = f" per member, {cfg.K} members" if cfg.method == "ie" else ""
    return (
        f"train {cfg.method}: device {device_name(rt)}, {precision_name(rt)}, "
        f"{torch.get_num_threads()} torch threads, {loader.describe()}, "
        f"DDP world size {rt.world}; {n_chunks[0]} train / {n_chunks[1]} val chunks, "
        f"{steps} steps planned{members} (at most {cfg.epochs} epochs of {per_epoch} steps); "
        f"CRNN pools {','.join(map(str, cfg.pools))} on {n_bins} bins"
    )


def say(line: str) -> None:
    """One plain line on stderr (no wrapping, no markup): greppable in a log file."""
    console.err.print(line, markup=False, highlight=False, soft_wrap=True)


def require_tensorboard() -> None:
    """Raise a one-line ``UserError`` when ``--tensorboard`` cannot work here."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise UserError(
            f"--tensorboard needs the tensorboard package: {TENSORBOARD_HINT}"
        ) from None


def open_tensorboard(run_dir: Path):
    """A ``SummaryWriter`` writing event files to ``run_dir/tensorboard``."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def hms(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Monitor:
    """Progress of one job (a run, or an IE member) as it trains.

    Args:
        label: names the job in lines and on the bar.
        total: optimizer steps planned.
        epochs: epochs planned.
        start_step: steps already done (a resumed job).
        show: False on DDP ranks other than 0 (nothing is shown or written).
        writer: a TensorBoard ``SummaryWriter``, or None.
        tag: prefix of the TensorBoard tags (``member0/`` for an IE member).
    """

    def __init__(self, label, total, epochs, start_step=0, *, show=True, writer=None, tag=""):
        self.label, self.total, self.epochs = label, total, epochs
        self.start_step, self.show, self.writer, self.tag = start_step, show, writer, tag
        self._bar = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> Monitor:
        self._t0 = time.perf_counter()
        if self.show:  # a bar in a terminal, plain lines at a steady interval elsewhere
            self._bar = console.progress()
            self._bar.start()
            self._task = self._bar.add_task(
                self.label, total=self.total, completed=self.start_step, info=""
            )
        return self

    def __exit__(self, *exc) -> bool:
        if self._bar is not None:
            self._bar.stop()
        return False

    def step(self, loss: float) -> None:
        """After each optimizer step: advance the bar."""
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=f"loss {loss:.4f}")

    def epoch(self, row: dict[str, Any]) -> None:
        """After each epoch: one line, the bar's info, TensorBoard scalars.

        Args:
            row: the epoch's ``history.csv`` row (``epoch`` 1-based, ``step`` done so far).
        """
        if not self.show:
            return
        elapsed = time.perf_counter() - self._t0
        done = row["step"] - self.start_step
        eta = elapsed / done * (self.total - row["step"]) if done > 0 else math.inf
        say(
            f"{self.label}: epoch {row['epoch']}/{self.epochs}  "
            f"train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
            f"val oracle {row['val_oracle_deg']:.2f} deg  "
            f"{row['train_chunks_per_s']:.0f} chunks/s  elapsed {hms(elapsed)}  "
            f"ETA {hms(eta)}{'  * best' if row['best'] else ''}"
        )
        if self._bar is not None:
            self._bar.update(self._task, info=f"epoch {row['epoch']}/{self.epochs}")
        if self.writer is not None:
            self._scalars(row)

    def _scalars(self, row: dict[str, Any]) -> None:
        e = row["epoch"]
        for name, key in (
            ("loss/train", "train_loss"),
            ("loss/val", "val_loss"),
            ("val/oracle_deg", "val_oracle_deg"),
            ("lr", "lr"),
            ("throughput/train_chunks_per_s", "train_chunks_per_s"),
        ):
            self.writer.add_scalar(f"{self.tag}{name}", row[key], e)
        self.writer.flush()
