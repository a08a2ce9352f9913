"""What ``ssl predict`` says and checks before it localizes anything.

The model's expected input is stated in one line (:func:`banner`: format, channel order,
rate, array, band). Each audio file is then checked on a few excerpts
(:func:`check_audio`), each finding one line on stderr:

- its rate: resampled to the model's (a note), and a warning when resampled *up* below
  the top of the features' band (:attr:`~ssl_toolkit.features.spec.FeatureSpec.band_hz`:
  the model's Nyquist frequency, or ``max_hz`` for ``salsa``): the band between the
  file's Nyquist frequency and that top is empty, while the model was trained on content
  there;
- FOA or MIC, where the audio says so (:func:`foa_energy_ratio`): first-order Ambisonics
  (ACN/SN3D) has dipoles Y, Z, X whose energies add up to about W's for any mixture of
  plane waves (0.7-1.2 measured on reverberant scenes), while the capsules of a small
  array all carry about the same energy (2.9-3.3 for the sum of three over the first);
  in between, nothing is said;
- the band: each band's level relative to the training features' average spectrum
  (:attr:`~ssl_toolkit.features.spec.FeatureSpec.levels_db`), normalized by the lower
  bands; the top bands far below what the model was trained on (low-passed or
  upsampled audio) are named.

Channel counts are refused (by :class:`~ssl_toolkit.inference.predict.AudioReader`), the
rest are warnings: a recording can be right and still look unusual.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..features.spec import FeatureSpec, band_edges_hz, levels_db

#: Excerpts of each file the checks read (evenly spread), and their length in seconds.
EXCERPTS, EXCERPT_S = 4, 5.0
#: The band the FOA/MIC test measures (Hz; the upper edge at most 0.45 fs).
FORMAT_BAND_HZ = (200.0, 8000.0)
#: (Y + Z + X energy) / W energy: FOA (SN3D) below the first, MIC above the second.
FOA_BELOW, MIC_ABOVE = 1.6, 2.3
#: A top band this many dB below the training level (relative to the lower bands) is missing.
#: Measured on 44.1 kHz synthesized scenes (resyn, FOA and MIC twins): unaltered audio
#: of other scenes deviates by at most 18 dB (stft) / 15 dB (logmel); low-passed at 11.5 kHz
#: or resampled up from 24 or 16 kHz, the empty bands lie 37-91 dB (stft) / 31-42 dB
#: (logmel: the log floor caps it) below.
MISSING_BAND_DB = 25.0


def banner(spec: FeatureSpec, source) -> str:
    """One line: what the model at ``source`` expects."""
    return f"model {source} expects {spec.describe_input()}"


def excerpts(reader, spec: FeatureSpec) -> np.ndarray:
    """Up to :data:`EXCERPTS` excerpts of :data:`EXCERPT_S` seconds, evenly spread over the
    file, at the model's rate, concatenated: ``[M, n]``."""
    n = int(EXCERPT_S * spec.fs)
    if reader.n <= EXCERPTS * n:
        return reader.read(0, reader.n)
    starts = np.linspace(0, reader.n - n, EXCERPTS).astype(int)
    return np.concatenate([reader.read(int(s), int(s) + n) for s in starts], axis=1)


def foa_energy_ratio(audio: np.ndarray, fs: int) -> float | None:
    """Energy of channels 2-4 over channel 1's in :data:`FORMAT_BAND_HZ` (None: not
    4 channels, or too little signal to tell).

    About 1 for first-order Ambisonics in SN3D (``|Y|^2 + |Z|^2 + |X|^2 = |W|^2`` for every
    plane wave), about 3 for the capsules of a microphone array (each about as loud as
    the first).
    """
    if audio.shape[0] != 4 or audio.shape[1] < 1024:
        return None
    from scipy.signal import welch

    nper = 1 << max(8, int(math.log2(0.032 * fs)))
    f, p = welch(audio.astype(np.float64), fs, nperseg=nper, axis=-1)  # (4, F)
    band = (f >= FORMAT_BAND_HZ[0]) & (f <= min(FORMAT_BAND_HZ[1], 0.45 * fs))
    e = p[:, band].sum(axis=1)
    if not band.any() or e[0] <= 1e-20 or e.sum() <= 1e-20:
        return None
    return float(e[1:].sum() / e[0])


