"""Localization metrics for multi-hypothesis predictions, vectorized over frames.

Inputs share one convention (N frames, K hypotheses, S target slots):

- ``hyps`` ``[N, K, 3]`` unit vectors, ``confidences`` ``[N, K]`` >= 0;
- ``targets`` ``[N, S, 3]`` unit vectors, ``active`` ``[N, S]`` bool (slot s sounds in frame n);
- ``detected`` / ``pred_active`` ``[N, K]`` bool: hypotheses turned into detected sources.

Angles come out in degrees, rates as fractions. Frames with no active target are
skipped by the metrics that need one. References: Letzelter et al., "Resilient
Multiple Choice Learning", NeurIPS 2023 (oracle error, EMD); Politis et al.,
"Overview and evaluation of sound event localization and detection in DCASE 2019",
and the DCASE 2020-2023 SELD baselines (location-aware detection metrics).

This module imports only numpy (scipy and POT lazily, for rare fallbacks), so
users can import it alone.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..core.geometry import great_circle

__all__ = [
    "oracle_error",
    "chance_oracle_error",
    "chance_oracle_deg",
    "emd",
    "emd_excluded",
    "emd_per_frame",
    "hungarian_error",
    "hungarian_match",
    "frame_recall",
    "dcase_seld",
    "class_aware_seld",
    "CLASS_AWARE",
    "subset_masks",
    "all_metrics",
    "TITLES",
    "titles",
]

_DEG = 180.0 / math.pi
_BIG = 1e3  # cost of an impossible pair in the brute-force matcher (distances are <= pi)
_CHUNK = 2048  # frames per block in the batched solvers (bounds memory)
_EPS = float(np.finfo(np.float64).eps)  # the ``eps`` of the DCASE SELD code
_SELD_KEYS = ("ER20", "F20", "LE_CD_deg", "LR_CD", "SELD")


def _pairwise(targets: np.ndarray, hyps: np.ndarray) -> np.ndarray:
    """Great-circle distances ``[N, S, K]`` in radians between targets and hypotheses."""
    t = np.asarray(targets, dtype=np.float64)
    h = np.asarray(hyps, dtype=np.float64)
    return great_circle(t[:, :, None, :], h[:, None, :, :])


def _valid(hyps, valid) -> np.ndarray:
    """``valid [N, K]`` as bool; None means every slot holds an estimate."""
    shape = np.shape(hyps)[:2]
    return np.ones(shape, bool) if valid is None else np.asarray(valid, dtype=bool)


def oracle_error(hyps, targets, active, valid=None) -> float:
    """Mean distance from each active target to its closest hypothesis, in degrees.

    Args:
        hyps: ``[N, K, 3]`` unit vectors.
        targets: ``[N, S, 3]`` unit vectors.
        active: ``[N, S]`` bool.
        valid: ``[N, K]`` bool, the slots holding an estimate (default all). Invalid
            slots are ignored; a target whose frame has no valid slot is a miss and
            counts 180 degrees.

    Returns:
        The mean over all active (frame, target) pairs; NaN when none is active.
    """
    active = np.asarray(active, dtype=bool)
    if not active.any():
        return float("nan")
    d = _pairwise(targets, hyps)  # (N, S, K)
    d = np.where(_valid(hyps, valid)[:, None, :], d, np.pi).min(axis=2)  # (N, S)
    return float(d[active].mean() * _DEG)


def chance_oracle_error(targets, active, k: int, seed: int = 0) -> float:
    """Oracle error (degrees) of ``k`` directions drawn uniformly on the sphere per frame.

    The chance level a trained model must beat, on the same frames and targets: one
    seeded sample, whose expectation is :func:`chance_oracle_deg` (exact, what ``ssl eval``
    reports).

    Args:
        targets: ``[N, S, 3]``; active: ``[N, S]`` bool; k: hypotheses per frame.
        seed: of the random directions.
    """
    rng = np.random.default_rng(seed)
    hyps = rng.standard_normal((len(active), k, 3))
    hyps /= np.linalg.norm(hyps, axis=-1, keepdims=True)  # (N, K, 3) uniform on the sphere
    return oracle_error(hyps, targets, active)


def chance_oracle_deg(k: int, active=None) -> float:
    """The chance level of the oracle error: its expectation (degrees) for ``k`` directions
    drawn independently and uniformly on the sphere in every frame, exactly.

    For any target, the angle to one uniform direction exceeds x with probability
    ``(1 + cos x) / 2``, so the closest of ``k`` exceeds it with probability
    ``((1 + cos x) / 2)^k`` and its mean is ``integral_0^pi cos(x / 2)^(2k) dx
    = pi * C(2k, k) / 4^k`` radians (90 degrees for k = 1, 44.3 for k = 5). It is the same
    for every target, so it is also the expected oracle error of random directions on any
    set of frames: no sampling, no seed (:func:`chance_oracle_error` draws one such
    sample). Cost: O(1).

    Args:
        k: directions per frame (the method's K).
        active: optional ``[N, S]`` bool of the frames scored: NaN when none is active
            (as :func:`oracle_error`).
    """
    if active is not None and not np.asarray(active, dtype=bool).any():
        return float("nan")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    # pi * C(2k, k) / 4^k as a product of (2i - 1) / (2i): stable for any k
    ratio = math.exp(sum(math.log((2 * i - 1) / (2 * i)) for i in range(1, k + 1)))
    return 180.0 * ratio


def _weights(confidences: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Confidences of the valid slots normalized per frame ``[N, K]``.

    A frame whose valid confidences are all zero gets uniform weights on its valid
    slots; a frame without a valid slot gets all zeros.
    """
    v = np.asarray(valid, dtype=bool)
    c = np.where(v, np.clip(np.asarray(confidences, dtype=np.float64), 0.0, None), 0.0)
    s = c.sum(axis=1, keepdims=True)
    uniform = v / np.maximum(v.sum(axis=1, keepdims=True), 1)
    return np.where(s > 0, c / np.where(s > 0, s, 1.0), uniform)


def _compact(active: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Reorder the target axis of ``cost`` ``[N, S, K]`` so active targets come first."""
    order = np.argsort(~active, axis=1, kind="stable")  # (N, S)
    return np.take_along_axis(cost, order[:, :, None], axis=1)


def _dual_value(v: np.ndarray, cost: np.ndarray, p: np.ndarray, b: float) -> np.ndarray:
    """Transport dual ``sum_j b v_j + sum_k p_k min_j (c_jk - v_j)`` at candidate points.

    Args:
        v: ``[n, P, s - 1]`` candidate dual points (``v_s = 0``).
        cost: ``[n, s, K]``; p: ``[n, K]``; b: the uniform target mass 1/s.

    Returns:
        ``[n, P]``.
    """
    low = np.broadcast_to(cost[:, None, -1, :], (*v.shape[:2], cost.shape[2]))  # (n, P, K)
    for j in range(v.shape[2]):  # s - 1 <= 2 slices: no (n, P, s, K) temporary
        low = np.minimum(low, cost[:, None, j, :] - v[:, :, j, None])
    return b * v.sum(-1) + np.einsum("npk,nk->np", low, p)


def _emd_two(cost: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact EMD for two targets of mass 1/2: maximum of the dual over its breakpoints.

    With ``v_2 = 0`` the dual ``f(v_1)`` is concave piecewise linear with kinks at
    ``v_1 = c_1k - c_2k``; its maximum is at one of them.
    """
    v1 = cost[:, 0, :] - cost[:, 1, :]  # (n, K) breakpoints
    return _dual_value(v1[:, :, None], cost, p, 0.5).max(axis=1)


def _emd_three(cost: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact EMD for three targets of mass 1/3: maximum of the dual over its vertices.

    With ``v_3 = 0`` the dual is concave piecewise linear on the plane; it decreases
    in every direction far away, so a maximizer is a vertex of the line arrangement
    ``v_1 - v_2 = a_k``, ``v_1 = b_k``, ``v_2 = c_k`` (a_k = c_1k - c_2k, b_k = c_1k - c_3k,
    c_k = c_2k - c_3k). The 3 K^2 vertices are evaluated in one batch.
    """
    a = cost[:, 0] - cost[:, 1]  # (n, K)
    bb = cost[:, 0] - cost[:, 2]
    c = cost[:, 1] - cost[:, 2]
    n, k = a.shape
    ab = np.stack(
        (np.repeat(bb, k, 1), (bb[:, :, None] - a[:, None, :]).reshape(n, k * k)), -1
    )  # v1 = b_i, v2 = b_i - a_j
    ac = np.stack(
        ((c[:, :, None] + a[:, None, :]).reshape(n, k * k), np.repeat(c, k, 1)), -1
    )  # v2 = c_i, v1 = c_i + a_j
    bc = np.stack((np.repeat(bb, k, 1), np.tile(c, (1, k))), -1)  # v1 = b_i, v2 = c_j
    v = np.concatenate((ab, ac, bc), axis=1)  # (n, 3K^2, 2)
    return _dual_value(v, cost, p, 1.0 / 3.0).max(axis=1)


def _emd_pot(cost: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Exact EMD by POT's network simplex, frame by frame (fallback for S >= 4)."""
    import ot

    out = np.empty(len(cost))
    for i in range(len(cost)):
        s = cost.shape[1]
        out[i] = ot.emd2(p[i], np.full(s, 1.0 / s), cost[i].T)
    return out


def emd_per_frame(hyps, confidences, targets, active, valid=None) -> np.ndarray:
    """Earth mover's distance per frame, in degrees (NaN where no target is active).

    The hypotheses carry their normalized confidences, the active targets equal
    masses; the ground cost is the great-circle distance (not squared). One target:
    the confidence-weighted mean distance; two or three: the exact maximum of the
    transport dual over its finitely many breakpoints, batched; more: POT's
    ``ot.emd2`` per frame.

    Args:
        hyps: ``[N, K, 3]``; confidences: ``[N, K]``; targets: ``[N, S, 3]``; active: ``[N, S]``.
        valid: ``[N, K]`` bool (default all): invalid slots carry no mass. EMD compares
            two distributions of mass 1: it is undefined (NaN) where either side has none,
            a frame without an active target or without a valid slot (DCASE result files
            list no row in frames where a system detects nothing); :func:`emd_excluded`
            counts the latter.

    Returns:
        ``[N]`` float64.
    """
    active = np.asarray(active, dtype=bool)
    v = _valid(hyps, valid)
    n_act = np.where(v.any(axis=1), active.sum(axis=1), 0)  # no mass on one side: skipped
    out = np.full(len(active), np.nan)
    p_all = _weights(confidences, v)
    for s in np.unique(n_act[n_act > 0]):
        rows = np.flatnonzero(n_act == s)
        for start in range(0, len(rows), _CHUNK):
            r = rows[start : start + _CHUNK]
            cost = _compact(active[r], _pairwise(np.asarray(targets)[r], np.asarray(hyps)[r]))
            cost, p = cost[:, :s], p_all[r]
            if s == 1:
                val = np.einsum("nk,nk->n", cost[:, 0], p)
            elif s == 2:
                val = _emd_two(cost, p)
            elif s == 3:
                val = _emd_three(cost, p)
            else:
                val = _emd_pot(cost, p)
            out[r] = val * _DEG
    return out


def emd_excluded(active, valid) -> int:
    """Frames with an active target but no valid slot: no estimate to transport, so
    :func:`emd_per_frame` leaves them out (``emd_excluded_frames`` in ``metrics.json``; the
    oracle error counts them as misses, 180 degrees)."""
    active = np.asarray(active, dtype=bool)
    v = np.ones(active.shape[0], bool) if valid is None else np.asarray(valid, bool).any(axis=1)
    return int((active.any(axis=1) & ~v).sum())


def emd(hyps, confidences, targets, active, valid=None) -> float:
    """Mean of :func:`emd_per_frame` over the frames where it is defined (an active target
    and a valid slot), in degrees; NaN where there is none."""
    e = emd_per_frame(hyps, confidences, targets, active, valid)
    e = e[~np.isnan(e)]
    return float(e.mean()) if len(e) else float("nan")


def hungarian_match(pred, pred_active, targets, active) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of detected sources to active targets, per frame.

    Solves the same problem as ``scipy.optimize.linear_sum_assignment`` on each
    frame's (active targets x detected sources) distance matrix, batched: every
    injection of the smaller side into the larger is scored at once (60 for K=5,
    S=3), impossible pairs costing more than any matching of the maximal size.
    Falls back on scipy frame by frame when there are more than 5040 injections.

    Args:
        pred: ``[N, K, 3]``; pred_active: ``[N, K]`` bool; targets: ``[N, S, 3]``;
            active: ``[N, S]`` bool.

    Returns:
        ``(match, dist)``: ``match [N, S]`` int, the index of the source matched to
        each target (-1 if none), and ``dist [N, S]`` its distance in radians (NaN if none).
    """
    pa = np.asarray(pred_active, dtype=bool)
    ta = np.asarray(active, dtype=bool)
    d = _pairwise(targets, pred)  # (N, S, K)
    n, s, k = d.shape
    ok = ta[:, :, None] & pa[:, None, :]
    if math.perm(max(s, k), min(s, k)) > 5040:
        return _match_scipy(d, ok)
    cost = np.where(ok, d, _BIG)  # (N, S, K)
    best = np.concatenate(
        [_best_injection(cost[i : i + _CHUNK]) for i in range(0, n, _CHUNK)] or [np.zeros((0, s))]
    ).astype(np.intp)  # (N, S), blocks bound the (block, P, S) temporaries
    valid = best >= 0
    bi = np.where(valid, best, 0)
    valid &= np.take_along_axis(ok, bi[:, :, None], axis=2)[:, :, 0]
    match = np.where(valid, best, -1)
    dist = np.where(valid, np.take_along_axis(d, bi[:, :, None], axis=2)[:, :, 0], np.nan)
    return match, dist


def _best_injection(cost: np.ndarray) -> np.ndarray:
    """Source index ``[n, S]`` (-1: none) of the cheapest injection between the two sides.

    Args:
        cost: ``[n, S, K]`` pair costs.
    """
    n, s, k = cost.shape
    if s <= k:
        perms = np.array(list(itertools.permutations(range(k), s)), dtype=np.intp)  # (P, S)
        c = cost[:, np.arange(s)[None, :], perms]  # (n, P, S)
        return perms[c.sum(-1).argmin(axis=1)]
    perms = np.array(list(itertools.permutations(range(s), k)), dtype=np.intp)  # (P, K)
    c = cost[:, perms, np.arange(k)[None, :]]  # (n, P, K): target perms[p, j] <- source j
    inv = perms[c.sum(-1).argmin(axis=1)]  # (n, K) target of each source
    best = np.full((n, s), -1, dtype=np.intp)
    best[np.repeat(np.arange(n), k), inv.ravel()] = np.tile(np.arange(k), n)
    return best


def _match_scipy(d: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import linear_sum_assignment

    n, s, _ = d.shape
    match = np.full((n, s), -1, dtype=np.intp)
    dist = np.full((n, s), np.nan)
    for i in range(n):
        ts, ks = np.flatnonzero(ok[i].any(1)), np.flatnonzero(ok[i].any(0))
        if len(ts) and len(ks):
            r, c = linear_sum_assignment(d[i][np.ix_(ts, ks)])
            match[i, ts[r]] = ks[c]
            dist[i, ts[r]] = d[i, ts[r], ks[c]]
    return match, dist


def hungarian_error(pred, pred_active, targets, active) -> float:
    """Mean distance of the optimal one-to-one matching, in degrees.

    Per frame, the mean great-circle distance over the pairs of the optimal
    matching between detected sources and active targets; averaged over frames
    where both sides are non-empty (NaN if there are none).
    """
    _, dist = hungarian_match(pred, pred_active, targets, active)
    has = ~np.isnan(dist)
    keep = has.any(axis=1)
    if not keep.any():
        return float("nan")
    per_frame = np.where(has, dist, 0.0).sum(1)[keep] / has.sum(1)[keep]
    return float(per_frame.mean() * _DEG)


def frame_recall(
    confidences, active, threshold: float = 0.5, valid=None, detected=None
) -> dict[str, float]:
    """Share of frames whose estimated source count equals the true count.

    Two estimates of the count, as in the rMCL reference code: the number of
    hypotheses whose confidence reaches ``threshold`` (``frame_recall``; the number of
    ``detected`` slots when given, e.g. after merging), and ``round(sum of confidences)``
    (``frame_recall_sum``).

    Args:
        confidences: ``[N, K]``; active: ``[N, S]`` bool; threshold: detection threshold;
        valid: ``[N, K]`` bool, the slots that count (default all); detected: ``[N, K]``
            bool, the detections (default: valid slots at ``threshold``).

    Returns:
        ``{"frame_recall": float, "frame_recall_sum": float}`` (NaN for N = 0).
    """
    c = np.where(_valid(confidences, valid), np.asarray(confidences, dtype=np.float64), 0.0)
    true = np.asarray(active, dtype=bool).sum(axis=1)
    if len(true) == 0:
        return {"frame_recall": float("nan"), "frame_recall_sum": float("nan")}
    by_thr = (c >= threshold).sum(axis=1) if detected is None else np.sum(detected, axis=1)
    by_sum = np.floor(c.sum(axis=1) + 0.5).astype(int)  # round half up
    return {
        "frame_recall": float((by_thr == true).mean()),
        "frame_recall_sum": float((by_sum == true).mean()),
    }


def segment_ids(clip_id, frame, frames_per_segment: int) -> np.ndarray:
    """Index ``[N]`` of the segment of each frame: (clip, frame // frames_per_segment)."""
    clip = np.asarray(clip_id)
    seg = np.asarray(frame, dtype=np.int64) // max(int(frames_per_segment), 1)
    _, inv = np.unique(
        np.stack((np.unique(clip, return_inverse=True)[1].ravel(), seg)),
        axis=1,
        return_inverse=True,
    )
    return inv.ravel()


def _segment_max(values: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Maximum ``[n_seg]`` of ``values [N]`` (>= 0) over each segment's frames (0 if none)."""
    out = np.zeros(n_seg, np.int64)
    np.maximum.at(out, seg, values)
    return out


def _seld_classes(ta, pa, target_class, pred_class, n_classes):
    """``(tc [N, S], pc [N, K], n_classes)`` validated; ``tc = pc = None`` if class-agnostic."""
    if (target_class is None) != (pred_class is None):
        raise ValueError("give both target_class and pred_class, or neither")
    if target_class is None:
        return None, None, 1 if n_classes is None else int(n_classes)
    tc, pc = np.asarray(target_class), np.asarray(pred_class)
    for name, c, act in (("target_class", tc, ta), ("pred_class", pc, pa)):
        if c.shape != act.shape:
            raise ValueError(f"{name} has shape {c.shape}, expected {act.shape}")
    present = np.concatenate((tc[ta], pc[pa])).astype(np.int64)
    if len(present) and present.min() < 0:
        raise ValueError("active slots need classes >= 0")
    if n_classes is None:
        n_classes = int(present.max(initial=0)) + 1
    elif len(present) and present.max() >= n_classes:
        raise ValueError(f"a class is >= n_classes = {n_classes}")
    return tc.astype(np.int64), pc.astype(np.int64), int(n_classes)


def dcase_seld(
    pred,
    pred_active,
    targets,
    active,
    segment,
    threshold_deg: float = 20.0,
    *,
    target_class=None,
    pred_class=None,
    n_classes: int | None = None,
    average: str = "macro",
) -> dict[str, float]:
    """Location-aware detection metrics of the DCASE 2023 SELD baseline, vectorized.

    Computes what ``SELDMetrics.update_seld_scores`` + ``compute_seld_scores`` of the
    official DCASE 2023 task 3 baseline compute (``SELD_evaluation_metrics.py`` in
    github.com/sharathadavanne/seld-dcase2023, segments built by ``segment_labels``
    of ``cls_feature_class.py``), on frame-wise arrays instead of its dictionaries.
    ``tests/dcase_reference.py`` holds a loop-by-loop transcription of that code and
    the tests check equality to 1e-9.

    Per segment (``segment`` gives each frame's; 1 s in DCASE, see
    :func:`segment_ids`) and class c: ``nb_gt`` / ``nb_pred``, the maximal number of
    references / detected sources of class c in one frame of the segment. If both
    are present, in each frame holding both the detected sources are matched to
    the references (Hungarian on great-circle distances); a matched pair belongs to
    the track numbered by the reference's POSITION in that frame's list of class-c
    references (here: its rank among the frame's active slots of class c, in slot
    order), not to the slot itself. Each track with a match counts once: its mean
    distance is added to the localization error (``DE_TP`` += 1), and it is a true
    positive if the mean is <= ``threshold_deg``, else a spatial false positive
    (``FP_spatial``). Then ``nb_pred - nb_gt`` extra predictions are false
    positives, ``nb_gt - nb_pred`` missing ones false negatives. If the two are
    present but never in the same frame, ``nb_pred`` (sic, not ``nb_gt``) false
    negatives are counted, as the official code does. A class only in the
    references gives ``nb_gt`` false negatives, only in the predictions ``nb_pred``
    false positives. Per segment, ``loc_FP`` (spatial and extra false positives over
    all classes) and ``loc_FN`` give ``S += min``, ``D``/``I`` the excess. Finally,
    with ``eps`` the float64 machine epsilon as in the official code::

        ER = (S + D + I) / (N_ref + eps)
        F = TP / (eps + TP + FP_spatial + (FP + FN) / 2)   # FP excludes FP_spatial
        LE = total_DE / (DE_TP + eps)   (180 where DE_TP = 0)
        LR = DE_TP / (eps + DE_TP + DE_FN)
        SELD = mean(ER, 1 - F, LE / 180, 1 - LR)

    per class then averaged over the ``n_classes`` classes (``average="macro"``, the
    official default; a class that never occurs counts with F = 0, LE = 180,
    LR = 0, as there), or on the counts summed over classes (``"micro"``).

    Deviations from the official code, kept on purpose:

    - no reference at all (``N_ref = 0``): ``ER`` (hence ``SELD``) is NaN, where the
      official divides by ``eps``; no frame at all: every value is NaN;
    - the distance is ``arccos(clip(t . p, -1, 1))`` of the given unit vectors; the
      official first divides each vector by ``sqrt(|v|^2 + 1e-10)``, which shifts an
      angle theta by about ``1e-10 / tan(theta)`` rad (up to 8e-4 degrees for
      coincident directions, below 1e-6 degrees beyond 1 degree): it only matters for
      a mean distance within that much of ``threshold_deg``;
    - the per-frame matching is :func:`hungarian_match`: the same optimum as the
      official's ``scipy.optimize.linear_sum_assignment``, but when several
      matchings tie exactly (e.g. duplicated predictions) it may pick another one,
      which can change the track means.

    Not a deviation of the metric but of the official driver (``ComputeSELDResults``):
    it builds a file's segments up to its last reference frame (``max`` of the frame
    indices, passed as a frame count), so predictions after it are never scored;
    here every given frame is.

    Args:
        pred: ``[N, K, 3]``; pred_active: ``[N, K]`` bool; targets: ``[N, S, 3]``;
        active: ``[N, S]`` bool; segment: ``[N]`` int segment index of each frame.
        threshold_deg: the spatial threshold of a true positive (20 in DCASE).
        target_class: ``[N, S]`` int class of each target slot; pred_class:
            ``[N, K]`` int class of each prediction. Both or neither; neither (the
            default): one class, class-agnostic.
        n_classes: number of classes (default: the largest active class + 1; 1 when
            class-agnostic).
        average: ``"macro"`` (default) or ``"micro"``.

    Returns:
        ``{"ER20", "F20", "LE_CD_deg", "LR_CD", "SELD"}`` (fractions; LE_CD_deg in degrees).
    """
    if average not in ("macro", "micro"):
        raise ValueError(f"average must be 'macro' or 'micro', not {average!r}")
    ta = np.asarray(active, dtype=bool)
    pa = np.asarray(pred_active, dtype=bool)
    tc, pc, n_classes = _seld_classes(ta, pa, target_class, pred_class, n_classes)
    _, seg = np.unique(np.asarray(segment), return_inverse=True)
    seg = seg.ravel()
    n_seg = int(seg.max(initial=-1)) + 1
    if n_seg == 0:
        return {k: float("nan") for k in _SELD_KEYS}
    pred, targets = np.asarray(pred), np.asarray(targets)

    # Per class: official counters; per segment: loc_FP, loc_FN summed over classes.
    counts = np.zeros((7, n_classes))  # TP, FP, FP_spatial, FN, total DE, DE_TP, n_ref
    loc_fp = np.zeros(n_seg, np.int64)
    loc_fn = np.zeros(n_seg, np.int64)
    for c in range(n_classes):
        if tc is not None:
            ta_c, pa_c = ta & (tc == c), pa & (pc == c)
        else:  # class-agnostic: everything is class 0
            ta_c, pa_c = (ta, pa) if c == 0 else (np.zeros_like(ta), np.zeros_like(pa))
        counts[:, c], seg_fp, seg_fn = _class_counts(
            pred, targets, ta_c, pa_c, seg, n_seg, threshold_deg
        )
        loc_fp += seg_fp
        loc_fn += seg_fn
    # S += min(loc_FP, loc_FN), D and I += the excess: S + D + I = max per segment
    n_ref = counts[6].sum()
    er = float(np.maximum(loc_fp, loc_fn).sum() / (n_ref + _EPS)) if n_ref else float("nan")
    return _seld_scores(er, counts[:6], average)


def _class_counts(pred, targets, ta_c, pa_c, seg, n_seg: int, threshold_deg: float):
    """One class's official counters, and its location FP / FN per segment.

    Returns:
        ``([TP, FP, FP_spatial, FN, total DE, DE_TP, n_ref], seg_fp [n_seg], seg_fn [n_seg])``
        where ``seg_fp`` counts the spatial false positives too (the ER's insertions).
    """
    s = ta_c.shape[1]
    nb_gt = _segment_max(ta_c.sum(1), seg, n_seg)  # 0: class absent (None there)
    nb_pred = _segment_max(pa_c.sum(1), seg, n_seg)
    # frames holding both; the track of a reference is its rank among them
    rows = ta_c.any(1) & pa_c.any(1)
    rows = slice(None) if rows.all() else np.flatnonzero(rows)  # no copy if every frame
    _, dist = hungarian_match(pred[rows], pa_c[rows], targets[rows], ta_c[rows])
    matched = ~np.isnan(dist)  # (n, S)
    rank = np.cumsum(ta_c[rows], axis=1) - 1  # position in the frame's class-c list
    cell = (seg[rows][:, None] * s + rank)[matched]  # (segment, track)
    cnt = np.bincount(cell, minlength=n_seg * s).reshape(n_seg, s)
    tot = np.bincount(cell, weights=dist[matched], minlength=n_seg * s).reshape(n_seg, s)
    tracks = cnt > 0
    mean_deg = tot[tracks] / cnt[tracks] * _DEG  # one per (segment, track) matched
    n_tracks = tracks.sum(1)  # per segment
    good = np.zeros((n_seg, s), bool)
    good[tracks] = mean_deg <= threshold_deg
    n_good = good.sum(1)

    both = (nb_gt > 0) & (nb_pred > 0)
    linked = n_tracks > 0  # implies both
    unlinked = both & ~linked  # official: nb_pred (sic) false negatives
    over = np.where(linked, np.maximum(nb_pred - nb_gt, 0), 0)
    under = np.where(linked, np.maximum(nb_gt - nb_pred, 0), 0)
    gt_only = np.where(nb_pred == 0, nb_gt, 0)
    pred_only = np.where(nb_gt == 0, nb_pred, 0)
    seg_fn = np.where(unlinked, nb_pred, 0) + under + gt_only
    seg_fp = over + pred_only
    fn = seg_fn.sum()
    # the official raises DE_FN exactly where it raises FN: DE_FN = FN
    counts = [n_good.sum(), seg_fp.sum(), (n_tracks - n_good).sum(), fn, mean_deg.sum(),
              n_tracks.sum(), nb_gt.sum()]  # fmt: skip
    return counts, seg_fp + (n_tracks - n_good), seg_fn


def _seld_scores(er: float, counts: np.ndarray, average: str) -> dict[str, float]:
    """F, LE_CD, LR_CD and SELD from the per-class counters ``[6, classes]`` (TP, FP,
    FP_spatial, FN, total DE, DE_TP), macro- or micro-averaged over classes."""
    if average == "micro":
        counts = counts.sum(1, keepdims=True)
    tp, fp, fp_sp, fn, total_de, de_tp = counts
    de_fn = fn
    f = tp / (_EPS + tp + fp_sp + 0.5 * (fp + fn))
    le = np.where(de_tp > 0, total_de / (de_tp + _EPS), 180.0)
    lr = de_tp / (_EPS + de_tp + de_fn)
    seld = (er + (1 - f) + le / 180.0 + (1 - lr)) / 4.0
    return {
        "ER20": er,
        "F20": float(f.mean()),
        "LE_CD_deg": float(le.mean()),
        "LR_CD": float(lr.mean()),
        "SELD": float(seld.mean()),
    }


#: Suffix of the class-dependent metrics' keys (:func:`class_aware_seld`).
CLASS_AWARE = "_cls"


def class_aware_seld(
    pred,
    pred_active,
    targets,
    active,
    segment,
    pred_class,
    target_class,
    n_classes: int,
    threshold_deg: float = 20.0,
) -> dict[str, float]:
    """The official class-dependent DCASE SELD metrics, macro-averaged over the classes.

    What ``SELDMetrics(nb_classes=n_classes, average="macro")`` of the DCASE 2023 SELD
    baseline computes when the predictions and the references carry classes (the design's
    contract; DCASE 2022's differs: ER averaged per class, spatial false positives
    counted as plain FP): a detection
    matches only references of its own class (per segment and class, as
    :func:`dcase_seld`, whose counters these are: no second implementation). Per class c,
    ``F_c``, ``LE_c`` (180 where no track of c was matched) and ``LR_c``; ER from the
    per-segment substitutions, deletions and insertions summed over classes (one number,
    as the official); then ``F = mean_c F_c``, ``LE = mean_c LE_c``, ``LR = mean_c LR_c``
    and ``SELD = mean_c mean(ER, 1 - F_c, LE_c / 180, 1 - LR_c)``. Every one of the
    ``n_classes`` classes counts, also one absent from the frames scored (F = LR = 0,
    LE = 180), as in the official average over ``nb_classes``: give the dataset's class
    count, not the classes present.

    Args:
        pred: ``[N, K, 3]``; pred_active: ``[N, K]`` bool (detected); targets: ``[N, S, 3]``;
            active: ``[N, S]`` bool; segment: ``[N]`` int (see :func:`dcase_seld`).
        pred_class: ``[N, K]`` int class of each prediction (>= 0 where detected; other
            slots are ignored); target_class: ``[N, S]`` int (>= 0 where active).
        n_classes: the number of classes of the dataset (classes 0..n_classes - 1).
        threshold_deg: the spatial threshold of a true positive (20 in DCASE).

    Returns:
        ``{"ER20_cls", "F20_cls", "LE_CD_deg_cls", "LR_CD_cls", "SELD_cls"}`` (the keys of
        :func:`dcase_seld` with the suffix :data:`CLASS_AWARE`).

    Raises:
        ValueError: a detected or active slot without a class in ``0..n_classes - 1``.
    """
    res = dcase_seld(pred, pred_active, targets, active, segment, threshold_deg,
                     target_class=target_class, pred_class=pred_class,
                     n_classes=int(n_classes), average="macro")  # fmt: skip
    return {k + CLASS_AWARE: v for k, v in res.items()}


def subset_masks(active, subset=None) -> dict[str, np.ndarray]:
    """Frame masks for the breakdown ``D1``, ``D2``, ``D3`` and ``overall``.

    As in the rMCL paper, ``Dn`` holds the frames of clips whose maximum polyphony
    is n (subset ``ovn``); without ``subset`` the frame's own active count is used.

    Args:
        active: ``[N, S]`` bool; subset: optional ``[N]`` strings like ``"ov2"``.
    """
    active = np.asarray(active, dtype=bool)
    if subset is None:
        level = active.sum(1)
    else:
        sub = np.asarray(subset).astype(str)
        level = np.array([int(x[2:]) if x[:2] == "ov" and x[2:].isdigit() else 0 for x in sub])
    out = {f"D{i}": level == i for i in (1, 2, 3)}
    out["overall"] = np.ones(len(active), dtype=bool)
    return out


def all_metrics(
    hyps,
    confidences,
    targets,
    active,
    detected,
    segment,
    threshold: float = 0.5,
    valid=None,
    *,
    pred_class=None,
    target_class=None,
    n_classes: int | None = None,
    detected_hyps=None,
) -> dict[str, float]:
    """Every metric of this module on one set of frames (see each function).

    ``detected_hyps [N, K, 3]`` are the directions of the ``detected`` slots when they are
    not the hypotheses themselves (merged: :func:`ssl_toolkit.models.localize.detections`);
    the distribution metrics (oracle, EMD) always score ``hyps``.

    ``valid [N, K]`` (default all) marks the slots holding an estimate: the others are
    ignored (``detected`` must already exclude them, as :func:`ssl_toolkit.models.localize.detect`
    does). With ``n_classes`` (and ``pred_class [N, K]``, ``target_class [N, S]``) the
    class-dependent metrics of :func:`class_aware_seld` are added to the class-agnostic
    ones, which are always there.

    Returns:
        ``{"frames", "oracle_deg", "emd_deg", "emd_excluded_frames", "hungarian_deg",
        "frame_recall", "frame_recall_sum", "ER20", "F20", "LE_CD_deg", "LR_CD", "SELD"}``, and with
        ``n_classes`` ``"ER20_cls", "F20_cls", "LE_CD_deg_cls", "LR_CD_cls", "SELD_cls"``.
    """
    det = hyps if detected_hyps is None else detected_hyps
    res = {
        "frames": int(len(active)),
        "oracle_deg": oracle_error(hyps, targets, active, valid),
        "emd_deg": emd(hyps, confidences, targets, active, valid),
        "emd_excluded_frames": emd_excluded(active, valid),
        "hungarian_deg": hungarian_error(det, detected, targets, active),
    }
    res.update(frame_recall(confidences, active, threshold, valid, detected))
    res.update(dcase_seld(det, detected, targets, active, segment))
    if n_classes is not None:
        res.update(class_aware_seld(det, detected, targets, active, segment, pred_class,
                                    target_class, n_classes))  # fmt: skip
    return res


# ----------------------------------------------------------------------------- names


@dataclass(frozen=True)
class Title:
    """How a ``metrics.json`` key is shown: in files (``report.md``/``.csv``) and terminals."""

    long: str
    short: str


#: Every key ``ssl eval`` writes per subset, with its titles: the one table of metric names.
TITLES = {
    "frames": Title("frames", "frames"),
    "oracle_deg": Title("oracle (deg)", "oracle°"),
    "chance_oracle_deg": Title("chance oracle (deg)", "chance°"),
    "emd_deg": Title("EMD (deg)", "EMD°"),
    "emd_excluded_frames": Title("frames without an estimate (left out of EMD)", "no est."),
    "hungarian_deg": Title("Hungarian (deg)", "Hungarian°"),
    "frame_recall": Title("frame recall", "recall"),
    "frame_recall_sum": Title("frame recall (sum)", "recall (sum)"),
    "ER20": Title("ER20", "ER20"),
    "F20": Title("F20", "F20"),
    "LE_CD_deg": Title("LE_CD (deg)", "LE_CD°"),
    "LR_CD": Title("LR_CD", "LR_CD"),
    "SELD": Title("SELD", "SELD"),
    "ER20_cls": Title("ER20 (class-aware)", "ER20 cls"),
    "F20_cls": Title("F20 (class-aware)", "F20 cls"),
    "LE_CD_deg_cls": Title("LE_CD (deg, class-aware)", "LE_CD° cls"),
    "LR_CD_cls": Title("LR_CD (class-aware)", "LR_CD cls"),
    "SELD_cls": Title("SELD (class-aware)", "SELD cls"),
    "nll_vmf": Title("NLL vMF", "NLL vMF"),
    "nll_voronoi": Title("NLL Voronoi", "NLL Vor."),
    "ece": Title("ECE", "ECE"),
    "emd_deg_calibrated": Title("EMD (deg, val temperature)", "EMD° (T)"),
}


def titles(keys, short: bool = False) -> dict[str, str]:
    """``{key: title}`` for ``keys`` in their order (short titles for terminal tables)."""
    return {k: TITLES[k].short if short else TITLES[k].long for k in keys}
