"""``ssl prep import --layout dcase``: the DCASE 2020-2024 SELD datasets as a scenes artifact.

The official development sets share one layout: the audio of one format in
``ROOT/foa_dev/`` (first-order Ambisonics) or ``ROOT/mic_dev/`` (the tetrahedral array),
and one metadata CSV per wav at the same relative path in ``ROOT/metadata_dev/``
(:func:`~ssl_toolkit.core.labels.read_metadata`: 100 ms label frames, class and source
indices, degrees, and in DCASE 2024 the distance in cm). File names start with
``foldN_`` (N is the fold of ``--test-folds`` / ``--val-folds``). Two families:

- STARSS22, STARSS23 and DCASE 2024 (13 classes): sub-folders ``dev-train-<site>/`` and
  ``dev-test-<site>/`` (``sony``, ``tau``) in both folders, files
  ``fold3_room21_mix001.wav``. The official split is the folders': ``dev-train*`` is
  train and ``dev-test*`` is test; a deterministic share of each train folder's clips
  (``val_fraction``, evenly spaced in name order as for TUT2018) becomes val.
- TAU-NIGENS Spatial Sound Events 2020 (14 classes, files ``fold1_room1_mix001_ov1.wav``)
  and 2021 (12 classes, ``fold1_room1_mix001.wav``): folds 1-6, flat folders (or any
  sub-folders). The official development splits are those of the DCASE baselines
  (``train_seldnet.py`` of github.com/sharathadavanne/seld-dcase2022, ``main()``; the
  same in ``seld.py`` of seld-dcase2021 and the 2021 README: "400 recordings for
  training split (fold 1 to 4), 100 for validation (fold 5) and 100 for testing
  (fold 6)"): 2020 test fold 1, val fold 2, train folds 3-6; 2021 test fold 6, val
  fold 5, train folds 1-4. ``--test-folds`` / ``--val-folds`` replace them; val comes
  from folds only (``val_fraction`` is not used).

Held-out folds (``--test-folds``, ``--val-folds``) come first in both families. Each
clip's ``subset`` is ``ovN``, N the largest number of events active in one of its label
frames. Metadata rows up to one label frame after the end of the audio are dropped (a
rounding of the clip length); rows further out are refused, naming the file. The same
guarantees as the TUT2018 importer hold (:mod:`.importers`): every file is checked to lie
inside the dataset, every wav has its csv and vice versa, one sample rate, the audio
stays in place unless ``copy``, the metadata is copied into ``labels/<clip_id>.csv``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from ..core.artifacts import Manifest
from ..core.console import warn as console_warn
from ..core.errors import DataError
from ..core.labels import (
    METADATA_HOP_S,
    check_label_set,
    metadata_max_overlap,
    read_metadata,
    write_metadata,
)
from .importers import (
    N_CHANNELS,
    ImportSplit,
    _array,
    _audio_info,
    _check_one_rate,
    _check_split,
    _inside,
    _is_val,
    import_config,
    write_scenes,
)

META_DIR = "metadata_dev"
#: ``foldN_`` at the start of every file name of a DCASE dataset.
FOLD = re.compile(r"^fold(\d+)_")
#: The sub-folders of STARSS22/23 and DCASE 2024: ``dev-train-sony``, ``dev-test-tau``...
STARSS_DIR = re.compile(r"^dev-(train|test)-.+$")
#: The overlap suffix of TAU-NIGENS 2020 file names (``..._mix001_ov1``).
OV_SUFFIX = re.compile(r"_ov\d+$")
#: Official development splits of the TAU-NIGENS editions: (test folds, val folds).
OFFICIAL_FOLDS = {"tau-nigens-2020": ((1,), (2,)), "tau-nigens-2021": ((6,), (5,))}
#: Number of sound classes of each edition (the baselines' ``unique_classes``).
EDITION_CLASSES = {"starss": 13, "tau-nigens-2020": 14, "tau-nigens-2021": 12}


def find_clips(root: Path, fmt: str) -> tuple[str, list[tuple[str, Path, Path]]]:
    """The edition of a DCASE dataset and its ``(folder, wav, csv)`` pairs, in name order.

    ``folder`` is the wav's sub-folder of ``<fmt>_dev/`` ("" when flat).

    Raises:
        DataError: naming what is wrong: no ``<fmt>_dev/`` (with the ``--format`` or
            ``--layout`` to use when the folder holds another one), no ``metadata_dev/``, a
            wav without its csv or a csv without its wav, a file outside ``root`` (a
            symbolic link) or not named ``foldN_...``, a STARSS file outside the
            ``dev-train-*`` / ``dev-test-*`` folders, or no wav at all.
    """
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    audio_dir, meta_dir = root / f"{fmt}_dev", root / META_DIR
    if not audio_dir.is_dir():
        other = "mic" if fmt == "foa" else "foa"
        if (root / f"{other}_dev").is_dir():
            raise DataError(f"{root} has {other}_dev/ but no {fmt}_dev/: use --format {other}")
        hint = ""
        if any(root.glob("wav_ov*_split*")):
            hint = " (it holds wav_ovN_splitK_*/ folders: use --layout tut2018)"
        raise DataError(
            f"{root} holds no {fmt}_dev/ folder: not a DCASE 2020-2024 dataset (expected "
            f"{fmt}_dev/ and {META_DIR}/ side by side){hint}"
        )
    if not meta_dir.is_dir():
        raise DataError(f"{audio_dir} has no {META_DIR}/ folder next to it (the labels)")
    wavs = _by_key(audio_dir, "wav")
    csvs = _by_key(meta_dir, "csv")
    for p in [*wavs.values(), *csvs.values()]:
        _inside(root, p)
    for key in sorted(set(wavs) - set(csvs)):
        raise DataError(f"audio {wavs[key]} has no metadata file {meta_dir / (key + '.csv')}")
    for key in sorted(set(csvs) - set(wavs)):
        raise DataError(f"metadata file {csvs[key]} has no audio {audio_dir / (key + '.wav')}")
    if not wavs:
        raise DataError(f"{audio_dir} holds no .wav file (nor do its sub-folders)")
    folders = {k.rpartition("/")[0] for k in wavs}
    starss = any(STARSS_DIR.match(f) for f in folders)
    for key in sorted(wavs):
        if not FOLD.match(Path(key).name):
            raise DataError(f"{wavs[key]}: DCASE file names start with foldN_ (N the fold)")
        folder = key.rpartition("/")[0]
        if starss and not STARSS_DIR.match(folder):
            raise DataError(
                f"{wavs[key]} lies outside the dev-train-*/ and dev-test-*/ folders of this "
                "STARSS-style dataset: move it into one of them"
            )
    if starss:
        edition = "starss"
    elif all(OV_SUFFIX.search(Path(k).name) for k in wavs):
        edition = "tau-nigens-2020"
    else:
        edition = "tau-nigens-2021"
    return edition, [(k.rpartition("/")[0], wavs[k], csvs[k]) for k in sorted(wavs)]


def _by_key(folder: Path, ext: str) -> dict[str, Path]:
    """``sub-folder/stem`` (or ``stem``) -> path of the ``.ext`` files of ``folder`` and of
    its immediate sub-folders."""
    found = [*folder.glob(f"*.{ext}"), *folder.glob(f"*/*.{ext}")]
    return {p.relative_to(folder).with_suffix("").as_posix(): p for p in found}


def _effective_split(edition: str, split: ImportSplit) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(test folds, val folds)`` held out: the options, else the edition's official ones
    (TAU-NIGENS); a fold given by one option is never taken by the other's default."""
    test, val = OFFICIAL_FOLDS.get(edition, ((), ()))
    test = split.test_folds or tuple(f for f in test if f not in split.val_folds)
    val = split.val_folds or tuple(f for f in val if f not in test)
    return test, val


