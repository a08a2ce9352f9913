"""Frames: a localizer's outputs over chunks of a features artifact, with their labels,
flattened to frames; the unit every score is computed on (training's validation, ``ssl eval``,
``ssl baseline``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..features.store import FeatureSet, check_finite_chunks


@dataclass
class Frames:
    """Predictions and labels flattened to frames (N = chunks x frames per chunk).

    Attributes:
        hyps: ``[N, K, 3]``; conf: ``[N, K]``; valid: ``[N, K]`` bool (slots holding an
        estimate); targets: ``[N, S, 3]`` float64 (the stored references); active:
        ``[N, S]``; clip_id: ``[N]`` str; frame: ``[N]`` frame index in its clip; subset:
        ``[N]`` str.
        classes: ``[N, K]`` int64 predicted class of each slot (-1: unknown), None for a
            class-agnostic localizer; target_classes: ``[N, S]`` int64 class of each target
            slot (-1 where inactive), None when the features have no classes.
    """

    hyps: np.ndarray
    conf: np.ndarray
    valid: np.ndarray
    targets: np.ndarray
    active: np.ndarray
    clip_id: np.ndarray
    frame: np.ndarray
    subset: np.ndarray
    classes: np.ndarray | None = None
    target_classes: np.ndarray | None = None


def label_frames(fs: FeatureSet, rows: np.ndarray) -> dict[str, np.ndarray | None]:
    """Labels and frame identities of chunks ``rows``, flattened to frames: the label
    fields of :class:`Frames` (``target_classes`` None when the features have no classes)."""
    n, t = len(rows), fs.shape[1]
    idx = fs.index.iloc[rows]
    return {
        "target_classes": None
        if fs.classes is None
        else np.asarray(fs.classes[rows], np.int64).reshape(n * t, -1),
        # float64: the references are scored as stored (float32 in older artifacts)
        "targets": np.asarray(fs.directions[rows], np.float64).reshape(n * t, -1, 3),
        "active": np.asarray(fs.activity[rows], bool).reshape(n * t, -1),
        "clip_id": np.repeat(idx["clip_id"].to_numpy().astype(str), t),
        "frame": (idx["start_frame"].to_numpy()[:, None] + np.arange(t)[None]).ravel(),
        "subset": np.repeat(idx["subset"].to_numpy().astype(str), t),
    }


def predict_split(
    localizer, fs: FeatureSet, rows: np.ndarray, batch_size: int = 32, what: str = "predicting"
) -> Frames:
    """Run a learned localizer over chunks ``rows`` in batches (progress bar on stderr).

    Args:
        localizer: a :class:`~ssl_toolkit.models.localize.ModelLocalizer` (run or export).
        fs: the features; rows: chunk indices; batch_size: chunks per forward pass.
    """
    from ..core import cpu
    from ..core.console import progress
    from ..models.localize import Localization

    parts = []
    with progress() as p:
        task = p.add_task(what, total=len(rows), info="")
        for start in range(0, len(rows), batch_size):
            cpu.tick()  # threads follow the machine's load
            r = rows[start : start + batch_size]
            x = np.asarray(fs.features[r])  # (B, C, T, F)
            check_finite_chunks(fs, r, x)  # damaged features: one line naming the chunk
            parts.append(localizer.localize(x))  # B * T frames
            p.advance(task, len(r))
    loc = Localization.concat(parts, localizer.K)
    return Frames(hyps=loc.hyps, conf=loc.conf, valid=loc.valid, classes=loc.classes,
                  **label_frames(fs, rows))  # fmt: skip
