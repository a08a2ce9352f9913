"""``ssl eval``, ``ssl baseline`` and ``ssl report``: score runs and classical methods."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import app, user_errors


@app.command("eval")
@user_errors
def eval_cmd(
    run: Path = typer.Argument(
        ..., help="Run (from `ssl train`) or export (from `ssl export`) artifact."
    ),
    out: Path = typer.Argument(..., help="Eval artifact to create."),
    data: Path = typer.Option(..., "--data", help="Features artifact (from `ssl prep features`)."),
    split: str = typer.Option(None, "--split", help="train | val | test (default test)."),
    threshold: float = typer.Option(None, "--threshold", help="Detection threshold (0..1)."),
    learn_threshold: bool = typer.Option(
        None, "--learn-threshold", help="Learn the threshold on val (SGL-Thresh)."
    ),
    batch_size: int = typer.Option(None, "--batch-size", help="Chunks per forward pass."),
    plots: bool = typer.Option(None, "--plots", help="Write PNG plots into OUT/plots."),
    config: Path = typer.Option(None, "--config", help="TOML file (\\[eval] table or top level)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing eval artifact."),
) -> None:
    """Score a trained run or an export: metrics.json, metrics.csv, predictions.npz (and plots)."""
    from ..config import load_toml, resolve
    from ..console import print_metrics
    from ..evaluation import EvalConfig, evaluate_run, load_metrics, summary

    cli = {
        "split": split,
        "threshold": threshold,
        "learn_threshold": learn_threshold,
        "batch_size": batch_size,
        "plots": plots,
    }
    cfg = resolve(EvalConfig, load_toml(config, "eval") if config else None, cli)
    man = evaluate_run(run, data, out, force=force, cfg=cfg)
    print_metrics(summary(load_metrics(man.path)), title=f"ssl eval: {man.path}")


@app.command("baseline")
@user_errors
def baseline_cmd(
    scenes: Path = typer.Argument(
        ..., help="MIC twin of the features' scenes (`ssl prep synth --format mic`, same seed)."
    ),
    out: Path = typer.Argument(..., help="Eval artifact to create."),
    data: Path = typer.Option(..., "--data", help="Features artifact giving frames and labels."),
    method: str = typer.Option("srp", "--method", help="srp | music | normmusic | tops"),
    n_sources: str = typer.Option("known", "--n-sources", help="known | estimate"),
    split: str = typer.Option("test", "--split", help="train | val | test."),
    grid_deg: float = typer.Option(None, "--grid-deg", help="Search grid step (degrees)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing eval artifact."),
) -> None:
    """Localize with a classical method (pyroomacoustics.doa) on the same frames as `ssl eval`.

    The scenes must carry the features' labels on every scored clip (it refuses others).
    """
    from ..baselines import BaselineConfig, run_baseline
    from ..config import resolve
    from ..console import print_metrics
    from ..evaluation import load_metrics, summary

    cli = {"method": method, "n_sources": n_sources, "split": split, "grid_deg": grid_deg}
    man = run_baseline(scenes, data, out, cfg=resolve(BaselineConfig, cli), force=force)
    print_metrics(summary(load_metrics(man.path)), title=f"ssl baseline ({method}): {man.path}")


@app.command("report")
@user_errors
def report_cmd(
    evals: list[Path] = typer.Argument(..., help="Eval artifacts (`ssl eval` / `ssl baseline`)."),
    out: Path = typer.Option(..., "--out", help="Directory for report.md and report.csv."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
) -> None:
    """One comparison table across eval artifacts (Markdown and CSV)."""
    from ..report import make_report, print_report

    print_report(make_report(evals, out, force=force))
