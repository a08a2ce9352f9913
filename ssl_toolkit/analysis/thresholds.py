"""Detection thresholds learned on validation frames, not guessed.

Three ways to choose the confidence threshold that turns hypotheses into detected
sources, all scored with the location-aware F-score (20 degrees):

- ``fixed``: 0.5;
- ``grid``: the best of a grid of thresholds, each scored with the DCASE F20
  (:func:`ssl_toolkit.analysis.metrics.dcase_seld`);
- ``sgl``: surrogate-gradient learning (SGL-Thresh, Pellegrini & Masquelier,
  "Fast threshold optimization for multi-label audio tagging using
  Surrogate gradient learning", ICASSP 2021): the forward pass uses the hard
  step ``conf >= t``, the backward pass the derivative of a steep sigmoid, and
  ``t`` climbs a differentiable stand-in for the DCASE F20 (:func:`soft_f20`) from the
  best points of an exact coarse scan; the visited threshold with the best exact F20 is
  kept, unless it gains less than ``min_gain`` over 0.5 on these frames (then 0.5 is).

A trained model's detection is learned with :func:`learn_detection`: the radius of a
merge of nearby hypotheses (:func:`~ssl_toolkit.models.localize.merge_nearby`; 0: none)
with the best grid F20 (no merge unless merging gains at least ``min_gain``), then the
``sgl`` threshold at that radius.
"""

from __future__ import annotations

import numpy as np

from ..core.geometry import great_circle
from . import metrics

__all__ = [
    "best_threshold",
    "compare_thresholds",
    "grid_threshold",
    "learn_detection",
    "learn_threshold_sgl",
    "near_targets",
    "sgl_search",
    "soft_f20",
]


def near_targets(hyps, targets, active, threshold_deg: float = 20.0) -> np.ndarray:
    """``[N, K, S]`` bool: hypothesis k lies within ``threshold_deg`` of active target s."""
    d = great_circle(
        np.asarray(hyps, np.float64)[:, :, None], np.asarray(targets, np.float64)[:, None]
    )  # (N, K, S)
    return (d <= np.deg2rad(threshold_deg)) & np.asarray(active, bool)[:, None, :]


def soft_f20(detected, near, active, segment, n_seg: int):
    """A differentiable stand-in for the DCASE F20 (torch), counted per segment.

    Per frame, a target is covered when a detected hypothesis lies within 20 degrees of it
    (a soft OR of ``detected * near``). Per segment, as in ``SELDMetrics``: the reference
    and predicted counts are the maxima over its frames; true positives are the covered
    targets averaged over the frames where references and predictions meet (the official
    code averages a track's distance over its matched frames only); matched tracks that are
    not covered are spatial false positives (full weight); surplus predictions are false
    positives and missing ones false negatives (half weight):
    ``F = TP / (TP + FP_spatial + (FP + FN) / 2)``.

    Args:
        detected: ``[N, K]`` float in [0, 1] (a straight-through step in training);
        near: ``[N, K, S]`` float; active: ``[N, S]`` float; segment: ``[N]`` long.
    """
    import torch

    covered = 1 - torch.prod(1 - detected[:, :, None] * near, dim=1)  # (N, S)
    n_pred, n_ref = detected.sum(1), active.sum(1)  # (N,)
    has_ref = (n_ref > 0).to(detected.dtype)

    def seg_sum(v):
        return torch.zeros(n_seg, dtype=v.dtype).index_add(0, segment, v)

    frames = seg_sum(torch.ones_like(n_pred))

    def seg_max(v):  # the maximum forward; every frame's share of the mean backward
        mx = torch.zeros(n_seg, dtype=v.dtype).scatter_reduce(0, segment, v.detach(), "amax")
        mean = seg_sum(v) / frames
        return mx + mean - mean.detach()

    both = has_ref * n_pred.clamp(max=1)  # frames where references and predictions meet
    nb_pred, nb_ref = seg_max(n_pred), seg_max(n_ref)
    hits = seg_sum((covered * active).sum(1) * both) / seg_sum(both).clamp(min=1e-9)
    tp = torch.minimum(hits, torch.minimum(nb_pred, nb_ref))
    fp_spatial = (torch.minimum(nb_pred, nb_ref) - tp).clamp(min=0)
    fp, fn = (nb_pred - nb_ref).clamp(min=0), (nb_ref - nb_pred).clamp(min=0)
    tp_all = tp.sum()
    return tp_all / (tp_all + fp_spatial.sum() + 0.5 * (fp.sum() + fn.sum())).clamp(min=1e-9)


