"""Render propagation paths into multichannel impulse responses and audio.

Every path is delayed and attenuated on its own: in ``foa`` each path is a
plane wave from its own direction, encoded with ACN/SN3D gains; in ``mic``
each path reaches each capsule with the exact distance from its (image)
source. Delays are fractional (windowed-sinc interpolation) and counted from
the arrival of the direct sound at the array centre, so label times are the
times at which the direct sound reaches the array.

Moving sources (:func:`spatialize_moving`) are rendered block by block: the signal is cut
into blocks of ``2 * hop`` samples every ``hop`` samples, each weighted by a sine-squared
(periodic Hann) window whose shifted copies sum to exactly one, convolved with the impulse
response of the source position at the block's centre and overlap-added. A source that
does not move gives back the plain convolution (:func:`spatialize`) to rounding.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import fft as sp_fft
from scipy.signal import oaconvolve

from .arrays import SPEED_OF_SOUND_M_S, foa_gains
from .rooms import Paths, decay_rate, late_tail

SINC_HALF = 16  # half-length of the fractional-delay interpolator, in samples
TAIL_FADE_S = 0.005
TAIL_MATCH_S = 0.02
#: Hop of the block-wise rendering of moving sources (blocks are twice as long).
BLOCK_HOP_S = 0.05
#: Impulse responses held at once by :func:`spatialize_moving` (bytes, float64).
_MOVING_CHUNK_BYTES = 16 * 2**20


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
    tail: tuple[np.random.Generator | np.ndarray, float] | None = None,
) -> np.ndarray:
    """The multichannel impulse response of a set of paths.

    Args:
        paths: propagation paths (direct first), relative to the array centre.
        fmt: ``foa`` or ``mic``.
        fs: sample rate.
        mic_positions_m: ``[M, 3]`` capsule positions (``mic`` format).
        tail: ``(rng, rt60_s)`` to append a late tail where the image sources stop, or
            ``(noise, rt60_s)`` with ``noise [M, >= L]`` a :func:`.rooms.late_tail` drawn
            from sample 0 of the response: the tail then takes its samples at their own
            indices, so the responses of a moving source's blocks share one coherent
            tail (independent tails would dip 3 dB in power in every crossfade).

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
    rir: np.ndarray,
    rng: np.random.Generator | np.ndarray,
    rt60_s: float,
    fs: int,
    fmt: str,
    start: int,
) -> np.ndarray:
    """Continue ``rir`` after ``start`` with a late tail matched to its energy there.

    ``rng`` is a generator (a new tail) or a tail ``[M, >= L]`` drawn from sample 0 (its
    samples ``start:`` are used, rescaled to unit power at ``start``).
    """
    win = max(1, int(TAIL_MATCH_S * fs))
    power = float(np.mean(rir[0, max(0, start - win) : start] ** 2))
    n = rir.shape[1] - start
    if n <= 0 or power <= 0:
        return rir
    fade = np.minimum(1.0, np.arange(n) / max(1, TAIL_FADE_S * fs))
    rir = rir.copy()
    if isinstance(rng, np.ndarray):
        if rng.shape[0] != rir.shape[0] or rng.shape[1] < rir.shape[1]:
            raise ValueError(
                f"a shared tail of shape {rng.shape} does not cover an impulse response "
                f"of shape {rir.shape} (same channels, at least as long)"
            )
        tail = rng[:, start : rir.shape[1]] * np.float32(np.exp(decay_rate(rt60_s, fs) * start))
    else:
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


def crossfade_window(hop: int) -> np.ndarray:
    """The crossfade window of block-wise rendering: ``w[j] = sin^2(pi j / (2 hop))``.

    A periodic Hann window of ``2 * hop`` samples: copies shifted by ``hop`` sum to one at
    every sample (``sin^2 + cos^2 = 1``), so a signal cut into windowed blocks is the sum
    of its blocks, and a block weighs exactly 1 at its centre (sample ``hop``).

    Returns:
        ``[2 * hop]`` float64.
    """
    if hop < 1:
        raise ValueError(f"hop must be at least 1 sample, got {hop}")
    return np.sin(np.pi * np.arange(2 * hop) / (2 * hop)) ** 2


