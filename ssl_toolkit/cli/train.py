"""``ssl train``: fit a model on a features artifact."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import app, user_errors


@app.command("train")
@user_errors
def train_cmd(
    features: Path = typer.Argument(..., help="Features artifact (from `ssl prep features`)."),
    out: Path = typer.Argument(..., help="Run directory to create."),
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
    config: Path = typer.Option(None, "--config", help="TOML file (\\[train] table or top level)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run."),
) -> None:
    """Train a multi-hypothesis model; writes model.safetensors, model.json, history.csv."""
    from ..config import load_toml, resolve
    from ..training import TrainConfig, train
    from ..training.report import print_run

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
    }
    cfg = resolve(TrainConfig, toml, cli)
    man = train(features, out, cfg, force=force, resume=resume)
    if man is not None:  # None on DDP ranks other than 0
        print_run(man)
