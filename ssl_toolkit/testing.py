"""Tiny artifacts built in code, for tests and benchmarks (no synthesis needed)."""

from __future__ import annotations

import os

import numpy as np

from .core.artifacts import Manifest, build_artifact
from .core.geometry import sph_to_unit
from .features.store import FeatureWriter


def random_directions(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit vectors uniform on the sphere, ``[*shape, 3]`` float32."""
    v = rng.normal(size=(*shape, 3))
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def make_features_artifact(
    path: str | os.PathLike,
    *,
    n_chunks: int = 24,
    channels: int = 8,
    frames: int = 25,
    bins: int = 64,
    max_sources: int = 3,
    seed: int = 0,
    force: bool = False,
) -> Manifest:
    """A features artifact whose features encode the labelled directions.

    Each chunk has 1..max_sources static sources; the features are noise plus
    a pattern of the directions (so a model can learn something). Splits are
    60 % train, 20 % val, 20 % test; subset ``ovN`` = number of sources.
    """
    rng = np.random.default_rng(seed)
    cfg = {
        "type": "dummy",
        "n_chunks": n_chunks,
        "channels": channels,
        "frames": frames,
        "bins": bins,
        "max_sources": max_sources,
        "seed": seed,
    }
    params = {
        "type": "dummy",
        "fs": 16000,
        "hop_length": 320,
        "win_length": 640,
        "n_fft": 1024,
        "n_channels": 4,
        "format": "mic",
        "chunk_frames": frames,
        "n_mels": bins,
    }
    with build_artifact(path, "features", cfg, force=force) as b:
        if b.reused:
            return b.manifest
        w = FeatureWriter(b.dir, n_chunks, (channels, frames, bins), max_sources)
        for i in range(n_chunks):
            n_src = 1 + i % max_sources
            x, act, dirs = _dummy_chunk(rng, n_src, channels, frames, bins, max_sources)
            split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
            w.put(
                i,
                x.astype(np.float16),
                act,
                dirs,
                clip_id=f"clip{i // 4:03d}",
                fold=1,
                split=split,
                subset=f"ov{n_src}",
                start_frame=(i % 4) * frames,
            )
        w.finish()
        b.extra.update(
            {
                "feature_params": params,
                "shape": [channels, frames, bins],
                "max_sources": max_sources,
                "n_chunks": n_chunks,
            }
        )
    return b.manifest


def _dummy_chunk(rng, n_src: int, channels: int, frames: int, bins: int, max_sources: int):
    """One chunk of :func:`make_features_artifact`: ``n_src`` static sources at random
    directions (a few silent frames first) and noise plus a pattern of each direction.

    Returns:
        ``(x [C, T, F] float64, active [T, S], directions [T, S, 3])``.
    """
    az = rng.uniform(-np.pi, np.pi, n_src)
    el = rng.uniform(-np.pi / 4, np.pi / 4, n_src)
    act = np.zeros((frames, max_sources), bool)
    act[:, :n_src] = True
    act[: rng.integers(0, 3), :] = False  # a few silent frames at the start
    dirs = np.zeros((frames, max_sources, 3), np.float32)
    dirs[:, :n_src] = sph_to_unit(az, el)[None]
    x = rng.normal(scale=0.3, size=(channels, frames, bins))
    freqs = np.linspace(0, np.pi, bins)
    for s in range(n_src):
        u = dirs[0, s]
        for c in range(channels):
            pattern = np.cos(freqs * (c + 1) * 0.5 + u[c % 3] * 3.0)
            x[c] += act[:, s, None] * pattern[None, :]
    return x, act, dirs
