"""``ssl demo``: every stage on a small built-in synthetic set, in a few minutes on a CPU.

prep synth -> prep features -> train (rMCL, K=5) -> eval -> export, each stage
writing its artifact under ``workdir`` (re-running reuses what is up to date).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .console import err, log

#: The embedded default: small enough for about two minutes on 2 CPU cores.
DEMO_SYNTH: dict[str, Any] = {
    "fs": 16000,
    "n_clips": 40,
    "clip_seconds": 4.0,
    "subsets": ["ov1", "ov2"],
    "seed": 0,
}
DEMO_TRAIN: dict[str, Any] = {
    "method": "rmcl",
    "K": 5,
    "epochs": 12,
    "batch_size": 16,
    "seed": 0,
    "conv_channels": 32,
    "gru_hidden": 64,
    "gru_layers": 2,
}


@dataclass
class DemoResult:
    """Where the demo wrote each stage's artifact, and its metrics."""

    scenes: Path
    features: Path
    run: Path
    eval: Path
    export: Path
    metrics: dict[str, Any]
    seconds: dict[str, float]


def run_demo(
    workdir: str | os.PathLike = "ssl-demo",
    *,
    force: bool = False,
    synth: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    preset: str = "resyn",
    jobs: int = 1,
) -> DemoResult:
    """Run prep -> features -> train -> eval -> export in ``workdir``.

    Args:
        workdir: working folder; one sub-directory per stage artifact.
        force: rebuild every stage even when an up-to-date artifact exists.
        synth: overrides of :data:`DEMO_SYNTH` (tests use fewer, shorter clips).
        train: overrides of :data:`DEMO_TRAIN`.
        preset: synthesis preset, ``resyn`` (reverberant rooms) or ``ansyn``.
        jobs: synthesis worker processes.
    """
    from .config import resolve
    from .data_prep.features import FeatureConfig, compute_features
    from .data_prep.synth import SynthConfig, preset_config, synthesize
    from .evaluation import evaluate_run
    from .export import export_run
    from .training import TrainConfig
    from .training import train as train_run

    wd = Path(workdir)
    seconds: dict[str, float] = {}

    def stage(name: str, fn, *args, **kwargs):
        log(f"[bold]demo stage {len(seconds) + 1}/5: {name}[/]")
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds[name] = time.perf_counter() - t0
        return result

    synth_cfg = resolve(SynthConfig, preset_config(preset), DEMO_SYNTH, synth)
    stage("prep synth", synthesize, wd / "scenes", synth_cfg, jobs=jobs, force=force)
    feat_cfg = resolve(FeatureConfig, {})
    stage("prep features", compute_features, wd / "scenes", wd / "features", feat_cfg, force=force)
    train_cfg = resolve(TrainConfig, DEMO_TRAIN, train)
    stage("train", train_run, wd / "features", wd / "run", train_cfg, force=force)
    ev = stage(
        "eval", evaluate_run, wd / "run", wd / "features", wd / "eval", split="test", force=force
    )
    stage("export", export_run, wd / "run", wd / "export", formats=("torchscript",), force=force)
    import json

    metrics = json.loads((Path(ev.path) / "metrics.json").read_text())
    err.log(f"demo finished in {sum(seconds.values()):.0f} s; artifacts in {wd}")
    return DemoResult(
        wd / "scenes", wd / "features", wd / "run", wd / "eval", wd / "export", metrics, seconds
    )
