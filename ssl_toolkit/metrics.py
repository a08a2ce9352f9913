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

import numpy as np

from .geometry import great_circle

__all__ = [
    "oracle_error",
    "chance_oracle_error",
    "emd",
    "emd_per_frame",
    "hungarian_error",
    "hungarian_match",
    "frame_recall",
    "dcase_seld",
    "subset_masks",
    "all_metrics",
]

_DEG = 180.0 / math.pi
_BIG = 1e3  # cost of an impossible pair in the brute-force matcher (distances are <= pi)
_CHUNK = 2048  # frames per block in the batched solvers (bounds memory)


def _pairwise(targets: np.ndarray, hyps: np.ndarray) -> np.ndarray:
    """Great-circle distances ``[N, S, K]`` in radians between targets and hypotheses."""
    t = np.asarray(targets, dtype=np.float64)
    h = np.asarray(hyps, dtype=np.float64)
    return great_circle(t[:, :, None, :], h[:, None, :, :])


def oracle_error(hyps, targets, active) -> float:
    """Mean distance from each active target to its closest hypothesis, in degrees.

    Args:
        hyps: ``[N, K, 3]`` unit vectors.
        targets: ``[N, S, 3]`` unit vectors.
        active: ``[N, S]`` bool.

    Returns:
        The mean over all active (frame, target) pairs; NaN when none is active.
    """
    active = np.asarray(active, dtype=bool)
    if not active.any():
        return float("nan")
    d = _pairwise(targets, hyps).min(axis=2)  # (N, S)
    return float(d[active].mean() * _DEG)


def chance_oracle_error(targets, active, k: int, seed: int = 0) -> float:
    """Oracle error (degrees) of ``k`` directions drawn uniformly on the sphere per frame.

    The chance level a trained model must beat, on the same frames and targets.

    Args:
        targets: ``[N, S, 3]``; active: ``[N, S]`` bool; k: hypotheses per frame.
        seed: of the random directions.
    """
    rng = np.random.default_rng(seed)
    hyps = rng.standard_normal((len(active), k, 3))
    hyps /= np.linalg.norm(hyps, axis=-1, keepdims=True)  # (N, K, 3) uniform on the sphere
    return oracle_error(hyps, targets, active)


def _weights(confidences: np.ndarray) -> np.ndarray:
    """Confidences normalized per frame ``[N, K]``; a frame of zeros gets uniform weights."""
    c = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, None)
    s = c.sum(axis=1, keepdims=True)
    uniform = np.full_like(c, 1.0 / c.shape[1])
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


def emd_per_frame(hyps, confidences, targets, active) -> np.ndarray:
    """Earth mover's distance per frame, in degrees (NaN where no target is active).

    The hypotheses carry their normalized confidences, the active targets equal
    masses; the ground cost is the great-circle distance (not squared). One target:
    the confidence-weighted mean distance; two or three: the exact maximum of the
    transport dual over its finitely many breakpoints, batched; more: POT's
    ``ot.emd2`` per frame.

    Args:
        hyps: ``[N, K, 3]``; confidences: ``[N, K]``; targets: ``[N, S, 3]``; active: ``[N, S]``.

    Returns:
        ``[N]`` float64.
    """
    active = np.asarray(active, dtype=bool)
    n_act = active.sum(axis=1)
    out = np.full(len(active), np.nan)
    p_all = _weights(confidences)
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


def emd(hyps, confidences, targets, active) -> float:
    """Mean over frames with an active target of :func:`emd_per_frame`, in degrees."""
    e = emd_per_frame(hyps, confidences, targets, active)
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


def frame_recall(confidences, active, threshold: float = 0.5) -> dict[str, float]:
    """Share of frames whose estimated source count equals the true count.

    Two estimates of the count, as in the rMCL reference code: the number of
    hypotheses whose confidence reaches ``threshold`` (``frame_recall``), and
    ``round(sum of confidences)`` (``frame_recall_sum``).

    Args:
        confidences: ``[N, K]``; active: ``[N, S]`` bool; threshold: detection threshold.

    Returns:
        ``{"frame_recall": float, "frame_recall_sum": float}`` (NaN for N = 0).
    """
    c = np.asarray(confidences, dtype=np.float64)
    true = np.asarray(active, dtype=bool).sum(axis=1)
    if len(true) == 0:
        return {"frame_recall": float("nan"), "frame_recall_sum": float("nan")}
    by_thr = (c >= threshold).sum(axis=1)
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