def block_count(n_samples: int, hop: int) -> int:
    """Blocks that cover a signal of ``n_samples``: block k is centred at sample ``k * hop``
    and spans ``[(k - 1) hop, (k + 1) hop)``, for k = 0 .. ``ceil(n / hop)``."""
    return -(-int(n_samples) // int(hop)) + 1


def spatialize_moving(signal: np.ndarray, rirs: Iterable[np.ndarray], hop: int) -> np.ndarray:
    """Render a mono signal from a moving source by windowed blocks and overlap-add.

    Block k (centred at signal sample ``k * hop``, see :func:`block_count`) is weighted by
    :func:`crossfade_window`, convolved with ``rirs[k]`` (the impulse response of the
    source position at the block's centre) and added at its place. The blocks are
    convolved a chunk at a time with one batched FFT (about 16 MB of impulse responses
    per chunk), so ``rirs`` may be a generator: each response is computed when its chunk
    is rendered and memory stays bounded however long the event.

    Args:
        signal: ``[n]`` mono signal.
        rirs: ``block_count(n, hop)`` impulse responses ``[M, L_k]`` (lengths may differ).
        hop: block hop in samples.

    Returns:
        ``[M, n + L - 1]`` float32 with ``L = max_k L_k``, aligned like :func:`spatialize`
        (output sample ``i + d`` holds input sample ``i`` through tap ``d``).

    Raises:
        ValueError: when the number of impulse responses is not ``block_count(n, hop)``
            or their channel counts differ.
    """
    x = np.asarray(signal, dtype=np.float32)
    n, n_blocks = len(x), block_count(len(x), hop)
    win = crossfade_window(hop).astype(np.float32)
    padded = np.zeros((n_blocks + 1) * hop, dtype=np.float32)  # block k: [k hop, (k + 2) hop)
    padded[hop : hop + n] = x
    blocks = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:n_blocks] * win
    pieces: list[tuple[int, np.ndarray]] = []  # (first block of a chunk, its output [M, len])
    pending: list[np.ndarray] = []
    done, l_max = 0, 1
    for rir in rirs:
        if done + len(pending) == n_blocks:
            raise ValueError(
                f"more impulse responses than the {n_blocks} blocks (n = {n}, hop {hop})"
            )
        pending.append(np.asarray(rir))
        l_max = max(l_max, pending[-1].shape[-1])
        if (
            sum(r.size for r in pending) * 8 >= _MOVING_CHUNK_BYTES
            or done + len(pending) == n_blocks
        ):
            pieces.append(
                (done, _convolve_blocks(blocks[done : done + len(pending)], pending, hop))
            )
            done, pending = done + len(pending), []
    if done != n_blocks:
        raise ValueError(f"{done} impulse responses for {n_blocks} blocks (n = {n}, hop {hop})")
    if len({p.shape[0] for _, p in pieces}) != 1:
        raise ValueError("the impulse responses have different numbers of channels")
    out = np.zeros((pieces[0][1].shape[0], (n_blocks + 1) * hop + l_max), dtype=np.float32)
    for k, p in pieces:  # out index 0 = padded sample 0 = signal sample -hop
        out[:, k * hop : k * hop + p.shape[1]] += p
    return out[:, hop : hop + n + l_max - 1]


def _convolve_blocks(blocks: np.ndarray, rirs: list[np.ndarray], hop: int) -> np.ndarray:
    """Convolve ``blocks [B, 2 hop]`` with their ``rirs`` (B of ``[M, L_k]``) by one batched
    FFT and overlap-add them at ``hop``: ``[M, (B + 1) hop + L - 1]``, L = max L_k."""
    b, m = len(rirs), rirs[0].shape[0]
    if any(r.ndim != 2 or r.shape[0] != m for r in rirs):
        raise ValueError("the impulse responses have different numbers of channels")
    length = max(r.shape[1] for r in rirs)
    h = np.zeros((b, m, length), dtype=np.float32)
    for k, r in enumerate(rirs):
        h[k, :, : r.shape[1]] = r
    n_out = 2 * hop + length - 1
    n_pieces = -(-n_out // hop)
    nfft = sp_fft.next_fast_len(n_pieces * hop, real=True)  # samples past n_out come out 0
    spec = sp_fft.rfft(blocks, nfft, axis=-1)[:, None, :] * sp_fft.rfft(h, nfft, axis=-1)
    y = sp_fft.irfft(spec, nfft, axis=-1)[..., : n_pieces * hop]  # (B, M, pieces * hop)
    # overlap-add: cut each block's output into pieces of hop samples; piece j of block k
    # lands at hop-slot k + j, so one vectorized add per piece index j (a few), not per block
    y = y.reshape(b, m, n_pieces, hop)
    slots = np.zeros((b + n_pieces - 1, m, hop), dtype=np.float32)
    for j in range(n_pieces):
        slots[j : j + b] += y[:, :, j]
    out = slots.transpose(1, 0, 2).reshape(m, -1)
    return out[:, : (b + 1) * hop + length - 1]
