"""Training step of the CRNN with the rMCL loss, through the real loader: time split and chunks/s.

Builds a features artifact of the requested shape (page-cached: just written; or takes
``--data``) and runs optimizer steps as ``ssl train`` does: batches from
``training.data.make_loader`` with the options chosen for the device (``--workers``
overrides), then ``training.engine.train_step``. Each step is split into load (the next
batch, on the device, float16 -> float32 there), forward (with the loss), backward and
optimizer step; on an accelerator each phase ends with a synchronize so that its time is
its own (training overlaps loading with computing, so there the sum is an upper bound).
Medians over ``--steps`` steps after 3 warm-up steps (compilation). Default: the paper's
CRNN on the paper's input (STFT magnitude and phase of 4 channels at 44.1 kHz:
``[8, 25, 1024]``).

Usage::

    .venv/bin/python benchmarks/bench_train.py [--device auto --batch 32 --steps 20]
    .venv/bin/python benchmarks/bench_train.py --small --channels 7 --bins 64   # the demo's
    .venv/bin/python benchmarks/bench_train.py --device cuda --amp --compile
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import ssl_toolkit.cli  # noqa: F401  (as `ssl` does, sets up the CPU runtime before torch)

# isort: split
import torch
from rich.console import Console
from rich.table import Table

from ssl_toolkit.core.config import resolve
from ssl_toolkit.features.store import open_features
from ssl_toolkit.models import build_model
from ssl_toolkit.testing import make_features_artifact
from ssl_toolkit.training import TrainConfig
from ssl_toolkit.training.data import loader_options, make_loader
from ssl_toolkit.training.engine import Job, make_optimizer, train_step
from ssl_toolkit.training.monitor import precision_name
from ssl_toolkit.training.objectives import make_loss
from ssl_toolkit.training.run import model_kwargs
from ssl_toolkit.training.runtime import Runtime, amp_dtype_for, pick_device

#: The CRNN of ``ssl demo`` and of the recipes' small scale (on log-mel input [7, 25, 64]).
SMALL = {"channels": (32, 32, 32), "pools": (4, 4, 2), "gru_layers": 2, "gru_units": 64}
PHASES = ("load", "forward", "backward", "step")
WARMUP = 3


class PhaseClock:
    """Times the phases of a step (synchronizing an accelerator at each phase's end)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.ms: dict[str, list[float]] = {p: [] for p in PHASES}
        self._t = 0.0

    def start(self) -> None:
        self._t = time.perf_counter()

    def __call__(self, phase: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()
        now = time.perf_counter()
        self.ms[phase].append(1e3 * (now - self._t))
        self._t = now

    def drop_warmup(self, n: int) -> None:
        for v in self.ms.values():
            del v[:n]


def batches_forever(loader, sampler):
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def run_steps(args, dev: torch.device, data: Path) -> tuple[dict, dict]:
    """Time ``args.steps`` training steps; returns (median ms per phase, facts for the table)."""
    fs = open_features(data)
    cfg = resolve(TrainConfig, SMALL if args.small else {}, {"K": args.K, "batch_size": args.batch})
    amp_dtype = "bf16" if dev.type == "cpu" else "auto"  # --amp: bf16 on CPU too
    rt = Runtime(dev, amp_dtype=amp_dtype_for(dev, args.amp, amp_dtype))
    opts = loader_options(dev, args.workers)
    loader, sampler = make_loader(fs, fs.rows(), args.batch, shuffle=True, seed=0, device=dev,
                                  options=opts)  # fmt: skip
    kwargs = model_kwargs(cfg, fs, args.K)
    model = build_model("crnn", **kwargs)
    model.norm.set_stats(fs.mean, fs.std)
    model = model.to(dev).train()
    net = torch.compile(model) if args.compile else model
    job = Job("bench", model, make_loss(cfg), Path("unused"), "")
    total = WARMUP + args.steps
    optim = make_optimizer(model, cfg, rt, total)
    clock = PhaseClock(dev)
    batches = batches_forever(loader, sampler)
    t_wall = 0.0
    for i in range(total):
        if i == WARMUP:
            t_wall = time.perf_counter()
        clock.start()
        batch = next(batches)
        clock("load")
        train_step(net, job, batch, optim, cfg, rt, i / total, mark=clock)
    wall = time.perf_counter() - t_wall
    clock.drop_warmup(WARMUP)
    median = {p: statistics.median(v) for p, v in clock.ms.items()}
    facts = {
        "params": sum(p.numel() for p in model.parameters()),
        "shape": list(fs.shape),
        "precision": precision_name(rt),
        "loader": opts.describe(),
        "wall_rate": args.batch * args.steps / wall,
    }
    return median, facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--channels", type=int, default=8, help="feature maps C (STFT of 4 ch.: 8)")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--bins", type=int, default=1024, help="frequency bins F (44.1 kHz: 1024)")
    ap.add_argument("-K", type=int, default=5)
    ap.add_argument(
        "--small", action="store_true", help="the demo CRNN (with --channels 7 --bins 64)"
    )
    ap.add_argument("--amp", action="store_true", help="autocast: bf16 (fp16 on GPUs without bf16)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--workers", type=int, help="loader workers (default: chosen per device)")
    ap.add_argument("--data", type=Path, help="features artifact (default: build one)")
    args = ap.parse_args()
    dev = pick_device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "features"
            n = args.batch * (WARMUP + args.steps)
            make_features_artifact(data, n_chunks=n, channels=args.channels,
                                   frames=args.frames, bins=args.bins)  # fmt: skip
        ms, facts = run_steps(args, dev, data)
    step_ms = sum(ms.values())
    out = Console(width=160)  # the table whole, also in a log file
    t = Table(
        title=f"training step on {dev} ({torch.get_num_threads()} CPU threads), "
        f"{facts['loader']}; median ms of {args.steps} steps"
    )
    cols = ("model", "params", "input [C, T, F]", "batch", "precision", "compile")
    for col in (*cols, *PHASES, "total", "chunks/s"):
        t.add_column(col, justify="right")
    t.add_row(
        "demo CRNN" if args.small else "paper CRNN",
        f"{facts['params']:,}",
        str(facts["shape"]),
        str(args.batch),
        facts["precision"],
        str(args.compile),
        *(f"{ms[p]:.1f}" for p in PHASES),
        f"{step_ms:.1f}",
        f"{args.batch / step_ms * 1e3:.1f}",
    )
    out.print(t)
    out.print(f"wall clock over the {args.steps} steps: {facts['wall_rate']:.1f} chunks/s")


if __name__ == "__main__":
    main()
