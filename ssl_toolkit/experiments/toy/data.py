"""The toy's data: t ~ U[0, 1], one or two targets uniform in quadrants drawn given t."""

from __future__ import annotations

import numpy as np

#: Quadrant centres' signs, in the order (-,-), (+,+), (+,-), (-,+).
QUADRANTS = np.array([[-1, -1], [1, 1], [1, -1], [-1, 1]], dtype=np.float32)


def quadrant_probs(t: np.ndarray) -> np.ndarray:
    """Probabilities of the quadrants (-,-), (+,+), (+,-), (-,+) given t: ``[N, 4]``."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    return np.concatenate([(1 - t) / 2, (1 - t) / 2, t / 2, t / 2], axis=-1)


def sample_points(rng: np.random.Generator, t: np.ndarray, n: int) -> np.ndarray:
    """``n`` target positions for each t: ``[N, n, 2]``, uniform in quadrants drawn per point."""
    p = quadrant_probs(t)  # (N, 4)
    u = rng.random((len(p), n, 1))
    quad = (u > np.cumsum(p, axis=-1)[:, None, :]).sum(-1).clip(max=3)  # (N, n)
    return (QUADRANTS[quad] * rng.random((len(p), n, 2))).astype(np.float32)


def sample_batch(rng: np.random.Generator, size: int):
    """A training batch: ``t [B, 1]``, ``targets [B, 2, 2]``, ``active [B, 2]`` bool."""
    t = rng.random(size)
    targets = sample_points(rng, t, 2)
    two = rng.random(size) < np.abs(1 - 2 * t)
    active = np.stack([np.ones(size, bool), two], axis=1)
    return t[:, None].astype(np.float32), targets, active
