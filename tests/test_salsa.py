"""SALSA-Lite features (``ssl prep features --type salsa``): physics, augmentation, spec, CLI.

The audio is built here, as in tests/test_augment.py: broadband noise plane waves, FOA by
their SN3D gains (W, Y, Z, X) = s (1, u_y, u_z, u_x), MIC by frequency-domain fractional
delays ``-p . u / c`` of circular signals. What SALSA-Lite must give for them is worked out
by hand:

- the log power of each channel is ``log(|X|^2 + 1e-8)`` of its STFT, bins ``1 .. K`` with
  ``K = int(max_hz n_fft / fs)`` (at most the Nyquist bin ``n_fft / 2``);
- FOA: ``Re(conj(W) V) / (|W|^2 + |V|^2 / 3)`` with ``V = u W`` is ``3/4 u`` in every bin
  and frame (the STFT is linear: no approximation at all);
- MIC: capsule j hears capsule i's signal delayed by ``(p_i - p_j) . u / c``, so
  ``arg(conj(X_i) X_j) = -2 pi f (p_i - p_j) . u / c`` and the feature,
  ``-c / (2 pi f)`` times it, is ``-(p_j - p_i) . u`` metres, as long as the phase does not
  wrap (``f < c / (2 |(p_j - p_i) . u|)``); above, it equals it modulo ``c / f``.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_augment import ARRAYS, DIRS, render, stored
from typer.testing import CliRunner

from ssl_toolkit.cli import app
from ssl_toolkit.core.errors import ArtifactError
from ssl_toolkit.data_prep.arrays import SPEED_OF_SOUND_M_S as C
from ssl_toolkit.data_prep.arrays import tetra_positions_m
from ssl_toolkit.data_prep.featurize import FeatureConfig, make_spec
from ssl_toolkit.features.augment import SpatialAugment, array_symmetries, channel_maps
from ssl_toolkit.features.extract import LOG_EPS, extract
from ssl_toolkit.features.spec import ArraySpec, FeatureSpec, band_edges_hz
from ssl_toolkit.features.spec import SPEED_OF_SOUND_M_S as C_FEATURES

runner = CliRunner()
FS = 16000
N = FS  # 1 s, circular
U = np.array([0.6, -0.5, 0.3]) / np.linalg.norm([0.6, -0.5, 0.3])
TETRA = tetra_positions_m()
PAIRS = list(itertools.combinations(range(4), 2))


def plane_wave(u: np.ndarray, fmt: str, pos: np.ndarray = TETRA) -> np.ndarray:
    """``[4, N]`` float32 audio of one noise plane wave from unit vector ``u``."""
    s = np.random.default_rng(7).normal(size=N)
    if fmt == "foa":
        return (0.1 * np.stack([s, u[1] * s, u[2] * s, u[0] * s])).astype(np.float32)
    tau = -(pos @ u) / C  # (M,): earlier at the capsules facing the source
    f = np.fft.rfftfreq(N, 1 / FS)
    out = np.fft.irfft(np.fft.rfft(s)[None] * np.exp(-2j * np.pi * f * tau[:, None]), N)
    return (0.1 * out).astype(np.float32)


def salsa_spec(fmt: str, max_hz: float = 4000.0, array: ArraySpec | None = None, fs=FS):
    if array is None:
        array = ArraySpec.foa() if fmt == "foa" else ArraySpec.mic(TETRA)
    return make_spec(FeatureConfig(type="salsa", max_hz=max_hz), fs, fmt, 4, array)


def bin_hz(spec: FeatureSpec) -> np.ndarray:
    """Frequency of each salsa bin (bins ``1 .. K``: the DC bin is not kept)."""
    return np.arange(1, spec.bins + 1) * spec.fs / spec.n_fft


# ----------------------------------------------------------------------------- extraction


def test_the_renderer_and_the_features_use_one_speed_of_sound():
    assert C == C_FEATURES == 343.0


@pytest.mark.parametrize(
    ("fmt", "max_hz", "fs", "k"),
    [
        ("mic", 4000, 16000, 256),  # 4000 * 1024 / 16000
        ("mic", 3010, 16000, 192),  # 192.64: rounded down
        ("foa", 9000, 16000, 512),  # above Nyquist: capped at the Nyquist bin n_fft / 2
        ("mic", 9000, 24000, 384),  # the default at 24 kHz (n_fft 1024)
        ("foa", 9000, 8000, 256),  # the tiny CLI scenes (n_fft 512)
    ],
)
def test_shape(fmt, max_hz, fs, k):
    spec = salsa_spec(fmt, max_hz, fs=fs)
    audio = plane_wave(U, fmt)[:, : fs // 2]
    x = extract(audio, fs, spec)
    c = 4 + (3 if fmt == "foa" else 6)
    assert spec.bins == k == min(int(max_hz * spec.n_fft / fs), spec.n_fft // 2)
    assert x.shape == (c, 1 + (fs // 2) // spec.hop_length, k) == (c, x.shape[1], k)
    assert spec.chunk_shape == (c, 25, k) and x.dtype == np.float32
    assert spec.band_hz == (fs / spec.n_fft, k * fs / spec.n_fft)


@pytest.mark.parametrize("fmt", ["foa", "mic"])
def test_log_power_is_that_of_a_direct_stft(fmt):
    spec = salsa_spec(fmt, 5000)
    audio = plane_wave(U, fmt)
    x = extract(audio, FS, spec)
    pad = (spec.n_fft - spec.win_length) // 2
    window = torch.nn.functional.pad(torch.hann_window(spec.win_length),
                                     (pad, spec.n_fft - spec.win_length - pad))  # fmt: skip
    z = torch.stft(torch.from_numpy(audio), spec.n_fft, spec.hop_length, window=window,
                   center=True, pad_mode="constant", return_complex=True)  # fmt: skip
    want = np.log(z.abs().numpy() ** 2 + LOG_EPS)[:, 1 : spec.bins + 1].transpose(0, 2, 1)
    assert x.shape[1] == want.shape[1]
    # float32 STFTs by two FFT paths: |X|^2 within ~1e-6 relative, its log within ~1e-5
    np.testing.assert_allclose(x[:4], want, atol=2e-4, rtol=0)


def test_foa_intensity_is_three_quarters_of_the_direction():
    """``Re(conj(W) u W) / (|W|^2 (1 + 1/3)) = 3/4 u`` exactly, wherever ``|W|^2`` dwarfs
    the 1e-8 floor (relative error ``1e-8 / |W|^2``: 1e-4 where ``|W|^2 > 1e-4``)."""
    spec = salsa_spec("foa", 9000)
    x = extract(plane_wave(U, "foa"), FS, spec)
    w2 = np.exp(x[0])  # |W|^2 + 1e-8
    loud = w2 > 1e-4
    assert loud.mean() > 0.95
    for a in range(3):  # x, y, z
        np.testing.assert_allclose(x[4 + a][loud], 0.75 * U[a], atol=1e-4)


def test_mic_phase_difference_is_the_path_difference_in_metres():
    """Below spatial aliasing, the median over frames of each pair's channel is
    ``-(p_j - p_i) . u`` within 2 mm, bin by bin from 250 Hz up (3 % of the largest path
    difference, 64 mm; what a 1.7 deg turn changes on a 6.9 cm baseline). One frame of
    noise scatters: the delay leaks through the window, and bins of small magnitude take a
    phase error of ``delay / window`` over their relative magnitude (up to 0.5 rad at
    1-2 kHz); its median over the 47 interior frames stays within 1.3 mm from 250 Hz
    (a constant ~0.01 rad, so about ``1 / f`` in metres). Above aliasing, the channel stays
    within ``+-c / 2f`` and equals the path difference modulo ``c / f``: the circular mean
    of its phase is that of the path difference within 0.05 rad at every bin up to the
    window's main lobe (``2 n_fft / win``, 3.2 bins) below Nyquist, where the mirror image
    of a real signal leaks in (the Nyquist bin itself is real: phase 0 or pi, no
    direction)."""
    spec = salsa_spec("mic", 9000)  # capped at 8 kHz: 512 bins, the top 2/3 above aliasing
    x = extract(plane_wave(U, "mic"), FS, spec)[:, 2:-2]  # interior frames
    f = bin_hz(spec)
    assert x.shape == (10, 47, 512)
    period = C / f
    top = FS / 2 - 2 * FS / spec.win_length  # the main lobe below Nyquist
    wrapped = False
    for n, (i, j) in enumerate(PAIRS):
        want = -(TETRA[j] - TETRA[i]) @ U
        got = x[4 + n]
        assert np.all(np.abs(got) <= period / 2 * (1 + 1e-6)), (i, j)
        alias = C / (2 * abs(want))
        below = (f >= 250) & (f < 0.9 * alias) & (f < top)
        np.testing.assert_allclose(np.median(got[:, below], axis=0), want, atol=2e-3,
                                   err_msg=f"pair {i}{j}")  # fmt: skip
        phase = np.angle(np.exp(2j * np.pi * f * (got - want) / C).mean(axis=0))
        assert np.abs(phase[(f >= 250) & (f < top)]).max() < 0.05, (i, j)
        wrapped |= bool((f > alias).any())
    assert wrapped  # some pairs are checked above their aliasing frequency too


# ----------------------------------------------------------------------------- augmentation


def assert_salsa_equal(got, want, spec: FeatureSpec, what: str):
    """Equal to float16 precision (2 spacings of the value, as test_augment), the MIC
    phase-difference channels modulo their per-bin period ``c / f`` (a value at
    ``+c / 2f`` negated lands at ``-c / 2f``: the same point of the circle)."""
    a, b = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(a - b)
    if spec.format == "mic":
        m, period = spec.n_channels, C / bin_hz(spec)
        d = diff[m:]
        diff[m:] = np.abs((d + period / 2) % period - period / 2)
    tol = 2 * np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float64)
    bad = diff > tol + 1e-6
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} values differ, worst {diff.max():.3g} at "
        f"{np.unravel_index(np.argmax(diff - tol), diff.shape)}"
    )


@pytest.mark.parametrize("name", list(ARRAYS))
def test_features_of_the_rotated_scene_are_the_augmented_features(name):
    """For every symmetry g of every array of test_augment: the stored (float16) salsa
    features of the scene rotated by g equal the augmented features of the original (a
    pair whose order flips changes sign: mirroring it, as GCC-PHAT is, fails here)."""
    array = ARRAYS[name]
    m = 4 if array.format == "foa" else len(array.positions_m)
    spec = make_spec(FeatureConfig(type="salsa"), FS, array.format, m, array)
    assert spec.bins == 512  # 9 kHz capped at Nyquist: the wrapped bins are compared too
    syms = array_symmetries(array, "z" if name == "tetra" else "full")  # as test_augment
    assert len(syms) == {"foa": 48, "tetra": 8, "regular-tetra": 24, "hexagon": 24}[name]
    maps = channel_maps(spec, syms)
    assert not maps.mirror.any() and not maps.phase.any()
    if array.format == "mic":  # some pair flips order under some symmetry
        assert (maps.scale[:, m:] == -1).any()
    x = stored(render(array, DIRS), spec)
    xs = torch.from_numpy(x).float()[None].repeat(len(syms), 1, 1, 1)
    ds = torch.from_numpy(DIRS).float()[None, None].repeat(len(syms), 1, 1, 1)
    ys, dys = SpatialAugment(maps).transform(xs, ds, torch.arange(len(syms)))
    for g, s in enumerate(syms):
        rotated = stored(render(array, DIRS @ s.matrix.T), spec)
        want = ys[g].numpy()
        assert_salsa_equal(rotated, want, spec, f"{name} g={g}")
        np.testing.assert_allclose(maps.apply(x, g), want, atol=1e-6)  # numpy == torch
        np.testing.assert_allclose(dys[g, 0].numpy(), DIRS @ s.matrix.T, atol=1e-6)
