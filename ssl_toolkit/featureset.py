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

    def put(
        self, i: int, features: np.ndarray, activity: np.ndarray, directions: np.ndarray, **row: Any
    ) -> None:
        """Store chunk ``i``: features [C, T, F], activity [T, S], directions [T, S, 3]."""
        self.features[i] = features
        self.activity[i] = activity
        self.directions[i] = directions
        self.rows.append({"chunk": i, **row})

    def finish(self) -> pd.DataFrame:
        """Flush arrays, write ``index.csv`` and ``norm.npz``; returns the index."""
        for a in (self.features, self.activity, self.directions):
            a.flush()
        index = pd.DataFrame(self.rows).sort_values("chunk").reset_index(drop=True)
        index = index[INDEX_COLUMNS + [c for c in index.columns if c not in INDEX_COLUMNS]]
        index.to_csv(self.dir / "index.csv", index=False)
        train = np.flatnonzero((index["split"] == "train").to_numpy())
        if len(train) == 0:
            train = np.arange(len(index))
        mean, std = channel_stats(self.features, train)
        np.savez(self.dir / "norm.npz", mean=mean, std=std)
        return index


def channel_stats(
    features: np.ndarray, rows: np.ndarray, block: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``[C, F]`` over chunks ``rows`` and frames, in float64, by blocks."""
    n, c, t, f = features.shape
    s1 = np.zeros((c, f))
    s2 = np.zeros((c, f))
    count = 0
    for start in range(0, len(rows), block):
        x = np.asarray(features[rows[start : start + block]], dtype=np.float64)  # (b, C, T, F)
        s1 += x.sum(axis=(0, 2))
        s2 += np.square(x).sum(axis=(0, 2))
        count += x.shape[0] * t
    mean = s1 / max(count, 1)
    var = np.maximum(s2 / max(count, 1) - mean**2, 0.0)
    std = np.sqrt(var)
    std = np.where(std < 1e-5, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)
