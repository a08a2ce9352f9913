"""``ssl demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import app, user_errors


@app.command()
@user_errors
def demo(
    workdir: Path = typer.Argument(Path("ssl-demo"), help="Working folder for the artifacts."),
    preset: str = typer.Option("resyn", help="Synthesis preset: resyn (rooms) or ansyn."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Worker processes for synthesis/features."),
    force: bool = typer.Option(False, "--force", help="Rebuild every stage."),
) -> None:
    """Run every stage (synth, features, train rMCL, eval, export) on a small synthetic set."""
    from ..experiments.demo import print_demo, run_demo

    print_demo(run_demo(workdir, force=force, preset=preset, jobs=jobs))
