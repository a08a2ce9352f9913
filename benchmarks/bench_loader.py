"""Training data loader alone: chunks/s of the paper's input [8, 25, 1024] float16, page-cached.

Builds a features artifact (or takes ``--data``), reads it once so it is in the page cache,
then times whole shuffled epochs (batches of ``--batch``; one warm-up epoch, then the median
of ``--repeats``) of, in the same run:

- ``before``: the loader as it was (main process; per batch one fancy-indexing read of the
  sorted rows, float32 conversion and reordering on the CPU), reproduced here;
- ``fresh tensors``: torch's usual worker path for reference: each worker returns a new
  float16 batch tensor, sent through a new shared-memory segment (DataLoader batch_size=None);
- ``ring -> staging``: ``make_loader(...).raw()``: float16 batches in the loader's reused
  buffers. On a CUDA machine these buffers are page-locked and are what the GPU copies
  from ("to pinned memory"); without CUDA (here) they are the same buffers unlocked:
  locking is done once when they are allocated, never per batch;
- ``ring -> cpu float32``: ``iter(make_loader(..., device="cpu"))``: what CPU training gets.

Checks that every variant's first epoch has the batches of ``before`` (bitwise).

Usage::

    .venv/bin/python benchmarks/bench_loader.py [--chunks 1500 --batch 128 --repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import ssl_toolkit.cli  # noqa: F401  (as `ssl` does, sets up the CPU runtime before torch)

# isort: split
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from ssl_toolkit.core.cpu import available_cores
from ssl_toolkit.features.store import open_features
from ssl_toolkit.testing import make_features_artifact
from ssl_toolkit.training.data import LoaderOptions, loader_options, make_loader


class BeforeBatches(Dataset):
    """The loader's dataset before the ring (``ssl_toolkit/training/data.py`` at 026ace2)."""

    def __init__(self, fs, rows):
        self.fs, self.rows = fs, np.asarray(rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, positions):
        rows = self.rows[np.asarray(positions)]
        order = np.argsort(rows, kind="stable")
        back = np.argsort(order, kind="stable")
        sorted_rows = rows[order]
        x = np.asarray(self.fs.features[sorted_rows], dtype=np.float32)[back]
        d = np.asarray(self.fs.directions[sorted_rows], dtype=np.float32)[back]
        a = np.asarray(self.fs.activity[sorted_rows], dtype=bool)[back]
        return torch.from_numpy(x), torch.from_numpy(d), torch.from_numpy(a)


class FreshTensors(Dataset):
    """Each batch a new float16 tensor (what a worker sends through new shared memory)."""

    def __init__(self, fs, rows):
        self.x, self.rows = np.asarray(fs.features).view(np.ndarray), np.asarray(rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, positions):
        rows = self.rows[np.asarray(positions)]
        out = np.empty((len(rows), *self.x.shape[1:]), self.x.dtype)
        for i in np.argsort(rows, kind="stable"):
            out[i] = self.x[rows[i]]
        return torch.from_numpy(out)


def sampler_for(rows, batch, seed=0):
    s = DistributedSampler(range(len(rows)), 1, 0, shuffle=True, seed=seed)
    return s, BatchSampler(s, batch, drop_last=False)


def timed_epochs(make_iter, set_epoch, repeats: int) -> tuple[list[float], list]:
    """Seconds per epoch (after a warm-up epoch) and the first epoch's batches' checksums."""
    set_epoch(0)
    first = [_digest(b) for b in make_iter()]
    seconds = []
    for e in range(1, repeats + 1):
        set_epoch(e)
        t0 = time.perf_counter()
        for _ in make_iter():
            pass
        seconds.append(time.perf_counter() - t0)
    return seconds, first


def _digest(batch) -> bytes:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return x.to(torch.float32).numpy().tobytes()[:: 4096 * 7]  # a sample of every batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="features artifact (default: build one)")
    ap.add_argument("--chunks", type=int, default=1500, help="chunks of the built artifact")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs per variant")
    ap.add_argument("--workers", default="0,1,2", help="worker counts of the ring loader")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    out = Console(width=160)  # the table whole, also in a log file

    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_loader_")
        args.data = Path(tmp.name) / "features"
        make_features_artifact(args.data, n_chunks=args.chunks, channels=8, bins=1024)
    fs = open_features(args.data)
    rows = fs.rows()
    np.asarray(fs.features).view(np.ndarray).sum(dtype=np.float32)  # into the page cache
    chunk_bytes = fs.features[0].nbytes
    load_before = os.getloadavg()[0]

    results = []  # (variant, workers, delivered as, seconds per epoch, first epoch)

    def run(name, workers, what, make_iter, set_epoch):
        results.append((name, workers, what, *timed_epochs(make_iter, set_epoch, args.repeats)))

    s, bs = sampler_for(rows, args.batch)
    before = DataLoader(BeforeBatches(fs, rows), sampler=bs, batch_size=None)
    run("before", 0, "cpu float32", lambda: before, s.set_epoch)
    for w in (1, 2):
        s, bs = sampler_for(rows, args.batch)
        fresh = DataLoader(
            FreshTensors(fs, rows), sampler=bs, batch_size=None, num_workers=w,
            persistent_workers=True,
        )  # fmt: skip
        run("fresh tensors", w, "shared memory float16", lambda fresh=fresh: fresh, s.set_epoch)
        del fresh
    for w in (int(v) for v in args.workers.split(",")):
        opts = LoaderOptions(num_workers=w, prefetch_factor=2)
        loader, s = make_loader(fs, rows, args.batch, shuffle=True, seed=0, options=opts)
        run("ring -> staging", w, "ring float16", loader.raw, s.set_epoch)
        run("ring -> cpu float32", w, "cpu float32", lambda loader=loader: loader, s.set_epoch)
        del loader

    load_after = os.getloadavg()[0]
    ref = results[0][4]
    t = Table(
        title=f"loader, {len(rows)} chunks of {list(fs.shape)} float16 (page-cached), batch "
        f"{args.batch}; {available_cores()} cores, load average {load_before:.1f} -> "
        f"{load_after:.1f}; median of {args.repeats} epochs"
    )
    cols = ("variant", "workers", "delivered as", "chunks/s", "min-max", "GB/s f16", "x before")
    for col in (*cols, "same batches"):
        t.add_column(col, justify="right")
    base = len(rows) / statistics.median(results[0][3])
    for name, w, what, secs, first in results:
        rates = [len(rows) / s for s in secs]
        rate = statistics.median(rates)
        t.add_row(name, str(w), what, f"{rate:,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}",
                  f"{rate * chunk_bytes / 1e9:.2f}", f"{rate / base:.1f}",
                  "yes" if first == ref else "NO")  # fmt: skip
    out.print(t)
    for dev in ("cpu", "cuda"):
        out.print(f"automatic options for {dev} here: {loader_options(dev).describe()}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
