"""Geometry on hand-computed cases, numpy and torch alike."""

import math

import numpy as np
import pytest
import torch

from ssl_toolkit.core.geometry import great_circle, sph_to_unit, unit_to_sph, wrap_azimuth

D = math.pi / 180


@pytest.mark.parametrize(
    "az_deg, el_deg, expected",
    [
        (0, 0, (1, 0, 0)),  # front
        (90, 0, (0, 1, 0)),  # left
        (-90, 0, (0, -1, 0)),  # right
        (180, 0, (-1, 0, 0)),  # back
        (0, 90, (0, 0, 1)),  # up
        (45, 0, (math.sqrt(0.5), math.sqrt(0.5), 0)),
        (0, 30, (math.sqrt(3) / 2, 0, 0.5)),
        (90, -60, (0, 0.5, -math.sqrt(3) / 2)),
    ],
)
def test_sph_to_unit_dcase_frame(az_deg, el_deg, expected):
    u = sph_to_unit(az_deg * D, el_deg * D)
    np.testing.assert_allclose(u, expected, atol=1e-6)
    ut = sph_to_unit(torch.tensor(az_deg * D, dtype=torch.float64), torch.tensor(el_deg * D))
    np.testing.assert_allclose(ut.numpy(), expected, atol=1e-6)


def test_round_trip_and_azimuth_range(rng):
    az = rng.uniform(-math.pi, math.pi, 1000)
    el = rng.uniform(-math.pi / 2 + 1e-3, math.pi / 2 - 1e-3, 1000)
    az2, el2 = unit_to_sph(sph_to_unit(az, el))
    np.testing.assert_allclose(np.cos(az2 - az), 1, atol=1e-9)
    np.testing.assert_allclose(el2, el, atol=1e-9)
    # Exactly behind is +pi, never -pi: azimuth lives in (-pi, pi].
    az_back, _ = unit_to_sph(np.array([-1.0, -0.0, 0.0]))
    assert az_back == pytest.approx(math.pi)
    t_back, _ = unit_to_sph(torch.tensor([-1.0, -0.0, 0.0]))
    assert float(t_back) == pytest.approx(math.pi)


def test_unit_to_sph_normalizes_length():
    az, el = unit_to_sph(np.array([0.0, 3.0, 3.0]))
    assert az == pytest.approx(math.pi / 2)
    assert el == pytest.approx(math.pi / 4)


@pytest.mark.parametrize(
    "a, b, expected_deg",
    [
        ((0, 0), (90, 0), 90),  # on the equator
        ((0, 0), (0, 90), 90),  # to the pole
        ((170, 0), (-170, 0), 20),  # across the +-180 seam: 20, not 340
        ((179, 10), (-179, 10), 2 * math.degrees(math.asin(math.cos(10 * D) * math.sin(1 * D)))),
        ((0, 60), (180, 60), 60),  # over the pole: 2 * (90 - 60)
        # off the equator, same azimuth difference as on it but a shorter arc:
        ((0, 45), (90, 45), 60),  # cos d = sin^2 45 = 0.5
        ((-45, -30), (135, 30), 180),  # antipodes
        ((10, 20), (10, 20), 0),
    ],
)
def test_great_circle_hand_computed(a, b, expected_deg):
    u = sph_to_unit(np.float64(a[0] * D), np.float64(a[1] * D))
    v = sph_to_unit(np.float64(b[0] * D), np.float64(b[1] * D))
    assert math.degrees(great_circle(u, v)) == pytest.approx(expected_deg, abs=1e-4)
    ut, vt = torch.from_numpy(u), torch.from_numpy(v)
    assert math.degrees(float(great_circle(ut, vt))) == pytest.approx(expected_deg, abs=0.05)


def test_great_circle_broadcasts_and_matches_haversine(rng):
    # [N, 1, 3] against [1, K, 3] -> [N, K], checked against the haversine formula.
    az1, el1 = rng.uniform(-math.pi, math.pi, (5, 1)), rng.uniform(-1.4, 1.4, (5, 1))
    az2, el2 = rng.uniform(-math.pi, math.pi, (1, 4)), rng.uniform(-1.4, 1.4, (1, 4))
    d = great_circle(sph_to_unit(az1, el1), sph_to_unit(az2, el2))
    assert d.shape == (5, 4)
    hav = np.sin((el2 - el1) / 2) ** 2 + np.cos(el1) * np.cos(el2) * np.sin((az2 - az1) / 2) ** 2
    np.testing.assert_allclose(d, 2 * np.arcsin(np.sqrt(hav)), atol=1e-5)
    dt = great_circle(
        torch.from_numpy(sph_to_unit(az1, el1)), torch.from_numpy(sph_to_unit(az2, el2))
    )
    assert tuple(dt.shape) == (5, 4)


def test_great_circle_gradient_is_finite_at_zero_distance():
    u = torch.tensor([[0.0, 0.0, 1.0]], requires_grad=True)
    great_circle(u, torch.tensor([[0.0, 0.0, 1.0]])).sum().backward()
    assert torch.isfinite(u.grad).all()


def test_wrap_azimuth():
    np.testing.assert_allclose(
        wrap_azimuth(np.array([3 * math.pi, -math.pi, 190 * D])),
        [math.pi, math.pi, -170 * D],
        atol=1e-12,
    )
