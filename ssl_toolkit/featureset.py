"""The features artifact: chunked features and frame labels on disk, memory-mapped.

Layout of a ``features`` artifact (schema 1)::

    manifest.json    config = the FeatureConfig; extra = {"feature_params": {...},
                     "shape": [C, T, F], "max_sources": S, "n_chunks": N}
    features.npy     [N, C, T, F] float16   (C channels/maps, T frames per chunk, F bins)
    activity.npy     [N, T, S] bool         (source slot s active in frame t)
    directions.npy   [N, T, S, 3] float32   (unit vectors, DCASE frame; zeros where inactive)
    index.csv        one row per chunk: chunk, clip_id, fold, split, subset, start_frame
    norm.npz         mean [C, F], std [C, F] float32, from the ``train`` split only

``split`` is one of ``train``, ``val``, ``test``; ``subset`` is ``ov1``/``ov2``/``ov3``
(maximum number of overlapping sources of the clip); ``fold`` is the
cross-validation split of the original datasets (1..3), 1 for synthesized sets.

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

from .artifacts import Manifest, read_manifest

INDEX_COLUMNS = ["chunk", "clip_id", "fold", "split", "subset", "start_frame"]
SPLITS = ("train", "val", "test")


@dataclass
class FeatureSet:
    """A features artifact opened for reading (arrays are memory-mapped).

    Attributes:
        manifest: the artifact's manifest.
        features: ``[N, C, T, F]`` float16 memmap.
        activity: ``[N, T, S]`` bool memmap.
        directions: ``[N, T, S, 3]`` float32 memmap.
        index: one row per chunk (see module docstring).
        mean, std: normalization statistics ``[C, F]`` from the train split.
    """

    manifest: Manifest
    features: np.ndarray
    activity: np.ndarray
    directions: np.ndarray
    index: pd.DataFrame
    mean: np.ndarray
    std: np.ndarray

    @property
    def feature_params(self) -> dict[str, Any]:
        """Everything needed to recompute the features from raw audio."""
        return dict(self.manifest.extra["feature_params"])

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

    Raises:
        ArtifactError: when ``path`` is not a features artifact.
    """
    man = read_manifest(path, "features")
    feats = np.load(man.file("features.npy"), mmap_mode="r", allow_pickle=False)
    act = np.load(man.file("activity.npy"), mmap_mode="r", allow_pickle=False)
    dirs = np.load(man.file("directions.npy"), mmap_mode="r", allow_pickle=False)
    index = pd.read_csv(man.file("index.csv"), dtype={"clip_id": str, "split": str, "subset": str})
    with np.load(man.file("norm.npz"), allow_pickle=False) as z:
        mean, std = z["mean"].astype(np.float32), z["std"].astype(np.float32)
    return FeatureSet(man, feats, act, dirs, index, mean, std)


class FeatureWriter:
    """Writes a features artifact's arrays chunk by chunk into pre-allocated memmaps.

    Usage::

        w = FeatureWriter(build.dir, n_chunks, (C, T, F), max_sources)
        w.put(i, feats, activity, directions, clip_id=..., fold=1, split="train",
              subset="ov2", start_frame=0)
        w.finish()  # index.csv + norm.npz (from the train split)
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        n_chunks: int,
        shape: tuple[int, int, int],
        max_sources: int,
    ):
        self.dir = Path(directory)
        c, t, f = shape
        self.features = np.lib.format.open_memmap(
            self.dir / "features.npy", mode="w+", dtype=np.float16, shape=(n_chunks, c, t, f)
        )
        self.activity = np.lib.format.open_memmap(
            self.dir / "activity.npy", mode="w+", dtype=np.bool_, shape=(n_chunks, t, max_sources)
        )
        self.directions = np.lib.format.open_memmap(
            self.dir / "directions.npy",
            mode="w+",
            dtype=np.float32,
            shape=(n_chunks, t, max_sources, 3),
        )
        self.rows: list[dict[str, Any]] = []
        self._sums: dict[str, list] = {}  # "train" / "all" -> [sum [C, F], sum of squares, frames]

    def add_stats(self, split: str, sums: tuple[np.ndarray, np.ndarray, int]) -> None:
        """Accumulate a clip's :func:`frame_sums` for the normalization statistics."""
        for key in ("all", "train") if split == "train" else ("all",):
            acc = self._sums.setdefault(key, [0.0, 0.0, 0])
            for i in range(3):
                acc[i] = acc[i] + sums[i]

    def put(
        self, i: int, features: np.ndarray, activity: np.ndarray, directions: np.ndarray, **row: Any
    ) -> None:
        """Store chunk ``i``: features [C, T, F], activity [T, S], directions [T, S, 3]."""
        self.features[i] = features
        self.activity[i] = activity
        self.directions[i] = directions
        self.rows.append({"chunk": i, **row})
        self.add_stats(str(row.get("split")), frame_sums(self.features[i]))

    def finish(self) -> pd.DataFrame:
        """Flush arrays, write ``index.csv`` and ``norm.npz``; returns the index."""
        for a in (self.features, self.activity, self.directions):
            a.flush()
        index = pd.DataFrame(self.rows).sort_values("chunk").reset_index(drop=True)
        index = index[INDEX_COLUMNS + [c for c in index.columns if c not in INDEX_COLUMNS]]
        index.to_csv(self.dir / "index.csv", index=False)
        s1, s2, n = self._sums.get("train") or self._sums.get("all") or (0.0, 0.0, 0)
        mean, std = stats_from_sums(s1, s2, n, self.features.shape[1], self.features.shape[3])
        np.savez(self.dir / "norm.npz", mean=mean, std=std)
        return index


def frame_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Sums over frames of the values and their squares, in float64, and the frame count.

    Args:
        x: ``[C, T, F]`` features (as stored).

    Returns:
        ``(sum [C, F], sum of squares [C, F], T)``.
    """
    x = np.asarray(x, dtype=np.float32)
    return x.sum(axis=1, dtype=np.float64), np.square(x).sum(axis=1, dtype=np.float64), x.shape[1]


def stats_from_sums(s1, s2, n: int, c: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``[C, F]`` float32 from :func:`frame_sums` totals (std 1 where ~constant)."""
    if n == 0:
        return np.zeros((c, f), np.float32), np.ones((c, f), np.float32)
    mean = np.asarray(s1, np.float64) / n
    std = np.sqrt(np.maximum(np.asarray(s2, np.float64) / n - mean**2, 0.0))
    std = np.where(std < 1e-5, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)