def learn_detection(
    hyps, conf, valid, targets, active, segment=None, radii=(0.0,), min_gain: float = 0.005
) -> tuple[float, float, dict[float, tuple[float, float]]]:
    """The detection of the best DCASE F20 on these frames: ``(threshold, merge radius,
    {radius: (threshold, F20)})``.

    For each merge radius (degrees; 0: the hypotheses as they are), the hypotheses are
    merged (:func:`~ssl_toolkit.models.localize.merge_nearby`) and scored on the exact
    0.05 threshold grid (:func:`grid_threshold`); the radius of the best F20 is kept when
    it gains at least ``min_gain`` over no merge (else none: such gains are within a
    validation split's noise, as :func:`sgl_search` reasons for its threshold). Then
    :func:`sgl_search` learns the threshold at that radius. One surrogate-gradient search
    in all (the grids cost about 1 % of it): on 12,000 frames, 24 s instead of 77 s for a
    search per radius (one thread, busy machine).

    Measured on held-out reverberant MIC scenes (``recipes/heldout_check.sh --broadband``,
    rMCL K = 5, seed 0): the radius learned on val (20 deg) raises the test F20 from 0.59
    to 0.70, since an rMCL model splits a source near the border of two Voronoi cells between
    two hypotheses (README, "Detection").
    """
    from ..models.localize import merge_nearby

    merged, found = {}, {}
    for r in radii:
        h, c, v = merge_nearby(hyps, conf, valid, float(r))
        merged[float(r)] = (np.where(v, c, 0.0), h)  # merged-away slots: never detected
        found[float(r)] = grid_threshold(*merged[float(r)], targets, active, segment)
    best = max(found, key=lambda r: np.nan_to_num(found[r][1], nan=-1.0))
    if (
        0.0 in found
        and np.isfinite(found[0.0][1])
        and not found[best][1] - found[0.0][1] >= min_gain
    ):
        best = 0.0
    found[best] = sgl_search(*merged[best], targets, active, segment)
    return float(found[best][0]), float(best), found


def learn_threshold_sgl(conf, hyps, targets, active, segment=None, **options) -> float:
    """SGL-Thresh's threshold (see :func:`sgl_search`, whose options it takes)."""
    return sgl_search(conf, hyps, targets, active, segment, **options)[0]


def sgl_search(
    conf,
    hyps,
    targets,
    active,
    segment=None,
    inits: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9),
    steepness: tuple[float, float] = (5.0, 100.0),
    lr: float = 0.01,
    steps: int = 80,
    threshold_deg: float = 20.0,
    max_candidates: int = 96,
    scan: int = 3,
    default: float = 0.5,
    min_gain: float = 0.005,
) -> tuple[float, float]:
    """SGL-Thresh: the threshold that maximizes the location-aware F-score (20 degrees).

    Surrogate-gradient learning (Pellegrini & Masquelier, ICASSP 2021): the forward pass
    uses the real step ``conf >= t``, the backward pass the derivative of
    ``sigmoid(steepness * (conf - t))``; ``t`` climbs :func:`soft_f20` (the DCASE F20's
    segment counting) with Adam. The steepness grows geometrically over the steps (a wide
    window first, so that ``t`` feels confidences far from it, then a sharp one).

    Starts: the official F20 is piecewise constant with several local maxima, and a
    gradient climb only finds the one of its basin: on a medium RESYN run, none of five
    fixed starts reached the region a 0.05 grid found (-0.018 F20). So the climb starts
    from ``inits`` and from the ``scan`` best points of an exact scan of the 0.05 grid;
    the surrogate refines them between grid points. As a training run keeps its best
    checkpoint, the visited threshold with the best exact DCASE F20
    (:func:`~ssl_toolkit.analysis.metrics.dcase_seld`) on these frames is returned
    (thresholds visited, to 0.001): never below the grid's F20 here.

    Shrinkage: a threshold that gains less than ``min_gain`` F20 over ``default`` (0.5) on
    these frames is not kept (``default`` is): such a gain is within the noise of a
    validation split (on the medium recipes, gains of +0.003 and +0.006 on val came with
    -0.004 on test), and moving away from the default for it is as likely to cost on
    test as to help. The F20 returned is then at most ``min_gain`` below the best.

    Args:
        conf: ``[N, K]``; hyps: ``[N, K, 3]``; targets: ``[N, S, 3]``; active: ``[N, S]``;
        segment: ``[N]`` segment index of each frame (1 s segments as the DCASE metrics;
            None: one segment per frame).

    Returns:
        ``(threshold, F20)``: the learned threshold in (0, 1) and its exact F20 here.
    """

    n = len(conf)
    if n == 0:
        return default, float("nan")
    seg = (
        np.arange(n) if segment is None else np.unique(np.asarray(segment), return_inverse=True)[1]
    )
    grid = GRID
    grid_f = _f20s(grid, conf, hyps, targets, active, seg)
    best_grid = grid[np.argsort(-np.nan_to_num(grid_f, nan=-1.0), kind="stable")[:scan]]
    starts = sorted({round(float(x), 3) for x in (*inits, *best_grid)})
    near = near_targets(hyps, targets, active, threshold_deg)
    climb = {"steepness": steepness, "lr": lr, "steps": steps}
    visited = _climb(conf, near, active, seg, starts, **climb)
    cand = np.asarray(sorted(visited - {round(float(g), 3) for g in grid}))
    if len(cand) > max_candidates:
        cand = cand[np.linspace(0, len(cand) - 1, max_candidates).round().astype(int)]
    cand_f = _f20s(cand, conf, hyps, targets, active, seg)
    all_t, all_f = np.concatenate((grid, cand)), np.concatenate((grid_f, cand_f))
    if not np.isfinite(all_f).any():
        return default, float("nan")
    best = int(np.nanargmax(all_f))
    at_default = all_f[np.isclose(all_t, default)]
    f_default = (
        float(at_default[0])
        if len(at_default)
        else _f20s([default], conf, hyps, targets, active, seg)[0]
    )
    if np.isfinite(f_default) and all_f[best] - f_default < min_gain:
        return float(default), f_default
    return float(all_t[best]), float(all_f[best])


