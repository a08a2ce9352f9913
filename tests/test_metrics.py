"""Hand-computed cases for ssl_toolkit.analysis.metrics, and exactness against POT / scipy."""

import dcase_reference as R
import numpy as np
import pytest

from ssl_toolkit.analysis import metrics as M
from ssl_toolkit.core.geometry import great_circle, rad, sph_to_unit
from ssl_toolkit.testing import random_directions


def u(az_deg, el_deg=0.0):
    """Unit vector of a direction in degrees."""
    return sph_to_unit(rad(np.float64(az_deg)), rad(np.float64(el_deg)))


def test_oracle_error_hand_computed():
    # frame 0: targets at 0 and 90 deg, hyps at 10, 100, 180 -> closest 10 and 10
    # frame 1: one target at 0 deg, el 30; hyp at el 0 -> 30; second slot inactive
    # frame 2: no active target -> skipped
    hyps = np.stack([[u(10), u(100), u(180)], [u(0), u(0), u(0)], [u(0), u(5), u(7)]])
    targets = np.stack([[u(0), u(90)], [u(0, 30), u(45)], [u(0), u(0)]])
    active = np.array([[True, True], [True, False], [False, False]])
    assert M.oracle_error(hyps, targets, active) == pytest.approx((10 + 10 + 30) / 3, abs=1e-6)
    assert np.isnan(M.oracle_error(hyps, targets, np.zeros((3, 2), bool)))


def test_emd_one_target_is_weighted_mean_distance():
    hyps = np.stack([[u(0), u(90), u(180)]])
    targets = np.stack([[u(0), u(0)]])
    conf = np.array([[2.0, 1.0, 1.0]])  # normalized: 0.5, 0.25, 0.25
    active = np.array([[True, False]])
    assert M.emd(hyps, conf, targets, active) == pytest.approx(0.25 * 90 + 0.25 * 180)


def test_emd_two_targets_hand_computed():
    # targets at 0 and 90 deg (mass 1/2 each); hyps at 0 (w 0.75) and 90 (w 0.25):
    # 0.5 of hyp 0 -> target 0 (0 deg), 0.25 of hyp 0 -> target 90 (90 deg), hyp 1 -> 90 (0)
    hyps = np.stack([[u(0), u(90)]])
    targets = np.stack([[u(0), u(90)]])
    conf = np.array([[0.75, 0.25]])
    got = M.emd(hyps, conf, targets, np.array([[True, True]]))
    assert got == pytest.approx(0.25 * 90)


