"""``ssl baseline``: classical localization (pyroomacoustics.doa) in the eval harness.

The classical methods (SRP-PHAT, MUSIC, NormMUSIC, TOPS) localize on the MIC-format
audio of a scenes artifact, with the array geometry of its manifest. To be scored
on exactly the frames of a learned model, they take the features artifact too:
its index gives the clips and frames of a split, its labels the targets, its
``hop_length`` / ``fs`` the frame times (frame t of a clip is centred at
``t * hop_length / fs`` seconds). Each frame is localized from the STFT
snapshots within ``window_s`` around its centre.

Search. Each frame's spatial spectrum is evaluated on a latitude-longitude grid
(:class:`SphereGrid`) whose azimuths and elevations are multiples of the step
(each pole once), so label directions on a 10-degree grid are grid points; its
local maxima (8-neighbourhood, azimuth wrapping, a pole's neighbours being its whole
adjacent ring) are then refined below the grid step by a shrinking 5 x 5 pattern
search on the method's own spectrum, down to ``refine_deg`` (0.1 degree): the grid
sets no error floor. SRP-PHAT, MUSIC and NormMUSIC spectra are evaluated by
:class:`SpatialSpectrum`, vectorized, with pyroomacoustics' steering vectors and
normalizations (equal to its grid values; a test checks it); TOPS calls
pyroomacoustics' own ``TOPS._process`` on the points asked for.

Source count. ``known``: the number of active sources of the labels; ``estimate``:
:func:`estimate_n_sources` on the eigenvalues of the frame's spatial covariances,
aggregated over frequency bins. A frame with no source found holds no valid slot: it
is scored as a miss, never as a placeholder direction.

Output. :class:`ClassicalLocalizer` is a :class:`~ssl_toolkit.models.localize.Localizer`:
found sources fill the first slots (strongest first) with confidence 1, the other
slots are invalid (confidence 0). It has no confidence scores (``scored`` False: no
ECE, calibration or learned threshold, whose numbers would measure the count, not a
confidence); with ``--n-sources estimate`` its detections estimate the source count
(``counts``: frame recall is reported), with ``known`` the count came from the labels, so
frame recall is not reported. :func:`run_baseline` writes an eval
artifact in the same format as ``ssl eval``'s.

The features usually come from FOA scenes (what the learned models train on) and the
scenes scored here are their MIC-format twin (``ssl prep synth`` with the same seed
and options and ``--format mic``). :func:`check_labels` refuses scenes whose labels,
turned into frame labels the way ``ssl prep features`` does, differ from the
features' labels on any scored frame: the baseline would be scored against targets
that are not in its audio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.frames import Frames, label_frames
from ..core.artifacts import (
    Manifest,
    build_artifact,
    read_clips,
    read_manifest,
    safe_join,
    scene_files,
)
from ..core.config import ConfigError, check_choices, to_dict
from ..core.errors import DataError, UserError
from ..core.geometry import great_circle, rad, sph_to_unit
from ..core.labels import read_label_file, table_frame_labels
from ..features.store import SPLITS, FeatureSet, open_features
from ..models.localize import Localizer
from .evaluate import score_predictions, write_eval

__all__ = [
    "CLASSICAL_METHODS",
    "BaselineConfig",
    "ClassicalLocalizer",
    "SpatialSpectrum",
    "SphereGrid",
    "check_labels",
    "estimate_n_sources",
    "noise_spread",
    "refine",
    "run_baseline",
    "stft",
]

#: Largest difference (unit-vector components) between two labels of the same direction.
LABEL_TOLERANCE = 1e-4
_TWIN = "score the MIC twin of the features' scenes (same seed and options, --format mic)"

#: ``--method`` -> name in ``pyroomacoustics.doa.algorithms``.
CLASSICAL_METHODS = {"srp": "SRP", "music": "MUSIC", "normmusic": "NormMUSIC", "tops": "TOPS"}

#: Source count: an eigenvalue is a source when it exceeds this factor times the
#: Marchenko-Pastur spread of noise eigenvalues for the frame's snapshots ...
COUNT_NOISE_FACTOR = 2.5
#: ... and lies at most 20 dB below the strongest (a broadband source leaks about
#: -30 dB into a second dimension: the array delay is not negligible against the window)
COUNT_LEAK = 1e-2
#: ... in at least this fraction of the frequency bins.
COUNT_BIN_FRACTION = 0.1
#: Peaks refined per frame beyond the sources sought (two may climb to the same maximum).
_EXTRA_PEAKS = 2


@dataclass(frozen=True)
class BaselineConfig:
    """Options of ``ssl baseline`` (the only way to give them).

    Attributes:
        method: srp | music | normmusic | tops.
        n_sources: ``known`` (from the labels) or ``estimate`` (:func:`estimate_n_sources`).
        split: the split of the features artifact scored.
        nfft: STFT size (Hann window, hop nfft / 2).
        window_s: span of STFT snapshots used for one frame, seconds.
        freq_min_hz, freq_max_hz: band searched.
        grid_deg: step of the search grid, degrees, rounded to divide 90 (see
            :class:`SphereGrid`); None: 5, or 10 for TOPS (pyroomacoustics' TOPS loops
            over grid points in Python).
        refine_deg: each peak is refined until the pattern step is at most this, degrees.
        speed_of_sound_m_s: speed of sound.
    """

    #: Options with a fixed set of values (checked and matched up to case by core.config).
    CHOICES = {"method": tuple(CLASSICAL_METHODS), "n_sources": ("known", "estimate"),
               "split": SPLITS}  # fmt: skip

    method: str = "srp"
    n_sources: str = "known"
    split: str = "test"
    nfft: int = 512
    window_s: float = 0.2
    freq_min_hz: float = 300.0
    freq_max_hz: float = 3500.0
    grid_deg: float | None = None
    refine_deg: float = 0.1
    speed_of_sound_m_s: float = 343.0

    def validate(self) -> None:
        check_choices(self)
        if self.grid_deg is not None and not 0.5 <= self.grid_deg <= 45:
            raise ConfigError(f"--grid-deg must be in [0.5, 45], got {self.grid_deg}")
        if not 0.001 <= self.refine_deg <= 1.0:
            raise ConfigError(f"refine_deg must be in [0.001, 1], got {self.refine_deg}")
        if self.nfft < 16 or self.window_s <= 0 or self.freq_min_hz >= self.freq_max_hz:
            raise ConfigError("nfft >= 16, window_s > 0 and freq_min_hz < freq_max_hz are needed")
        if self.nfft % 2 or self.speed_of_sound_m_s <= 0:
            raise ConfigError("nfft must be even and speed_of_sound_m_s > 0")

    @property
    def step_deg(self) -> float:
        """The grid step asked for (before :class:`SphereGrid` rounds it)."""
        return self.grid_deg or (10.0 if self.method == "tops" else 5.0)


def stft(audio: np.ndarray, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann STFT of multichannel audio, hop ``nfft // 2``.

    Args:
        audio: ``[M, n]`` samples.

    Returns:
        ``(X [M, nfft // 2 + 1, frames] complex, centres [frames] in samples)``.
    """
    hop = nfft // 2
    m, n = audio.shape
    pad = np.pad(audio, ((0, 0), (hop, hop + nfft)))
    n_frames = 1 + (n + hop) // hop
    idx = np.arange(nfft)[None, :] + hop * np.arange(n_frames)[:, None]  # (frames, nfft)
    frames = pad[:, idx] * np.hanning(nfft)[None, None]  # (M, frames, nfft)
    x = np.fft.rfft(frames, axis=-1).transpose(0, 2, 1)  # (M, F, frames)
    return x, hop * np.arange(n_frames)  # centre of frame j is sample j * hop