def dcase_seld(
    pred,
    pred_active,
    targets,
    active,
    segment,
    threshold_deg: float = 20.0,
) -> dict[str, float]:
    """Class-agnostic location-aware detection metrics of the DCASE 2021-2023 SELD baselines.

    Frames are grouped into segments (1 s in DCASE; ``segment`` gives each frame's
    segment). Target slots are the reference tracks. In each frame the detected
    sources are matched to the active targets (Hungarian); per segment and track,
    the matched distances are averaged: a track whose mean distance is within
    ``threshold_deg`` is a true positive, otherwise a (spatial) false positive.
    The difference between the segment's maximal predicted and reference counts
    adds false positives or negatives; in a segment without any matched frame, the
    references are false negatives and the predictions false positives (the DCASE
    code counts the predictions as false negatives there, which we do not copy). Then, as in the
    baselines: ``ER = (S + D + I) / N_ref``, ``F = TP / (TP + (FP + FN) / 2)``,
    ``LE_CD`` the mean distance of matched tracks, ``LR_CD`` the share of reference
    tracks that were matched, ``SELD = mean(ER, 1 - F, LE_CD / 180, 1 - LR_CD)``.

    Args:
        pred: ``[N, K, 3]``; pred_active: ``[N, K]`` bool; targets: ``[N, S, 3]``;
        active: ``[N, S]`` bool; segment: ``[N]`` int segment index of each frame.
        threshold_deg: the spatial threshold of a true positive.

    Returns:
        ``{"ER20", "F20", "LE_CD_deg", "LR_CD", "SELD"}`` (fractions; LE_CD_deg in degrees).
    """
    ta = np.asarray(active, dtype=bool)
    pa = np.asarray(pred_active, dtype=bool)
    _, seg = np.unique(np.asarray(segment), return_inverse=True)
    seg = seg.ravel()
    n_seg, s = int(seg.max(initial=-1)) + 1, ta.shape[1]
    if n_seg == 0:
        return {k: float("nan") for k in ("ER20", "F20", "LE_CD_deg", "LR_CD", "SELD")}
    _, dist = hungarian_match(pred, pa, targets, ta)
    matched = ~np.isnan(dist)  # (N, S)
    nb_gt = np.zeros(n_seg, np.int64)
    nb_pred = np.zeros(n_seg, np.int64)
    np.maximum.at(nb_gt, seg, ta.sum(1))
    np.maximum.at(nb_pred, seg, pa.sum(1))
    cell = seg[:, None] * s + np.arange(s)[None, :]  # (N, S) track id within the segment
    tot = np.bincount(cell[matched], weights=dist[matched], minlength=n_seg * s)
    cnt = np.bincount(cell[matched], minlength=n_seg * s)
    tracks = cnt.reshape(n_seg, s) > 0
    mean_deg = (tot / np.maximum(cnt, 1)).reshape(n_seg, s) * _DEG
    n_tracks = tracks.sum(1)
    tp = (tracks & (mean_deg <= threshold_deg)).sum(1)
    fp_spatial = n_tracks - tp
    any_match = n_tracks > 0
    extra_fp = np.where(any_match, np.maximum(nb_pred - nb_gt, 0), 0)
    extra_fn = np.where(any_match, np.maximum(nb_gt - nb_pred, 0), 0)
    no_match_fn = np.where(any_match, 0, nb_gt)  # references never matched in the segment
    no_match_fp = np.where(any_match, 0, nb_pred)  # predictions never matched in the segment
    seg_fp = fp_spatial + extra_fp + no_match_fp
    seg_fn = extra_fn + no_match_fn
    n_ref = nb_gt.sum()
    subs = np.minimum(seg_fp, seg_fn).sum()
    dele = np.maximum(0, seg_fn - seg_fp).sum()
    ins = np.maximum(0, seg_fp - seg_fn).sum()
    tp_all, fp_all, fn_all = tp.sum(), seg_fp.sum(), seg_fn.sum()
    de_tp = n_tracks.sum()
    de_fn = (extra_fn + no_match_fn).sum()
    er = (subs + dele + ins) / n_ref if n_ref else float("nan")
    denom = tp_all + 0.5 * (fp_all + fn_all)
    f = tp_all / denom if denom else float("nan")
    le = float((mean_deg[tracks]).mean()) if de_tp else float("nan")
    lr = de_tp / (de_tp + de_fn) if (de_tp + de_fn) else float("nan")
    seld = float(np.mean([er, 1 - f, (le if de_tp else 180.0) / 180.0, 1 - lr]))
    return {"ER20": float(er), "F20": float(f), "LE_CD_deg": le, "LR_CD": float(lr), "SELD": seld}


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
) -> dict[str, float]:
    """Every metric of this module on one set of frames (see each function).

    Returns:
        ``{"frames", "oracle_deg", "emd_deg", "hungarian_deg", "frame_recall",
        "frame_recall_sum", "ER20", "F20", "LE_CD_deg", "LR_CD", "SELD"}``.
    """
    res = {
        "frames": int(len(active)),
        "oracle_deg": oracle_error(hyps, targets, active),
        "emd_deg": emd(hyps, confidences, targets, active),
        "hungarian_deg": hungarian_error(hyps, detected, targets, active),
    }
    res.update(frame_recall(confidences, active, threshold))
    res.update(dcase_seld(hyps, detected, targets, active, segment))
    return res
