"""``ssl prep features``: chunked features and frame labels, memory-mapped.

The feature kinds and their computation are in :mod:`ssl_toolkit.features.extract`, their
:class:`~ssl_toolkit.features.spec.FeatureSpec` is written into the manifest (``extra.
feature_params``): 40 ms Hann window, 20 ms hop, ``n_fft`` the next power of two of the
window (2048 at 44.1 kHz) by default, every length scaled to the scenes' sample rate.

Frame t is centred at ``t * hop`` (centred STFT, zero padding); labels use the
same timing. Clips are cut into chunks of ``chunk_frames`` frames (0.5 s);
the frames after the last full chunk of a clip are dropped. Features are
stored as float16, or as float32 (exact) when some value is beyond float16's range
(65504: STFT magnitudes of loud float audio, e.g. samples in int16 units): the manifest
records which (``dtype``) and the resulting error (``float16_rel_rms_error``, RMS error
over RMS value, per channel group; 0 with float32). Features that are not finite even
in float32 (NaN or infinite samples, samples beyond about 1e12) are refused with one line
naming the clip, and nothing is published.

Frame labels come from the scenes' label files, in the format named by the scenes'
``extra.label_format`` (absent: ``tut2018``): TUT2018 event lists
(:func:`~ssl_toolkit.core.labels.frame_labels`), or DCASE metadata
(:func:`~ssl_toolkit.core.labels.metadata_frame_labels`: moving sources interpolated along
the great circle), which also give ``classes.npy`` and ``distance.npy`` and ``n_classes``
in the manifest (see :mod:`ssl_toolkit.features.store`).
"""

from __future__ import annotations

import os
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.artifacts import (
    Manifest,
    build_artifact,
    read_clips,
    read_manifest,
    safe_join,
    scene_files,
)
from ..core.config import ConfigError, check_choices, check_finite, to_dict
from ..core.console import log, progress
from ..core.cpu import parallel_map, worker_count, worker_threads
from ..core.errors import DataError
from ..core.labels import read_label_file, table_frame_labels
from ..core.memory import check_disk
from ..features.extract import _MEL, _mel_basis, extract, peak
from ..features.spec import TYPES, FeatureSpec, levels_db
from ..features.store import FLOAT16_MAX, FeatureWriter, frame_stats, write_rows
from .arrays import scenes_array


@dataclass(frozen=True)
class FeatureConfig:
    """Options of ``ssl prep features``.

    Attributes:
        type: ``stft`` (magnitude + phase), ``logmel`` (log-mel + IV / GCC-PHAT) or
            ``salsa`` (SALSA-Lite: linear-frequency log power + IV / phase differences).
        win_s: analysis window length in seconds (40 ms).
        hop_s: hop in seconds (20 ms, the label resolution).
        n_fft: FFT size; 0 picks the next power of two of the window.
        n_mels: mel bands (``logmel``), also the GCC-PHAT lags kept; ignored by ``stft``
            and ``salsa``.
        chunk_frames: frames per chunk (25 = 0.5 s).
        max_hz: highest frequency of ``salsa`` features (9 kHz as SALSA-Lite): bins ``1 ..
            int(max_hz * n_fft / fs)``, at most the Nyquist bin. The MIC phase differences
            wrap above ``c / (2 d)`` for capsules ``d`` apart (2.5 kHz for the 4.2 cm
            tetrahedron). Ignored by ``stft`` and ``logmel`` (not recorded in their
            artifacts: they keep their fingerprints).
    """

    CHOICES = {"type": TYPES}  # checked and matched up to case by core.config

    type: str = "stft"
    win_s: float = 0.04
    hop_s: float = 0.02
    n_fft: int = 0
    n_mels: int = 64
    chunk_frames: int = 25
    max_hz: float = 9000.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid option."""
        check_finite(self)
        check_choices(self)
        if not 0 < self.hop_s <= self.win_s <= 1:
            raise ConfigError("options 'hop_s' and 'win_s' need 0 < hop_s <= win_s <= 1 s")
        if self.n_fft < 0 or self.n_fft & (self.n_fft - 1) and self.n_fft:
            raise ConfigError(f"option 'n_fft' must be 0 or a power of two, got {self.n_fft}")
        if not 8 <= self.n_mels <= 256:
            raise ConfigError(f"option 'n_mels' must be in 8..256, got {self.n_mels}")
        if self.chunk_frames < 1:
            raise ConfigError(f"option 'chunk_frames' must be at least 1, got {self.chunk_frames}")
        if not self.max_hz >= 100:
            raise ConfigError(f"option 'max_hz' must be at least 100 Hz, got {self.max_hz}")

    def fingerprinted(self) -> dict[str, Any]:
        """The options recorded in the artifact: those of its type (``max_hz`` only for
        ``salsa``: artifacts of the other types keep the fingerprints they had)."""
        d = to_dict(self)
        if self.type != "salsa":
            d.pop("max_hz")
        return d


def make_spec(
    cfg: FeatureConfig, fs: int, fmt: str, n_channels: int = 4, array=None
) -> FeatureSpec:
    """The :class:`FeatureSpec` of ``cfg`` for audio at ``fs``: window sizes scaled to it;
    ``array`` the scenes' :class:`~ssl_toolkit.features.spec.ArraySpec` (None: unknown)."""
    win = int(round(cfg.win_s * fs))
    n_fft = cfg.n_fft or 1 << (win - 1).bit_length()
    if n_fft < win:
        raise ConfigError(f"option 'n_fft' ({n_fft}) is shorter than the window ({win} samples)")
    return FeatureSpec(
        type=cfg.type,
        fs=int(fs),
        n_fft=int(n_fft),
        win_length=win,
        hop_length=int(round(cfg.hop_s * fs)),
        n_mels=int(cfg.n_mels),
        n_channels=int(n_channels),
        format=fmt,
        chunk_frames=int(cfg.chunk_frames),
        array=array,
        max_hz=float(cfg.max_hz) if cfg.type == "salsa" else None,
    )