def missing_band(spec: FeatureSpec, audio: np.ndarray) -> tuple[float, float] | None:
    """``(frequency in Hz above which the audio lacks what the model was trained on, its
    deficit in dB)``, or None (nothing missing, or the model records no training levels).

    Each band's level (:func:`~ssl_toolkit.features.spec.levels_db`, the same statistic as
    the training features') minus the training level, less the median of that difference
    over the bands in the lower half of the features' band (up to a quarter of the rate
    but for ``salsa``: an overall gain and the source's colour cancel); the top bands
    whose deficit exceeds :data:`MISSING_BAND_DB` are missing.
    """
    if spec.levels_db is None or audio.shape[1] < spec.n_fft:
        return None
    from ..features.extract import extract

    feats = extract(audio, spec.fs, spec)  # (C, T, F)
    got = np.asarray(levels_db(spec, feats.mean(axis=1)))
    diff = got - np.asarray(spec.levels_db)
    edges = band_edges_hz(spec)
    low = np.array([hi <= spec.band_hz[1] / 2 for _, hi in edges])
    if not low.any():
        low[0] = True
    deficit = np.median(diff[low]) - diff
    k = len(deficit)
    while k > 0 and deficit[k - 1] > MISSING_BAND_DB:
        k -= 1
    if k == len(deficit) or k == 0:
        return None
    return edges[k][0], float(deficit[k:].mean())


def check_audio(reader, spec: FeatureSpec, warn: Callable[[str], None],
                note: Callable[[str], None]) -> None:  # fmt: skip
    """Say what :mod:`this module <ssl_toolkit.inference.input_checks>` finds about one
    file (``reader``: an :class:`~ssl_toolkit.inference.predict.AudioReader`)."""
    name, fs_in = reader.path, reader.fs_in
    nyq_in, top = fs_in / 2, spec.band_hz[1]  # the features use content up to top
    if fs_in > spec.fs or (fs_in < spec.fs and nyq_in >= top):
        note(f"{name} is at {fs_in} Hz: resampled to the model's {spec.fs} Hz")
    elif fs_in < spec.fs:
        warn(f"{name} is at {fs_in} Hz, below the model's {spec.fs} Hz: resampled up, it "
             f"has nothing above {nyq_in / 1000:.3g} kHz while the model was trained on "
             f"content up to {top / 1000:.3g} kHz; expect missed or wrong detections "
             f"(record at {math.ceil(2 * top)} Hz or more)")  # fmt: skip
    audio = excerpts(reader, spec)
    fmt = spec.array.format if spec.array is not None else spec.format
    ratio = foa_energy_ratio(audio, spec.fs)
    if ratio is not None and fmt == "foa" and ratio > MIC_ABOVE:
        warn(
            f"{name} looks like microphone-array audio, not the first-order Ambisonics "
            f"(ACN W,Y,Z,X, SN3D) the model expects: its channels 2-4 carry {ratio:.1f}x "
            f"the energy of channel 1 (about 1 for SN3D Ambisonics, 3 for capsules); "
            f"give the FOA version of the recording, or use a model trained on its array"
        )
    if ratio is not None and fmt == "mic" and ratio < FOA_BELOW:
        warn(
            f"{name} looks like first-order Ambisonics (W,Y,Z,X), not the capsule signals "
            f"the model expects: its channels 2-4 together carry only {ratio:.1f}x the "
            f"energy of channel 1 (about 3 for capsules of one array, 1 for SN3D "
            f"Ambisonics); give the MIC version of the recording, or an FOA model"
        )
    gone = missing_band(spec, audio)
    if gone is not None and not (fs_in < spec.fs and gone[0] >= 0.9 * nyq_in):
        warn(
            f"{name} has almost no energy above {gone[0] / 1000:.3g} kHz ({gone[1]:.0f} dB "
            f"below the training audio's level there, relative to the lower bands), but "
            f"the model was trained on content up to {top / 1000:.3g} kHz; expect "
            f"missed or wrong detections (give audio that is not low-passed)"
        )