def noise_spread(m: int, n: int) -> float:
    """Largest over smallest eigenvalue of an ``[m, m]`` noise covariance from ``n``
    snapshots (Marchenko-Pastur edges, ``m / n`` capped at 0.8)."""
    c = min(m / max(n, 1), 0.8)
    return ((1 + math.sqrt(c)) / (1 - math.sqrt(c))) ** 2


def estimate_n_sources(x: np.ndarray, bins: np.ndarray, max_sources: int) -> int:
    """Number of sources from the eigenvalues of the spatial covariance, over bins.

    In each bin, the sample covariance of the ``n`` snapshots has eigenvalues
    ``l_1 >= ... >= l_M``; ``l_M`` is noise (at most M - 1 sources). Eigenvalue ``i < M``
    counts as a source when ``l_i > COUNT_NOISE_FACTOR * noise_spread(M, n) * l_M``
    (above what noise alone spreads to: 99.9 % of noise-only bins stay below) and
    ``l_i > COUNT_LEAK * l_1`` (above what one broadband source leaks into a second
    dimension). The count is the largest k that at least ``COUNT_BIN_FRACTION`` of the
    bins reach: a source heard in a tenth of the band counts, a stray bin does not.

    Why not MDL (Wax & Kailath 1985) per bin and the median over bins: it finds no
    source for band-limited sounds (silent in most bins) and two for one broadband
    source (with some 35 snapshots its penalty is below the spread of the noise
    eigenvalues plus the leakage). A limit of this estimator too: sources in disjoint
    bands make each bin rank one, so they count as one.

    Args:
        x: ``[M, F, snapshots]`` STFT; bins: frequency bins used; max_sources: cap.

    Returns:
        The count, 0 when there are no more snapshots than capsules (no noise floor).
    """
    m, _, n = x.shape
    if n <= m:  # the covariance is singular: no noise floor to compare with
        return 0
    xb = x[:, bins].transpose(1, 0, 2)  # (B, M, n)
    cov = xb @ xb.conj().transpose(0, 2, 1) / n  # (B, M, M)
    ev = np.clip(np.linalg.eigvalsh(cov)[:, ::-1], 0.0, None)  # (B, M) descending
    floor = ev[:, -1:] * (COUNT_NOISE_FACTOR * noise_spread(m, n))
    big = (ev[:, :-1] > floor) & (ev[:, :-1] > COUNT_LEAK * ev[:, :1])  # (B, M - 1) a prefix
    per_bin = big.sum(1)  # (B,)
    need = max(1, math.ceil(COUNT_BIN_FRACTION * len(bins)))
    reached = (per_bin[None] >= np.arange(1, m)[:, None]).sum(1) >= need  # (M - 1,) k = 1..
    return int(min(reached.sum(), max_sources))  # reached is a prefix too


