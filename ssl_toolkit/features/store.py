"""The features artifact: chunked features and frame labels on disk, memory-mapped.

Layout of a ``features`` artifact (schema 1)::

    manifest.json    config = the FeatureConfig; extra = {"feature_params": {...},
                     "shape": [C, T, F], "max_sources": S, "n_chunks": N,
                     "dtype": "float16" | "float32"
                     [, "n_classes": K, "has_distance": bool]}
    features.npy     [N, C, T, F] float16   (C channels/maps, T frames per chunk, F bins;
                                             float32 where float16 would overflow: see
                                             ``extra.dtype``, absent = float16)
    activity.npy     [N, T, S] bool         (source slot s active in frame t)
    directions.npy   [N, T, S, 3] float64   (unit vectors, DCASE frame; zeros where inactive;
                                             float32 in artifacts made before float64: both
                                             are read, see DIRECTION_DTYPES)
    classes.npy      [N, T, S] int16        (class index 0..K-1 of slot s; -1 where inactive)
    distance.npy     [N, T, S] float32      (source distance in metres; NaN where inactive
                                             or unknown)
    index.csv        one row per chunk: chunk, clip_id, fold, split, subset, start_frame
    norm.npz         mean [C, F], std [C, F] float32, from the ``train`` split only

``classes.npy`` and ``distance.npy`` exist exactly when the manifest has ``n_classes``:
features of scenes with DCASE metadata labels (``extra.label_format == "dcase"``: the
DCASE 2020-2024 imports, synthesized scenes with moving sources). TUT2018 labels carry
class names only and no such arrays are written (``FeatureSet.classes`` is None).

``split`` is one of ``train``, ``val``, ``test``; ``subset`` is ``ovN`` (maximum number of
overlapping sources of the clip); ``fold`` is the cross-validation split of the original
datasets (TUT2018 1..3, the ``foldN`` of DCASE file names), 1 for synthesized sets.

This module is numpy-only: readers (training, evaluation) and the writer
(``ssl prep features``) share it so the format is stated once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import readers
from ..core.artifacts import MANIFEST, SPLITS, Manifest, read_manifest
from .spec import FeatureSpec

INDEX_COLUMNS = ["chunk", "clip_id", "fold", "split", "subset", "start_frame"]
#: How ``features.npy`` may be stored: float16, or float32 where float16 would overflow.
FEATURE_DTYPES = ("float16", "float32")
#: How ``directions.npy`` may be stored: float64 (written since the label references are
#: scored exactly: a float32 unit vector is off unit length by up to 1e-7, which the
#: arccos of a great-circle distance turns into up to 0.03 degrees on an exact
#: prediction), or float32 (artifacts written before; still read, no schema change: the
#: array's own header says which). Training casts them to float32 for the loss.
DIRECTION_DTYPES = ("float64", "float32")
#: The largest finite float16 (features beyond it are stored as float32).
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass
class FeatureSet:
    """A features artifact opened for reading (arrays are memory-mapped).

    Attributes:
        manifest: the artifact's manifest.
        features: ``[N, C, T, F]`` float16 (or float32: ``extra.dtype``) memmap.
        activity: ``[N, T, S]`` bool memmap.
        directions: ``[N, T, S, 3]`` float64 memmap (float32 in older artifacts:
            :data:`DIRECTION_DTYPES`); evaluation scores against them in float64.
        index: one row per chunk (see module docstring).
        mean, std: normalization statistics ``[C, F]`` from the train split.
        spec: how the features were computed (``extra.feature_params`` of the manifest).
        classes: ``[N, T, S]`` int16 memmap, the class index of each active slot (-1 where
            inactive); None for features without class labels (TUT2018 scenes).
        distance: ``[N, T, S]`` float32 memmap, source distances in metres (NaN where
            inactive or unknown); None exactly when ``classes`` is.
    """

    manifest: Manifest
    features: np.ndarray
    activity: np.ndarray
    directions: np.ndarray
    index: pd.DataFrame
    mean: np.ndarray
    std: np.ndarray
    spec: FeatureSpec
    classes: np.ndarray | None = None
    distance: np.ndarray | None = None

    @property
    def n_classes(self) -> int | None:
        """Number of sound classes K of ``classes`` (None without class labels)."""
        k = self.manifest.extra.get("n_classes")
        return None if k is None else int(k)

    @property
    def hop_s(self) -> float:
        """Seconds between consecutive frames."""
        return self.spec.hop_s

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, T, F)`` of one chunk."""
        return tuple(self.features.shape[1:])

    @property
    def max_sources(self) -> int:
        return int(self.activity.shape[-1])

    def rows(
        self,
        split: str | None = None,
        subsets: list[str] | None = None,
        folds: list[int] | None = None,
    ) -> np.ndarray:
        """Chunk indices (sorted) matching a split, subsets and folds."""
        m = np.ones(len(self.index), dtype=bool)
        if split is not None:
            m &= (self.index["split"] == split).to_numpy()
        if subsets:
            m &= self.index["subset"].isin(subsets).to_numpy()
        if folds:
            m &= self.index["fold"].isin(folds).to_numpy()
        return np.flatnonzero(m)