def test_emd_three_targets_hand_computed():
    # targets on the equator at 0, 120, -120; one hyp on each, equal weights -> 0;
    # all weight on the hyp at 0 -> (0 + 120 + 120) / 3
    hyps = np.stack([[u(0), u(120), u(-120)], [u(0), u(120), u(-120)]])
    targets = np.stack([[u(0), u(120), u(-120)]] * 2)
    conf = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    got = M.emd_per_frame(hyps, conf, targets, np.ones((2, 3), bool))
    np.testing.assert_allclose(got, [0.0, 80.0], atol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_emd_exact_against_pot(rng, k):
    import ot

    n, s = 400, 4
    hyps, targets = random_directions(rng, (n, k)), random_directions(rng, (n, s))
    conf = rng.random((n, k)) * (rng.random((n, k)) > 0.2)
    active = rng.random((n, s)) < 0.5
    got = M.emd_per_frame(hyps, conf, targets, active)
    for i in range(n):
        if not active[i].any():
            assert np.isnan(got[i])
            continue
        t = targets[i][active[i]].astype(np.float64)
        p = conf[i] / conf[i].sum() if conf[i].sum() > 0 else np.full(k, 1 / k)
        cost = great_circle(hyps[i][:, None].astype(np.float64), t[None])
        ref = ot.emd2(p, np.full(len(t), 1 / len(t)), cost) * 180 / np.pi
        assert got[i] == pytest.approx(ref, abs=1e-7)


def test_hungarian_error_hand_computed():
    # targets 0 and 90; detected 80 and 5 (and an undetected one at 90):
    # matching 0<->5, 90<->80 -> mean (5 + 10) / 2
    pred = np.stack([[u(80), u(5), u(90)], [u(0), u(0), u(0)]])
    pred_active = np.array([[True, True, False], [False, False, False]])
    targets = np.stack([[u(0), u(90)], [u(0), u(0)]])
    active = np.array([[True, True], [True, False]])  # frame 1: nothing detected -> skipped
    assert M.hungarian_error(pred, pred_active, targets, active) == pytest.approx(7.5)
    match, _ = M.hungarian_match(pred, pred_active, targets, active)
    np.testing.assert_array_equal(match, [[1, 0], [-1, -1]])


@pytest.mark.parametrize("k", [2, 5])
def test_hungarian_matches_scipy(rng, k):
    from scipy.optimize import linear_sum_assignment

    n, s = 300, 3
    pred, targets = random_directions(rng, (n, k)), random_directions(rng, (n, s))
    pa, ta = rng.random((n, k)) < 0.6, rng.random((n, s)) < 0.6
    _, dist = M.hungarian_match(pred, pa, targets, ta)
    for i in range(n):
        ts, ks = np.flatnonzero(ta[i]), np.flatnonzero(pa[i])
        if len(ts) == 0 or len(ks) == 0:
            assert np.isnan(dist[i]).all()
            continue
        c = great_circle(targets[i][ts][:, None].astype(float), pred[i][ks][None].astype(float))
        r, cc = linear_sum_assignment(c)
        assert np.nansum(dist[i]) == pytest.approx(c[r, cc].sum(), abs=1e-9)
        assert (~np.isnan(dist[i])).sum() == min(len(ts), len(ks))


def test_frame_recall_both_counts():
    conf = np.array([[0.9, 0.6, 0.1], [0.4, 0.4, 0.4], [0.9, 0.0, 0.0], [0.2, 0.2, 0.0]])
    active = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    # by threshold: counts 2, 0, 1, 0 vs true 2, 2, 1, 0 -> 3/4
    # by round(sum): 2 (1.6), 1 (1.2), 1 (0.9), 0 (0.4) -> 3/4
    r = M.frame_recall(conf, active, threshold=0.5)
    assert r["frame_recall"] == pytest.approx(0.75)
    assert r["frame_recall_sum"] == pytest.approx(0.75)
    r = M.frame_recall(conf, active, threshold=0.35)  # counts 2, 3, 1, 0
    assert r["frame_recall"] == pytest.approx(0.75)


# --- DCASE SELD: hand-computed cases, then equality with the official algorithm -------------
# tests/dcase_reference.py transcribes the DCASE 2023 baseline's SELDMetrics loop by loop.
# Notation: TP, FP (extra predictions), FP_sp (matched tracks farther than 20 deg on
# average: counted at full weight, not in FP), FN; F = TP / (TP + FP_sp + (FP + FN) / 2),
# ER = (S + D + I) / N_ref, LE = mean over matched tracks of their mean distance,
# LR = DE_TP / (DE_TP + DE_FN), SELD = mean(ER, 1 - F, LE / 180, 1 - LR); the eps of the
# official code changes nothing at 1e-9 (pytest.approx).


def test_dcase_seld_hand_computed():
    # two segments of 2 frames, one target slot in use, K = 2.
    # segment 0: target at 0 deg in both frames; detected hyp at 10 and 20 -> mean 15 <= 20: TP
    # segment 1: target at 0 deg; detected hyp at 30 and 50 -> mean 40 > 20: FP_sp = 1;
    #            plus a second detected hyp in frame 3: nb_pred 2 > nb_gt 1 -> FP = 1
    pred = np.stack([[u(10), u(0)], [u(20), u(0)], [u(30), u(0)], [u(50), u(170)]])
    pa = np.array([[1, 0], [1, 0], [1, 0], [1, 1]], bool)
    targets = np.stack([[u(0), u(0)]] * 4)
    ta = np.array([[1, 0]] * 4, bool)
    seg = np.array([0, 0, 1, 1])
    r = M.dcase_seld(pred, pa, targets, ta, seg)
    # frame 3: Hungarian keeps the 50 deg hyp (closer than 170); LE = (15 + 40) / 2
    assert r["LE_CD_deg"] == pytest.approx(27.5)
    # DE_TP = 2 tracks, DE_FN = 0 -> LR = 1
    assert r["LR_CD"] == pytest.approx(1.0)
    # TP 1, FP_sp 1, FP 1, FN 0 -> F = 1 / (1 + 1 + 0.5 * (1 + 0)) = 0.4
    assert r["F20"] == pytest.approx(0.4)
    # seg 1: loc_FP = 1 + 1, loc_FN = 0 -> I = 2; N_ref = 1 + 1 -> ER = 2 / 2
    assert r["ER20"] == pytest.approx(1.0)
    assert r["SELD"] == pytest.approx((1.0 + 0.6 + 27.5 / 180 + 0.0) / 4)


def test_dcase_seld_misses_count_as_false_negatives():
    pred = np.stack([[u(0)], [u(0)]])
    pa = np.zeros((2, 1), bool)
    targets = np.stack([[u(0)], [u(0)]])
    ta = np.ones((2, 1), bool)
    r = M.dcase_seld(pred, pa, targets, ta, np.array([0, 1]))
    # each segment: reference only -> FN 1, D 1; N_ref 2 -> ER 2 / 2; F = 0 / (0.5 * 2)
    assert r["ER20"] == pytest.approx(1.0)
    assert r["F20"] == pytest.approx(0.0)
    # no matched track: LR = 0 / (0 + 2), LE = 180 by convention
    assert r["LR_CD"] == pytest.approx(0.0)
    assert r["LE_CD_deg"] == pytest.approx(180.0)
    assert r["SELD"] == pytest.approx((1.0 + 1.0 + 1.0 + 1.0) / 4)


def test_dcase_seld_track_is_the_position_in_the_frame_list():
    # one segment of 2 frames, 2 target slots, one prediction per frame.
    # frame 0: slots 0 (0 deg) and 1 (90 deg) sound; the prediction at 95 matches slot 1,
    #          which is reference number 1 of the frame: track 1 gets 5 deg
    # frame 1: only slot 1 (90 deg) sounds, now reference number 0 of the frame; the
    #          prediction at 130 matches it: track 0 gets 40 deg
    # official: track 1 mean 5 -> TP, track 0 mean 40 -> FP_sp; nb_gt 2 > nb_pred 1 -> FN 1
    # (by slot, slot 1 would be ONE track of mean 22.5 -> FP_sp, and F = 0, LR = 1/2)
    pred = np.stack([[u(95)], [u(130)]])
    pa = np.ones((2, 1), bool)
    targets = np.stack([[u(0), u(90)], [u(0), u(90)]])
    ta = np.array([[1, 1], [0, 1]], bool)
    r = M.dcase_seld(pred, pa, targets, ta, np.array([0, 0]))
    # F = 1 / (1 + 1 + 0.5 * (0 + 1)) = 0.4
    assert r["F20"] == pytest.approx(0.4)
    # LE = (5 + 40) / 2 tracks; LR = DE_TP 2 / (2 + DE_FN 1)
    assert r["LE_CD_deg"] == pytest.approx(22.5)
    assert r["LR_CD"] == pytest.approx(2 / 3)
    # loc_FP 1 (FP_sp), loc_FN 1 -> S 1; N_ref 2 -> ER 0.5
    assert r["ER20"] == pytest.approx(0.5)
    assert r["SELD"] == pytest.approx((0.5 + 0.6 + 22.5 / 180 + 1 / 3) / 4)


def test_dcase_seld_present_in_both_but_never_in_the_same_frame():
    # segment 0 (frames 0-1): two references (0 and 90 deg) in frame 0, nothing predicted;
    #   one prediction (at 0 deg) in frame 1, no reference. nb_gt 2, nb_pred 1, no shared
    #   frame: the official counts nb_pred = 1 (sic, not 2) false negative and no FP:
    #   loc_FN 1 -> D 1; N_ref += 2
    # segment 1 (frame 2): reference at 0, prediction at 5 -> TP, LE 5; N_ref += 1
    pred = np.stack([[u(0)], [u(0)], [u(5)]])
    pa = np.array([[0], [1], [1]], bool)
    targets = np.stack([[u(0), u(90)], [u(0), u(90)], [u(0), u(90)]])
    ta = np.array([[1, 1], [0, 0], [1, 0]], bool)
    r = M.dcase_seld(pred, pa, targets, ta, np.array([0, 0, 1]))
    # ER = (S 0 + D 1 + I 0) / 3
    assert r["ER20"] == pytest.approx(1 / 3)
    # F = TP 1 / (1 + 0 + 0.5 * (FP 0 + FN 1)) = 2/3
    assert r["F20"] == pytest.approx(2 / 3)
    # LE = 5 / 1 track; LR = DE_TP 1 / (1 + DE_FN 1)
    assert r["LE_CD_deg"] == pytest.approx(5.0)
    assert r["LR_CD"] == pytest.approx(0.5)
    assert r["SELD"] == pytest.approx((1 / 3 + 1 / 3 + 5 / 180 + 0.5) / 4)


def test_dcase_seld_class_aware_macro_and_micro():
    # one frame, 3 classes. references: class 0 at 0 deg, class 1 at 90 deg;
    # predictions: class 0 at 10 deg, class 2 at 90 deg (wrong class).
    # class 0: TP (10 deg); class 1: reference only, FN 1; class 2: prediction only, FP 1
    # loc_FP 1, loc_FN 1 -> S 1; N_ref 2 -> ER 0.5
    pred = np.stack([[u(10), u(90)]])
    pa = np.ones((1, 2), bool)
    targets = np.stack([[u(0), u(90)]])
    ta = np.ones((1, 2), bool)
    cls = dict(target_class=np.array([[0, 1]]), pred_class=np.array([[0, 2]]), n_classes=3)
    r = M.dcase_seld(pred, pa, targets, ta, np.array([0]), **cls)
    # macro: F_c = 1, 0 / (0.5 * 1), 0 / (0.5 * 1); LE_c = 10, 180, 180; LR_c = 1, 0 / 1, 0 / eps
    assert r["ER20"] == pytest.approx(0.5)
    assert r["F20"] == pytest.approx(1 / 3)
    assert r["LE_CD_deg"] == pytest.approx((10 + 180 + 180) / 3)
    assert r["LR_CD"] == pytest.approx(1 / 3)
    seld_c = [(0.5 + 0 + 10 / 180 + 0) / 4, (0.5 + 1 + 1 + 1) / 4, (0.5 + 1 + 1 + 1) / 4]
    assert r["SELD"] == pytest.approx(np.mean(seld_c))
    # micro: TP 1, FP 1, FN 1 -> F = 1 / (1 + 0.5 * 2); LE = 10 / 1; LR = 1 / (1 + 1)
    r = M.dcase_seld(pred, pa, targets, ta, np.array([0]), **cls, average="micro")
    assert (r["ER20"], r["F20"], r["LE_CD_deg"], r["LR_CD"]) == pytest.approx((0.5, 0.5, 10, 0.5))
    assert r["SELD"] == pytest.approx((0.5 + 0.5 + 10 / 180 + 0.5) / 4)
    # class-agnostic: Hungarian pairs 0<->10 and 90<->90 -> 2 TP, LE = (10 + 0) / 2
    r = M.dcase_seld(pred, pa, targets, ta, np.array([0]))
    assert (r["ER20"], r["F20"], r["LE_CD_deg"], r["LR_CD"]) == pytest.approx((0, 1, 5, 1))


def test_dcase_seld_rejects_bad_arguments():
    pred, pa = np.stack([[u(0)]]), np.ones((1, 1), bool)
    args = (pred, pa, pred, pa, np.array([0]))
    with pytest.raises(ValueError, match="both"):
        M.dcase_seld(*args, target_class=np.zeros((1, 1), int))
    with pytest.raises(ValueError, match="average"):
        M.dcase_seld(*args, average="weighted")
    with pytest.raises(ValueError, match="n_classes"):
        M.dcase_seld(*args, target_class=[[3]], pred_class=[[0]], n_classes=3)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _scene(seed, s, k, n_classes, n_clips=4):
    """Random clips: S persistent sources (1-2 events each, ~1 deg jitter per frame);
    hypothesis j follows source j % S with an error scale of its own (2 to 35 deg: some
    tracks TP, some spatial FP), is detected 85 % of the time the source sounds, plus
    spurious random detections; predicted classes are right 85 % of the time.

    Returns the arrays of ``dcase_seld`` (keyword ``segment``: 10-frame segments per
    clip, the last one partial) and the clips in the official frame-wise format.
    """
    rng = np.random.default_rng(seed)
    parts, clips = [], []
    for c in range(n_clips):
        f = int(rng.integers(25, 56))
        ta = np.zeros((f, s), bool)
        for j in range(s):
            for _ in range(int(rng.integers(1, 3))):
                a = int(rng.integers(0, f))
                ta[a : a + int(rng.integers(2, 25)), j] = True
        base = random_directions(rng, (1, s)).astype(np.float64)
        t = _unit(base + 0.02 * rng.standard_normal((f, s, 3)))
        tc = np.broadcast_to(rng.integers(0, n_classes, s), (f, s))
        src = np.arange(k) % s
        scale = rng.choice([0.03, 0.15, 0.3, 0.6], k)[None, :, None]
        p = _unit(t[:, src] + scale * rng.standard_normal((f, k, 3)))
        spurious = rng.random((f, k)) < 0.08
        p[spurious] = random_directions(rng, (int(spurious.sum()),))
        pa = (ta[:, src] & (rng.random((f, k)) < 0.85)) | spurious
        pc = np.where(rng.random((f, k)) < 0.85, tc[:, src], rng.integers(0, n_classes, (f, k)))
        parts.append((np.full(f, c), np.arange(f), p, pa, t, ta, tc, pc))
        clips.append((R.frame_dict(t, ta, tc), R.frame_dict(p, pa, pc), f))
    clip, frame, p, pa, t, ta, tc, pc = (np.concatenate(x) for x in zip(*parts, strict=True))
    arrays = dict(pred=p, pred_active=pa, targets=t, active=ta, target_class=tc, pred_class=pc)
    arrays["segment"] = M.segment_ids(clip, frame, 10)
    return arrays, clips


def _assert_official(got, want, no_reference=False):
    for key, value in want.items():
        if no_reference and key in ("ER20", "SELD"):  # official: (S + D + I) / eps
            assert np.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-9), key


