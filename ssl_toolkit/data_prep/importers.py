"""``ssl prep import --layout tut2018``: ANSYN / RESYN / REAL as a scenes artifact.

The TUT2018 layout (Adavanne et al., 2018) holds, per overlap subset N and
cross-validation split K, a folder of 4-channel wavs ``wav_ovN_splitK_<snr>db/``
and a folder of label CSVs ``desc_ovN_splitK/`` with one ``<stem>.csv`` per
``<stem>.wav``. File names start with ``train_`` or ``test_`` (the original split,
the default); a deterministic share of each folder's training clips (``val_fraction``,
evenly spaced in name order: every fifth by default) becomes the ``val`` split. Whole
folds can be held out instead (``val_folds``, ``test_folds``); a split that would leave
train or val empty is refused with the option that fixes it. Audio stays where it
is (``audio_root`` = the dataset folder) unless ``copy``; label files are always copied
into the artifact.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.artifacts import Manifest, build_artifact
from ..core.config import ConfigError
from ..core.console import log, track
from ..core.console import warn as console_warn
from ..core.errors import DataError
from ..core.labels import check_label_set, max_overlap, read_labels, write_labels
from ..core.memory import check_disk, file_bytes

WAV_DIR = re.compile(r"^wav_(ov[123])_split(\d+)(?:_.*)?$")
#: Share of each folder's training clips that becomes validation by default (every fifth).
VAL_FRACTION = 0.2
N_CHANNELS = 4


def find_folders(root: Path) -> list[tuple[str, int, Path, Path]]:
    """``(subset, fold, wav_dir, desc_dir)`` for every subset/split folder pair.

    Raises:
        DataError: when the root holds no ``wav_ov*_split*`` folder, or one lacks
            its ``desc_`` folder.
    """
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    pairs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        m = WAV_DIR.match(d.name)
        if not m:
            continue
        desc = root / f"desc_{m.group(1)}_split{m.group(2)}"
        if not desc.is_dir():
            raise DataError(f"{d} has no label folder {desc.name} next to it")
        pairs.append((m.group(1), int(m.group(2)), d, desc))
    if not pairs:
        hint = ""
        if any((root / d).is_dir() for d in ("foa_dev", "mic_dev", "metadata_dev")):
            hint = " (it holds foa_dev/, mic_dev/ or metadata_dev/: use --layout dcase)"
        raise DataError(
            f"{root} holds no wav_ovN_splitK_*/ folder: not a TUT2018 (ANSYN/RESYN/REAL) "
            f"dataset{hint}"
        )
    return pairs


def _inside(root: Path, p: Path) -> Path:
    """``p`` with symbolic links resolved, refused unless it is a file inside ``root``.

    Raises:
        DataError: naming the file (a link out of the dataset, or not a regular file).
    """
    real = p.resolve()
    if root not in real.parents:
        raise DataError(
            f"{p} leads outside the dataset {root} (to {real}); a dataset is imported only "
            "from files inside its folder: copy the file in instead of linking it"
        )
    if not real.is_file():
        raise DataError(f"{p} is not a regular file")
    return real


def _pair_files(root: Path, wav_dir: Path, desc_dir: Path) -> list[tuple[Path, Path]]:
    """Match wavs and label CSVs by stem; refuse any file without its partner, and any
    that (through a symbolic link) lies outside ``root``."""
    wavs = {p.stem: p for p in wav_dir.glob("*.wav")}
    csvs = {p.stem: p for p in desc_dir.glob("*.csv")}
    for p in [*wavs.values(), *csvs.values()]:
        _inside(root, p)
    for stem in sorted(set(wavs) - set(csvs)):
        raise DataError(f"audio {wavs[stem]} has no label file {desc_dir / (stem + '.csv')}")
    for stem in sorted(set(csvs) - set(wavs)):
        raise DataError(f"label file {csvs[stem]} has no audio {wav_dir / (stem + '.wav')}")
    return [(wavs[s], csvs[s]) for s in sorted(wavs)]


def _split_of(wav: Path, rank: int, fold: int, split: ImportSplit) -> str:
    """``train``, ``val`` or ``test`` of a clip: held-out folds first, then the file name
    (``train_`` / ``test_``), the ``rank``-th training clip of its folder going to val
    when ``floor((rank + 1) f) > floor(rank f)`` (evenly spaced, ``f = val_fraction``)."""
    if fold in split.test_folds:
        return "test"
    if fold in split.val_folds:
        return "val"
    name = wav.name.lower()
    if name.startswith("test"):
        return "test"
    if name.startswith("train"):
        return "val" if _is_val(rank, split.val_fraction) else "train"
    raise DataError(f"{wav}: file names must start with train_ or test_ (TUT2018 layout)")


def _is_val(rank: int, fraction: float) -> bool:
    """Whether the ``rank``-th training clip of a folder (0, 1, ... in name order) goes to
    val: ``floor((rank + 1) f) > floor(rank f)``, a share ``f`` evenly spaced (every fifth
    clip for 0.2, the fifth first)."""
    return int((rank + 1) * fraction + 1e-9) > int(rank * fraction + 1e-9)


@dataclass(frozen=True)
class ImportSplit:
    """How imported clips are split (the original split by default).

    Attributes:
        val_fraction: share of each folder's training clips that becomes validation.
        val_folds: folds (``splitK`` of the folder names) whose clips all become val.
        test_folds: folds whose clips all become test.
    """

    val_fraction: float = VAL_FRACTION
    val_folds: tuple[int, ...] = ()
    test_folds: tuple[int, ...] = ()

    def validate(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        both = set(self.val_folds) & set(self.test_folds)
        if both:
            raise ConfigError(f"fold {min(both)} is in both --val-folds and --test-folds")


def _check_split(
    records: list[dict[str, Any]], split: ImportSplit, root: Path, fraction: bool = True
) -> None:
    """Refuse a split that leaves train or val empty, naming the option to use; an import
    whose clips are all test clips is an evaluation-only dataset (a model trained elsewhere is
    scored on it), accepted with a one-line note.

    Args:
        fraction: whether ``--val-fraction`` takes validation clips from training clips
            (False: only ``--val-folds`` makes val, as for the TAU-NIGENS datasets).
    """
    if records and all(r["split"] == "test" for r in records):
        log(f"{root}: all {len(records)} clips are test clips: an evaluation-only import "
            "(score models trained on other data with `ssl eval --split test`)")  # fmt: skip
        return
    folds = ", ".join(map(str, sorted({r["fold"] for r in records})))
    raise_it = f"raise --val-fraction (now {split.val_fraction}) or " if fraction else ""
    for name, fix in (
        (
            "train",
            ("lower --val-fraction or " if fraction else "")
            + "hold out fewer folds (--val-folds, --test-folds)",
        ),
        ("val", f"{raise_it}give --val-folds (folds here: {folds})"),
    ):  # fmt: skip  (a dataset without test clips is fine: evaluate on another)
        if not any(r["split"] == name for r in records):
            raise DataError(f"importing {root} this way leaves no {name!r} clip: {fix}")


def _check_one_rate(records: list[dict[str, Any]], root: Path) -> None:
    """Refuse clips of different sample rates, naming a file of each rate.

    Raises:
        DataError: ``<root> mixes sample rates: 24000 Hz (<file>), 48000 Hz (<file>)...``.
    """
    first: dict[int, Path] = {}
    for r in records:
        first.setdefault(r["fs"], r["wav"])
    if len(first) > 1:
        each = ", ".join(f"{v} Hz ({first[v]})" for v in sorted(first))
        raise DataError(f"{root} mixes sample rates: {each}; import one rate at a time")


def _audio_info(wav: Path, n_channels: int) -> tuple[int, float]:
    import soundfile as sf

    try:
        info = sf.info(wav)
    except Exception as e:
        raise DataError(f"cannot read audio {wav}: {e}") from e
    if info.channels != n_channels:
        raise DataError(f"{wav} has {info.channels} channels, expected {n_channels}")
    if info.frames == 0:
        raise DataError(f"audio {wav} is empty")
    if info.subtype in FLOAT_SUBTYPES:
        _check_finite(wav)
    return info.samplerate, info.frames / info.samplerate


#: soundfile subtypes that can hold NaN or infinite samples (integer PCM cannot).
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


def _check_finite(wav: Path, block: int = 1 << 16) -> None:
    """Refuse audio holding NaN or infinite samples (read block by block).

    Raises:
        DataError: naming the file and the time of the first such sample.
    """
    import soundfile as sf

    try:
        with sf.SoundFile(wav) as f:
            pos = 0
            for x in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                bad = ~np.isfinite(x).all(axis=1)
                if bad.any():
                    t = (pos + int(np.flatnonzero(bad)[0])) / f.samplerate
                    raise DataError(
                        f"audio {wav} holds NaN or infinite samples (first at {t:.3f} s); "
                        "fix or remove the file"
                    )
                pos += len(x)
    except (RuntimeError, OSError) as e:
        raise DataError(f"cannot read audio {wav}: {e}") from e


def _scan(root: Path, n_channels: int, how: ImportSplit) -> list[dict[str, Any]]:
    """One record per clip, every file checked."""
    records = []
    for subset, fold, wav_dir, desc_dir in find_folders(root):
        n_train = 0
        for wav, csv in _pair_files(root, wav_dir, desc_dir):
            split = _split_of(wav, n_train, fold, how)
            n_train += wav.name.lower().startswith("train")
            fs, duration = _audio_info(wav, n_channels)
            events = read_labels(csv)
            if len(events) and events["end_time"].max() > duration + 0.05:
                raise DataError(
                    f"label file {csv} has an event ending at {events['end_time'].max():.2f} s, "
                    f"after the end of {wav.name} ({duration:.2f} s)"
                )
            records.append(
                {
                    "clip_id": f"{subset}_split{fold}_{wav.stem}",
                    "wav": wav,
                    "label_file": csv,
                    "events": events,
                    "fold": fold,
                    "split": split,
                    "subset": subset,
                    "fs": fs,
                    "duration_s": duration,
                    "n_sources_max": max_overlap(events),
                }
            )
    _check_one_rate(records, root)
    return records


def import_config(
    layout: str, root: Path, records: list[dict[str, Any]], split: ImportSplit, **how: Any
) -> dict[str, Any]:
    """The config an import artifact records (and is reused by): the layout, the dataset
    folder, the options (``copy``, ``fmt``, ``mics``), every imported file and the split."""
    mics = how["mics"]
    return {
        "layout": layout,
        "root": str(root),
        "copy": how["copy"],
        "format": how["fmt"],
        "mic_positions_m": None if mics is None else mics.tolist(),
        "files": sorted(str(r["wav"].relative_to(root)) for r in records),
        "split": asdict(split),
    }


def import_tut2018(
    root: str | os.PathLike,
    out: str | os.PathLike,
    copy: bool = False,
    force: bool = False,
    *,
    fmt: str = "foa",
    mic_positions_m=None,
    split: ImportSplit | None = None,
) -> Manifest:
    """Import a dataset in the TUT2018 layout as a scenes artifact.

    Args:
        root: the dataset folder (holding ``wav_ovN_splitK_*`` and ``desc_ovN_splitK``).
        out: output scenes directory.
        copy: copy the audio into the artifact (``wav/``); otherwise it is referenced.
        force: rebuild even when ``out`` holds an artifact built otherwise.
        fmt: ``foa`` (ANSYN/RESYN/REAL FOA, 4 channels) or ``mic`` (recordings of a
            microphone array: needed by ``ssl baseline``).
        mic_positions_m: ``[M, 3]`` capsule positions in metres (DCASE frame, array
            centre at the origin) of a ``mic`` dataset; None: the tetrahedral DCASE array.
        split: how clips are split (:class:`ImportSplit`; default the original split).

    Raises:
        DataError: naming the file at fault (missing partner, malformed row,
            wrong channel count, unreadable audio, mixed rates).
    """
    root = Path(root).resolve()
    fmt, mics = _array(fmt, mic_positions_m)
    split = split or ImportSplit()
    split.validate()
    records = _scan(root, N_CHANNELS if mics is None else len(mics), split)
    _check_split(records, split, root)
    warnings = check_label_set(((r["label_file"], r["events"]) for r in records), "tut2018")
    config = import_config("tut2018", root, records, split, copy=copy, fmt=fmt, mics=mics)
    extra = {
        "max_sources": max(max(r["n_sources_max"], int(r["subset"][2:])) for r in records),
        "layout": "tut2018",
        "classes": sorted({c for r in records for c in r["events"]["sound_event_recording"]}),
    }
    man = write_scenes(
        out,
        config,
        records,
        lambda path, r: write_labels(path, r["events"]),
        extra,
        root=root,
        copy=copy,
        force=force,
        fmt=fmt,
        mics=mics,
    )
    for line in warnings:  # once the import succeeded: a failure prints its error only
        console_warn(line)
    return man


def write_scenes(
    out: str | os.PathLike,
    config: dict[str, Any],
    records: list[dict[str, Any]],
    write_label: Callable[[Path, dict[str, Any]], None],
    extra: dict[str, Any],
    *,
    root: Path,
    copy: bool,
    force: bool,
    fmt: str,
    mics: np.ndarray | None,
) -> Manifest:
    """Write the scenes artifact of an import (shared by every layout).

    Args:
        out: output scenes directory.
        config: the import's resolved options (fingerprinted; ``root`` is the dataset).
        records: one per clip, checked: ``clip_id``, ``wav`` (resolved path inside
            ``root``), ``fold``, ``split``, ``subset``, ``fs``, ``duration_s``,
            ``n_sources_max``, and what ``write_label`` reads.
        write_label: writes a record's labels into the artifact (``labels/<clip_id>.csv``).
        extra: the layout's own manifest extras (``max_sources``, label format, ...).
        root: the dataset folder (protected: never written into).
        copy: copy the audio into ``wav/``; otherwise ``audio_root`` is ``root``.
        force: rebuild even when ``out`` holds an artifact built otherwise.
        fmt, mics: the audio format and the ``[M, 3]`` capsule positions (``mic``).
    """
    reads = [f for r in records for f in (r["wav"], r["label_file"])]  # the dataset's files
    with build_artifact(
        out, "scenes", config, force=force, protect=(root,), reads=reads, log=log
    ) as b:
        if b.reused:
            return b.manifest
        if copy:
            check_disk(
                copy_bytes(records),
                b.final,
                "ssl prep import --copy",
                "leave the audio in place (no --copy)",
            )
        rows = [_write_clip(r, root, b.dir, copy, write_label) for r in track(records, "import")]
        clips = pd.DataFrame(rows)
        clips.to_csv(b.dir / "clips.csv", index=False)
        b.extra.update(
            {
                "fs": int(records[0]["fs"]),
                "format": fmt,
                "n_channels": N_CHANNELS if mics is None else len(mics),
                "audio_root": "." if copy else str(root),
                "n_clips": len(clips),
                "hours": float(clips["duration_s"].sum() / 3600),
                **extra,
            }
        )
        if mics is not None:
            b.extra["mic_positions_m"] = mics.tolist()
    return b.manifest


def copy_bytes(records: list[dict[str, Any]]) -> float:
    """Disk use of the audio ``--copy`` writes: the records' wav files, as they are."""
    return sum(file_bytes(Path(r["wav"]).stat().st_size) for r in records)


