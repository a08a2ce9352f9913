"""``ssl demo``: every stage on a small built-in synthetic set, in a few minutes on a CPU.

prep synth -> prep features -> train (rMCL, K=5) -> eval -> export, each stage
writing its artifact under ``workdir`` (re-running reuses what is up to date).
The result table puts the model's oracle error next to the chance level (the expected
oracle error of K directions drawn uniformly on the sphere, as ``ssl eval`` reports it).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.metrics import titles
from ..core.console import log

#: The embedded default: reverberant rooms, 1 or 2 overlapping sources, 16 kHz.
DEMO_SYNTH: dict[str, Any] = {
    "fs": 16000,
    "n_clips": 60,
    "clip_seconds": 10.0,
    "subsets": ["ov1", "ov2"],
    "seed": 0,
}
#: The paper's log-mel + intensity-vector input (cheaper than STFT magnitude/phase on a CPU).
DEMO_FEATURES: dict[str, Any] = {"type": "logmel"}
#: rMCL with K = 5 on a narrower CRNN than the paper's (same structure).
DEMO_TRAIN: dict[str, Any] = {
    "method": "rmcl",
    "K": 5,
    "epochs": 15,
    "batch_size": 16,
    "lr": 3e-3,
    "seed": 0,
    "channels": (32, 32, 32),
    "pools": (4, 4, 2),
    "gru_layers": 2,
    "gru_units": 64,
}
STAGES = ("prep synth", "prep features", "train", "eval", "export")


@dataclass
class DemoResult:
    """Where the demo wrote each stage's artifact, its metrics and timings."""

    scenes: Path
    features: Path
    run: Path
    eval: Path
    export: Path
    metrics: dict[str, Any]
    seconds: dict[str, float]
    audio: str = ""


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
        jobs: worker processes of synthesis and features.

    Returns:
        The artifacts' paths, ``metrics.json`` of the eval (``chance_oracle_deg`` per
        subset, as ``ssl eval`` writes it) and the seconds each stage took.
    """
    from ..core.config import resolve
    from ..data_prep.featurize import FeatureConfig, compute_features
    from ..data_prep.synth import SynthConfig, preset_config, synthesize
    from ..evaluation.evaluate import EvalConfig, evaluate_run
    from ..inference.export import export_run
    from ..training import TrainConfig
    from ..training import train as train_run

    wd = Path(workdir)
    res = DemoResult(wd / "scenes", wd / "features", wd / "run", wd / "eval", wd / "export", {}, {})
    # resolve every config first: a bad override fails before any work is done
    synth_cfg = resolve(SynthConfig, preset_config(preset), DEMO_SYNTH, synth)
    feat_cfg = resolve(FeatureConfig, DEMO_FEATURES)
    train_cfg = resolve(TrainConfig, DEMO_TRAIN, train)
    res.audio = f"4-channel {synth_cfg.format.upper()} audio at {synth_cfg.fs} Hz"

    def stage(name: str, fn, *args, **kwargs):
        log(f"[bold]demo stage {len(res.seconds) + 1}/{len(STAGES)}: {name}[/]")
        t0 = time.perf_counter()
        out = fn(*args, **kwargs, force=force)
        res.seconds[name] = time.perf_counter() - t0
        return out

    stage("prep synth", synthesize, res.scenes, synth_cfg, jobs=jobs)
    stage("prep features", compute_features, res.scenes, res.features, feat_cfg, jobs=jobs)
    stage("train", train_run, res.features, res.run, train_cfg)
    stage("eval", evaluate_run, res.run, res.features, res.eval, EvalConfig("test"))
    stage("export", export_run, res.run, res.export, formats=("torchscript",))
    res.metrics = json.loads((res.eval / "metrics.json").read_text())
    add_chance_level(res.metrics)
    log(f"demo finished in {sum(res.seconds.values()):.0f} s; artifacts in {wd}")
    return res


def add_chance_level(metrics: dict[str, Any]) -> None:
    """Fill in ``chance_oracle_deg`` where an eval made before ``ssl eval`` wrote it lacks it.

    The value is ``ssl eval``'s own (:func:`ssl_toolkit.analysis.metrics.chance_oracle_deg`:
    the exact expected oracle error of K uniform random directions), NaN for a subset
    without an active source (no oracle error either).
    """
    from ..analysis.metrics import chance_oracle_deg

    k = int(metrics["K"])
    for name in ("D1", "D2", "D3", "overall"):
        sub = metrics.get(name)
        if isinstance(sub, dict) and "chance_oracle_deg" not in sub:
            oracle = sub.get("oracle_deg")
            has = isinstance(oracle, (int, float)) and oracle == oracle
            sub["chance_oracle_deg"] = chance_oracle_deg(k) if has else float("nan")


#: Columns of the demo's table (metrics.json key -> title).
TABLE = titles(
    ("frames", "oracle_deg", "chance_oracle_deg", "emd_deg", "hungarian_deg", "frame_recall",
     "F20"),
    short=True,
)  # fmt: skip


def print_demo(res: DemoResult) -> None:
    """The results table, and what to run next."""
    from ..core.console import out, print_metrics
    from ..evaluation.evaluate import summary

    thr = res.metrics.get("threshold", 0.5)
    merge = res.metrics.get("merge_deg", 0.0)
    merged = f", hypotheses within {merge:g} deg merged" if merge else ""
    print_metrics(
        summary(res.metrics, TABLE),
        title=f"rMCL (K={res.metrics['K']}) on the test split, threshold {thr:.2f}{merged}",
    )
    out.print(
        "oracle: mean distance of each source to its closest hypothesis; chance: the same for "
        "K random directions; EMD: transport between confidence-weighted hypotheses and sources; "
        "Hungarian / recall / F20: detected sources (confidence >= threshold, after merging "
        "nearby hypotheses where training learned to).\n"
        f"Next: [bold]ssl predict {res.export} YOUR_4CH.wav --out predictions --plot[/]  "
        f"(the model takes {res.audio}; other rates are resampled)",
        highlight=False,
    )