def _check(arrays, clips, n_classes=None, average="macro", no_reference=False):
    """dcase_seld (class-agnostic when n_classes is None) against the transcription."""
    a = dict(arrays)
    if n_classes is None:
        a.pop("target_class"), a.pop("pred_class")
        clips = R.one_class(clips)
    else:
        a.update(n_classes=n_classes, average=average)
    ev = R.official_metrics(clips, 10, n_classes or 1, average=average)
    _assert_official(M.dcase_seld(**a), R.scores(ev), no_reference)
    return ev


_SK = [(1, 2), (2, 1), (3, 3), (1, 4), (2, 5), (3, 5)]  # (S, K) per seed


@pytest.mark.parametrize("seed", range(6))
def test_dcase_seld_equals_the_official_class_agnostic(seed):
    ev = _check(*_scene(seed, *_SK[seed], 1))
    assert ev._Nref.sum() > 0 and ev._DE_TP.sum() > 0


@pytest.mark.parametrize("average", ["macro", "micro"])
@pytest.mark.parametrize("seed", range(6))
def test_dcase_seld_equals_the_official_class_aware(seed, average):
    _check(*_scene(100 + seed, *_SK[seed], 3), n_classes=3, average=average)


def test_dcase_seld_random_scenes_cover_every_branch():
    """Over the class-aware seeds: TP and spatial FP tracks, extra predictions and misses,
    and several references of one class in a frame (track positions that differ from slots)."""
    tot = {"TP": 0, "FP_spatial": 0, "FP": 0, "FN": 0}
    shifted = 0
    for seed in range(6):
        arrays, clips = _scene(100 + seed, *_SK[seed], 3)
        ev = R.official_metrics(clips, 10, 3)
        for name in tot:
            tot[name] += getattr(ev, f"_{name}").sum()
        ta, tc = arrays["active"], arrays["target_class"]
        same = (ta[:, :, None] & ta[:, None, :]) & (tc[:, :, None] == tc[:, None, :])
        shifted += int((same.sum((1, 2)) > ta.sum(1)).sum())
    assert all(v > 0 for v in tot.values()), tot
    assert shifted > 0