# ----------------------------------------------------------------------------- artifact


def _clip_frames(clips: pd.DataFrame, audio_root: Path, spec: FeatureSpec) -> np.ndarray:
    """Frames per clip, from the audio headers (checking channels and rate)."""
    import soundfile as sf

    frames = []
    for rel in clips["audio"]:
        path = safe_join(audio_root, rel)
        try:
            info = sf.info(path)
        except Exception as e:
            raise DataError(f"cannot read audio {path}: {e}") from e
        if info.channels != spec.n_channels:
            raise DataError(f"{path} has {info.channels} channels, expected {spec.n_channels}")
        if info.samplerate != spec.fs:
            raise DataError(f"{path} is at {info.samplerate} Hz, the scenes say {spec.fs} Hz")
        frames.append(spec.n_frames(info.frames))
    return np.array(frames, dtype=np.int64)


def compute_features(
    scenes_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: FeatureConfig,
    force: bool = False,
    jobs: int = 1,
) -> Manifest:
    """Compute a features artifact from a scenes artifact (see ``featureset.py``).

    Args:
        scenes_dir: a scenes artifact (``ssl prep synth`` or ``ssl prep import``).
        out: output directory.
        cfg: feature options.
        force: rebuild even when ``out`` holds an artifact built otherwise.
        jobs: worker processes (each writes its clips' chunks into the shared
            memory-mapped arrays; at most the clips and the cores this process may use);
            the output does not depend on it.
    """
    cfg.validate()
    worker_count(jobs, 1)  # a bad --jobs is refused before anything is read
    scenes = read_manifest(scenes_dir, "scenes")
    ex = scenes.extra
    spec = make_spec(cfg, ex["fs"], ex["format"], ex.get("n_channels", 4), scenes_array(ex))
    root = str(ex.get("audio_root", "."))  # absolute: an imported dataset left in place
    protect = (root,) if os.path.isabs(root) else ()
    reads = scene_files(scenes, *read_clips(scenes))  # fingerprinted: edited audio is never reused
    with build_artifact(
        out,
        "features",
        cfg.fingerprinted(),
        [scenes],
        force=force,
        protect=protect,
        reads=reads,
        log=log,
    ) as b:
        if b.reused:
            return b.manifest
        b.extra.update(_write(scenes, spec, b.dir, jobs, final=b.final))
    return b.manifest


def output_bytes(
    n_chunks: int, shape: tuple[int, int, int], max_sources: int, dcase: bool, itemsize: int = 2
) -> float:
    """Estimated disk use of a features artifact: the arrays of
    :class:`~ssl_toolkit.features.store.FeatureWriter` (features of ``itemsize`` bytes:
    float16, or float32 where float16 would overflow; bool activity, float64 directions;
    int16 classes and float32 distances with DCASE labels), index.csv and norm.npz."""
    from ..core.memory import file_bytes

    c, t, f = shape
    labels = n_chunks * t * max_sources  # label slots
    arrays = [n_chunks * c * t * f * itemsize, labels, labels * 24] + (
        [labels * 2, labels * 4] if dcase else []
    )
    index = n_chunks * 48.0  # chunk,clip_id,fold,split,subset,start_frame
    norm = 4 * c * f * 4 + 1024  # mean and std of train and all, float32
    return sum(file_bytes(a + 128) for a in arrays) + file_bytes(index) + file_bytes(norm)


