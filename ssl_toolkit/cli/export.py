"""`ssl export` and `ssl predict`."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import app, user_errors


@app.command("export")
@user_errors
def export_cmd(
    run: Path = typer.Argument(..., help="A run artifact (from `ssl train`)."),
    out: Path = typer.Argument(..., help="The export directory to write."),
    fmt: list[str] = typer.Option(
        ["torchscript"], "--format", "-f", help="torchscript and/or onnx (repeat the option)."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild an existing export."),
) -> None:
    """Export a trained model to TorchScript / ONNX with its I/O description (io.json)."""
    from ..inference.export import export_run

    m = export_run(run, out, formats=tuple(fmt), force=force)
    typer.echo(f"{m.path}  max |diff| vs PyTorch: {m.extra.get('max_abs_diff')}")


@app.command("predict")
@user_errors
def predict_cmd(
    model: Path = typer.Argument(..., help="An export (`ssl export`) or a run (`ssl train`)."),
    audio: list[Path] = typer.Argument(..., help="Multichannel audio files."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the CSVs (and plots)."),
    threshold: float = typer.Option(None, help="Detection threshold (default: the model's)."),
    plot: bool = typer.Option(False, "--plot", help="Also write <stem>.png per file."),
    dcase: bool = typer.Option(
        False,
        "--dcase",
        help="Also write OUT/dcase/<stem>.csv: the detected sources as a DCASE result file "
        "(100 ms label frames; `ssl eval --dcase-csv OUT/dcase` scores such a folder).",
    ),
    block_seconds: float = typer.Option(10.0, help="Audio per streaming block (bounds memory)."),
    backend: str = typer.Option("auto", help="auto, torch, torchscript or onnx."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing CSVs."),
) -> None:
    """Localize sources in raw audio: per-frame hypotheses and detected sources as CSV."""
    from ..inference.predict import predict_files

    paths = predict_files(model, audio, out, threshold, plot, block_seconds, force, backend, dcase)
    for p in paths:
        typer.echo(str(p))