def _edge_clip():
    """One clip of 50 frames, 3 classes, S = 2 slots, K = 3, every segment a special case.

    seg 0 (0-9): nothing. seg 1 (10-19): class 0 referenced (10-14), nothing predicted.
    seg 2 (20-29): class 1 predicted (22-25), no reference. seg 3 (30-39): class 0
    referenced in 30-32 and predicted in 35-38 (twice in 36): never the same frame.
    seg 4 (40-49): class 0 TP, class 1 spatial FP, class 2 only predicted (never matched).
    """
    n, s, k = 50, 2, 3
    t = np.broadcast_to(np.stack([u(0), u(90)]), (n, s, 3)).copy()
    p = np.broadcast_to(np.stack([u(3), u(140), u(200)]), (n, k, 3)).copy()
    ta, pa = np.zeros((n, s), bool), np.zeros((n, k), bool)
    tc, pc = np.tile([0, 1], (n, 1)), np.tile([0, 1, 2], (n, 1))
    ta[10:15, 0] = True
    pa[22:26, 1] = True
    ta[30:33, 0] = True
    pa[35:39, 0] = True
    pa[36, 1], pc[36, 1] = True, 0
    ta[40:50] = True
    pa[40:50, :2] = True
    pa[45:48, 2] = True
    arrays = dict(pred=p, pred_active=pa, targets=t, active=ta, target_class=tc, pred_class=pc)
    arrays["segment"] = np.arange(n) // 10
    clips = [(R.frame_dict(t, ta, tc), R.frame_dict(p, pa, pc), n)]
    return arrays, clips


