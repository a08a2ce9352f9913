"""Feature throughput: seconds of 4-channel audio turned into features per wall-clock second.

Usage::

    .venv/bin/python benchmarks/bench_features.py --clips 24 --clip-seconds 30

Target on a 2-core machine (44.1 kHz): >= 200x real time. The scenes are made first
(not timed); library imports and a first pass over the scenes warm up before timing;
each row is the median of ``--repeats`` runs.
Worker processes (``--jobs 2``) pay their start-up (about 2 s) inside the timing, so
they pay off on data sets larger than this one. Also prints the float16 storage error
the manifest records.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import cpu_seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3, help="runs per row (median)")
    ap.add_argument("--clip-seconds", type=float, default=30.0)
    ap.add_argument("--fs", type=int, default=44100)
    ap.add_argument("--formats", nargs="+", default=["foa", "mic"])
    ap.add_argument("--types", nargs="+", default=["stft", "logmel"])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()

    import librosa.filters  # noqa: F401  (warm-up: imports are not throughput)
    import torch  # noqa: F401
    from rich.table import Table

    from ssl_toolkit.core.config import resolve
    from ssl_toolkit.core.console import out
    from ssl_toolkit.data_prep.featurize import FeatureConfig, compute_features
    from ssl_toolkit.data_prep.synth import SynthConfig, preset_config, synthesize

    table = Table(
        title=f"ssl prep features throughput ({os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f} at start)"
    )
    cols = (
        "format",
        "type",
        "jobs",
        "audio s",
        "wall s",
        "x real time",
        "audio s / CPU s",
        "f16 error",
    )
    for col in cols:
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory(prefix="bench_feat_") as tmp:
        for fmt in args.formats:
            cfg = resolve(
                SynthConfig,
                preset_config("ansyn"),
                {
                    "format": fmt,
                    "fs": args.fs,
                    "n_clips": args.clips,
                    "clip_seconds": args.clip_seconds,
                },
            )
            scenes = synthesize(Path(tmp) / f"scenes_{fmt}", cfg, jobs=2)
            for kind in args.types:  # warm-up (first calls, page cache): not timed
                compute_features(
                    scenes.path,
                    Path(tmp) / f"warm_{fmt}_{kind}",
                    resolve(FeatureConfig, {"type": kind}),
                )
            for kind, jobs in [(k, j) for k in args.types for j in args.jobs]:
                walls, cpus = [], []
                for r in range(args.repeats):
                    t0, c0 = time.perf_counter(), cpu_seconds()
                    man = compute_features(
                        scenes.path,
                        Path(tmp) / f"f_{fmt}_{kind}_{jobs}_{r}",
                        resolve(FeatureConfig, {"type": kind}),
                        jobs=jobs,
                    )
                    walls.append(time.perf_counter() - t0)
                    cpus.append(cpu_seconds() - c0)
                    shutil.rmtree(man.path)
                wall, cpu = statistics.median(walls), statistics.median(cpus)
                audio = args.clips * args.clip_seconds
                errs = ", ".join(
                    f"{k[:5]} {v:.0e}" for k, v in man.extra["float16_rel_rms_error"].items()
                )
                table.add_row(
                    fmt,
                    kind,
                    str(jobs),
                    f"{audio:.0f}",
                    f"{wall:.1f}",
                    f"{audio / wall:.0f}x",
                    f"{audio / cpu:.0f}",
                    errs,
                )
    out.print(table)


if __name__ == "__main__":
    main()