class SphereGrid:
    """Latitude-longitude search grid holding every multiple of its step.

    The step is rounded to ``90 / round(90 / step_deg)`` degrees. Azimuths are
    ``-180 + step .. 180``, elevations ``-90 .. 90``; each pole is one point (not one
    per azimuth). Points: the south pole, the inner rings row by row (elevation
    ascending, azimuth ascending), the north pole.

    Attributes:
        step_rad: the step; dirs: ``[P, 3]`` unit vectors.
    """

    def __init__(self, step_deg: float):
        n_el = max(1, round(90.0 / step_deg))  # rings from the equator to a pole
        self.step_rad = math.pi / 2 / n_el
        self.n_az = 4 * n_el
        az = self.step_rad * np.arange(1 - 2 * n_el, 2 * n_el + 1)  # (-pi, pi]
        el = self.step_rad * np.arange(1 - n_el, n_el)  # inner rings
        self.n_rings = len(el)
        el_g, az_g = np.meshgrid(el, az, indexing="ij")  # (rings, n_az)
        ring = sph_to_unit(az_g, el_g).reshape(-1, 3)
        self.dirs = np.concatenate(([[0.0, 0.0, -1.0]], ring, [[0.0, 0.0, 1.0]]))

    def __len__(self) -> int:
        return len(self.dirs)

    def peaks(self, values: np.ndarray) -> np.ndarray:
        """Indices of the local maxima of ``values [P]`` (no neighbour larger), largest first.

        Neighbours: the 8 around a point of an inner ring (azimuth wraps around; the
        ring next to a pole has the pole above or below), the whole adjacent ring for a pole.
        """
        v = np.asarray(values, np.float64)
        inner = v[1:-1].reshape(self.n_rings, self.n_az)
        rows = np.concatenate(
            (np.full((1, self.n_az), v[0]), inner, np.full((1, self.n_az), v[-1]))
        )  # (rings + 2, n_az) with the poles as rows
        ok = np.ones(inner.shape, bool)
        for dr in (-1, 0, 1):
            for da in (-1, 0, 1):
                if dr or da:
                    nb = np.roll(rows[1 + dr : 1 + dr + self.n_rings], -da, axis=1)
                    ok &= inner >= nb
        is_max = np.concatenate(([v[0] >= inner[0].max()], ok.ravel(), [v[-1] >= inner[-1].max()]))
        idx = np.flatnonzero(is_max)
        return idx[np.argsort(-v[idx], kind="stable")]