def open_features(path: str | os.PathLike) -> FeatureSet:
    """Open a features artifact for reading (nothing is loaded into memory).

    Every file is checked before use: the manifest's extras, each ``.npy`` array's size
    against its header (before it is memory-mapped) and its dtype and shape against the
    manifest (N chunks of ``shape``, S slots), ``index.csv``'s columns and rows (one per
    chunk, in order), and finite ``norm.npz`` statistics of the right shape.

    Raises:
        ArtifactError: when ``path`` is not a features artifact or one of its files is
            damaged: ``<file>: <what is wrong> (rebuild it with `ssl prep features --force`)``.
    """
    man = read_manifest(path, "features")
    extra = man.extra
    readers.check_fields(extra, {}, man.path / MANIFEST, REBUILD,
                         ("feature_params", "shape", "max_sources"), "extra.")  # fmt: skip
    spec = FeatureSpec.from_dict(extra["feature_params"], man.path / MANIFEST, REBUILD,
                                 where="extra.feature_params.")  # fmt: skip
    c, t, f = extra["shape"]
    s = extra["max_sources"]
    n = extra.get("n_chunks")
    dtype = extra.get("dtype", "float16")
    if dtype not in FEATURE_DTYPES:
        why = f"extra.dtype is {dtype!r}, expected one of {FEATURE_DTYPES}"
        raise readers.damaged(man.path / MANIFEST, why, REBUILD)
    feats = readers.open_npy(man.file("features.npy"), REBUILD, dtype, (n, c, t, f))
    n = feats.shape[0]
    act = readers.open_npy(man.file("activity.npy"), REBUILD, np.bool_, (n, t, s))
    dirs = readers.open_npy(man.file("directions.npy"), REBUILD, DIRECTION_DTYPES, (n, t, s, 3))
    index = _read_index(man.file("index.csv"), n)
    norm = readers.read_npz(man.file("norm.npz"), REBUILD, ("mean", "std"))
    mean, std = (norm[k] for k in ("mean", "std"))
    npz = man.file("norm.npz")
    for name, a in (("mean", mean), ("std", std)):
        if a.shape != (c, f) or a.dtype.kind != "f":
            why = f"'{name}' holds {a.dtype} {list(a.shape)}, expected floats of shape {[c, f]}"
            raise readers.damaged(npz, why, REBUILD)
        if not np.isfinite(a).all():
            raise readers.damaged(npz, f"'{name}' holds NaN or infinite values", REBUILD)
    if (std <= 0).any():
        raise readers.damaged(npz, "'std' has values <= 0", REBUILD)
    mean, std = mean.astype(np.float32), std.astype(np.float32)
    classes = distance = None
    if "n_classes" in extra:
        classes = readers.open_npy(man.file("classes.npy"), REBUILD, np.int16, (n, t, s))
        distance = readers.open_npy(man.file("distance.npy"), REBUILD, np.float32, (n, t, s))
    return FeatureSet(man, feats, act, dirs, index, mean, std, spec, classes, distance)


#: The command that rebuilds a features artifact (named in every damaged-file message).
REBUILD = "ssl prep features --force"


def check_finite_chunks(fs: FeatureSet, rows: np.ndarray, x) -> None:
    """Refuse a batch ``x [b, C, T, F]`` (numpy or torch, chunks ``rows`` of ``fs``)
    that holds NaN or infinite values, naming its first such chunk and clip. Features
    are checked finite when written, so such values are damage.

    Raises:
        ArtifactError: ``.../features.npy: chunk N (clip ..., frames a-b) holds NaN or
            infinite values``, and the command that rebuilds them.
    """
    bad = ~np.isfinite(np.asarray(x)).reshape(len(x), -1).all(1)
    if bad.any():
        raise nonfinite_chunk(fs, int(np.asarray(rows)[np.flatnonzero(bad)[0]]))


