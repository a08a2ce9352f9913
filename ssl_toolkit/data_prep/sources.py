"""Event signals: a built-in procedural library, or a user's folder of clips.

The procedural library needs no download: each of its classes is a family of
sounds with its own spectro-temporal signature, drawn with random parameters
from the generator it is given (so a clip is reproducible from its seed).
A user folder holds one sub-folder per class with wav/flac clips of any sample
rate (resampled to the synthesis rate).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DataError

AUDIO_SUFFIXES = (".wav", ".flac")
MIN_CLIP_SECONDS = 0.1
SILENCE_RMS = 1e-5

Generator = Callable[[np.random.Generator, int, int], np.ndarray]


def _t(n: int, fs: int) -> np.ndarray:
    return np.arange(n) / fs


def _fmax(fs: int, hz: float) -> float:
    """Keep a frequency under 0.45 fs (no aliasing at low sample rates)."""
    return min(hz, 0.45 * fs)


def _envelope(n: int, fs: int, attack_s: float = 0.01, release_s: float = 0.03) -> np.ndarray:
    """Linear attack/release so events start and end without clicks."""
    env = np.ones(n)
    a, r = max(1, min(n // 4, int(attack_s * fs))), max(1, min(n // 4, int(release_s * fs)))
    env[:a] = np.linspace(0, 1, a, endpoint=False)
    env[n - r :] = np.linspace(1, 0, r)
    return env


def _harmonics(phase: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum of ``weights[k-1] * sin(k * phase)`` over the non-zero weights (float32)."""
    wrapped = np.mod(phase, 2 * np.pi).astype(np.float32)  # sin(k x) = sin(k (x mod 2 pi))
    out = np.zeros_like(wrapped)
    for k in np.flatnonzero(weights):  # a few partials
        out += np.float32(weights[k]) * np.sin(np.float32(k + 1) * wrapped)
    return out


def _fft_filter(x: np.ndarray, fs: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase filtering by a frequency response ``gain(f_hz)`` (FFT of fast length)."""
    from scipy import fft

    m = fft.next_fast_len(len(x), real=True)
    spec = fft.rfft(x, m)
    return fft.irfft(spec * gain(fft.rfftfreq(m, 1 / fs)), m)[: len(x)]


def vibrato_tone(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Harmonic tone (5 partials) with a 4-7 Hz vibrato."""
    f0 = rng.uniform(150, 500)
    f = f0 * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(4, 7) * _t(n, fs)))
    w = 1.0 / np.arange(1, 6) * (np.arange(1, 6) * f0 < 0.45 * fs)
    return _harmonics(2 * np.pi * np.cumsum(f) / fs, w)


