"""How much memory and disk a stage may use: sizes are checked before anything large is
allocated or written.

``-K 100000000`` or a clip of a billion seconds must end in one line naming the option,
not in an allocation failure (or the kernel's OOM killer) minutes later. A stage
estimates the bytes it is about to allocate and calls :func:`check_fits`.

Likewise ``--n-clips 10000000`` must not fill the disk: every stage that writes large
outputs (``ssl prep synth``, ``ssl prep features``, ``ssl prep import --copy``) estimates
its output's size (the estimator lives beside the writer) and calls :func:`check_disk`
before writing it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import ConfigError

#: Used when the system does not say (no /proc, no sysconf).
_UNKNOWN = 1 << 62


def available_bytes() -> int:
    """Memory this process may still allocate: the system's available memory, capped by
    the cgroup (container) limit."""
    avail = _meminfo_available()
    cg = _cgroup_left()
    return min(avail, cg)


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return _UNKNOWN


def _cgroup_left() -> int:
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return _UNKNOWN
        used = int((base / "memory.current").read_text().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return _UNKNOWN


def human_bytes(n_bytes: float) -> str:
    """``41.0 TB``, ``120 GB``, ``3.50 MB``, ``512 B`` (decimal units)."""
    n = float(n_bytes)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= 0.9995 * scale:  # 999.9 MB reads 1.00 GB
            v = n / scale
            return f"{v:.0f} {unit}" if v >= 99.95 else f"{v:.{1 if v >= 9.995 else 2}f} {unit}"
    return f"{n:.0f} B"


#: Disk blocks: a file takes whole blocks (the estimates round each file up to one).
DISK_BLOCK = 4096


def file_bytes(n_bytes: float) -> float:
    """Disk usage of a file of ``n_bytes``: rounded up to whole :data:`DISK_BLOCK` blocks."""
    return float(-(-int(n_bytes) // DISK_BLOCK) * DISK_BLOCK) if n_bytes > 0 else DISK_BLOCK


def free_disk_bytes(path: str | os.PathLike) -> tuple[int, Path]:
    """Free bytes (for this user) on the file system that would hold ``path``, and the
    nearest existing folder of ``path`` that was measured."""
    import shutil

    p = Path(os.path.abspath(path))
    while True:
        try:
            if p.is_dir():
                return int(shutil.disk_usage(p).free), p
        except OSError:
            pass
        if p.parent == p:
            return _UNKNOWN, p
        p = p.parent


def check_disk(n_bytes: float, out: str | os.PathLike, stage: str, fix: str) -> None:
    """Refuse to start writing about ``n_bytes`` to ``out`` when its file system has less
    free space (measured at the nearest existing folder of ``out``).

    Args:
        n_bytes: the estimated size of the output.
        out: the output path (need not exist).
        stage: the command (``"ssl prep synth"``).
        fix: what the user can do (``"lower --n-clips"``).

    Raises:
        ConfigError: ``ssl prep synth would write ~41.0 TB to /x; 120 GB free there: lower
            --n-clips or choose another disk``.
    """
    free, _ = free_disk_bytes(Path(out).parent)
    if n_bytes > free:
        raise ConfigError(
            f"{stage} would write ~{human_bytes(n_bytes)} to {out}; "
            f"{human_bytes(free)} free there: {fix} or choose another disk"
        )


def gigabytes(n_bytes: float) -> str:
    """``12.3 GB``."""
    return f"{n_bytes / 1e9:.3g} GB"


def check_fits(n_bytes: float, what: str, fix: str) -> None:
    """Refuse ``what`` when it needs more than the available memory.

    Args:
        n_bytes: the estimated bytes.
        what: what needs them, naming the option (``"-K 100000000"``).
        fix: what the user can do (``"lower -K"``).

    Raises:
        ConfigError: one line with the estimate and what is available.
    """
    avail = available_bytes()
    if n_bytes > avail:
        raise ConfigError(
            f"{what} needs about {gigabytes(n_bytes)} of memory, more than the "
            f"{gigabytes(avail)} available; {fix}"
        )


#: Peak bytes of a model's forward pass per byte of its float32 input. The paper's CRNN
#: holds activations summing to about 31 times its input per chunk; inference frees most
#: of them as it goes, training keeps them for the backward pass and adds their gradients.
INFER_FACTOR, TRAIN_FACTOR = 32, 96


def batch_bytes(
    batch: int,
    shape: tuple[int, int, int],
    k: int,
    factor: float = INFER_FACTOR,
    per_chunk: float = 0.0,
) -> float:
    """Estimated bytes of one batch through a model: ``batch`` chunks of features
    ``shape = (C, T, F)`` (float32, times ``factor``) and K hypotheses per frame out, or
    ``per_chunk`` bytes a chunk when the model's own count is larger (wide layers)."""
    c, t, f = shape
    return float(batch) * max(c * t * f * 4 * factor + t * max(k, 1) * 4 * 4, per_chunk)


def check_batch(
    batch: int,
    shape: tuple[int, int, int],
    k: int,
    option: str,
    factor: float = INFER_FACTOR,
    per_chunk: float = 0.0,
    sizes: str = "",
) -> None:
    """Refuse a batch of ``batch`` chunks that would not fit in memory (see :func:`batch_bytes`).

    Args:
        option: the option that sets the batch (``--batch-size``), named in the message.
        per_chunk: the model's own estimate of a chunk's bytes, if it has one.
        sizes: the options that set ``per_chunk`` (``channels, gru_units``), named in the
            fix when the model's estimate is the larger.

    Raises:
        ConfigError: naming the option.
    """
    wide = sizes and per_chunk > batch_bytes(1, shape, k, factor)
    check_fits(
        batch_bytes(batch, shape, k, factor, per_chunk),
        f"{option}: a batch of {batch} chunks of {list(shape)} (K={k})",
        f"lower {option} or the layer sizes ({sizes})" if wide else f"lower {option}",
    )