def _scan(
    root: Path, fmt: str, n_channels: int, split: ImportSplit
) -> tuple[str, tuple[tuple[int, ...], tuple[int, ...]], list[dict[str, Any]]]:
    """The edition, the ``(test, val)`` folds held out (:func:`_effective_split`) and one
    checked record per clip (split, metadata, audio info)."""
    edition, pairs = find_clips(root, fmt)
    test_folds, val_folds = _effective_split(edition, split)
    rank: dict[str, int] = {}  # train clips seen so far per folder (STARSS val share)
    records: list[dict[str, Any]] = []
    seen: dict[str, Path] = {}
    for folder, wav, csv in pairs:
        clip_id = wav.stem
        if clip_id in seen:
            raise DataError(f"{wav} and {seen[clip_id]} have the same name; rename one")
        seen[clip_id] = wav
        fold = int(FOLD.match(wav.name).group(1))
        if fold in test_folds:
            which = "test"
        elif fold in val_folds:
            which = "val"
        elif edition == "starss" and STARSS_DIR.match(folder).group(1) == "test":
            which = "test"
        elif edition == "starss":
            rank[folder] = rank.get(folder, -1) + 1
            which = "val" if _is_val(rank[folder], split.val_fraction) else "train"
        else:
            which = "train"
        fs, duration = _audio_info(wav, n_channels)
        meta = _within_audio(read_metadata(csv), csv, wav, duration)
        n = metadata_max_overlap(meta)
        records.append(
            {
                "clip_id": clip_id,
                "wav": wav,
                "label_file": csv,
                "meta": meta,
                "fold": fold,
                "split": which,
                "subset": f"ov{n}",
                "fs": fs,
                "duration_s": duration,
                "n_sources_max": n,
            }
        )
    _check_one_rate(records, root)
    return edition, (test_folds, val_folds), records