def _array(fmt: str, mic_positions_m) -> tuple[str, np.ndarray | None]:
    """The format (``foa`` or ``mic``, matched up to case) and the capsule positions
    ``[M, 3]`` of a ``mic`` import (None for ``foa``), checked."""
    from ..core.config import ConfigError, choose
    from .arrays import array_positions

    fmt = choose("format", fmt, ("foa", "mic"))
    if fmt == "foa":
        if mic_positions_m is not None:
            raise ConfigError("option --array needs --format mic (FOA has no capsules)")
        return fmt, None
    return fmt, array_positions(mic_positions_m)


def _write_clip(
    r: dict[str, Any], root: Path, out_dir: Path, copy: bool, write_label: Callable
) -> dict[str, Any]:
    rel = r["wav"].relative_to(root).as_posix()
    if copy:
        (out_dir / "wav").mkdir(exist_ok=True)
        rel = f"wav/{r['clip_id']}.wav"
        shutil.copyfile(r["wav"], out_dir / rel)
    (out_dir / "labels").mkdir(exist_ok=True)
    labels = f"labels/{r['clip_id']}.csv"
    write_label(out_dir / labels, r)
    return {
        "clip_id": r["clip_id"],
        "audio": rel,
        "labels": labels,
        "fold": r["fold"],
        "split": r["split"],
        "subset": r["subset"],
        "duration_s": r["duration_s"],
        "n_sources_max": r["n_sources_max"],
    }
