"""Calibration of confidence scores: do they predict which hypotheses find a source?

A hypothesis is a *winner* in a frame when it is the closest (valid) hypothesis of one of
the frame's active sources: the event rMCL's confidence head is trained to predict.
For methods with scores:

- the reliability diagram bins the confidences (equal width) and compares, per bin, the
  mean confidence with the share of winners; the expected calibration error (ECE) is
  their gap weighted by the bin counts (Guo et al., "On calibration of modern neural
  networks", ICML 2017);
- a post-hoc temperature ``T`` rescales the confidence logits, ``sigmoid(logit(c) / T)``,
  fitted on validation frames by the binary cross-entropy of the winner labels (the
  temperature scaling of Guo et al.; the deep-ensembles literature scores calibration
  by the same NLL).
"""

from __future__ import annotations

import numpy as np

from ..core.geometry import great_circle

__all__ = ["apply_temperature", "fit_temperature", "reliability", "winner_labels"]

_EPS = 1e-6


def winner_labels(hyps, targets, active, valid=None) -> np.ndarray:
    """``[N, K]`` bool: the valid hypothesis closest to each active target."""
    h = np.asarray(hyps, np.float64)
    v = np.ones(h.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    d = great_circle(np.asarray(targets, np.float64)[:, :, None], h[:, None])  # (N, S, K)
    d = np.where(v[:, None], d, np.inf)
    act = np.asarray(active, bool) & v.any(1)[:, None]
    near = d.argmin(axis=2)  # (N, S)
    out = np.zeros(v.shape, bool)
    rows = np.broadcast_to(np.arange(len(out))[:, None], near.shape)
    out[rows[act], near[act]] = True
    return out


def reliability(conf, labels, valid=None, bins: int = 10) -> dict:
    """Reliability diagram and ECE of ``conf [N, K]`` against ``labels [N, K]``.

    Returns:
        ``{"ece", "edges" [bins + 1], "confidence" [bins], "frequency" [bins],
        "count" [bins]}`` (empty bins: NaN confidence and frequency).
    """
    m = np.ones(np.shape(conf), bool) if valid is None else np.asarray(valid, bool)
    c = np.asarray(conf, np.float64)[m]
    y = np.asarray(labels, bool)[m].astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(c, edges[1:-1]), 0, bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = np.bincount(idx, weights=c, minlength=bins) / count
        freq = np.bincount(idx, weights=y, minlength=bins) / count
    gap = np.where(count > 0, np.abs(mean_c - freq), 0.0)
    ece = float((gap * count).sum() / max(count.sum(), 1.0)) if len(c) else float("nan")
    return {"ece": ece, "edges": edges, "confidence": mean_c, "frequency": freq, "count": count}


def _logit(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, _EPS, 1 - _EPS)
    return np.log(c) - np.log1p(-c)


def apply_temperature(conf, temperature: float) -> np.ndarray:
    """``sigmoid(logit(conf) / T)``, float32 like the confidences."""
    z = _logit(np.asarray(conf, np.float64)) / float(temperature)
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def fit_temperature(conf, labels, valid=None) -> float:
    """The temperature in [0.05, 20] minimizing the BCE of the winner labels."""
    from scipy.optimize import minimize_scalar

    m = np.ones(np.shape(conf), bool) if valid is None else np.asarray(valid, bool)
    z = _logit(np.asarray(conf, np.float64)[m])
    y = np.asarray(labels, bool)[m]
    if len(z) == 0 or y.all() or not y.any():
        return 1.0

    def bce(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, -s) * y + np.logaddexp(0.0, s) * ~y))

    res = minimize_scalar(bce, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))
