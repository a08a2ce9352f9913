"""`ssl toy`: the toy experiment of the rMCL paper."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import app, user_errors


@app.command("toy")
@user_errors
def toy_cmd(
    out: Path = typer.Argument(..., help="Directory for the toy artifact (tables, plots)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny sizes (seconds; for tests)."),
    paper: bool = typer.Option(
        False, "--paper", help="The authors' sizes (256-unit MLP, 15,625 steps of 128; ~12 min)."
    ),
    steps: int = typer.Option(None, help="Training steps per method."),
    seed: int = typer.Option(None, help="Random seed."),
    config: Path = typer.Option(None, "--config", help="TOML file with a \\[toy] table."),
    force: bool = typer.Option(False, "--force", help="Rebuild an existing output."),
) -> None:
    """Train sMCL, rMCL, rMCL* and IE on the 2-D toy and compare their EMD (default: ~1.5 min)."""
    from ..core.config import ConfigError, load_toml, resolve
    from ..core.console import out as stdout
    from ..experiments.toy.config import PAPER, QUICK, ToyConfig
    from ..experiments.toy.experiment import run_toy, summary_table

    if quick and paper:
        raise ConfigError("give at most one of --quick and --paper")
    preset = QUICK if quick else PAPER if paper else None
    toml = load_toml(config, "toy") if config else None
    cfg = resolve(ToyConfig, preset, toml, {"steps": steps, "seed": seed})
    stdout.print(summary_table(run_toy(out, cfg, force=force)))
