"""``ssl eval``, ``ssl baseline`` and ``ssl report``: score runs and classical methods."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import app, user_errors


@app.command("eval")
@user_errors
def eval_cmd(
    run: Path = typer.Argument(
        None,
        help="Run (from `ssl train`) or export (from `ssl export`) artifact; omitted with "
        "--dcase-csv (then the only argument is OUT).",
        show_default=False,
    ),
    out: Path = typer.Argument(None, help="Eval artifact to create.", show_default=False),
    data: Path = typer.Option(..., "--data", help="Features artifact (from `ssl prep features`)."),
    split: str = typer.Option(None, "--split", help="train | val | test.", show_default="test"),
    threshold: float = typer.Option(
        None,
        "--threshold",
        help="Detection threshold (0..1).",
        show_default="none: the model's (learned on val at training, else 0.5)",
    ),
    learn_threshold: bool = typer.Option(
        None,
        "--learn-threshold",
        help="Learn the threshold on val (SGL-Thresh).",
        show_default="off",
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", help="Chunks per forward pass.", show_default="32"
    ),
    plots: bool = typer.Option(
        None, "--plots", help="Write PNG plots into OUT/plots.", show_default="off"
    ),
    dcase_out: bool = typer.Option(
        None,
        "--dcase-out",
        help="Also write the detections as DCASE result files OUT/dcase/<clip_id>.csv "
        "(100 ms label frames, each from its middle feature frame).",
        show_default="off",
    ),
    dcase_csv: Path = typer.Option(
        None,
        "--dcase-csv",
        help="Score this folder of DCASE result files (<clip_id>.csv per clip of the split, "
        "from any system) instead of a run: `ssl eval --dcase-csv DIR OUT --data FEATS`.",
    ),
    name: str = typer.Option(
        None,
        "--name",
        help="With --dcase-csv: the system's name in reports.",
        show_default="the folder's name",
    ),
    config: Path = typer.Option(
        None, "--config", help="TOML file (\\[eval] table or top level; docs/CONFIG.md)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing eval artifact."),
) -> None:
    """Score a trained run or an export: metrics.json, metrics.csv, predictions.npz (and plots).

    With --dcase-csv DIR: score any system's DCASE result files with the same metrics.
    """
    from ..core.config import load_toml, resolve
    from ..core.console import print_metrics
    from ..core.errors import UserError
    from ..evaluation.evaluate import (
        EvalConfig,
        evaluate_dcase_csv,
        evaluate_run,
        load_metrics,
        summary,
    )

    if dcase_csv is not None:
        if out is not None:
            raise UserError("with --dcase-csv give one argument, OUT (the predictions are DIR)")
        run, out = None, run
    elif name is not None:
        raise UserError("--name names the system of --dcase-csv; a run is named by its method")
    if out is None:
        raise UserError(
            "give RUN and OUT (or --dcase-csv DIR and OUT): ssl eval RUN OUT --data FEATS"
        )
    cli = {
        "split": split,
        "threshold": threshold,
        "learn_threshold": learn_threshold,
        "batch_size": batch_size,
        "plots": plots,
        "dcase_out": dcase_out,
    }
    cfg = resolve(EvalConfig, load_toml(config, "eval") if config else None, cli)
    if dcase_csv is not None:
        man = evaluate_dcase_csv(dcase_csv, data, out, cfg, name=name, force=force)
    else:
        man = evaluate_run(run, data, out, force=force, cfg=cfg)
    doc = load_metrics(man.path)
    title = f"ssl eval: {man.path}"
    if dcase_csv is not None:
        title = f"ssl eval ({doc.get('label')}, DCASE result files): {man.path}"
    print_metrics(summary(doc), title=title, full=str(man.path / "metrics.json"))


@app.command("baseline")
@user_errors
def baseline_cmd(
    scenes: Path = typer.Argument(
        ..., help="MIC twin of the features' scenes (`ssl prep synth --format mic`, same seed)."
    ),
    out: Path = typer.Argument(..., help="Eval artifact to create."),
    data: Path = typer.Option(..., "--data", help="Features artifact giving frames and labels."),
    method: str = typer.Option(
        None, "--method", help="srp | music | normmusic | tops.", show_default="srp"
    ),
    n_sources: str = typer.Option(
        None,
        "--n-sources",
        help="known: the labels' count per frame (frame recall not reported) | estimate: "
        "counted from the audio, frames with none found are misses.",
        show_default="known",
    ),
    split: str = typer.Option(None, "--split", help="train | val | test.", show_default="test"),
    grid_deg: float = typer.Option(
        None,
        "--grid-deg",
        help="Search grid step in degrees, rounded to divide 90; peaks are refined below it.",
        show_default="none (5, TOPS 10)",
    ),
    config: Path = typer.Option(
        None,
        "--config",
        help="TOML file (\\[baseline] table or top level): any option of BaselineConfig "
        "(nfft, window_s, freq_min_hz, freq_max_hz, refine_deg, ...).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing eval artifact."),
) -> None:
    """Localize with a classical method (pyroomacoustics.doa) on the same frames as `ssl eval`.

    Each frame's spatial spectrum is searched on a grid that holds every multiple of its
    step (so the 10-degree label grid) and each peak is refined to 0.1 degree: the grid
    sets no error floor. Found sources get confidence 1, unused slots are invalid. The
    scenes must carry the features' labels on every scored clip (it refuses others).
    """
    from ..core.config import load_toml, resolve
    from ..core.console import print_metrics
    from ..evaluation.baselines import BaselineConfig, run_baseline
    from ..evaluation.evaluate import load_metrics, summary

    cli = {"method": method, "n_sources": n_sources, "split": split, "grid_deg": grid_deg}
    cfg = resolve(BaselineConfig, load_toml(config, "baseline") if config else None, cli)
    man = run_baseline(scenes, data, out, cfg, force=force)
    title = f"ssl baseline ({cfg.method}, {cfg.n_sources} count): {man.path}"
    print_metrics(summary(load_metrics(man.path)), title=title,
                  full=str(man.path / "metrics.json"))  # fmt: skip


@app.command("report")
@user_errors
def report_cmd(
    evals: list[Path] = typer.Argument(..., help="Eval artifacts (`ssl eval` / `ssl baseline`)."),
    out: Path = typer.Option(..., "--out", help="Report artifact to write (report.md, .csv)."),
    allow_mixed: bool = typer.Option(
        False, "--allow-mixed", help="Tabulate evals scored on different data or splits."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing report."),
) -> None:
    """One comparison table across eval artifacts (Markdown and CSV), rows labelled uniquely."""
    from ..evaluation.report import make_report, print_report

    print_report(make_report(evals, out, force=force, allow_mixed=allow_mixed), out_dir=str(out))
