"""``ssl train``: fit a model on a features artifact."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import app, user_errors


@app.command("train")
@user_errors
def train_cmd(
    features: Path = typer.Argument(
        ...,
        help="Features artifact (from `ssl prep features`); or, with --resume and no OUT, "
        "the run to continue (`ssl train RUN --resume`).",
    ),
    out: Path = typer.Argument(None, help="Run directory to create.", show_default=False),
    method: str = typer.Option(
        None, "--method", help="rmcl | wta | wta-relaxed | wta-top-n | amcl | pit | ie"
    ),
    k: int = typer.Option(None, "-K", "--hypotheses", help="Hypotheses per frame (IE: members)."),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs."),
    batch_size: int = typer.Option(None, "--batch-size", help="Chunks per step (global)."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (AdamW)."),
    max_steps: int = typer.Option(None, "--max-steps", help="Cap on optimizer steps."),
    device: str = typer.Option(None, "--device", help="auto (CUDA > MPS > CPU) | cpu | cuda | mps"),
    seed: int = typer.Option(None, "--seed", help="Seed of init, data order and dropout."),
    deterministic: bool = typer.Option(None, "--deterministic/--no-deterministic"),
    amp: bool = typer.Option(None, "--amp/--no-amp", help="Mixed precision on CUDA."),
    compile_: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    patience: int = typer.Option(None, "--patience", help="Early-stopping patience (epochs)."),
    beta: float = typer.Option(
        None, "--beta", help="Weight of the confidence (or PIT activity) BCE."
    ),
    negatives: str = typer.Option(
        None, "--negatives", help="rMCL confidence negatives: all, or n drawn per frame (rMCL*)."
    ),
    output: str = typer.Option(None, "--output", help="Hypothesis heads: unit (3-D) or sph."),
    pools: str = typer.Option(
        None,
        "--pools",
        help="Frequency max-pooling per conv block, e.g. 4,4,2 "
        "\\[default: fitted to the features' bins, 8,8,2 for 256 bins or more]",
        show_default=False,
    ),
    tensorboard: bool = typer.Option(
        None,
        "--tensorboard/--no-tensorboard",
        help="Write TensorBoard event files to RUN/tensorboard (pip install tensorboard).",
    ),
    config: Path = typer.Option(None, "--config", help="TOML file (\\[train] table or top level)."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run with the config it was started with "
        "(options that differ from it are refused).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing run."),
) -> None:
    """Train a multi-hypothesis model; writes model.safetensors, model.json, history.csv,
    curves.png.

    Prints the device, precision and threads first, then one line per epoch.
    """
    from ..config import load_toml
    from ..training import train
    from ..training.report import print_run
    from ..training.resume import train_config

    toml = load_toml(config, "train") if config else None
    cli = {
        "method": method,
        "K": k,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "max_steps": max_steps,
        "device": device,
        "seed": seed,
        "deterministic": deterministic,
        "amp": amp,
        "compile": compile_,
        "patience": patience,
        "beta": beta,
        "negatives": negatives,
        "output": output,
        "pools": _int_list("--pools", pools),
        "tensorboard": tensorboard,
    }
    if out is None:  # ssl train RUN --resume
        features, out = _run_only(features, resume)
    cfg, features = train_config(out, features, resume, toml, cli)
    man = train(features, out, cfg, force=force, resume=resume)
    if man is not None:  # None on DDP ranks other than 0
        print_run(man)


def _int_list(flag: str, text: str | None) -> list[int] | None:
    """``"4,4,2"`` -> ``[4, 4, 2]``; None stays None (not given)."""
    from ..config import ConfigError

    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"{flag} expects comma-separated integers like 4,4,2, got {text!r}"
        ) from None


def _run_only(run: Path, resume: bool) -> tuple[None, Path]:
    """``ssl train RUN --resume``: the features come from the run's stored config."""
    if not resume:
        raise typer.BadParameter("give FEATURES and RUN (or RUN alone with --resume)")
    return None, run
