"""Training step with spatial augmentation on vs off, in the same run: the ratio of medians.

Runs optimizer steps as ``ssl train`` does (batches from ``training.data.make_loader``,
then ``training.engine.train_step``) alternating, step by step, a loader without
augmentation and one with ``--augment`` (and ``--freq-mask``), so that both see the same
machine load; reports the median step time of each (load + augment + forward + backward +
optimizer step), their ratio, and the median time of the augmentation alone. Default: the
demo's CRNN on the demo's features (FOA log-mel + intensity vectors, ``[7, 25, 64]``);
``--format mic`` (log-mel + GCC-PHAT ``[10, 25, 64]``), ``--type stft`` for STFT features
(``[8, 25, n_fft/2]``), ``--paper`` for the paper's CRNN.

Usage::

    .venv/bin/python benchmarks/bench_augment.py [--steps 30 --batch 32 --augment z]
    .venv/bin/python benchmarks/bench_augment.py --format mic --augment full --freq-mask 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import ssl_toolkit.cli  # noqa: F401  (as `ssl` does, sets up the CPU runtime before torch)

# isort: split
import torch

from ssl_toolkit.core.config import resolve
from ssl_toolkit.data_prep.arrays import tetra_positions_m
from ssl_toolkit.data_prep.featurize import FeatureConfig, make_spec
from ssl_toolkit.features.augment import SpatialAugment, plan
from ssl_toolkit.features.spec import ArraySpec
from ssl_toolkit.features.store import open_features
from ssl_toolkit.models import build_model
from ssl_toolkit.testing import make_features_artifact
from ssl_toolkit.training import TrainConfig
from ssl_toolkit.training.data import make_loader
from ssl_toolkit.training.engine import Job, make_optimizer, train_step
from ssl_toolkit.training.objectives import make_loss
from ssl_toolkit.training.run import model_kwargs
from ssl_toolkit.training.runtime import Runtime, pick_device

SMALL = {"channels": (32, 32, 32), "pools": (4, 4, 2), "gru_layers": 2, "gru_units": 64}
WARMUP = 3


def forever(loader, sampler):
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30, help="steps of each (after warm-up)")
    ap.add_argument("--format", choices=("foa", "mic"), default="foa")
    ap.add_argument("--type", choices=("logmel", "stft"), default="logmel")
    ap.add_argument("--fs", type=int, default=24000, help="sample rate of the spec (stft bins)")
    ap.add_argument("--augment", default="z", choices=("z", "full"))
    ap.add_argument("--freq-mask", type=int, default=0)
    ap.add_argument("--paper", action="store_true", help="the paper's CRNN, not the demo's")
    args = ap.parse_args()
    dev = pick_device(args.device)
    array = ArraySpec.foa() if args.format == "foa" else ArraySpec.mic(tetra_positions_m())
    spec = make_spec(FeatureConfig(type=args.type), args.fs, args.format, 4, array)
    c, t, f = spec.chunk_shape
    with tempfile.TemporaryDirectory(prefix="bench_augment_") as tmp:
        data = Path(tmp) / "features"
        n = args.batch * 8
        make_features_artifact(data, n_chunks=n, channels=c, frames=t, bins=f)
        fs = open_features(data)
        spec = replace(spec, chunk_frames=t)
        maps, note = plan(spec, args.augment)
        aug = SpatialAugment(maps, args.freq_mask, fs.mean, dev)
        cfg = resolve(TrainConfig, {} if args.paper else SMALL, {"K": 5, "batch_size": args.batch})
        rt = Runtime(dev)
        rows = fs.rows()
        loaders = {
            on: forever(
                *make_loader(
                    fs,
                    rows,
                    args.batch,
                    shuffle=True,
                    seed=0,
                    device=dev,
                    augment=aug if on else None,
                )
            )  # fmt: skip
            for on in (False, True)
        }
        model = build_model("crnn", **model_kwargs(cfg, fs, 5))
        model.norm.set_stats(fs.mean, fs.std)
        model = model.to(dev).train()
        job = Job("bench", model, make_loss(cfg), Path("unused"), "")
        total = 2 * (WARMUP + args.steps)
        optim = make_optimizer(model, cfg, rt, total)
        ms: dict[bool, list[float]] = {False: [], True: []}
        for i in range(total):
            on = bool(i % 2)
            sync(dev)
            t0 = time.perf_counter()
            batch = next(loaders[on])
            train_step(model, job, batch, optim, cfg, rt, i / total)
            sync(dev)
            if i >= 2 * WARMUP:
                ms[on].append(1e3 * (time.perf_counter() - t0))
        # the augmentation alone, on one batch
        x, d, a = next(loaders[False])
        alone = []
        for _ in range(50):
            sync(dev)
            t0 = time.perf_counter()
            aug((x, d, a))
            sync(dev)
            alone.append(1e3 * (time.perf_counter() - t0))
    off, on = statistics.median(ms[False]), statistics.median(ms[True])
    print(f"features {args.format} {args.type} [{c}, {t}, {f}], batch {args.batch}, "
          f"{'paper' if args.paper else 'demo'} CRNN on {dev} ({torch.get_num_threads()} "
          f"threads); {note}; freq mask {args.freq_mask}")  # fmt: skip
    print(f"median step over {args.steps} steps each: off {off:.1f} ms, on {on:.1f} ms, "
          f"ratio on/off {on / off:.3f}; augmentation alone {statistics.median(alone):.2f} ms "
          "per batch")  # fmt: skip


if __name__ == "__main__":
    main()
