"""Threshold choice: hand-built cases where 0.5 is wrong and the learned thresholds are not."""

import numpy as np
import pytest

from ssl_toolkit.analysis import thresholds as TH
from ssl_toolkit.testing import random_directions


@pytest.fixture
def shy_model():
    """Correct hypotheses have confidences in [0.25, 0.35], wrong ones in [0, 0.15]."""
    rng = np.random.default_rng(0)
    n, k = 400, 3
    targets = random_directions(rng, (n, 1))
    hyps = random_directions(rng, (n, k))
    hyps[:, 0] = targets[:, 0]  # hypothesis 0 is right, the others random
    conf = rng.uniform(0.0, 0.15, (n, k))
    conf[:, 0] = rng.uniform(0.25, 0.35, n)
    active = np.ones((n, 1), bool)
    active[::4] = False  # some silent frames
    conf[::4, 0] = rng.uniform(0.0, 0.15, len(conf[::4]))
    segment = np.arange(n) // 10
    return conf, hyps, targets, active, segment


def test_sgl_learns_a_threshold_between_the_classes(shy_model):
    conf, hyps, targets, active, segment = shy_model
    for seg in (None, segment):  # frame-level and 1 s segments
        t = TH.learn_threshold_sgl(conf, hyps, targets, active, seg)
        assert 0.15 - 1e-9 <= t <= 0.25 + 1e-9  # every wrong one < 0.15, right ones >= 0.25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sgl_matches_the_grid_on_rmcl_like_predictions(seed):
    """K = 5 hypotheses, some near the 1-3 sources with higher confidences, the rest spread
    with lower ones; 1 s segments. SGL's validation F20 is the grid's or better (the grid
    tries 0.05, 0.10, ..., 0.95)."""
    rng = np.random.default_rng(seed)
    n, k, s = 1500, 5, 3
    targets = random_directions(rng, (n // 50, s)).repeat(50, axis=0)  # static per segment
    active = (np.arange(s)[None] < rng.integers(1, 4, n // 50)[:, None]).repeat(50, axis=0)
    hyps = random_directions(rng, (n, k))
    near = rng.random((n, k)) < 0.6
    which = rng.integers(0, s, (n, k))
    noisy = targets[np.arange(n)[:, None], which] + rng.normal(0, 0.15, (n, k, 3))
    hyps[near] = noisy[near]
    hyps /= np.linalg.norm(hyps, axis=-1, keepdims=True)
    ok = near & active[np.arange(n)[:, None], which]
    conf = np.clip(
        np.where(ok, rng.normal(0.62, 0.15, (n, k)), rng.normal(0.4, 0.15, (n, k))), 0, 1
    )
    segment = np.arange(n) // 50
    res = TH.compare_thresholds(conf, hyps, targets, active, segment)
    assert res["sgl"]["F20"] >= res["grid"]["F20"] - 0.005, res
    assert (
        res["sgl"]["F20"] > res["fixed"]["F20"] - 1e-9 or res["fixed"]["F20"] >= res["grid"]["F20"]
    )


def test_compare_thresholds_grid_and_sgl_beat_fixed(shy_model):
    res = TH.compare_thresholds(*shy_model)
    assert res["fixed"]["threshold"] == 0.5 and res["fixed"]["F20"] == pytest.approx(0.0)
    assert 0.15 - 1e-9 <= res["grid"]["threshold"] <= 0.25 + 1e-9  # wrong ones are < 0.15
    assert res["grid"]["F20"] > 0.9 and res["sgl"]["F20"] > 0.9


def _two_peaks(n_seg: int = 60, seed: int = 0):
    """Right hypotheses: confidences in a narrow band [0.80, 0.84]; wrong ones spread below
    0.8 and in [0.30, 0.34] (a trap: thresholds 0.30-0.34 admit them). The F20 has its
    best between 0.76 and 0.80, far from SGL's fixed starts' basins around 0.1-0.5."""
    rng = np.random.default_rng(seed)
    n, k = n_seg * 10, 4
    targets = random_directions(rng, (n, 1))
    hyps = random_directions(rng, (n, k))
    hyps[:, 0] = targets[:, 0]
    conf = rng.uniform(0.0, 0.76, (n, k))
    conf[:, 1] = rng.uniform(0.30, 0.34, n)
    conf[:, 0] = rng.uniform(0.80, 0.84, n)
    return conf, hyps, targets, np.ones((n, 1), bool), np.arange(n) // 10


def test_sgl_is_never_below_the_grid_when_it_moves_away_from_the_default():
    """Starts come from an exact scan too: SGL's F20 is at least the grid's whenever it
    keeps a learned threshold (a climb from fixed starts alone can stay in another basin)."""
    conf, hyps, targets, active, seg = _two_peaks()
    res = TH.compare_thresholds(conf, hyps, targets, active, seg)
    assert res["sgl"]["threshold"] != 0.5
    assert res["sgl"]["F20"] >= res["grid"]["F20"] - 1e-12
    assert 0.76 - 1e-9 <= res["sgl"]["threshold"] <= 0.80 + 1e-9
    assert res["sgl"]["F20"] == pytest.approx(1.0)


def test_sgl_keeps_the_default_for_a_gain_within_noise():
    """A learned threshold must gain at least min_gain over 0.5 on val to replace it."""
    rng = np.random.default_rng(1)
    n_seg, k = 200, 3
    n = n_seg * 10
    targets = random_directions(rng, (n, 1))
    hyps = random_directions(rng, (n, k))
    hyps[:, 0] = targets[:, 0]
    conf = rng.uniform(0.0, 0.45, (n, k))
    conf[:, 0] = rng.uniform(0.52, 0.56, n)  # right ones
    conf[0, 2] = 0.505  # one wrong hypothesis above 0.5 in one of 200 segments
    active, seg = np.ones((n, 1), bool), np.arange(n) // 10
    f_half = TH.best_threshold([0.5], conf, hyps, targets, active, seg)[1]
    t_best, f_best = TH.grid_threshold(conf, hyps, targets, active, seg, grid=[0.5, 0.51])
    assert t_best == 0.51 and 0 < f_best - f_half < 0.005  # the setup: a tiny gain exists
    t, f = TH.sgl_search(conf, hyps, targets, active, seg)
    assert t == 0.5 and f == pytest.approx(f_half)
    t, f = TH.sgl_search(conf, hyps, targets, active, seg, min_gain=0.0)
    assert 0.505 < t <= 0.52 and f == pytest.approx(1.0)
