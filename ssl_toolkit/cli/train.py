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
        None,
        "--method",
        help="rmcl | wta | wta-relaxed | wta-top-n | amcl | pit | ie | accdoa "
        "(multi-ACCDOA with ADPIT, the DCASE SELD baseline)",
        show_default="rmcl",
    ),
    K: int = typer.Option(
        None,
        "-K",
        "--hypotheses",
        help="Hypotheses per frame (IE: members; PIT: the features' source slots; "
        "accdoa: tracks per class, default 3).",
        show_default="5",
    ),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs.", show_default="50"),
    batch_size: int = typer.Option(
        None, "--batch-size", help="Chunks per step (global).", show_default="32"
    ),
    lr: float = typer.Option(
        None, "--lr", help="Peak learning rate (AdamW).", show_default="0.001"
    ),
    max_steps: int = typer.Option(
        None, "--max-steps", help="Cap on optimizer steps.", show_default="none"
    ),
    device: str = typer.Option(
        None, "--device", help="auto (CUDA > MPS > CPU) | cpu | cuda | mps", show_default="auto"
    ),
    seed: int = typer.Option(
        None,
        "--seed",
        help="Seed of init, data order, dropout and drawn negatives.",
        show_default="0",
    ),
    deterministic: bool = typer.Option(
        None,
        "--deterministic/--no-deterministic",
        help="Deterministic algorithms (a resumed run reaches the same weights).",
        show_default="off",
    ),
    amp: bool = typer.Option(
        None, "--amp/--no-amp", help="Mixed precision on CUDA.", show_default="on"
    ),
    compile_: bool = typer.Option(
        None, "--compile/--no-compile", help="torch.compile the model.", show_default="off"
    ),
    patience: int = typer.Option(
        None, "--patience", help="Early-stopping patience (epochs).", show_default="10"
    ),
    beta: float = typer.Option(
        None, "--beta", help="Weight of the confidence (or PIT activity) BCE.", show_default="1.0"
    ),
    negatives: str = typer.Option(
        None,
        "--negatives",
        help="rMCL confidence negatives: all, or n drawn per frame (rMCL*).",
        show_default="all",
    ),
    output: str = typer.Option(
        None, "--output", help="Hypothesis heads: unit (3-D) or sph.", show_default="unit"
    ),
    pools: str = typer.Option(
        None,
        "--pools",
        help="Frequency max-pooling per conv block, e.g. 4,4,2.",
        show_default="none: fitted to the features' bins (8,8,2 from 256 bins)",
    ),
    tensorboard: bool = typer.Option(
        None,
        "--tensorboard/--no-tensorboard",
        help="Write TensorBoard event files to RUN/tensorboard (pip install tensorboard).",
        show_default="off",
    ),
    classes: bool = typer.Option(
        None,
        "--classes",
        help="accdoa: K tracks per class of the features' per-frame classes (else one class).",
        show_default="off",
    ),
    augment: str = typer.Option(
        None,
        "--augment",
        help="Exact spatial augmentation of training chunks by the array's symmetries: "
        "z (those that map z to +-z: 16 for FOA, 8 for the tetrahedral array) | full "
        "(all: 48, 24) | none.",
        show_default="z",
    ),
    freq_mask: int = typer.Option(
        None,
        "--freq-mask",
        help="Mask up to N consecutive frequency bins of each training chunk (0: off).",
        show_default="0",
    ),
    config: Path = typer.Option(
        None, "--config", help="TOML file (\\[train] table or top level; docs/CONFIG.md)."
    ),
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
    from ..core.config import load_toml
    from ..training import train
    from ..training.resume import train_config
    from ..training.summary import print_run

    toml = load_toml(config, "train") if config else None
    cli = {
        "method": method,
        "K": K,
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
        "classes": classes,
        "augment": augment,
        "freq_mask": freq_mask,
    }
    if out is None:  # ssl train RUN --resume
        features, out = _run_only(features, resume)
    cfg, features = train_config(out, features, resume, toml, cli)
    man = train(features, out, cfg, force=force, resume=resume)
    if man is not None:  # None on DDP ranks other than 0
        print_run(man)


def _int_list(flag: str, text: str | None) -> list[int] | None:
    """``"4,4,2"`` -> ``[4, 4, 2]``; None stays None (not given)."""
    from ..core.config import ConfigError

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
