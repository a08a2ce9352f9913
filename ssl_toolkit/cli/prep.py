"""``ssl prep synth|import|features``: shims over :mod:`ssl_toolkit.data_prep`."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import prep_app, user_errors


def _subsets(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _folds(text: str | None, option: str) -> tuple[int, ...]:
    from ..core.config import ConfigError

    try:
        return tuple(int(f) for f in (text or "").split(",") if f.strip())
    except ValueError:
        raise ConfigError(f"{option} takes fold numbers such as 1,2 (got {text!r})") from None


@prep_app.command("synth")
@user_errors
def synth(
    out: Path = typer.Argument(..., help="Output scenes directory."),
    preset: str = typer.Option(
        None,
        "--preset",
        help="ansyn (free field) or resyn (shoebox rooms); beats the TOML's.",
        show_default="ansyn",
    ),
    format: str = typer.Option(
        None,
        "--format",
        help="foa (ACN/SN3D) or mic (tetrahedral, or mic_positions_m).",
        show_default="foa",
    ),
    n_clips: int = typer.Option(
        None, "--n-clips", "--clips", help="Number of clips.", show_default="60"
    ),
    clip_seconds: float = typer.Option(
        None, "--clip-seconds", help="Clip length in seconds.", show_default="30.0"
    ),
    fs: int = typer.Option(None, "--fs", help="Sample rate in Hz.", show_default="44100"),
    subsets: str = typer.Option(
        None, "--subsets", help="Comma-separated overlap subsets.", show_default="ov1,ov2,ov3"
    ),
    grid_deg: float = typer.Option(
        None,
        "--grid-deg",
        help="Direction grid step in degrees; 0: continuous.",
        show_default="10.0",
    ),
    snr_db: float = typer.Option(
        None, "--snr-db", help="Event-to-ambient-noise ratio in dB.", show_default="30.0"
    ),
    sources_dir: Path = typer.Option(
        None,
        "--sources-dir",
        help="Folder of event clips, one sub-folder per class.",
        show_default="none: the built-in procedural library",
    ),
    layout: str = typer.Option(
        None,
        "--layout",
        help="toolkit (wav/, labels/) or tut2018 (original names).",
        show_default="toolkit",
    ),
    seed: int = typer.Option(
        None, "--seed", help="Master seed (clip i depends on seed and i only).", show_default="0"
    ),
    motion: bool = typer.Option(
        None,
        "--motion",
        help="Moving sources (TAU-NIGENS 2020/2021 style): events travel along great "
        "circles; onsets on the 100 ms label frame; DCASE metadata labels (not with "
        "--layout tut2018).",
        show_default="off",
    ),
    angular_speeds_deg_s: str = typer.Option(
        None,
        "--angular-speeds-deg-s",
        "--angular-speeds",
        help="Comma-separated angular speeds of moving events, degrees per second (--motion).",
        show_default="10.0,20.0,40.0",
    ),
    moving_fraction: float = typer.Option(
        None,
        "--moving-fraction",
        help="Share of the events that move (--motion); the others stay static.",
        show_default="1.0",
    ),
    jobs: int = typer.Option(
        1, "--jobs", help="Worker processes (the output does not depend on it)."
    ),
    config: Path = typer.Option(
        None, "--config", help="TOML file with any SynthConfig option (docs/CONFIG.md)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing output built otherwise."
    ),
) -> None:
    """Synthesize ANSYN/RESYN-like scenes with labels correct by construction."""
    from ..core.config import ConfigError, load_toml
    from ..core.console import log
    from ..data_prep.synth import synth_config, synthesize

    toml = load_toml(config, "synth") if config else {}
    speeds = None
    if angular_speeds_deg_s is not None:
        try:
            speeds = [float(v) for v in angular_speeds_deg_s.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(
                f"--angular-speeds takes degrees per second such as 10,20,40 "
                f"(got {angular_speeds_deg_s!r})"
            ) from None
    cli = {
        "preset": preset,
        "format": format,
        "n_clips": n_clips,
        "clip_seconds": clip_seconds,
        "fs": fs,
        "subsets": _subsets(subsets),
        "grid_deg": grid_deg,
        "snr_db": snr_db,
        "seed": seed,
        "sources_dir": str(sources_dir) if sources_dir else None,
        "layout": layout,
        "motion": motion,
        "angular_speeds_deg_s": speeds,
        "moving_fraction": moving_fraction,
    }
    cfg = synth_config(toml, cli)
    if not cfg.motion and (speeds is not None or moving_fraction is not None):
        given = "--angular-speeds" if speeds is not None else "--moving-fraction"
        raise ConfigError(f"{given} needs --motion (or motion = true in the TOML)")
    man = synthesize(out, cfg, jobs=jobs, force=force)
    log(f"scenes: {man.path} ({man.extra['n_clips']} clips, {man.extra['hours'] * 60:.1f} min)")


@prep_app.command("import")
@user_errors
def import_(
    root: Path = typer.Argument(
        ...,
        help="Folder of the original dataset: wav_*/ and desc_*/ (tut2018), or "
        "foa_dev/ or mic_dev/ and metadata_dev/ (dcase).",
    ),
    out: Path = typer.Argument(..., help="Output scenes directory."),
    layout: str = typer.Option(
        "tut2018",
        "--layout",
        help="Dataset layout: tut2018 (ANSYN/RESYN/REAL) or dcase (TAU-NIGENS Spatial "
        "Sound Events 2020/2021, STARSS22/23, DCASE 2024).",
    ),
    format: str = typer.Option(
        "foa", "--format", help="foa (4-channel FOA; foa_dev/) or mic (an array; mic_dev/)."
    ),
    array: Path = typer.Option(
        None,
        help="TOML file with mic_positions_m = \\[\\[x, y, z], ...] (metres; top level, "
        "\\[array] or \\[synth] table), for --format mic.",
    ),
    val_fraction: float = typer.Option(
        0.2,
        "--val-fraction",
        help="Share of each folder's training clips used for validation (tut2018; dcase: "
        "STARSS dev-train-* folders).",
    ),
    val_folds: str = typer.Option(
        None,
        "--val-folds",
        help="Folds held out for validation, e.g. 3 (splitK of tut2018 folders, foldN of "
        "dcase files; TAU-NIGENS default: 2020 fold 2, 2021 fold 5).",
        show_default="none",
    ),
    test_folds: str = typer.Option(
        None,
        "--test-folds",
        help="Folds held out for testing (default: the official split: tut2018 file names' "
        "train_/test_, STARSS dev-test-* folders, TAU-NIGENS 2020 fold 1, 2021 fold 6).",
        show_default="none",
    ),
    copy: bool = typer.Option(False, "--copy", help="Copy the audio into the artifact."),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing output built otherwise."
    ),
) -> None:
    """Import an original dataset (TUT2018 or DCASE 2020-2024 layout) as a scenes artifact."""
    from ..core.config import ConfigError
    from ..core.console import log
    from ..data_prep.arrays import read_array_toml
    from ..data_prep.import_dcase import import_dcase
    from ..data_prep.importers import ImportSplit, import_tut2018

    layouts = {"tut2018": import_tut2018, "dcase": import_dcase}
    if layout not in layouts:
        raise ConfigError(f"option --layout: unknown layout {layout!r} (known: tut2018, dcase)")
    mics = read_array_toml(array) if array is not None else None
    split = ImportSplit(val_fraction, _folds(val_folds, "--val-folds"),
                        _folds(test_folds, "--test-folds"))  # fmt: skip
    man = layouts[layout](
        root, out, copy=copy, force=force, fmt=format, mic_positions_m=mics, split=split
    )
    log(f"scenes: {man.path} ({man.extra['n_clips']} clips)")


@prep_app.command("features")
@user_errors
def features(
    scenes: Path = typer.Argument(..., help="Scenes directory (ssl prep synth / import)."),
    out: Path = typer.Argument(..., help="Output features directory."),
    type: str = typer.Option(
        None,
        "--type",
        help="stft (magnitude + phase), logmel (+ IV / GCC-PHAT) or salsa (SALSA-Lite: "
        "linear-frequency log power + IV / phase differences, up to max_hz).",
        show_default="stft",
    ),
    config: Path = typer.Option(
        None, "--config", help="TOML file with any FeatureConfig option (docs/CONFIG.md)."
    ),
    jobs: int = typer.Option(
        1, "--jobs", help="Worker processes (the output does not depend on it)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing output built otherwise."
    ),
) -> None:
    """Compute chunked features and frame labels (memory-mapped, float16)."""
    from ..core.config import load_toml, resolve
    from ..core.console import log
    from ..data_prep.featurize import FeatureConfig, compute_features

    toml = load_toml(config, "features") if config else {}
    cfg = resolve(FeatureConfig, toml, {"type": type})
    man = compute_features(scenes, out, cfg, force=force, jobs=jobs)
    log(f"features: {man.path} ({man.extra['n_chunks']} chunks of {man.extra['shape']})")