def _within_audio(meta, csv: Path, wav: Path, duration_s: float):
    """``meta`` without its rows after the end of the audio; refused if some lie more than
    one label frame after it.

    Raises:
        DataError: naming the metadata file, the frame and the audio's length.
    """
    if len(meta) == 0:
        return meta
    n_frames = math.ceil(duration_s / METADATA_HOP_S - 1e-6)  # label frames of the audio
    last = int(meta["frame"].max())
    if last > n_frames:
        raise DataError(
            f"metadata file {csv} labels frame {last} ({last * METADATA_HOP_S:.1f} s), more "
            f"than one label frame after the end of {wav.name} ({duration_s:.2f} s)"
        )
    return meta[meta["frame"] < n_frames].reset_index(drop=True)


def import_dcase(
    root: str | os.PathLike,
    out: str | os.PathLike,
    copy: bool = False,
    force: bool = False,
    *,
    fmt: str = "foa",
    mic_positions_m=None,
    split: ImportSplit | None = None,
) -> Manifest:
    """Import a DCASE 2020-2024 development set as a scenes artifact.

    Args:
        root: the dataset folder (holding ``foa_dev/`` or ``mic_dev/`` and ``metadata_dev/``).
        out: output scenes directory.
        copy: copy the audio into the artifact (``wav/``); otherwise it is referenced.
        force: rebuild even when ``out`` holds an artifact built otherwise.
        fmt: ``foa`` (``foa_dev/``) or ``mic`` (``mic_dev/``, the tetrahedral array unless
            ``mic_positions_m``).
        mic_positions_m: ``[M, 3]`` capsule positions in metres of a ``mic`` dataset.
        split: held-out folds and the val share of STARSS train folders
            (:class:`~.importers.ImportSplit`; default the official split).

    Returns:
        The manifest; its extras add to the TUT2018 import's ``label_format: "dcase"``,
        ``edition`` (``starss``, ``tau-nigens-2020``, ``tau-nigens-2021``), ``n_classes``
        (the edition's class count, or the largest class index + 1 when larger) and
        ``has_distance`` (some metadata row has a distance: DCASE 2024).

    Raises:
        DataError: naming the file at fault (see :func:`find_clips`; a malformed
            metadata row with its line, unreadable audio or another channel count,
            metadata frames after the end of the audio, mixed sample rates), or a split
            leaving train or val empty, naming the option that fixes it.
        ConfigError: an invalid option.
    """
    root = Path(root).resolve()
    fmt, mics = _array(fmt, mic_positions_m)
    split = split or ImportSplit()
    split.validate()
    n_channels = N_CHANNELS if mics is None else len(mics)
    edition, (test_folds, val_folds), records = _scan(root, fmt, n_channels, split)
    _check_split(records, split, root, fraction=edition == "starss")
    warnings = check_label_set(((r["label_file"], r["meta"]) for r in records), "dcase",
                               n_classes=EDITION_CLASSES[edition], edition=edition)  # fmt: skip
    config = import_config("dcase", root, records, split, copy=copy, fmt=fmt, mics=mics)
    largest = max((int(r["meta"]["class"].max()) for r in records if len(r["meta"])), default=-1)
    extra = {
        "max_sources": max(1, max(r["n_sources_max"] for r in records)),
        "layout": "dcase",
        "label_format": "dcase",
        "edition": edition,
        "n_classes": max(EDITION_CLASSES[edition], largest + 1),
        "has_distance": any(bool(r["meta"]["distance_m"].notna().any()) for r in records),
        "test_folds": list(test_folds),
        "val_folds": list(val_folds),
    }
    man = write_scenes(
        out,
        config,
        records,
        lambda path, r: write_metadata(path, r["meta"]),
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


__all__ = ["EDITION_CLASSES", "OFFICIAL_FOLDS", "find_clips", "import_dcase"]