def nonfinite_chunk(fs: FeatureSet | None, row: int, name: str = "features.npy") -> Exception:
    """The error of chunk ``row`` of ``fs``'s array ``name`` holding NaN or infinite values."""
    if fs is None:
        return readers.damaged(name, f"chunk {row} holds NaN or infinite values", REBUILD)
    r = fs.index.iloc[row]
    t0, t = int(r["start_frame"]), int(fs.features.shape[2])
    what = f"chunk {row} (clip {r['clip_id']}, frames {t0}-{t0 + t - 1}) holds NaN or "
    return readers.damaged(fs.manifest.file(name), what + "infinite values", REBUILD)


def _read_index(path: Path, n_chunks: int) -> pd.DataFrame:
    """``index.csv``: one row per chunk, chunks 0..N-1 in order, known splits."""
    index = readers.read_table(
        path, REBUILD, INDEX_COLUMNS, {"clip_id": str, "split": str, "subset": str}
    )
    if len(index) != n_chunks:
        raise readers.damaged(path, f"has {len(index)} rows for {n_chunks} chunks", REBUILD)
    for col in ("chunk", "fold", "start_frame"):
        if not pd.api.types.is_integer_dtype(index[col]):
            raise readers.damaged(path, f"column {col!r} must hold integers", REBUILD)
    if not np.array_equal(index["chunk"].to_numpy(), np.arange(n_chunks)):
        raise readers.damaged(path, f"column 'chunk' must be 0..{n_chunks - 1} in order", REBUILD)
    bad = ~index["split"].isin(SPLITS) | index["clip_id"].isna() | index["subset"].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise readers.damaged(
            path, f"row {row + 2}: need a clip_id, a subset and a split among {SPLITS}", REBUILD
        )
    return index


class FeatureWriter:
    """Writes a features artifact's arrays chunk by chunk into pre-allocated memmaps.

    Usage::

        w = FeatureWriter(build.dir, n_chunks, (C, T, F), max_sources)
        w.put(i, feats, activity, directions, clip_id=..., fold=1, split="train",
              subset="ov2", start_frame=0)
        w.finish()  # index.csv + norm.npz (from the train split)

    With ``classes=True`` it also writes ``classes.npy`` (filled with -1) and
    ``distance.npy`` (NaN) for :meth:`put`'s ``classes`` and ``distance``; the caller
    then records ``n_classes`` in the manifest's extra. ``dtype`` is the features'
    storage (:data:`FEATURE_DTYPES`), recorded by the caller as ``extra.dtype``.
    """

    #: The arrays it writes (removed by :meth:`remove`).
    FILES = ("features.npy", "activity.npy", "directions.npy", "classes.npy", "distance.npy")

    def __init__(
        self,
        directory: str | os.PathLike,
        n_chunks: int,
        shape: tuple[int, int, int],
        max_sources: int,
        classes: bool = False,
        dtype: str = "float16",
    ):
        self.dir = Path(directory)
        c, t, f = shape
        self.classes = self.distance = None
        if classes:
            self.classes = np.lib.format.open_memmap(
                self.dir / "classes.npy", mode="w+", dtype=np.int16,
                shape=(n_chunks, t, max_sources),
            )  # fmt: skip
            self.classes[:] = -1
            self.distance = np.lib.format.open_memmap(
                self.dir / "distance.npy", mode="w+", dtype=np.float32,
                shape=(n_chunks, t, max_sources),
            )  # fmt: skip
            self.distance[:] = np.nan
        self.features = np.lib.format.open_memmap(
            self.dir / "features.npy", mode="w+", dtype=np.dtype(dtype), shape=(n_chunks, c, t, f)
        )
        self.activity = np.lib.format.open_memmap(
            self.dir / "activity.npy", mode="w+", dtype=np.bool_, shape=(n_chunks, t, max_sources)
        )
        self.directions = np.lib.format.open_memmap(
            self.dir / "directions.npy",
            mode="w+",
            dtype=np.float64,
            shape=(n_chunks, t, max_sources, 3),
        )
        self.rows: list[dict[str, Any]] = []
        self._stats: dict[str, tuple] = {}  # "train" / "all" -> (frames, mean [C, F], M2 [C, F])

    def remove(self) -> None:
        """Unlink the arrays (a restart in another dtype; the maps stay valid, unused)."""
        for name in self.FILES:
            (self.dir / name).unlink(missing_ok=True)

    def add_stats(self, split: str, stats: tuple[int, np.ndarray, np.ndarray]) -> None:
        """Pool a clip's :func:`frame_stats` into the normalization statistics."""
        for key in ("all", "train") if split == "train" else ("all",):
            self._stats[key] = pool_stats(self._stats.get(key), stats)

    def put(
        self,
        i: int,
        features: np.ndarray,
        activity: np.ndarray,
        directions: np.ndarray,
        classes: np.ndarray | None = None,
        distance: np.ndarray | None = None,
        **row: Any,
    ) -> None:
        """Store chunk ``i``: features [C, T, F], activity [T, S], directions [T, S, 3],
        and with ``classes=True`` classes [T, S] int (-1 inactive) and distance [T, S] m."""
        self.features[i] = features
        self.activity[i] = activity
        self.directions[i] = directions
        if (classes is not None or distance is not None) and self.classes is None:
            raise ValueError("FeatureWriter(..., classes=True) stores classes and distances")
        if classes is not None:
            self.classes[i] = classes
        if distance is not None:
            self.distance[i] = distance
        self.rows.append({"chunk": i, **row})
        self.add_stats(str(row.get("split")), frame_stats(self.features[i]))

    def finish(self) -> pd.DataFrame:
        """Flush arrays, write ``index.csv`` and ``norm.npz``; returns the index."""
        for a in (self.features, self.activity, self.directions, self.classes, self.distance):
            if a is not None:
                a.flush()
        index = pd.DataFrame(self.rows).sort_values("chunk").reset_index(drop=True)
        index = index[INDEX_COLUMNS + [c for c in index.columns if c not in INDEX_COLUMNS]]
        index.to_csv(self.dir / "index.csv", index=False)
        stats = self._stats.get("train") or self._stats.get("all")
        mean, std = normalization(stats, self.features.shape[1], self.features.shape[3])
        np.savez(self.dir / "norm.npz", mean=mean, std=std)
        return index


