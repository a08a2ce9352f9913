"""Detection thresholds learned on validation frames, not guessed.

Three ways to choose the confidence threshold that turns hypotheses into detected
sources, all scored with the location-aware F-score (20 degrees):

- ``fixed``: 0.5;
- ``grid``: the best of a grid of thresholds, each scored with the DCASE F20
  (:func:`ssl_toolkit.metrics.dcase_seld`);
- ``sgl``: surrogate-gradient learning (SGL-Thresh, Pellegrini & Masquelier,
  "Fast threshold optimization for multi-label audio tagging using
  Surrogate gradient learning", ICASSP 2021): the forward pass uses the hard
  step ``conf >= t``, the backward pass the derivative of a steep sigmoid, and
  ``t`` climbs a differentiable frame-level F-score.
"""

from __future__ import annotations

import numpy as np

from . import metrics
from .geometry import great_circle

__all__ = ["close_hypotheses", "learn_threshold_sgl", "grid_threshold", "compare_thresholds"]


def close_hypotheses(hyps, targets, active, threshold_deg: float = 20.0) -> np.ndarray:
    """Hypotheses that would be correct detections: ``[N, K]`` bool.

    Hypothesis k is marked when it is the closest hypothesis of an active target
    and lies within ``threshold_deg`` of it.
    """
    d = great_circle(
        np.asarray(targets, np.float64)[:, :, None], np.asarray(hyps, np.float64)[:, None]
    )  # (N, S, K)
    near = d.argmin(axis=2)  # (N, S)
    ok = np.asarray(active, bool) & (
        np.take_along_axis(d, near[:, :, None], 2)[..., 0] <= np.deg2rad(threshold_deg)
    )
    out = np.zeros(np.asarray(hyps).shape[:2], bool)
    rows = np.broadcast_to(np.arange(len(out))[:, None], near.shape)
    out[rows[ok], near[ok]] = True
    return out


def learn_threshold_sgl(
    conf,
    hyps,
    targets,
    active,
    init: float = 0.5,
    steepness: float = 20.0,
    lr: float = 0.02,
    steps: int = 300,
    threshold_deg: float = 20.0,
) -> float:
    """SGL-Thresh: the threshold maximizing a frame-level location-aware F-score.

    ``F = 2 TP / (n_detected + n_true)`` with ``TP = sum_k step(c_k - t) m_k`` (``m``
    from :func:`close_hypotheses`). The step's gradient is replaced by that of
    ``sigmoid(steepness * (c - t))``; ``t`` follows Adam-normalized ascent steps.

    Args:
        conf: ``[N, K]``; hyps: ``[N, K, 3]``; targets: ``[N, S, 3]``; active: ``[N, S]``.

    Returns:
        The learned threshold in (0, 1).
    """
    c = np.asarray(conf, np.float64)
    m = close_hypotheses(hyps, targets, active, threshold_deg).astype(np.float64)
    n_true = float(np.asarray(active, bool).sum())
    t, mom, var = float(init), 0.0, 0.0
    for i in range(1, steps + 1):
        hard = (c >= t).astype(np.float64)  # forward: the real step
        a, b = (hard * m).sum(), hard.sum() + n_true
        if b == 0:
            break
        sig = 1.0 / (1.0 + np.exp(-steepness * (c - t)))
        dd_dt = -steepness * sig * (1.0 - sig)  # backward: the sigmoid's slope
        df_dd = 2.0 * (m * b - a) / b**2
        g = float((df_dd * dd_dt).sum())
        mom = 0.9 * mom + 0.1 * g
        var = 0.999 * var + 0.001 * g * g
        step = (mom / (1 - 0.9**i)) / (np.sqrt(var / (1 - 0.999**i)) + 1e-12)
        t = float(np.clip(t + lr * step, 1e-3, 1 - 1e-3))
    return t


def grid_threshold(conf, hyps, targets, active, segment, grid=None) -> tuple[float, float]:
    """The grid threshold with the best DCASE F20; returns ``(threshold, F20)``."""
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if grid is None else np.asarray(grid)
    scores = [
        metrics.dcase_seld(hyps, np.asarray(conf) >= t, targets, active, segment)["F20"]
        for t in grid
    ]
    best = int(np.nanargmax(scores))
    return float(grid[best]), float(scores[best])


def compare_thresholds(conf, hyps, targets, active, segment) -> dict[str, dict[str, float]]:
    """Fixed 0.5, grid search and SGL on the same frames: threshold and DCASE F20 of each."""
    out = {}
    for name, t in (
        ("fixed", 0.5),
        ("grid", grid_threshold(conf, hyps, targets, active, segment)[0]),
        ("sgl", learn_threshold_sgl(conf, hyps, targets, active)),
    ):
        f = metrics.dcase_seld(hyps, np.asarray(conf) >= t, targets, active, segment)["F20"]
        out[name] = {"threshold": float(t), "F20": float(f)}
    return out
