"""Density scores of multi-hypothesis predictions (Letzelter et al., ICML 2024).

"Winner-takes-all learners are geometry-aware conditional density estimators":
the hypotheses and their confidences define a density on the sphere. Two are
scored by the negative log-likelihood (nats) of the active targets:

- the mixture of von Mises-Fisher kernels centred on the hypotheses, weighted
  by the normalized confidences;
- its Voronoi-truncated version: in the Voronoi cell of hypothesis k, the kernel
  of k alone, renormalized to unit mass over the cell (mass estimated by Monte
  Carlo with vMF samples), times the weight of k.

The kernel concentration ``kappa`` is chosen on validation frames.
"""

from __future__ import annotations

import numpy as np

__all__ = ["vmf_log_norm", "sample_vmf", "mixture_nll", "voronoi_nll", "choose_kappa"]

_EPS = 1e-6  # floor of the mixture weights (a zero-confidence cell would give an infinite NLL)


def vmf_log_norm(kappa: float) -> float:
    """Log normalizer of the vMF density on S2 written ``C exp(kappa (mu.y - 1))``."""
    return float(np.log(kappa) - np.log(2 * np.pi) - np.log1p(-np.exp(-2 * kappa)))


def sample_vmf(mu: np.ndarray, kappa: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of vMF(mu, kappa) on S2 for each mean: ``[..., n, 3]`` (Wood 1994)."""
    mu = np.asarray(mu, np.float64)
    u = rng.random((*mu.shape[:-1], n))
    w = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa  # cos of angle to mu
    v = rng.normal(size=(*mu.shape[:-1], n, 3))
    v -= (v * mu[..., None, :]).sum(-1, keepdims=True) * mu[..., None, :]
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    s = np.sqrt(np.clip(1.0 - w**2, 0.0, None))
    return w[..., None] * mu[..., None, :] + s[..., None] * v


#: NLL (nats) of a target in a frame without any valid hypothesis: the uniform density.
UNIFORM_NLL = float(np.log(4 * np.pi))


def _valid(conf, valid) -> np.ndarray:
    return np.ones(np.shape(conf), bool) if valid is None else np.asarray(valid, bool)


def _mixture_weights(conf, valid=None) -> np.ndarray:
    """Mixture weights ``[N, K]``: floored confidences normalized over the valid slots."""
    v = _valid(conf, valid)
    c = np.where(v, np.clip(np.asarray(conf, np.float64), 0.0, None) + _EPS, 0.0)
    return c / np.maximum(c.sum(-1, keepdims=True), 1e-300)


def mixture_nll(hyps, conf, targets, active, kappa: float, valid=None) -> float:
    """Mean NLL of the active targets under the vMF mixture (nats).

    Args:
        hyps: ``[N, K, 3]``; conf: ``[N, K]``; targets: ``[N, S, 3]``; active: ``[N, S]``;
        valid: ``[N, K]`` bool, the slots that are mixture components (default all).
            A frame without one scores :data:`UNIFORM_NLL`.
    """
    act = np.asarray(active, bool)
    if not act.any():
        return float("nan")
    v = _valid(conf, valid)
    dot = np.einsum("nsd,nkd->nsk", np.asarray(targets, np.float64), np.asarray(hyps, np.float64))
    with np.errstate(divide="ignore"):
        logw = np.log(_mixture_weights(conf, v))  # -inf on invalid slots
    logp = logw[:, None, :] + vmf_log_norm(kappa) + kappa * (dot - 1.0)
    mx = np.where(np.isfinite(logp), logp, -np.inf).max(-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    lse = (mx + np.log(np.exp(logp - mx).sum(-1, keepdims=True)))[..., 0]  # (N, S)
    nll = np.where(v.any(1)[:, None], -lse, UNIFORM_NLL)
    return float(nll[act].mean())


def voronoi_nll(
    hyps, conf, targets, active, kappa: float, n_samples: int = 256, seed: int = 0, valid=None
) -> float:
    """Mean NLL of the active targets under the Voronoi-truncated vMF mixture (nats).

    The cells are those of the valid hypotheses; a frame without one scores
    :data:`UNIFORM_NLL`.
    """
    act = np.asarray(active, bool)
    if not act.any():
        return float("nan")
    v = _valid(conf, valid)
    h = np.where(v[..., None], np.asarray(hyps, np.float64), np.nan)  # NaN: never the nearest
    none = act & ~v.any(1)[:, None]
    act = act & ~none
    if not act.any():
        return UNIFORM_NLL
    dot = np.einsum("nsd,nkd->nsk", np.asarray(targets, np.float64), h)  # (N, S, K)
    cell = np.nan_to_num(dot, nan=-np.inf).argmax(-1)  # (N, S) Voronoi cell of each target
    n_idx, s_idx = np.nonzero(act)
    k_idx = cell[n_idx, s_idx]
    mass = _cell_mass(h, n_idx, k_idx, kappa, n_samples, seed)
    w = _mixture_weights(conf, v)[n_idx, k_idx]
    logp = np.log(w) - np.log(mass) + vmf_log_norm(kappa) + kappa * (dot[n_idx, s_idx, k_idx] - 1)
    total = -logp.sum() + UNIFORM_NLL * none.sum()
    return float(total / (len(logp) + none.sum()))


def _cell_mass(h, n_idx, k_idx, kappa: float, n_samples: int, seed: int) -> np.ndarray:
    """Monte Carlo mass of vMF(h[n, k], kappa) in the Voronoi cell of h[n, k], per pair.

    Randomized stratified samples, independent between pairs and unbiased: in the basis
    ``(e1, e2, mu)`` of the pair's mean, the cosines to the mean are stratified (sample j
    takes the quantile ``(j + s) / M`` of their law, one uniform ``s`` per pair) and the
    azimuths follow a golden-angle lattice turned by a uniform angle per pair. The frame's
    hypotheses are rotated into that basis (``K`` rotations instead of ``M`` sampled
    vectors), each (frame, cell) pair is estimated once, in float32, and the mass is at
    least ``1 / M``.
    """
    rng = np.random.default_rng(seed)
    m_s = n_samples
    j = np.arange(m_s)
    phi = 2 * np.pi * ((j * 0.6180339887498949) % 1.0)
    cos_phi, sin_phi = np.cos(phi).astype(np.float32), np.sin(phi).astype(np.float32)
    k = h.shape[1]
    pairs, back = np.unique(n_idx * k + k_idx, return_inverse=True)
    mass = np.empty(len(pairs))
    for start in range(0, len(pairs), 4096):
        pn, pk = np.divmod(pairs[start : start + 4096], k)
        mu = h[pn, pk]  # (m, 3)
        axis = np.where(np.abs(mu[:, 2:]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
        e1 = np.cross(mu, axis)
        e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
        basis = np.stack([e1, np.cross(mu, e1), mu], axis=1)  # (m, 3, 3): rows e1, e2, mu
        local = np.einsum("mkd,med->mke", h[pn], basis)  # (m, K, 3)
        alpha = rng.random(len(pn)) * (2 * np.pi)
        ca, sa = np.cos(alpha)[:, None], np.sin(alpha)[:, None]
        hx = (local[..., 0] * ca + local[..., 1] * sa).astype(np.float32)[..., None]  # (m, K, 1)
        hy = (local[..., 1] * ca - local[..., 0] * sa).astype(np.float32)[..., None]
        hz = local[..., 2].astype(np.float32)[..., None]
        u = (j + rng.random((len(pn), 1))) / m_s  # (m, M) stratified
        w = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa  # cos to the mean
        r = np.sqrt(np.clip(1.0 - w**2, 0.0, None)).astype(np.float32)[:, None]  # (m, 1, M)
        dots = hx * (r * cos_phi) + hy * (r * sin_phi) + hz * w.astype(np.float32)[:, None]
        dots = np.nan_to_num(dots, nan=-np.inf)  # invalid slots never win
        mass[start : start + 4096] = (dots.argmax(1) == pk[:, None]).mean(-1)
    return np.maximum(mass, 1.0 / n_samples)[back.ravel()]


def choose_kappa(
    hyps, conf, targets, active, grid=None, voronoi: bool = False, valid=None
) -> float:
    """The kappa of ``grid`` minimizing the (mixture or Voronoi) NLL on these frames."""
    grid = np.geomspace(1.0, 3000.0, 15) if grid is None else np.asarray(grid)
    score = voronoi_nll if voronoi else mixture_nll
    nll = [score(hyps, conf, targets, active, float(k), valid=valid) for k in grid]
    return float(grid[int(np.nanargmin(nll))])