def chirp_up(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Exponential up-chirp."""
    f1, f2 = rng.uniform(200, 600), _fmax(fs, rng.uniform(2000, 6000))
    f = f1 * (f2 / f1) ** (_t(n, fs) / max(_t(n, fs)[-1], 1e-3))
    return np.sin(2 * np.pi * np.cumsum(f) / fs)


def chirp_down(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Repeated short down-sweeps (bird-like)."""
    period = rng.uniform(0.08, 0.2)
    tau = np.mod(_t(n, fs), period) / period
    f = _fmax(fs, rng.uniform(3000, 5000)) * (1 - 0.6 * tau)
    return np.sin(2 * np.pi * np.cumsum(f) / fs) * np.sin(np.pi * tau) ** 2


def _band_noise(rng: np.random.Generator, n: int, fs: int, lo: float, hi: float) -> np.ndarray:
    return _fft_filter(rng.standard_normal(n), fs, lambda f: (f >= lo) & (f <= hi))


def noise_low(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Low-band noise burst (100-800 Hz), rumble-like."""
    return _band_noise(rng, n, fs, 100, rng.uniform(400, 800))


def noise_high(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """High-band noise (hiss) with a slow swell."""
    lo = _fmax(fs, rng.uniform(2500, 4000))
    x = _band_noise(rng, n, fs, lo, 0.45 * fs)
    return x * (0.6 + 0.4 * np.sin(np.pi * _t(n, fs) / max(_t(n, fs)[-1], 1e-3)))


def impulse_train(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Clicks at 5-15 Hz, each a decaying resonance (knocking/ticking)."""
    x = np.zeros(n)
    x[:: max(1, int(fs / rng.uniform(5, 15)))] = 1.0
    m = int(0.01 * fs)
    ring = np.exp(-_t(m, fs) / 0.002) * np.sin(
        2 * np.pi * _fmax(fs, rng.uniform(1000, 3000)) * _t(m, fs)
    )
    return np.convolve(x, ring)[:n]


def am_tone(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Pure tone amplitude-modulated at 20-60 Hz (rough, buzzing)."""
    t = _t(n, fs)
    carrier = np.sin(2 * np.pi * _fmax(fs, rng.uniform(800, 2000)) * t)
    return carrier * (1 + 0.9 * np.sin(2 * np.pi * rng.uniform(20, 60) * t))


def fm_tone(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """FM synthesis tone (carrier 300-1000 Hz, index 2-5): siren/phone-like."""
    t = _t(n, fs)
    fc, fm = rng.uniform(300, 1000), rng.uniform(2, 8)
    return np.sin(2 * np.pi * fc * t + rng.uniform(2, 5) * 20 * np.sin(2 * np.pi * fm * t) / fm)


def bell(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Inharmonic decaying partials (bell/struck metal)."""
    t = _t(n, fs)
    f0 = rng.uniform(300, 900)
    ratios = np.array([1.0, 2.76, 5.40, 8.93])
    f = np.minimum(f0 * ratios, 0.45 * fs)[:, None]
    decay = np.exp(-t[None] / (rng.uniform(0.2, 0.6) / np.sqrt(ratios)[:, None]))
    return (np.sin(2 * np.pi * f * t[None]) * decay / ratios[:, None]).sum(0)


def square_buzz(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Odd-harmonic (square-like) buzz at 80-200 Hz."""
    f0 = rng.uniform(80, 200)
    k = np.arange(1, 16, 2)
    w = np.zeros(15)
    w[k - 1] = (1.0 / k) * (k * f0 < 0.45 * fs)
    return _harmonics(2 * np.pi * f0 * _t(n, fs), w)


def rain(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Random sparse droplets of band-passed noise (Poisson onsets, 30-80 per second)."""
    x = np.zeros(n)
    k = rng.poisson(rng.uniform(30, 80) * n / fs)
    x[rng.integers(0, n, k)] = rng.uniform(0.3, 1.0, k)
    m = int(0.004 * fs) + 1
    grain = np.hanning(m) * rng.standard_normal(m)
    y = np.convolve(x, grain)[:n]
    return np.diff(y, prepend=0.0)


def speech_like(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Glottal pulse train through two moving formants, syllables at 3-5 Hz."""
    t = _t(n, fs)
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 1.5 * t))
    src = np.sign(np.sin(2 * np.pi * np.cumsum(f0) / fs)) * 0.5
    f1, f2 = rng.uniform(400, 800), rng.uniform(1200, 2200)
    out = _fft_filter(
        src, fs, lambda f: 1 / (1 + ((f - f1) / 150) ** 2) + 1 / (1 + ((f - f2) / 150) ** 2)
    )
    return out * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 5) * t) ** 2)


#: The built-in classes (12; ANSYN/RESYN have 11), name -> generator.
PROCEDURAL: dict[str, Generator] = {
    "vibrato_tone": vibrato_tone,
    "chirp_up": chirp_up,
    "chirp_down": chirp_down,
    "noise_low": noise_low,
    "noise_high": noise_high,
    "impulse_train": impulse_train,
    "am_tone": am_tone,
    "fm_tone": fm_tone,
    "bell": bell,
    "square_buzz": square_buzz,
    "speech_like": speech_like,
    "rain": rain,
}


def normalize_rms(x: np.ndarray, target: float = 0.1) -> np.ndarray:
    """Scale a signal to a given RMS."""
    rms = float(np.sqrt(np.mean(np.square(x))))
    return x * (target / rms) if rms > 0 else x


@dataclass(frozen=True)
class UserClip:
    """One clip of a user folder: its class (sub-folder name) and path."""

    label: str
    path: Path


class EventLibrary:
    """Draws event signals by class, from the procedural library or a user folder.

    Args:
        fs: sample rate of the signals it returns.
        folder: a user folder (one sub-folder per class) or None for the built-in classes.
    """

    def __init__(self, fs: int, folder: str | os.PathLike | None = None):
        self.fs = int(fs)
        self.folder = Path(folder) if folder else None
        self.clips = scan_folder(self.folder) if self.folder else []
        self.classes = sorted({c.label for c in self.clips}) if self.folder else list(PROCEDURAL)
        self._cache: dict[Path, np.ndarray] = {}

    def draw(self, rng: np.random.Generator, class_index: int, n_samples: int) -> np.ndarray:
        """An event of the class ``class_index``, at most ``n_samples`` long, RMS 0.1.

        Procedural events are exactly ``n_samples`` long; user clips keep their
        own length when shorter.
        """
        name = self.classes[class_index]
        if self.folder is None:
            x = PROCEDURAL[name](rng, n_samples, self.fs)
        else:
            pool = [c for c in self.clips if c.label == name]
            x = self._load(pool[int(rng.integers(len(pool)))].path)[:n_samples]
        return normalize_rms(x * _envelope(len(x), self.fs))

    def _load(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = load_clip(path, self.fs)
        return self._cache[path]


def scan_folder(folder: Path) -> list[UserClip]:
    """List the clips of a user folder (class = sub-folder name).

    Raises:
        DataError: when the folder is missing or holds no audio in sub-folders.
    """
    if not folder.is_dir():
        raise DataError(f"sources folder {folder} does not exist or is not a folder")
    clips = [
        UserClip(p.parent.name, p)
        for p in sorted(folder.glob("*/*"))
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    ]
    if not clips:
        raise DataError(
            f"sources folder {folder} holds no .wav/.flac clips in class sub-folders "
            "(expected FOLDER/<class>/<clip>.wav)"
        )
    return clips


def load_clip(path: Path, fs: int) -> np.ndarray:
    """Read a clip as mono float64 at ``fs``, refusing unusable ones.

    Raises:
        DataError: naming the file when it is unreadable, empty, too short or silent.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    try:
        x, sr = sf.read(path, dtype="float64", always_2d=True)
    except Exception as e:  # soundfile raises several types for corrupt files
        raise DataError(f"cannot read audio clip {path}: {e}") from e
    if x.shape[0] == 0:
        raise DataError(f"audio clip {path} is empty")
    if x.shape[0] < MIN_CLIP_SECONDS * sr:
        raise DataError(
            f"audio clip {path} is too short ({x.shape[0] / sr:.3f} s < {MIN_CLIP_SECONDS} s)"
        )
    x = x.mean(axis=1)
    if np.sqrt(np.mean(x**2)) < SILENCE_RMS:
        raise DataError(f"audio clip {path} is silent (RMS below {SILENCE_RMS:g})")
    if sr != fs:
        g = np.gcd(int(sr), int(fs))
        x = resample_poly(x, fs // g, sr // g)
    return x


def check_folder(folder: str | os.PathLike, fs: int) -> list[str]:
    """Validate every clip of a user folder up front; return the class names."""
    clips = scan_folder(Path(folder))
    for c in clips:
        load_clip(c.path, fs)
    return sorted({c.label for c in clips})
