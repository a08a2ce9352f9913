"""Features of multichannel audio, the same for training (``ssl prep features``) and
prediction (``ssl predict``).

Two kinds (:attr:`FeatureSpec.type`):

- ``stft`` (rMCL / SELDnet input): STFT magnitude then phase of each channel, DC bin
  dropped: ``[2M, T, n_fft // 2]``.
- ``logmel`` (DCASE baselines): log-mel energies of each channel, plus the mel-band active
  intensity vector for FOA (``[4 + 3, T, n_mels]``) or the GCC-PHAT of every capsule pair,
  ``n_mels`` lags around zero, for MIC (``[4 + 6, T, n_mels]``).
- ``salsa`` (SALSA-Lite, Nguyen et al., ICASSP 2022): the log power of each channel in the
  linear-frequency bins ``1 .. K`` up to ``max_hz``, plus for FOA the active intensity vector
  of each bin and for MIC the normalized phase difference of every capsule pair ``i < j``,
  ``-c / (2 pi f) arg(conj(X_i) X_j)``: for a plane wave below spatial aliasing, the path
  difference ``-(p_j - p_i) . u`` in metres whatever the frequency (``[4 + 6, T, K]``). The
  paper keeps the differences to one reference capsule; every pair is kept here, so that a
  symmetry of the array permutes them (with a sign where a pair's order flips) and the
  spatial augmentation stays exact.

Frame t is centred at ``t * hop_length`` (centred STFT, zero padding, Hann window).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from ..core.errors import DataError
from .spec import SPEED_OF_SOUND_M_S, TYPES, FeatureSpec

LOG_EPS = 1e-8


def extract(audio: np.ndarray, fs: int, spec: FeatureSpec) -> np.ndarray:
    """Features of a multichannel signal, the same for training and prediction.

    Args:
        audio: ``[M, n_samples]`` signal (resampled when ``fs`` differs from the spec's).
        fs: its sample rate.
        spec: the features' specification (a features artifact's, a run's or an export's).

    Returns:
        ``[C, T, F]`` float32 with ``T = 1 + n_samples // hop_length`` (at the spec's rate).

    Raises:
        DataError: when the channel count differs from the one the features expect, the
            spec's type is not one this toolkit makes, or the features are not finite
            or beyond :data:`FEATURE_LIMIT` (NaN or infinite samples, or samples so
            loud that float32 arithmetic overflows); the caller names the audio.
    """
    p = spec
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[0] != p.n_channels:
        raise DataError(
            f"audio has shape {audio.shape}, expected [{p.n_channels} channels, samples]"
        )
    if fs != p.fs:
        from scipy.signal import resample_poly

        g = np.gcd(int(fs), int(p.fs))
        audio = resample_poly(audio, p.fs // g, fs // g, axis=-1).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # overflows: refused just below
        if p.type == "stft":
            return check_features(_stft_features(audio, p), audio)
        if p.type == "logmel":
            return check_features(_logmel(_stft(audio, p), p), audio)
        if p.type == "salsa":
            return check_features(_salsa(_stft(audio, p), p), audio)
    raise DataError(
        f"features of type {p.type!r} are not made by this toolkit ({', '.join(TYPES)})"
    )


#: Largest magnitude a feature may have: squares summed over frames (normalization
#: statistics) and every later float32 step stay finite below it. STFT magnitudes reach
#: it for samples of about 1e12 (float audio is expected within about +-1).
FEATURE_LIMIT = 1e15


def peak(x: np.ndarray) -> float:
    """Largest absolute value of ``x`` (NaN if it holds one), in two passes, no copy."""
    if x.size == 0:
        return 0.0
    return float(max(-x.min(), x.max()))


def check_features(x: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """``x`` when it is finite and within :data:`FEATURE_LIMIT`.

    Raises:
        DataError: ``samples up to ... give features that are not finite``, with the
            audio's peak (the caller names the audio).
    """
    top = peak(x)
    if not top <= FEATURE_LIMIT:  # NaN fails too
        a = peak(audio)
        what = "NaN or infinite" if not np.isfinite(a) else f"up to {a:.3g}"
        raise DataError(
            f"samples {what} give features that are not finite or beyond "
            f"{FEATURE_LIMIT:.0e}; float audio is expected within about +-1: scale it down"
        )
    return x


def _stft_features(audio: np.ndarray, p: FeatureSpec) -> np.ndarray:
    """Magnitudes then phases ``[2M, T, F]``, computed channel by channel.

    One channel's spectrogram stays in cache while its magnitude and phase are taken:
    about twice as fast as transforming all channels first.
    """
    m = audio.shape[0]
    out = np.empty((2 * m, p.n_frames(audio.shape[1]), p.n_fft // 2), np.float32)
    for c in range(m):
        _magnitude_phase(_stft(audio[c : c + 1], p), out=out[c::m])  # (2, T, F) view
    return out


def _stft(audio: np.ndarray, p: FeatureSpec):
    """Centred STFT (zero padding), Hann window: ``[M, T, n_fft//2 + 1]`` complex64 tensor.

    Equal to ``torch.stft(..., center=True, pad_mode="constant").transpose(1, 2)`` (the
    window zero-padded to ``n_fft`` in the middle), made frame-major so that every later
    step reads contiguous ``[T, F]`` planes instead of a transposed view.
    """
    import torch
    from torch.nn.functional import pad

    n_fft, win = p.n_fft, p.win_length
    x = pad(torch.from_numpy(np.ascontiguousarray(audio)), (n_fft // 2, n_fft // 2))
    left = (n_fft - win) // 2
    window = pad(torch.hann_window(win), (left, n_fft - win - left))
    return torch.fft.rfft(x.unfold(-1, n_fft, p.hop_length) * window, dim=-1)


def _magnitude_phase(spec, out: np.ndarray | None = None) -> np.ndarray:
    """Magnitudes then phases of the channels, DC dropped: ``[2M, T, F]`` float32.

    numpy's float32 ``arctan2`` is much faster than torch's complex ``angle``;
    results are written straight into the ``[C, T, F]`` layout (into ``out`` if given).
    """
    import torch

    ri = torch.view_as_real(spec).numpy()[:, :, 1:]  # (M, T, F, 2)
    re, im = ri[..., 0], ri[..., 1]  # (M, T, F) views
    m = re.shape[0]
    if out is None:
        out = np.empty((2 * m, *re.shape[1:]), dtype=np.float32)
    np.multiply(re, re, out=out[:m])
    out[:m] += np.square(im)
    np.sqrt(out[:m], out=out[:m])
    np.arctan2(im, re, out=out[m:])
    return out


#: Mel filterbanks by (fs, n_fft, n_mels); worker processes receive them from the parent.
_MEL: dict[tuple[int, int, int], np.ndarray] = {}


def _mel_basis(p: FeatureSpec) -> np.ndarray:
    """Mel filterbank ``[n_mels, n_fft // 2 + 1]`` (librosa, Slaney), cached."""
    key = (int(p.fs), int(p.n_fft), int(p.n_mels))
    if key not in _MEL:
        import librosa

        _MEL[key] = librosa.filters.mel(sr=key[0], n_fft=key[1], n_mels=key[2]).astype(np.float32)
    return _MEL[key]


def _logmel(spec, p: FeatureSpec) -> np.ndarray:
    """Log-mel of each channel + intensity vectors (FOA) or GCC-PHAT (MIC): ``[C, T, n_mels]``.

    ``spec`` is the ``[M, T, F]`` complex tensor of :func:`_stft`; the MIC branch whitens it
    in place. Every step is one pass over contiguous float32 planes (real and imaginary
    parts are never combined through complex division or ``abs``, which are several times
    slower in torch) written into one preallocated output.
    """
    import torch

    mel_t = torch.from_numpy(_mel_basis(p)).T  # (F, n_mels)
    m, t, _ = spec.shape
    foa = p.format == "foa"
    out = torch.empty((m + (3 if foa else m * (m - 1) // 2), t, p.n_mels))
    power = torch.mul(spec.real, spec.real).addcmul_(spec.imag, spec.imag)  # (M, T, F)
    torch.log(torch.matmul(power, mel_t, out=out[:m]).add_(LOG_EPS), out=out[:m])
    if foa:
        _intensity_mel(spec, power, mel_t, out=out[m:])
    else:
        _gcc_phat(spec, p.n_fft, p.n_mels, power=power, out=out[m:])
    return out.numpy()


def _salsa(spec, p: FeatureSpec) -> np.ndarray:
    """SALSA-Lite of the ``[M, T, n_fft//2 + 1]`` complex tensor ``spec``: ``[C, T, K]``
    (bins ``1 .. K`` of :attr:`FeatureSpec.bins`; see the module's docstring)."""
    import torch

    k = p.bins
    x = spec[:, :, 1 : k + 1]
    m, t, _ = x.shape
    out = torch.empty((p.channels, t, k))
    power = torch.mul(x.real, x.real).addcmul_(x.imag, x.imag)  # (M, T, K)
    torch.log(power.add(LOG_EPS), out=out[:m])
    if p.format == "foa":
        out[m:] = _intensity(x, power)
        return out.numpy()
    freqs = torch.arange(1, k + 1, dtype=torch.float32) * (p.fs / p.n_fft)
    scale = (-SPEED_OF_SOUND_M_S / (2 * np.pi)) / freqs  # (K,): radians -> metres
    re, im = x.real, x.imag
    for n, (i, j) in enumerate(combinations(range(m), 2)):
        # conj(X_i) X_j = (ri rj + ii ij) + 1j (ri ij - ii rj)
        cr = torch.mul(re[i], re[j]).addcmul_(im[i], im[j])
        ci = torch.mul(re[i], im[j]).addcmul_(im[i], re[j], value=-1.0)
        torch.atan2(ci, cr, out=out[m + n]).mul_(scale)
    return out.numpy()


def _intensity(spec, power):
    """Normalized active intensity (x, y, z) of each bin of the ACN ``[4, T, F]`` ``spec``
    (``power`` its ``|.|^2``): ``[3, T, F]``."""
    w, xyz = spec[0], spec[[3, 1, 2]]  # (T, F), (3, T, F)
    energy = power[1:].sum(dim=0).div_(3.0).add_(power[0]).add_(LOG_EPS)  # (T, F)
    return (xyz.real * w.real).add_(xyz.imag * w.imag).div_(energy)  # Re(conj(W) V) / energy


def _intensity_mel(spec, power, mel_t, out=None):
    """Normalized active intensity (x, y, z) in mel bands, as the DCASE 2020 baseline.

    Channels are ACN (W, Y, Z, X); ``I = Re(conj(W) [X, Y, Z]) / (|W|^2 + (|X|^2+|Y|^2+|Z|^2)/3)``.
    Tensors: ``spec`` ``[4, T, F]`` complex, ``power`` its ``|.|^2``, ``mel_t`` ``[F, n_mels]``;
    returns ``[3, T, n_mels]``.
    """
    import torch

    return torch.matmul(_intensity(spec, power), mel_t, out=out)


#: Inverse-DFT bases of the GCC-PHAT lags by (n_fft, n_lags).
_GCC_BASIS: dict[tuple[int, int], Any] = {}


def _gcc_basis(n_fft: int, n_lags: int):
    """Basis ``B`` ``[2 (n_fft // 2 + 1), n_lags]``: ``irfft(X)[lags] = [Re X_k, Im X_k]_k @ B``.

    Rows interleave the cosine and sine terms of each bin, as ``view_as_real`` lays out a
    complex spectrum. The lags are ``-n_lags // 2 .. n_lags - n_lags // 2 - 1`` (zero lag in
    the middle), and ``irfft`` of a half spectrum is
    ``(1/N) sum_k w_k (Re X_k cos - Im X_k sin)(2 pi k n / N)`` with ``w = 1`` at DC and
    Nyquist, 2 elsewhere.
    """
    key = (int(n_fft), int(n_lags))
    if key not in _GCC_BASIS:
        import torch

        k = np.arange(n_fft // 2 + 1)[:, None]
        lags = np.arange(n_lags)[None] - n_lags // 2
        w = np.full((len(k), 1), 2.0)
        w[0] = w[-1] = 1.0
        angle = 2 * np.pi * k * lags / n_fft
        basis = np.stack((w * np.cos(angle), -w * np.sin(angle)), axis=1) / n_fft  # (F, 2, L)
        _GCC_BASIS[key] = torch.from_numpy(basis.reshape(-1, n_lags).astype(np.float32))
    return _GCC_BASIS[key]


def _gcc_phat(spec, n_fft: int, n_lags: int, power=None, out=None):
    """GCC-PHAT of every capsule pair, ``n_lags`` lags centred on zero: ``[P, T, n_lags]``.

    ``irfft(X_i conj(X_j) / |X_i conj(X_j)|)`` at those lags, for the ``[M, T, F]`` complex
    tensor ``spec`` (whitened in place; ``power`` is its ``|.|^2`` if already made, also
    overwritten). The phase transform is taken per channel (``U = X / |X|``: the
    cross-spectrum of unit phasors is already whitened), and only the kept lags are made,
    one matrix product per pair with their inverse-DFT basis (:func:`_gcc_basis`) in single
    precision: about 10x faster than whitening every pair's cross-spectrum and taking its
    full ``irfft``.
    """
    import torch

    if power is None:
        power = torch.mul(spec.real, spec.real).addcmul_(spec.imag, spec.imag)
    inv = power.sqrt_().add_(LOG_EPS).reciprocal_()  # 1 / (|X| + eps)
    unit = torch.view_as_complex(torch.view_as_real(spec).mul_(inv[..., None]))
    m, t, f = spec.shape
    pairs = list(combinations(range(m), 2))
    if out is None:
        out = torch.empty((len(pairs), t, n_lags))
    basis = _gcc_basis(n_fft, n_lags)
    for p, (i, j) in enumerate(pairs):  # P <= a few dozen pairs, each [T, F] at once
        cross = torch.view_as_real(unit[i] * unit[j].conj()).reshape(t, 2 * f)
        torch.matmul(cross, basis, out=out[p])
    return out
