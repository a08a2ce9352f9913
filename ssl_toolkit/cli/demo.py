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
    jobs: int = typer.Option(1, "--jobs", "-j", help="Synthesis worker processes."),
    force: bool = typer.Option(False, "--force", help="Rebuild every stage."),
) -> None:
    """Run every stage (prep, train, eval, export) on a small synthetic set."""
    from ..console import print_metrics
    from ..demo import run_demo

    result = run_demo(workdir, force=force, preset=preset, jobs=jobs)
    print_metrics(result.metrics, title=f"ssl demo: rMCL (K=5) on {result.eval}")