def write_rows(path: str | os.PathLike, first: int, rows: np.ndarray) -> None:
    """Write ``rows`` into the ``.npy`` array at ``path`` from row ``first`` on.

    Plain positional file writes, not a memory map: filling fresh pages of a file
    through a map costs a page fault each (about twice as slow for large arrays).

    Raises:
        ValueError: when the rows' dtype or row shape differs from the array's, or they
            do not fit.
    """
    rows = np.ascontiguousarray(rows)
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(f)
        if fortran or dtype != rows.dtype or tuple(shape[1:]) != rows.shape[1:]:
            raise ValueError(
                f"{path} holds {dtype} {shape}, cannot write {rows.dtype} {rows.shape}"
            )
        if not 0 <= first <= shape[0] - len(rows):
            raise ValueError(f"rows {first}..{first + len(rows)} do not fit in {path} {shape}")
        view = memoryview(rows.reshape(-1).view(np.uint8))
        pos = f.tell() + first * (rows.nbytes // max(len(rows), 1))
        while len(view):
            n = os.pwrite(f.fileno(), view, pos)
            view, pos = view[n:], pos + n


def frame_stats(x: np.ndarray, block: int = 128) -> tuple[int, np.ndarray, np.ndarray]:
    """Frame count, mean and sum of squared deviations of ``x [C, T, F]`` over frames.

    Sums of values and squares in float32 over blocks of ``block`` frames (no temporary
    copy of ``x``), pooled in float64: the std is exact to about 2e-5 relative for
    features whose mean is up to 10 stds from zero (log-mel), 1e-2 for nearly constant ones.

    Returns:
        ``(T, mean [C, F], M2 [C, F])``, float64.
    """
    x = np.asarray(x, dtype=np.float32)
    stats = None
    for t0 in range(0, x.shape[1], block):
        b = x[:, t0 : t0 + block]  # (C, n, F)
        s1 = np.einsum("ctf->cf", b).astype(np.float64)
        s2 = np.einsum("ctf,ctf->cf", b, b).astype(np.float64)
        mean = s1 / b.shape[1]
        stats = pool_stats(stats, (b.shape[1], mean, np.maximum(s2 - s1 * mean, 0.0)))
    return stats or (0, np.zeros(x.shape[::2]), np.zeros(x.shape[::2]))


def pool_stats(a: tuple | None, b: tuple) -> tuple[int, np.ndarray, np.ndarray]:
    """Combine two :func:`frame_stats` (Chan et al.'s parallel variance formula)."""
    if a is None:
        return b
    (na, ma, m2a), (nb, mb, m2b) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), m2a + m2b + delta**2 * (na * nb / n)


def normalization(stats: tuple | None, c: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``[C, F]`` float32 from pooled stats (std 1 where nearly constant)."""
    if stats is None or stats[0] == 0:
        return np.zeros((c, f), np.float32), np.ones((c, f), np.float32)
    n, mean, m2 = stats
    std = np.sqrt(np.maximum(m2 / n, 0.0))
    std = np.where(std < 1e-5, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)