@pytest.mark.parametrize("n_classes", [None, 3])
@pytest.mark.parametrize("average", ["macro", "micro"])
def test_dcase_seld_equals_the_official_on_edge_cases(n_classes, average):
    arrays, clips = _edge_clip()
    ev = _check(arrays, clips, n_classes, average)
    if n_classes == 3:
        assert ev._DE_TP[2] == 0 and ev._FP_spatial[1] == 1 and ev._TP[0] == 1  # LE_2 = 180
    # every prediction off; every reference off
    off = dict(arrays, pred_active=np.zeros_like(arrays["pred_active"]))
    clips_off = [(g, {}, m) for g, _, m in clips]
    _check(off, clips_off, n_classes, average)
    off = dict(arrays, active=np.zeros_like(arrays["active"]))
    clips_off = [({}, p, m) for _, p, m in clips]
    _check(off, clips_off, n_classes, average, no_reference=True)


@pytest.mark.parametrize("n_classes", [None, 3])
def test_dcase_seld_equals_the_official_without_predictions(n_classes):
    arrays, clips = _scene(7, 3, 5, 3)
    arrays["pred_active"] = np.zeros_like(arrays["pred_active"])
    clips = [(g, {}, n) for g, _, n in clips]
    _check(arrays, clips, n_classes)
    r = M.dcase_seld(**{k: v for k, v in arrays.items() if not k.endswith("class")})
    assert (r["F20"], r["LE_CD_deg"], r["LR_CD"]) == (0.0, 180.0, 0.0)


