"""Synthesis throughput: seconds of 4-channel audio made per wall-clock second.

Usage::

    .venv/bin/python benchmarks/bench_synth.py --clips 8 --clip-seconds 30 --jobs 1 2

Targets on a 2-core machine (44.1 kHz, 30 s clips): resyn >= 20x real time
with 2 workers, ansyn >= 100x. Process start-up of the workers is included; each row
is the median of ``--repeats`` runs.
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
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--clip-seconds", type=float, default=30.0)
    ap.add_argument("--fs", type=int, default=44100)
    ap.add_argument("--presets", nargs="+", default=["ansyn", "resyn"])
    ap.add_argument("--formats", nargs="+", default=["foa", "mic"])
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3, help="runs per row (median)")
    args = ap.parse_args()

    from rich.table import Table

    from ssl_toolkit.core.config import resolve
    from ssl_toolkit.core.console import out
    from ssl_toolkit.data_prep.synth import SynthConfig, preset_config, synthesize

    table = Table(
        title=f"ssl prep synth throughput ({os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f} at start)"
    )
    for col in ("preset", "format", "jobs", "audio s", "wall s", "x real time", "audio s / CPU s"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        for preset in args.presets:
            for fmt in args.formats:
                cfg = resolve(
                    SynthConfig,
                    preset_config(preset),
                    {
                        "format": fmt,
                        "fs": args.fs,
                        "n_clips": args.clips,
                        "clip_seconds": args.clip_seconds,
                        "subsets": ["ov1", "ov2", "ov3"],
                    },
                )
                for jobs in args.jobs:
                    walls, cpus = [], []
                    for r in range(args.repeats):
                        t0, c0 = time.perf_counter(), cpu_seconds()
                        man = synthesize(Path(tmp) / f"{preset}_{fmt}_{jobs}_{r}", cfg, jobs=jobs)
                        walls.append(time.perf_counter() - t0)
                        cpus.append(cpu_seconds() - c0)
                        shutil.rmtree(man.path)
                    wall, cpu = statistics.median(walls), statistics.median(cpus)
                    audio = args.clips * args.clip_seconds
                    table.add_row(
                        preset,
                        fmt,
                        str(jobs),
                        f"{audio:.0f}",
                        f"{wall:.1f}",
                        f"{audio / wall:.0f}x",
                        f"{audio / cpu:.0f}",
                    )
    out.print(table)


if __name__ == "__main__":
    main()
