"""Hand-computed cases for ssl_toolkit.metrics, and exactness against POT / scipy."""

import numpy as np
import pytest

from ssl_toolkit import metrics as M
from ssl_toolkit.geometry import great_circle, rad, sph_to_unit
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


def test_dcase_seld_hand_computed():
    # two segments of 2 frames, one target slot in use, K = 2.
    # segment 0: target at 0 deg in both frames; detected hyp at 10 and 20 -> mean 15 <= 20: TP
    # segment 1: target at 0 deg; detected hyp at 30 and 50 -> mean 40 > 20: spatial FP;
    #            plus a second detected hyp in frame 3 -> 1 extra FP (2 predicted vs 1 ref)
    pred = np.stack([[u(10), u(0)], [u(20), u(0)], [u(30), u(0)], [u(50), u(170)]])
    pa = np.array([[1, 0], [1, 0], [1, 0], [1, 1]], bool)
    targets = np.stack([[u(0), u(0)]] * 4)
    ta = np.array([[1, 0]] * 4, bool)
    seg = np.array([0, 0, 1, 1])
    r = M.dcase_seld(pred, pa, targets, ta, seg)
    # frame 3: Hungarian keeps the 50 deg hyp (closer than 170)
    assert r["LE_CD_deg"] == pytest.approx((15 + 40) / 2)
    assert r["LR_CD"] == pytest.approx(1.0)
    # TP 1, FP 2 (spatial + extra), FN 0 -> F = 1 / (1 + 1) ; ER: seg1 S=0, I=2 -> 2/2
    assert r["F20"] == pytest.approx(0.5)
    assert r["ER20"] == pytest.approx(1.0)
    assert r["SELD"] == pytest.approx(np.mean([1.0, 0.5, 27.5 / 180, 0.0]))


def test_dcase_seld_misses_count_as_false_negatives():
    pred = np.stack([[u(0)], [u(0)]])
    pa = np.zeros((2, 1), bool)
    targets = np.stack([[u(0)], [u(0)]])
    ta = np.ones((2, 1), bool)
    r = M.dcase_seld(pred, pa, targets, ta, np.array([0, 1]))
    assert r["ER20"] == pytest.approx(1.0)
    assert r["F20"] == pytest.approx(0.0)
    assert r["LR_CD"] == pytest.approx(0.0)


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