def _climb(conf, near, active, seg, starts, *, steepness, lr, steps) -> set[float]:
    """The thresholds (to 0.001) visited by the surrogate-gradient climbs of
    :func:`sgl_search` from each of ``starts``; ``near [N, K, S]`` from :func:`near_targets`,
    ``seg [N]`` segment indices 0..n_seg-1."""
    import torch

    c = torch.as_tensor(np.asarray(conf, np.float32))
    seg_t = torch.as_tensor(np.asarray(seg).ravel(), dtype=torch.long)
    near_t = torch.as_tensor(near, dtype=c.dtype)
    act = torch.as_tensor(np.asarray(active, bool), dtype=c.dtype)
    n_seg = int(seg_t.max()) + 1
    visited: set[float] = set(starts)
    for start in starts:
        t = torch.tensor(float(start), dtype=c.dtype, requires_grad=True)
        opt = torch.optim.Adam([t], lr=lr)
        for slope in np.geomspace(steepness[0], steepness[1], steps):
            soft = torch.sigmoid(float(slope) * (c - t))
            hard = (c >= t).to(c.dtype)
            f = soft_f20(hard + soft - soft.detach(), near_t, act, seg_t, n_seg)  # straight-through
            opt.zero_grad()
            (-f).backward()
            opt.step()
            with torch.no_grad():
                t.clamp_(1e-3, 1 - 1e-3)
            visited.add(round(float(t.detach()), 3))
    return visited


def _f20s(candidates, conf, hyps, targets, active, segment) -> np.ndarray:
    """Exact DCASE F20 of each candidate threshold (NaN where undefined)."""
    conf = np.asarray(conf)
    return np.array(
        [
            metrics.dcase_seld(hyps, conf >= t, targets, active, segment)["F20"]
            for t in np.asarray(candidates, np.float64)
        ],
        dtype=np.float64,
    )


def best_threshold(candidates, conf, hyps, targets, active, segment) -> tuple[float, float]:
    """The candidate threshold with the best exact DCASE F20: ``(threshold, F20)``.

    The first of equal maxima wins; when no candidate has a defined F20 (no frame to
    score), the last candidate is returned with NaN.
    """
    cand = np.asarray(candidates, np.float64)
    scores = _f20s(cand, conf, hyps, targets, active, segment)
    best = int(np.nanargmax(scores)) if np.isfinite(scores).any() else len(cand) - 1
    return float(cand[best]), float(scores[best])


#: The grid of :func:`grid_threshold` (0.05, 0.10, ..., 0.95).
GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def grid_threshold(conf, hyps, targets, active, segment, grid=None) -> tuple[float, float]:
    """The grid threshold with the best DCASE F20; returns ``(threshold, F20)``."""
    grid = GRID if grid is None else np.asarray(grid)
    return best_threshold(grid, conf, hyps, targets, active, segment)


def compare_thresholds(conf, hyps, targets, active, segment) -> dict[str, dict[str, float]]:
    """Fixed 0.5, grid search and SGL on the same frames: threshold and DCASE F20 of each."""
    args = (conf, hyps, targets, active, segment)
    choices = {
        "fixed": best_threshold([0.5], *args),
        "grid": grid_threshold(*args),
        "sgl": sgl_search(*args),
    }
    return {name: {"threshold": t, "F20": f} for name, (t, f) in choices.items()}
