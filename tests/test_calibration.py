"""Calibration: winner labels, ECE on hand-built cases, temperature recovers a known one."""

import numpy as np
import pytest

from ssl_toolkit.analysis import calibration as C
from ssl_toolkit.core.geometry import rad, sph_to_unit


def u(az):
    return sph_to_unit(rad(np.float64(az)), 0.0)


def test_winners_are_the_closest_valid_hypotheses():
    hyps = np.stack([[u(0), u(5), u(90)], [u(0), u(5), u(90)]])
    targets = np.stack([[u(4), u(80)], [u(4), u(80)]])
    active = np.array([[True, True], [True, False]])
    valid = np.array([[True, True, True], [True, False, True]])
    np.testing.assert_array_equal(
        C.winner_labels(hyps, targets, active, valid),
        [[False, True, True], [True, False, False]],  # frame 1: hyp 1 is invalid
    )


def test_ece_hand_computed():
    # bin [0.8, 0.9): two at 0.85, one winner -> gap 0.35; bin [0.2, 0.3): two at 0.25, none
    conf = np.array([[0.85, 0.85, 0.25, 0.25]])
    labels = np.array([[True, False, False, False]])
    r = C.reliability(conf, labels, bins=10)
    assert r["ece"] == pytest.approx((2 * 0.35 + 2 * 0.25) / 4)
    assert r["count"][8] == 2 and r["frequency"][8] == pytest.approx(0.5)


def test_temperature_recovers_an_overconfident_model():
    """Winners drawn with probability sigmoid(z); the model reports sigmoid(3 z)."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, (20000, 1))
    labels = rng.random(z.shape) < 1 / (1 + np.exp(-z))
    conf = 1 / (1 + np.exp(-3 * z))
    t = C.fit_temperature(conf, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    before = C.reliability(conf, labels)["ece"]
    after = C.reliability(C.apply_temperature(conf, t), labels)["ece"]
    assert after < 0.02 < before