class _Float16Overflow(Exception):
    """A clip's features exceed float16 (args: the audio path, the largest value)."""


def _write(
    scenes: Manifest, spec: FeatureSpec, out_dir: Path, jobs: int, final: Path | None = None
) -> dict[str, Any]:
    """Every clip's chunks in float16, or all again in float32 once a clip overflows it."""
    try:
        return _write_as(scenes, spec, out_dir, jobs, "float16", final)
    except _Float16Overflow as e:
        path, top = e.args
        log(
            f"features of {path} reach {top:.3g}, beyond float16 (65504): "
            "storing every clip's as float32"
        )
    return _write_as(scenes, spec, out_dir, jobs, "float32", final)


def _write_as(
    scenes: Manifest,
    spec: FeatureSpec,
    out_dir: Path,
    jobs: int,
    dtype: str,
    final: Path | None = None,
) -> dict[str, Any]:
    clips, audio_root = read_clips(scenes)
    chunk = spec.chunk_frames
    per_clip = _clip_frames(clips, audio_root, spec) // chunk
    if per_clip.sum() == 0:
        raise DataError(f"every clip of {scenes.path} is shorter than one chunk ({chunk} frames)")
    c, f = spec.channels, spec.bins
    s = int(scenes.extra["max_sources"])
    label_format = scenes.extra.get("label_format", "tut2018")
    dcase = label_format == "dcase"
    size = output_bytes(int(per_clip.sum()), (c, chunk, f), s, dcase, np.dtype(dtype).itemsize)
    check_disk(size, final or out_dir, "ssl prep features", "use fewer or shorter clips")
    writer = FeatureWriter(out_dir, int(per_clip.sum()), (c, chunk, f), s, dcase, dtype)
    first = np.concatenate(([0], np.cumsum(per_clip)[:-1]))
    tasks = [
        {
            "row": row._asdict(),
            "audio": str(safe_join(audio_root, row.audio)),
            "labels": str(safe_join(scenes.path, row.labels)),
            "first": int(i0),
            "k": int(k),
            "spec": spec,
            "max_sources": s,
            "label_format": label_format,
            "out_dir": str(out_dir),
            "dtype": dtype,
        }
        for row, i0, k in zip(clips.itertuples(index=False), first, per_clip, strict=True)
        if k > 0
    ]
    err2, val2 = np.zeros(c), np.zeros(c)
    largest, has_distance = -1, False  # over the labels written (DCASE labels)
    workers = worker_count(jobs, len(tasks), "clips")
    try:
        with progress() as bar, closing(_run(tasks, workers)) as results:
            task = bar.add_task("features", total=len(tasks), info="")
            for rows, e2, v2, sums, labels in results:
                writer.rows.extend(rows)
                writer.add_stats(rows[0]["split"], sums)
                err2, val2 = err2 + e2, val2 + v2
                largest, has_distance = max(largest, labels[0]), has_distance or labels[1]
                bar.advance(task)
    except _Float16Overflow:
        writer.remove()  # the workers are stopped (closing() ended the pool)
        raise
    writer.finish()
    rel = np.sqrt(err2 / np.maximum(val2, 1e-30))
    with np.load(out_dir / "norm.npz") as norm:  # the train split's mean features
        spec = replace(spec, levels_db=levels_db(spec, norm["mean"]))
    extra = {
        "feature_params": spec.to_dict(),
        "shape": [c, chunk, f],
        "max_sources": s,
        "n_chunks": int(per_clip.sum()),
        "dtype": dtype,
        "float16_rel_rms_error": _group_errors(rel, spec),
    }
    if dcase:  # the scenes' class count (a dataset's), at least what the labels use
        extra["n_classes"] = max(int(scenes.extra.get("n_classes", 1)), largest + 1)
        extra["has_distance"] = bool(has_distance)
        extra["label_format"] = "dcase"
    return extra


def _run(tasks: list[dict[str, Any]], workers: int):
    """:func:`_clip_chunks` of every task, in order, in ``workers`` processes
    (:func:`~ssl_toolkit.core.cpu.parallel_map`: spawned, not forked, since a child forked
    after torch ran in the parent can deadlock in torch's thread pool; each with its share
    of this process's threads; terminated when the parent stops early)."""
    if workers > 1 and tasks and tasks[0]["spec"].type == "logmel":
        _mel_basis(tasks[0]["spec"])  # made once here, shipped to the workers
    return parallel_map(
        _clip_chunks,
        tasks,
        workers,
        initializer=_init_worker if workers > 1 else None,
        initargs=(worker_threads(workers), _MEL),
    )


def _init_worker(threads: int, mel: dict) -> None:
    """Worker initializer: at most ``threads`` torch threads; the parent's mel filterbanks
    (so workers need not import librosa)."""
    import torch

    torch.set_num_threads(threads)
    _MEL.update(mel)


