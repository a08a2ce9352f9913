"""Render propagation paths into multichannel impulse responses and audio.

Every path is delayed and attenuated on its own: in ``foa`` each path is a
plane wave from its own direction, encoded with ACN/SN3D gains; in ``mic``
each path reaches each capsule with the exact distance from its (image)
source. Delays are fractional (windowed-sinc interpolation) and counted from
the arrival of the direct sound at the array centre, so label times are the
times at which the direct sound reaches the array.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import oaconvolve

from .arrays import SPEED_OF_SOUND_M_S, foa_gains
from .rooms import Paths, late_tail

SINC_HALF = 16  # half-length of the fractional-delay interpolator, in samples
TAIL_FADE_S = 0.005
TAIL_MATCH_S = 0.02


def lead_samples(fs: int, mic_positions_m: np.ndarray | None) -> int:
    """Samples before the direct arrival that an impulse response keeps.

    Covers the interpolator and the capsules that hear the sound before the centre.
    """
    radius = (
        0.0 if mic_positions_m is None else float(np.linalg.norm(mic_positions_m, axis=1).max())
    )
    return SINC_HALF + int(np.ceil(radius / SPEED_OF_SOUND_M_S * fs)) + 1


def fractional_delays(delays: np.ndarray, amps: np.ndarray, length: int) -> np.ndarray:
    """Sum of delayed, scaled impulses per channel (Hann-windowed sinc).

    Args:
        delays: ``[P, M]`` delays in samples (>= SINC_HALF).
        amps: ``[P, M]`` amplitudes.
        length: output length.

    Returns:
        ``[M, length]`` float64.
    """
    p, m = delays.shape
    k = np.arange(-SINC_HALF, SINC_HALF + 1)  # (K,)
    base = np.floor(delays).astype(np.int64)  # (P, M)
    frac = delays - base
    x = k[None, None, :] - frac[..., None]  # (P, M, K)
    taps = np.sinc(x) * (0.5 + 0.5 * np.cos(np.pi * x / (SINC_HALF + 1))) * amps[..., None]
    idx = base[..., None] + k[None, None, :]  # (P, M, K)
    keep = (idx >= 0) & (idx < length)
    chan = np.broadcast_to(np.arange(m)[None, :, None], idx.shape)
    flat = (chan * length + idx)[keep]
    return np.bincount(flat, weights=taps[keep], minlength=m * length).reshape(m, length)


def impulse_response(
    paths: Paths,
    fmt: str,
    fs: int,
    mic_positions_m: np.ndarray | None = None,
    tail: tuple[np.random.Generator, float] | None = None,
) -> np.ndarray:
    """The multichannel impulse response of a set of paths.

    Args:
        paths: propagation paths (direct first), relative to the array centre.
        fmt: ``foa`` or ``mic``.
        fs: sample rate.
        mic_positions_m: ``[M, 3]`` capsule positions (``mic`` format).
        tail: ``(rng, rt60_s)`` to append a late tail where the image sources stop.

    Returns:
        ``[4, L]`` (``foa``) or ``[M, L]`` (``mic``) float64; the direct sound reaches
        the array centre at sample
        :func:`lead_samples`. Amplitudes are relative to the source at 1 m.
    """
    lead = lead_samples(fs, mic_positions_m if fmt == "mic" else None)
    pos = paths.positions_m  # (P, 3)
    dist = np.linalg.norm(pos, axis=1)  # (P,)
    if tail:  # image sources up to where their set is complete, the late tail after
        keep = dist <= paths.complete_until_m()
        pos, dist, damping = pos[keep], dist[keep], paths.damping[keep]
    else:
        damping = paths.damping
    if fmt == "foa":
        dist_pm = np.repeat(dist[:, None], 4, axis=1)  # (P, 4)
        gains = foa_gains(pos / dist[:, None])  # (P, 4)
    else:
        dist_pm = np.linalg.norm(pos[:, None, :] - mic_positions_m[None], axis=-1)  # (P, M)
        gains = np.ones_like(dist_pm)
    delays = lead + (dist_pm - dist[0]) / SPEED_OF_SOUND_M_S * fs  # (P, M)
    amps = gains * damping[:, None] / np.maximum(dist_pm, 0.1)
    t_last = int(np.ceil(delays.max())) + SINC_HALF + 1
    rt60 = tail[1] if tail else 0.0
    length = t_last + int(rt60 * fs)
    rir = fractional_delays(delays, amps, length)
    if tail and len(dist) > 1:
        rir = _add_tail(rir, tail[0], rt60, fs, fmt, t_last - SINC_HALF)
    return rir


def _add_tail(
    rir: np.ndarray, rng: np.random.Generator, rt60_s: float, fs: int, fmt: str, start: int
) -> np.ndarray:
    """Continue ``rir`` after ``start`` with a late tail matched to its energy there."""
    win = max(1, int(TAIL_MATCH_S * fs))
    power = float(np.mean(rir[0, max(0, start - win) : start] ** 2))
    n = rir.shape[1] - start
    if n <= 0 or power <= 0:
        return rir
    fade = np.minimum(1.0, np.arange(n) / max(1, TAIL_FADE_S * fs))
    rir = rir.copy()
    tail = late_tail(rng, n, rt60_s, fs, fmt, rir.shape[0])
    rir[:, start:] += np.sqrt(power) * tail * fade
    return rir


def spatialize(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve a mono signal ``[n]`` with an impulse response ``[M, L]`` -> ``[M, n + L - 1]``.

    A pure delay with gains (free-field FOA) is applied directly, anything else by
    overlap-add FFT convolution.
    """
    signal = signal.astype(np.float32)
    rir = rir.astype(np.float32)
    peak = np.abs(rir).max(axis=0)  # (L,)
    taps = np.flatnonzero(peak > 1e-6 * peak.max())  # sinc zeros are ~1e-17, not 0
    if len(taps) == 1:  # a pure delay and gains (free-field FOA): no convolution needed
        out = np.zeros((rir.shape[0], len(signal) + rir.shape[1] - 1), dtype=np.float32)
        out[:, taps[0] : taps[0] + len(signal)] = rir[:, taps[0], None] * signal[None]
        return out
    return oaconvolve(signal[None, :], rir, axes=-1)
