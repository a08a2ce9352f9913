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