def test_dcase_seld_without_frames_is_nan():
    z = np.zeros((0, 2, 3))
    r = M.dcase_seld(z, np.zeros((0, 2), bool), z, np.zeros((0, 2), bool), np.zeros(0, int))
    assert all(np.isnan(v) for v in r.values())


def test_dcase_seld_official_normalization_is_negligible():
    """The official distance divides by sqrt(|v|^2 + 1e-10): angles move by ~1e-10 / tan."""
    arrays, clips = _scene(3, 3, 5, 1)
    arrays.pop("target_class"), arrays.pop("pred_class")
    want = R.scores(R.official_metrics(R.one_class(clips), 10, 1, norm_eps=1e-10))
    got = M.dcase_seld(**arrays)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-4), key


def test_subset_masks_and_segments():
    active = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)
    m = M.subset_masks(active, np.array(["ov3", "ov2", "ov1"]))
    np.testing.assert_array_equal(m["D1"], [False, False, True])
    m = M.subset_masks(active)
    np.testing.assert_array_equal(m["D3"], [False, False, True])
    seg = M.segment_ids(np.array(["a", "a", "a", "b"]), np.array([0, 49, 50, 0]), 50)
    assert seg[0] == seg[1] != seg[2] and seg[3] not in (seg[0], seg[2])