def _steering(k: np.ndarray, mics_m: np.ndarray, u: np.ndarray) -> np.ndarray:
    """pyroomacoustics' far-field steering vectors ``[B, P, M]``: ``exp(j k_b (u . r_m))``
    for wavenumbers ``k [B]`` (omega / c), capsules ``mics_m [M, 3]``, directions ``u [P, 3]``."""
    return np.exp(1j * k[:, None, None] * (u @ mics_m.T)[None])


class SpatialSpectrum:
    """One frame's spatial spectrum, at any directions, as pyroomacoustics computes it.

    - ``srp``: ``SRP._process``: PHAT-weighted cross-spectra ``R_b = sum_s p p^H``
      (``p = X / |X|``), value ``sum_b a_b^H R_b a_b / (S B pairs)`` (the diagonal
      counted as ``S M``, as pyroomacoustics does);
    - ``music`` / ``normmusic``: ``MUSIC._process``: ``mean_b 1 / |a_b^H (I - E_s E_s^H) a_b|``
      with ``E_s`` the ``num_src`` leading eigenvectors of the covariance; NormMUSIC
      divides each bin by its maximum over the points given to :meth:`on_grid`;
    - ``tops``: ``TOPS._process`` itself, on the points asked for.

    Steering vectors ``a_b(u) = exp(j omega_b (u . r_m) / c)``.

    Args:
        method: a key of :data:`CLASSICAL_METHODS`; xs: ``[M, F, S]`` STFT snapshots
            (F = nfft/2 + 1);
        bins: frequency bins; num_src: sources (MUSIC's signal subspace); mics_m: ``[M, 3]``;
        fs: sampling rate; nfft: STFT size; c: speed of sound; tops: for ``tops``, a
        pyroomacoustics TOPS object for this array (:func:`_pra_doa`).
    """

    _CHUNK = 4096  # directions per evaluation block

    def __init__(self, method, xs, bins, num_src, mics_m, fs, nfft, c, tops=None):
        self.method = method
        self.xs, self.bins, self.num_src = xs, np.asarray(bins, np.int64), int(num_src)
        self.mics_m = np.asarray(mics_m, np.float64)
        self.k = 2 * np.pi * fs * self.bins / nfft / c  # (B,) wavenumbers
        self.fs, self.nfft = fs, nfft
        m, b, s = xs.shape[0], len(self.bins), xs.shape[2]
        self.weights = np.full(b, 1.0 / b)
        xb = xs[:, self.bins].transpose(1, 0, 2)  # (B, M, S)
        if method == "srp":
            mag = np.abs(xb)
            p = xb / np.where(mag < 1e-14, 1e-14, mag)
            r = p @ p.conj().transpose(0, 2, 1)  # (B, M, M)
            self.r_t = np.ascontiguousarray(r.transpose(0, 2, 1))
            # pyroomacoustics adds the diagonal as S * M (what it is unless |X| < 1e-14)
            self.offset = s * m - np.trace(r, axis1=1, axis2=2).real  # (B,)
            self.scale = 1.0 / (s * m * (m - 1) / 2)
        elif method in ("music", "normmusic"):
            cov = xb @ xb.conj().transpose(0, 2, 1) / s
            es = np.linalg.eigh(cov)[1][..., m - self.num_src :]  # (B, M, num_src)
            self.es_h = np.ascontiguousarray(es.conj())
        elif method == "tops":
            self.tops = tops
        else:
            raise ValueError(f"unknown method {method!r}")

    def terms(self, u: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
        """Per-bin spectrum ``[P, B]`` at directions ``u [P, 3]`` (``a``: their steering)."""
        a = _steering(self.k, self.mics_m, u) if a is None else a  # (B, P, M)
        if self.method == "srp":
            v = a @ self.r_t  # (B, P, M) = R a
            q = np.sum(a.real * v.real + a.imag * v.imag, -1)  # Re(a^H R a)
            return ((q + self.offset[:, None]) * self.scale).T
        proj = a @ self.es_h  # (B, P, num_src) = E_s^H a
        norm2 = np.sum(proj.real**2 + proj.imag**2, -1)
        return (1.0 / np.abs(a.shape[-1] - norm2)).T  # a^H (I - E_s E_s^H) a, |a|^2 = M

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """Spectrum ``[P]`` at directions ``u [P, 3]``."""
        u = np.asarray(u, np.float64).reshape(-1, 3)
        if self.method == "tops":
            return self._tops(u)
        out = [
            self.terms(u[i : i + self._CHUNK]) @ self.weights for i in range(0, len(u), self._CHUNK)
        ]
        return np.concatenate(out) if out else np.zeros(0)

    def on_grid(self, u: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
        """Spectrum ``[P]`` on a search grid ``u [P, 3]``; fixes NormMUSIC's per-bin
        normalization to the grid's maxima, as pyroomacoustics does."""
        if self.method != "normmusic":
            return self(u) if a is None else self.terms(u, a) @ self.weights
        t = np.concatenate(
            [self.terms(u[i : i + self._CHUNK]) for i in range(0, len(u), self._CHUNK)]
        ) if a is None else self.terms(u, a)  # fmt: skip
        self.weights = 1.0 / (len(self.bins) * t.max(0))
        return t @ self.weights

    def _tops(self, u: np.ndarray) -> np.ndarray:
        from pyroomacoustics.doa.grid import GridSphere

        d = self.tops
        d.grid = GridSphere(cartesian_points=u.T)
        d.num_src = self.num_src
        d.num_snap = self.xs.shape[2]
        d.freq_bins = self.bins
        d.freq_hz = self.bins * float(self.fs) / float(self.nfft)
        d.num_freq = len(self.bins)
        d.grid.set_values(0.0)
        d._process(self.xs)  # what locate_sources runs, without its convex-hull peak search
        return np.array(d.grid.values, np.float64)


def _pra_doa(method: str, mics_m: np.ndarray, fs: int, nfft: int, c: float):
    """A pyroomacoustics DOA object of ``method`` for this array (its grid is replaced)."""
    import pyroomacoustics as pra

    cls = pra.doa.algorithms[CLASSICAL_METHODS[method]]
    return cls(
        L=np.asarray(mics_m, np.float64).T, fs=fs, nfft=nfft, c=c, num_src=1, dim=3,
        azimuth=np.array([0.0]), colatitude=np.array([np.pi / 2]),
    )  # fmt: skip


def _tangent(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors ``[P, 3]`` orthogonal to ``u [P, 3]`` and to each other."""
    helper = np.where(np.abs(u[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = np.cross(helper, u)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(u, e1)


_PATTERN = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3), indexing="ij"), -1).reshape(
    -1, 2
)  # (25, 2) offsets of the 5 x 5 pattern, centre included


def refine(spectrum, u: np.ndarray, step_rad: float, stop_rad: float, values=None):
    """Local maxima of ``spectrum`` near ``u [C, 3]``, below the grid step.

    A 5 x 5 pattern of spacing ``step / 2`` (it spans one grid step each way) in the
    plane tangent to each estimate; the estimate moves to the pattern's best point and
    the spacing halves, until it is at most ``stop_rad``. All estimates are evaluated
    in one call per iteration.

    Args:
        spectrum: ``spectrum(u [P, 3]) -> [P]``; u: the starting points; step_rad: the
        grid step; stop_rad: the last spacing; values: ``spectrum(u)`` if known.

    Returns:
        ``(u [C, 3], values [C])``.
    """
    u = np.asarray(u, np.float64)
    values = spectrum(u) if values is None else np.asarray(values, np.float64)
    delta = step_rad / 2
    while True:
        e1, e2 = _tangent(u)
        off = np.tan(delta * _PATTERN)  # (25, 2)
        pts = u[:, None] + off[None, :, :1] * e1[:, None] + off[None, :, 1:] * e2[:, None]
        pts /= np.linalg.norm(pts, axis=-1, keepdims=True)  # (C, 25, 3)
        vals = spectrum(pts.reshape(-1, 3)).reshape(len(u), -1)
        best = vals.argmax(1)
        better = vals[np.arange(len(u)), best] > values  # keep u when nothing beats it
        u = np.where(better[:, None], pts[np.arange(len(u)), best], u)
        values = np.where(better, vals[np.arange(len(u)), best], values)
        if delta <= stop_rad:
            return u, values
        delta /= 2


class ClassicalLocalizer(Localizer):
    """A classical method behind the localizer interface.

    ``localize((audio, centres, counts))`` localizes the frames of one clip:
    ``audio [M, n]`` samples, ``centres [n_frames]`` frame centres in samples,
    ``counts [n_frames]`` sources per frame (``known``) or None (``estimate``). Found
    sources fill the first slots, strongest first, with confidence 1; the other
    slots are invalid. At most ``min(K, M - 1)`` sources per frame.

    Args:
        cfg: the options; mics_m: ``[M, 3]`` capsule positions; fs: sampling rate;
        K: slots per frame.

    Raises:
        ConfigError: a band with no STFT bin, or (estimate) too few snapshots per frame.
    """

    threshold = 0.5
    _CACHE = 1 << 22  # grid steering vectors kept when they are at most this many

    def __init__(self, cfg: BaselineConfig, mics_m: np.ndarray, fs: int, K: int):
        cfg.validate()
        self.cfg = cfg
        self.method = cfg.method
        self.K = int(K)
        self.scored = False  # a 0/1 presence, not a confidence score
        self.counts = cfg.n_sources == "estimate"  # its detections estimate the count
        self.mics_m = np.asarray(mics_m, np.float64)
        self.fs = int(fs)
        m = len(self.mics_m)
        self.max_sources = min(self.K, m - 1)
        lo = max(1, int(round(cfg.freq_min_hz * cfg.nfft / fs)))
        hi = min(cfg.nfft // 2 + 1, int(round(cfg.freq_max_hz * cfg.nfft / fs)))
        self.bins = np.arange(lo, hi)
        if len(self.bins) < 2:
            raise ConfigError(
                f"{cfg.freq_min_hz:g}-{cfg.freq_max_hz:g} Hz holds fewer than 2 STFT bins "
                f"at {fs} Hz with nfft {cfg.nfft}"
            )
        hop = cfg.nfft // 2
        self.snapshots = int(cfg.window_s * fs // hop)  # at least, away from the clip's ends
        if self.counts and self.snapshots <= m:
            raise ConfigError(
                f"--n-sources estimate needs more snapshots per frame than capsules ({m}): "
                f"window_s={cfg.window_s:g} s gives {self.snapshots} at {fs} Hz, nfft {cfg.nfft}"
            )
        self.grid = SphereGrid(cfg.step_deg)
        self._tops = _pra_doa("tops", self.mics_m, fs, cfg.nfft, cfg.speed_of_sound_m_s) if (
            cfg.method == "tops") else None  # fmt: skip
        k = 2 * np.pi * fs * self.bins / cfg.nfft / cfg.speed_of_sound_m_s
        small = len(self.grid) * len(self.bins) * m <= self._CACHE
        self._grid_a = _steering(k, self.mics_m, self.grid.dirs) if small else None

    def spectrum(self, xs: np.ndarray, num_src: int) -> SpatialSpectrum:
        """The spatial spectrum of snapshots ``xs [M, F, S]`` for ``num_src`` sources."""
        c = self.cfg
        return SpatialSpectrum(c.method, xs, self.bins, num_src, self.mics_m, self.fs, c.nfft,
                               c.speed_of_sound_m_s, self._tops)  # fmt: skip

    def locate(self, xs: np.ndarray, num_src: int) -> np.ndarray:
        """Directions ``[n, 3]`` (n <= num_src, strongest first) from snapshots ``xs``."""
        spec = self.spectrum(xs, num_src)
        grid = self.grid
        if self._grid_a is not None and spec.method != "tops":
            values = spec.on_grid(grid.dirs, self._grid_a)
        else:
            values = spec.on_grid(grid.dirs)
        extra = 0 if spec.method == "tops" else _EXTRA_PEAKS  # TOPS is slow: the peaks only
        cand = grid.peaks(values)[: num_src + extra]
        stop = rad(self.cfg.refine_deg)
        u, v = refine(spec, grid.dirs[cand], grid.step_rad, stop, values[cand])
        keep: list[int] = []
        for i in np.argsort(-v, kind="stable"):  # two peaks that met are one
            if all(great_circle(u[i], u[j]) > grid.step_rad / 2 for j in keep):
                keep.append(int(i))
            if len(keep) == num_src:
                break
        return u[keep]

    def _localize(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        audio, centres, counts = x
        centres = np.asarray(centres, np.float64)
        n = len(centres)
        hyps = np.zeros((n, self.K, 3))
        conf = np.zeros((n, self.K), np.float32)
        valid = np.zeros((n, self.K), bool)
        spec, stft_centres = stft(np.asarray(audio, np.float64), self.cfg.nfft)
        half = self.cfg.window_s * self.fs / 2
        for i, c in enumerate(centres):  # one frame at a time
            snap = np.flatnonzero(np.abs(stft_centres - c) <= half)
            if len(snap) == 0:
                continue
            xs = spec[:, :, snap]
            if counts is None:
                n_src = estimate_n_sources(xs, self.bins, self.max_sources)
            else:
                n_src = min(int(counts[i]), self.max_sources)
            if n_src == 0:
                continue
            u = self.locate(xs, n_src)
            hyps[i, : len(u)] = u
            conf[i, : len(u)] = 1.0
            valid[i, : len(u)] = True
        return hyps, conf, valid


def _clip_row(scenes: Manifest, clips: pd.DataFrame, clip_id: str, features: str) -> pd.Series:
    row = clips.loc[clips.clip_id == clip_id]
    if row.empty:
        raise DataError(
            f"clip {clip_id!r} of {features} is not in {scenes.path}/clips.csv; {_TWIN}"
        )
    return row.iloc[0]


def check_labels(
    scenes: Manifest, clips: pd.DataFrame, feats: FeatureSet, lab: dict[str, np.ndarray]
) -> None:
    """Refuse scenes whose labels differ from the features' on a scored frame.

    Each scored clip's label CSV in ``scenes`` is turned into frame labels with
    :func:`ssl_toolkit.core.labels.table_frame_labels` (as ``ssl prep features`` does)
    and compared, slot by slot, with the features' activity and directions.

    Args:
        scenes: the scenes artifact scored; clips: its ``clips.csv``.
        feats: the features artifact; lab: its scored frames
            (:func:`ssl_toolkit.analysis.frames.label_frames`).

    Raises:
        UserError: one line naming the first clip that differs and both artifacts.
    """
    hop_s = feats.hop_s
    fmt = scenes.extra.get("label_format", "tut2018")
    for clip in dict.fromkeys(lab["clip_id"].tolist()):
        sel = np.flatnonzero(lab["clip_id"] == clip)
        row = _clip_row(scenes, clips, clip, str(feats.manifest.path))
        path = safe_join(scenes.path, row["labels"])
        table = read_label_file(path, fmt)  # a missing or malformed file: DataError naming it
        why = _mismatch(
            table, fmt, lab["frame"][sel], lab["active"][sel], lab["targets"][sel], hop_s
        )
        if why:
            raise UserError(
                f"clip {clip!r}: the labels of {scenes.path} ({path.name}) {why} those of "
                f"{feats.manifest.path}; {_TWIN}"
            )


def _mismatch(table, fmt: str, frame, active, targets, hop_s: float) -> str:
    """Where the frame labels of a label ``table`` (format ``fmt``) differ from ``active [n,
    S]`` / ``targets [n, S, 3]`` at clip frames ``frame [n]`` (empty string: nowhere)."""
    s = active.shape[1]
    try:
        act, dirs, *_ = table_frame_labels(table, fmt, int(frame.max()) + 1, hop_s, s)
    except DataError:  # more overlapping events than the features have slots
        return f"overlap more than {s} events, unlike"
    off = np.abs(dirs[frame] - targets).max(axis=-1) > LABEL_TOLERANCE  # (n, S)
    bad = ((act[frame] != active) | (off & active)).any(1)  # (n,) directions where active
    return f"differ at frame {int(frame[bad.argmax()])} from" if bad.any() else ""


def _read_audio(scenes: Manifest, clips: pd.DataFrame, clip_id: str, fs: int) -> np.ndarray:
    import soundfile as sf

    row = _clip_row(scenes, clips, clip_id, "the features")
    ar = str(scenes.extra.get("audio_root", "."))
    root = ar if os.path.isabs(ar) else safe_join(scenes.path, ar)  # absolute: import w/o copy
    path = safe_join(root, row["audio"])
    try:
        audio, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except (OSError, RuntimeError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if sr != fs:
        raise DataError(f"{path} is sampled at {sr} Hz, the scenes manifest says {fs}")
    return audio.T  # (M, n)


def run_baseline(
    scenes: str | os.PathLike,
    features: str | os.PathLike,
    out: str | os.PathLike,
    cfg: BaselineConfig | None = None,
    force: bool = False,
) -> Manifest:
    """Localize the frames of a features split with a classical method; write an eval artifact.

    Args:
        scenes: a MIC-format scenes artifact (audio and array geometry) whose labels
            match the features' on the scored frames (see :func:`check_labels`).
        features: the features artifact whose split, frames and labels are scored.
        out: the eval artifact to write.
        cfg: the options (default :class:`BaselineConfig`).
        force: replace an existing, different artifact.

    Raises:
        UserError: scenes not in MIC format, no chunk in the split, or labels that
            differ from the features' on a scored clip.
    """
    cfg = cfg or BaselineConfig()
    cfg.validate()
    sc = read_manifest(scenes, "scenes")
    if sc.extra.get("format") != "mic" or "mic_positions_m" not in sc.extra:
        raise UserError(f"{sc.path} is not in MIC format: classical baselines need mic audio")
    fs_art = open_features(features)
    rows = fs_art.rows(cfg.split)
    if len(rows) == 0:
        raise UserError(f"{fs_art.manifest.path} has no chunk in split {cfg.split!r} (--split)")
    fs = int(sc.extra["fs"])
    hop_s = fs_art.hop_s
    mics = np.asarray(sc.extra["mic_positions_m"], np.float64)  # (M, 3)
    clips, _ = read_clips(sc)  # checked: columns, values, splits
    lab = label_frames(fs_art, rows)
    check_labels(sc, clips, fs_art, lab)
    k = fs_art.max_sources
    reads = scene_files(sc, *read_clips(sc), lab["clip_id"].tolist())  # the audio it reads
    with build_artifact(out, "eval", to_dict(cfg), [sc, fs_art.manifest], force=force,
                        reads=reads) as b:  # fmt: skip
        if b.reused:
            return b.manifest
        loc = ClassicalLocalizer(cfg, mics, fs, k)
        n = len(lab["frame"])
        hyps = np.zeros((n, k, 3), np.float32)
        conf = np.zeros((n, k), np.float32)
        valid = np.zeros((n, k), bool)
        known = lab["active"].sum(1)
        from ..core.console import track, warn

        if cfg.method == "tops":
            warn("tops is about 60x slower than srp, music and normmusic (pyroomacoustics' "
                 "TOPS solves one eigenproblem per frequency and direction); the progress "
                 "lines give its ETA")  # fmt: skip

        for clip in track(list(dict.fromkeys(lab["clip_id"].tolist())), f"{cfg.method}"):
            sel = np.flatnonzero(lab["clip_id"] == clip)
            counts = known[sel] if cfg.n_sources == "known" else None
            centres = lab["frame"][sel] * hop_s * fs  # frame t is centred at t * hop
            out_ = loc.localize((_read_audio(sc, clips, clip, fs), centres, counts))
            hyps[sel], conf[sel], valid[sel] = out_.hyps, out_.conf, out_.valid
        fr = Frames(hyps=hyps, conf=conf, valid=valid, **lab)
        scores = score_predictions(fr, loc.threshold, fs_art.spec.segment_frames(1.0), loc.scored,
                                   counts=loc.counts)  # fmt: skip
        write_eval(b.dir, fr, cfg.method, loc.threshold, scores, loc.scored, split=cfg.split,
                   n_sources=cfg.n_sources)  # fmt: skip
        b.extra.update({"method": cfg.method, "K": k, "threshold": loc.threshold,
                        "frames": n, "scored": loc.scored})  # fmt: skip
    return b.manifest
