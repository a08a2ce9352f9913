"""Independent measurements for the physics tests (written here, not taken from the toolkit)."""

from __future__ import annotations

import numpy as np


def gcc_phat_delay(x: np.ndarray, y: np.ndarray, up: int = 32) -> float:
    """Delay of x relative to y in samples (positive: x later), by upsampled GCC-PHAT."""
    n = 2 * len(x)
    cross = np.fft.rfft(x, n) * np.conj(np.fft.rfft(y, n))
    cc = np.fft.irfft(cross / (np.abs(cross) + 1e-12), n * up)
    lag = int(np.argmax(np.concatenate((cc[-16 * up :], cc[: 16 * up + 1])))) - 16 * up
    return lag / up