@pytest.mark.parametrize("k", [1, 5])
def test_chance_oracle_matches_the_closed_form(k):
    """K uniform directions: P(min angle > x) = ((1 + cos x) / 2)^K, so
    E[min angle] = integral_0^pi ((1 + cos x) / 2)^K dx (90 degrees for K = 1)."""
    x = np.linspace(0, np.pi, 200001)
    want = np.degrees(np.trapezoid(((1 + np.cos(x)) / 2) ** k, x))
    rng = np.random.default_rng(1)
    t = rng.standard_normal((20000, 2, 3))
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    active = np.ones((20000, 2), bool)
    assert M.chance_oracle_error(t, active, k, seed=3) == pytest.approx(want, abs=0.6)


def test_invalid_slots_are_ignored_and_empty_frames_are_misses():
    """A baseline that fills one slot of three: the metrics see that slot only."""
    targets = np.stack([[u(0)], [u(0)]])  # (2, 1, 3)
    active = np.ones((2, 1), bool)
    # slot 0 is the estimate (30 deg off); slots 1, 2 are placeholders at the target itself
    hyps = np.stack([[u(30), u(0), u(0)], [u(90), u(0), u(0)]])
    conf = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    valid = np.array([[True, False, False], [False, False, False]])
    # frame 0: 30 deg; frame 1: no estimate at all -> a miss, 180 deg
    assert M.oracle_error(hyps, targets, active, valid) == pytest.approx((30 + 180) / 2)
    assert M.oracle_error(hyps, targets, active) == pytest.approx(0.0)  # placeholders counted
    # EMD: undefined without an estimate (no mass): left out and counted, not 180
    np.testing.assert_allclose(M.emd_per_frame(hyps, conf, targets, active, valid), [30, np.nan])
    assert M.emd(hyps, conf, targets, active, valid) == pytest.approx(30)
    assert M.emd_excluded(active, valid) == 1 and M.emd_excluded(active, None) == 0
    # zero confidences on the valid slots: uniform weights over the valid ones only
    both = np.array([[True, True, False], [True, False, False]])
    zero = np.zeros((2, 3))
    np.testing.assert_allclose(M.emd_per_frame(hyps, zero, targets, active, both), [15, 90])
    r = M.frame_recall(np.ones((2, 3)), active, 0.5, valid)
    assert r["frame_recall"] == pytest.approx(0.5)  # counts 1 and 0 vs true 1 and 1
