"""vMF mixture and Voronoi-truncated densities: normalization and hand-computed NLLs."""

import numpy as np
import pytest
from scipy.integrate import quad

from ssl_toolkit.analysis import density as D

Z = np.array([0.0, 0.0, 1.0])


@pytest.mark.parametrize("kappa", [0.5, 10.0, 500.0])
def test_vmf_density_integrates_to_one(kappa):
    c = np.exp(D.vmf_log_norm(kappa))
    total, _ = quad(
        lambda th: c * np.exp(kappa * (np.cos(th) - 1)) * 2 * np.pi * np.sin(th),
        0,
        np.pi,
        points=[min(1.0, 5 / np.sqrt(kappa))],
    )
    assert total == pytest.approx(1.0, rel=1e-6)


def test_vmf_samples_have_the_right_mean_cosine():
    kappa = 20.0
    x = D.sample_vmf(Z[None], kappa, 20000, np.random.default_rng(0))[0]
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-9)
    assert x[:, 2].mean() == pytest.approx(1 / np.tanh(kappa) - 1 / kappa, abs=3e-3)


def test_mixture_nll_hand_computed():
    kappa = 5.0
    hyps = np.stack([[Z, -Z]])
    targets = np.stack([[Z]])
    active = np.ones((1, 1), bool)
    logc = D.vmf_log_norm(kappa)
    # equal weights: p = 0.5 C (1 + exp(-2 kappa))
    got = D.mixture_nll(hyps, np.array([[1.0, 1.0]]), targets, active, kappa)
    assert got == pytest.approx(-(np.log(0.5) + logc + np.log1p(np.exp(-2 * kappa))), rel=1e-5)


def test_voronoi_nll_hand_computed():
    # antipodal hypotheses: the cells are hemispheres; the kernel's mass on its own
    # hemisphere is (1 - exp(-kappa)) / (1 - exp(-2 kappa))
    kappa = 1.5
    hyps = np.stack([[Z, -Z]])
    targets = np.stack([[Z]])
    mass = (1 - np.exp(-kappa)) / (1 - np.exp(-2 * kappa))
    want = -(np.log(0.75) - np.log(mass) + D.vmf_log_norm(kappa))
    got = D.voronoi_nll(
        hyps, np.array([[3.0, 1.0]]), targets, np.ones((1, 1), bool), kappa, n_samples=40000
    )
    assert got == pytest.approx(want, abs=0.01)


@pytest.mark.parametrize("kappa", [0.5, 2.0, 20.0])
def test_voronoi_cell_mass_is_accurate_with_the_default_samples(kappa):
    """Stratified samples: with the default 256 per cell, the NLL of many frames whose cells
    are hemispheres (random orientations) is within 0.005 nats of the closed form."""
    rng = np.random.default_rng(1)
    n = 2000
    mu = rng.normal(size=(n, 3))
    mu /= np.linalg.norm(mu, axis=-1, keepdims=True)
    hyps = np.stack([mu, -mu], axis=1)  # (n, 2, 3)
    mass = (1 - np.exp(-kappa)) / (1 - np.exp(-2 * kappa))
    want = -(np.log(0.5) - np.log(mass) + D.vmf_log_norm(kappa))
    got = D.voronoi_nll(hyps, np.ones((n, 2)), mu[:, None], np.ones((n, 1), bool), kappa)
    assert got == pytest.approx(want, abs=0.005)


def test_choose_kappa_recovers_the_spread():
    rng = np.random.default_rng(0)
    n, kappa = 3000, 100.0
    targets = np.broadcast_to(Z, (n, 1, 3)).copy()
    hyps = D.sample_vmf(Z[None], kappa, n, rng)[0][:, None]  # (n, 1, 3) noisy estimates
    best = D.choose_kappa(
        hyps, np.ones((n, 1)), targets, np.ones((n, 1), bool), grid=np.geomspace(10, 1000, 21)
    )
    assert 60 < best < 160