def _clip_chunks(
    t: dict[str, Any],
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, tuple, tuple[int, bool]]:
    """Features and frame labels of one clip, written into chunks ``first .. first + k``.

    Raises:
        DataError: naming the audio, when it holds NaN or infinite samples or its
            features are not finite (:func:`~ssl_toolkit.features.extract.check_features`).
        _Float16Overflow: when ``t["dtype"]`` is float16 and the features exceed it
            (nothing written).

    Returns:
        The clip's index rows, its storage's squared error and squared values per channel,
        the :func:`~ssl_toolkit.features.store.frame_stats` of its features, and
        ``(largest class index written or -1, whether some distance is known)``.
    """
    import soundfile as sf

    p, k, i0, row = t["spec"], t["k"], t["first"], t["row"]
    chunk = p.chunk_frames
    audio, fs = sf.read(t["audio"], dtype="float32", always_2d=True)
    if not np.isfinite(audio).all():
        raise DataError(
            f"audio {t['audio']} holds NaN or infinite samples (or values beyond float32's "
            "range); fix or remove it"
        )
    try:
        x = extract(audio.T, fs, p)[:, : k * chunk]  # (C, k*chunk, F)
    except DataError as e:
        raise DataError(f"audio {t['audio']}: {e}") from None
    if t.get("dtype", "float16") == "float16":
        top = peak(x)
        if top > FLOAT16_MAX:
            raise _Float16Overflow(t["audio"], top)
        x16 = _to_float16(x)
    else:
        x16 = x
    e2, v2 = _float16_error(x, x16)
    act, dirs, cls, dist = _labels_of(t, k * chunk, p.hop_s)
    arrays = {"activity.npy": act, "directions.npy": dirs}  # file -> (T, S[, 3]) frame labels
    labels = (-1, False)
    if cls is not None:  # DCASE labels
        arrays.update({"classes.npy": cls, "distance.npy": dist})
        labels = (int(cls.max(initial=-1)), bool(np.isfinite(dist).any()))
    c, _, f = x16.shape
    out = Path(t["out_dir"])
    write_rows(out / "features.npy", i0, x16.reshape(c, k, chunk, f).transpose(1, 0, 2, 3))
    for name, arr in arrays.items():
        write_rows(out / name, i0, arr.reshape(k, chunk, *arr.shape[1:]))
    rows = [
        {
            "chunk": i0 + j,
            "clip_id": row["clip_id"],
            "fold": int(row["fold"]),
            "split": row["split"],
            "subset": row["subset"],
            "start_frame": j * chunk,
        }
        for j in range(k)
    ]
    return rows, e2, v2, frame_stats(x), labels


def _labels_of(t: dict[str, Any], n_frames: int, hop_s: float):
    """Frame labels of a task's clip (:func:`~ssl_toolkit.core.labels.table_frame_labels`),
    with the label file named when more sources overlap than the scenes' ``max_sources``
    or a class index does not fit ``classes.npy``.

    Returns:
        ``activity [T, S]``, ``directions [T, S, 3]``, and with DCASE labels ``classes
        [T, S]`` int16 and ``distance_m [T, S]`` float32 (else None, None).
    """
    path, fmt = t["labels"], t["label_format"]
    table = read_label_file(path, fmt)  # a malformed file: DataError naming it
    try:
        return table_frame_labels(table, fmt, n_frames, hop_s, t["max_sources"])
    except DataError as e:
        raise DataError(f"label file {path}: {e} (the scenes' extra.max_sources)") from e


def _to_float16(x: np.ndarray) -> np.ndarray:
    """float32 -> float16 (torch converts several times faster than numpy)."""
    import torch

    return torch.from_numpy(x).half().numpy()


def _float16_error(
    x: np.ndarray, x16: np.ndarray, every: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Squared float16 error and squared value per channel, on every ``every``-th frame."""
    a = x[:, ::every].astype(np.float64)
    return np.square(x16[:, ::every] - a).sum(axis=(1, 2)), np.square(a).sum(axis=(1, 2))


def _group_errors(rel: np.ndarray, spec: FeatureSpec) -> dict[str, float]:
    """Float16 relative RMS error per channel group (max over the group's channels)."""
    m = spec.n_channels
    if spec.type == "stft":
        return {"magnitude": float(rel[:m].max()), "phase": float(rel[m:].max())}
    other = "intensity" if spec.format == "foa" else "gcc_phat"
    first = "logmel"
    if spec.type == "salsa":
        first, other = "log_power", ("intensity" if spec.format == "foa" else "phase_difference")
    return {first: float(rel[:m].max()), other: float(rel[m:].max())}
