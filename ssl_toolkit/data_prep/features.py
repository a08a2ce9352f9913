"""``ssl prep features``: chunked features and frame labels, memory-mapped.

Two feature types (the ``type`` option):

- ``stft`` (rMCL / SELDnet input): STFT magnitude then phase of each channel,
  40 ms Hann window, 20 ms hop, ``n_fft`` the next power of two of the window
  (2048 at 44.1 kHz), DC bin dropped: ``[2M, T, n_fft // 2]``.
- ``logmel`` (DCASE baselines): log-mel energies of each channel, plus the
  mel-band active intensity vector for FOA (``[4 + 3, T, n_mels]``) or the
  GCC-PHAT of the 6 capsule pairs, ``n_mels`` lags around zero, for MIC
  (``[4 + 6, T, n_mels]``).

Frame t is centred at ``t * hop`` (centred STFT, zero padding); labels use the
same timing. Clips are cut into chunks of ``chunk_frames`` frames (0.5 s);
the frames after the last full chunk of a clip are dropped. Features are
stored as float16: the manifest records the resulting error
(``float16_rel_rms_error``, RMS error over RMS value, per channel group).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import readers
from ..artifacts import CLIP_COLUMNS, MAKERS, Manifest, build_artifact, read_manifest, safe_join
from ..config import ConfigError, check_finite, to_dict
from ..console import log, progress
from ..cpu import worker_threads
from ..errors import DataError
from ..featureset import SPLITS, FeatureWriter, frame_stats, write_rows
from .labels import frame_labels, read_labels

TYPES = ("stft", "logmel")
LOG_EPS = 1e-8


@dataclass(frozen=True)
class FeatureConfig:
    """Options of ``ssl prep features``.

    Attributes:
        type: ``stft`` (magnitude + phase) or ``logmel`` (log-mel + IV / GCC-PHAT).
        win_s: analysis window length in seconds (40 ms).
        hop_s: hop in seconds (20 ms, the label resolution).
        n_fft: FFT size; 0 picks the next power of two of the window.
        n_mels: mel bands (``logmel``), also the GCC-PHAT lags kept.
        chunk_frames: frames per chunk (25 = 0.5 s).
    """

    type: str = "stft"
    win_s: float = 0.04
    hop_s: float = 0.02
    n_fft: int = 0
    n_mels: int = 64
    chunk_frames: int = 25

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid option."""
        check_finite(self)
        if self.type not in TYPES:
            raise ConfigError(f"option 'type' must be one of {TYPES}, got {self.type!r}")
        if not 0 < self.hop_s <= self.win_s <= 1:
            raise ConfigError("options 'hop_s' and 'win_s' need 0 < hop_s <= win_s <= 1 s")
        if self.n_fft < 0 or self.n_fft & (self.n_fft - 1) and self.n_fft:
            raise ConfigError(f"option 'n_fft' must be 0 or a power of two, got {self.n_fft}")
        if not 8 <= self.n_mels <= 256:
            raise ConfigError(f"option 'n_mels' must be in 8..256, got {self.n_mels}")
        if self.chunk_frames < 1:
            raise ConfigError(f"option 'chunk_frames' must be at least 1, got {self.chunk_frames}")


def feature_params(cfg: FeatureConfig, fs: int, fmt: str, n_channels: int = 4) -> dict[str, Any]:
    """Everything :func:`extract` needs, with window sizes scaled to ``fs``."""
    win = int(round(cfg.win_s * fs))
    n_fft = cfg.n_fft or 1 << (win - 1).bit_length()
    if n_fft < win:
        raise ConfigError(f"option 'n_fft' ({n_fft}) is shorter than the window ({win} samples)")
    return {
        "type": cfg.type,
        "fs": int(fs),
        "n_fft": int(n_fft),
        "win_length": win,
        "hop_length": int(round(cfg.hop_s * fs)),
        "n_mels": int(cfg.n_mels),
        "n_channels": int(n_channels),
        "format": fmt,
        "chunk_frames": int(cfg.chunk_frames),
    }


def output_shape(params: dict[str, Any]) -> tuple[int, int]:
    """``(C, F)`` of the features of :func:`extract`."""
    m = params["n_channels"]
    if params["type"] == "stft":
        return 2 * m, params["n_fft"] // 2
    extra = 3 if params["format"] == "foa" else m * (m - 1) // 2
    return m + extra, params["n_mels"]


def n_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT of ``n_samples``."""
    return 1 + n_samples // hop_length


def extract(audio: np.ndarray, fs: int, feature_params: dict[str, Any]) -> np.ndarray:
    """Features of a multichannel signal, the same for training and prediction.

    Args:
        audio: ``[M, n_samples]`` signal (resampled when ``fs`` differs from the params').
        fs: its sample rate.
        feature_params: from a features artifact's manifest (``feature_params``).

    Returns:
        ``[C, T, F]`` float32 with ``T = 1 + n_samples // hop_length`` (at the params' rate).

    Raises:
        DataError: when the channel count differs from the one the features expect.
    """
    p = feature_params
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[0] != p["n_channels"]:
        raise DataError(
            f"audio has shape {audio.shape}, expected [{p['n_channels']} channels, samples]"
        )
    if fs != p["fs"]:
        from scipy.signal import resample_poly

        g = np.gcd(int(fs), int(p["fs"]))
        audio = resample_poly(audio, p["fs"] // g, fs // g, axis=-1).astype(np.float32)
    if p["type"] == "stft":
        return _stft_features(audio, p)
    return _logmel(_stft(audio, p), p)


def _stft_features(audio: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """Magnitudes then phases ``[2M, T, F]``, computed channel by channel.

    One channel's spectrogram stays in cache while its magnitude and phase are taken:
    about twice as fast as transforming all channels first.
    """
    m = audio.shape[0]
    out = np.empty((2 * m, n_frames(audio.shape[1], p["hop_length"]), p["n_fft"] // 2), np.float32)
    for c in range(m):
        _magnitude_phase(_stft(audio[c : c + 1], p), out=out[c::m])  # (2, T, F) view
    return out


def _stft(audio: np.ndarray, p: dict[str, Any]):
    """Centred STFT (zero padding), Hann window: ``[M, T, n_fft//2 + 1]`` complex64 tensor.

    Equal to ``torch.stft(..., center=True, pad_mode="constant").transpose(1, 2)`` (the
    window zero-padded to ``n_fft`` in the middle), made frame-major so that every later
    step reads contiguous ``[T, F]`` planes instead of a transposed view.
    """
    import torch
    from torch.nn.functional import pad

    n_fft, win = p["n_fft"], p["win_length"]
    x = pad(torch.from_numpy(np.ascontiguousarray(audio)), (n_fft // 2, n_fft // 2))
    left = (n_fft - win) // 2
    window = pad(torch.hann_window(win), (left, n_fft - win - left))
    return torch.fft.rfft(x.unfold(-1, n_fft, p["hop_length"]) * window, dim=-1)


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


def _mel_basis(p: dict[str, Any]) -> np.ndarray:
    """Mel filterbank ``[n_mels, n_fft // 2 + 1]`` (librosa, Slaney), cached."""
    key = (int(p["fs"]), int(p["n_fft"]), int(p["n_mels"]))
    if key not in _MEL:
        import librosa

        _MEL[key] = librosa.filters.mel(sr=key[0], n_fft=key[1], n_mels=key[2]).astype(np.float32)
    return _MEL[key]


def _logmel(spec, p: dict[str, Any]) -> np.ndarray:
    """Log-mel of each channel + intensity vectors (FOA) or GCC-PHAT (MIC): ``[C, T, n_mels]``.

    ``spec`` is the ``[M, T, F]`` complex tensor of :func:`_stft`; the MIC branch whitens it
    in place. Every step is one pass over contiguous float32 planes (real and imaginary
    parts are never combined through complex division or ``abs``, which are several times
    slower in torch) written into one preallocated output.
    """
    import torch

    mel_t = torch.from_numpy(_mel_basis(p)).T  # (F, n_mels)
    m, t, _ = spec.shape
    foa = p["format"] == "foa"
    out = torch.empty((m + (3 if foa else m * (m - 1) // 2), t, p["n_mels"]))
    power = torch.mul(spec.real, spec.real).addcmul_(spec.imag, spec.imag)  # (M, T, F)
    torch.log(torch.matmul(power, mel_t, out=out[:m]).add_(LOG_EPS), out=out[:m])
    if foa:
        _intensity_mel(spec, power, mel_t, out=out[m:])
    else:
        _gcc_phat(spec, p["n_fft"], p["n_mels"], power=power, out=out[m:])
    return out.numpy()


def _intensity_mel(spec, power, mel_t, out=None):
    """Normalized active intensity (x, y, z) in mel bands, as the DCASE 2020 baseline.

    Channels are ACN (W, Y, Z, X); ``I = Re(conj(W) [X, Y, Z]) / (|W|^2 + (|X|^2+|Y|^2+|Z|^2)/3)``.
    Tensors: ``spec`` ``[4, T, F]`` complex, ``power`` its ``|.|^2``, ``mel_t`` ``[F, n_mels]``;
    returns ``[3, T, n_mels]``.
    """
    import torch

    w, xyz = spec[0], spec[[3, 1, 2]]  # (T, F), (3, T, F)
    energy = power[1:].sum(dim=0).div_(3.0).add_(power[0]).add_(LOG_EPS)  # (T, F)
    iv = (xyz.real * w.real).add_(xyz.imag * w.imag).div_(energy)  # Re(conj(W) V) / energy
    return torch.matmul(iv, mel_t, out=out)


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


# ----------------------------------------------------------------------------- artifact


def read_clips(scenes: Manifest) -> tuple[pd.DataFrame, Path]:
    """The clip table of a scenes artifact and the folder its audio paths are relative to.

    Raises:
        ArtifactError: ``clips.csv`` missing, unreadable, lacking a column, empty, or
            with a row lacking a value or naming an unknown split.
    """
    path = scenes.file("clips.csv")
    rebuild = f"{MAKERS['scenes']} --force"
    dtype = {c: str for c in ("clip_id", "audio", "labels", "split", "subset")}
    clips = readers.read_table(path, rebuild, CLIP_COLUMNS, dtype)
    if clips.empty:
        raise readers.damaged(path, "lists no clip", rebuild)
    if not pd.api.types.is_integer_dtype(clips["fold"]):
        raise readers.damaged(path, "column 'fold' must hold integers", rebuild)
    bad = clips[list(CLIP_COLUMNS)].isna().any(axis=1) | ~clips["split"].isin(SPLITS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise readers.damaged(
            path, f"row {row + 2}: needs every column filled and a split among "
            f"{', '.join(SPLITS)}", rebuild,
        )  # fmt: skip
    root = scenes.extra.get("audio_root", ".")
    audio_root = scenes.path if root == "." else Path(root)  # checked by read_manifest
    return clips, audio_root


def _clip_frames(clips: pd.DataFrame, audio_root: Path, params: dict[str, Any]) -> np.ndarray:
    """Frames per clip, from the audio headers (checking channels and rate)."""
    import soundfile as sf

    frames = []
    for rel in clips["audio"]:
        path = safe_join(audio_root, rel)
        try:
            info = sf.info(path)
        except Exception as e:
            raise DataError(f"cannot read audio {path}: {e}") from e
        if info.channels != params["n_channels"]:
            raise DataError(f"{path} has {info.channels} channels, expected {params['n_channels']}")
        if info.samplerate != params["fs"]:
            raise DataError(f"{path} is at {info.samplerate} Hz, the scenes say {params['fs']} Hz")
        frames.append(n_frames(info.frames, params["hop_length"]))
    return np.array(frames, dtype=np.int64)


def compute_features(
    scenes_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: FeatureConfig,
    force: bool = False,
    jobs: int = 1,
) -> Manifest:
    """Compute a features artifact from a scenes artifact (see ``featureset.py``).

    Args:
        scenes_dir: a scenes artifact (``ssl prep synth`` or ``ssl prep import``).
        out: output directory.
        cfg: feature options.
        force: rebuild even when ``out`` holds an artifact built otherwise.
        jobs: worker processes (each writes its clips' chunks into the shared
            memory-mapped arrays); the output does not depend on it.
    """
    cfg.validate()
    if jobs < 1:
        raise ConfigError(f"option 'jobs' must be at least 1, got {jobs}")
    scenes = read_manifest(scenes_dir, "scenes")
    ex = scenes.extra
    params = feature_params(cfg, ex["fs"], ex["format"], ex.get("n_channels", 4))
    root = str(ex.get("audio_root", "."))  # absolute: an imported dataset left in place
    protect = (root,) if os.path.isabs(root) else ()
    with build_artifact(
        out, "features", to_dict(cfg), [scenes], force=force, protect=protect, log=log
    ) as b:
        if b.reused:
            return b.manifest
        b.extra.update(_write(scenes, params, b.dir, jobs))
    return b.manifest


def _write(scenes: Manifest, params: dict[str, Any], out_dir: Path, jobs: int) -> dict[str, Any]:
    clips, audio_root = read_clips(scenes)
    chunk = params["chunk_frames"]
    per_clip = _clip_frames(clips, audio_root, params) // chunk
    if per_clip.sum() == 0:
        raise DataError(f"every clip of {scenes.path} is shorter than one chunk ({chunk} frames)")
    c, f = output_shape(params)
    s = int(scenes.extra["max_sources"])
    writer = FeatureWriter(out_dir, int(per_clip.sum()), (c, chunk, f), s)
    first = np.concatenate(([0], np.cumsum(per_clip)[:-1]))
    tasks = [
        {
            "row": row._asdict(),
            "audio": str(safe_join(audio_root, row.audio)),
            "labels": str(safe_join(scenes.path, row.labels)),
            "first": int(i0),
            "k": int(k),
            "params": params,
            "max_sources": s,
            "out_dir": str(out_dir),
        }
        for row, i0, k in zip(clips.itertuples(index=False), first, per_clip, strict=True)
        if k > 0
    ]
    err2, val2 = np.zeros(c), np.zeros(c)
    for rows, e2, v2, sums in _run(tasks, jobs):
        writer.rows.extend(rows)
        writer.add_stats(rows[0]["split"], sums)
        err2, val2 = err2 + e2, val2 + v2
    writer.finish()
    rel = np.sqrt(err2 / np.maximum(val2, 1e-30))
    return {
        "feature_params": params,
        "shape": [c, chunk, f],
        "max_sources": s,
        "n_chunks": int(per_clip.sum()),
        "float16_rel_rms_error": _group_errors(rel, params),
    }


def _run(tasks: list[dict[str, Any]], jobs: int):
    """Run :func:`_clip_chunks` over the tasks (in worker processes when ``jobs > 1``).

    Workers are spawned, not forked: a child forked after torch ran in the
    parent can deadlock in torch's thread pool. Each worker gets its share of the
    CPU's threads (``jobs`` workers with all threads each would oversubscribe it).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with progress() as bar:
        task = bar.add_task("features", total=len(tasks), info="")
        if jobs == 1:
            for t in tasks:
                yield _clip_chunks(t)
                bar.advance(task)
            return
        ctx = multiprocessing.get_context("spawn")
        threads = worker_threads(jobs)  # the workers split this process's cores
        if tasks and tasks[0]["params"]["type"] == "logmel":
            _mel_basis(tasks[0]["params"])  # made once here, shipped to the workers
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads, _MEL)
        ) as pool:
            for result in pool.map(_clip_chunks, tasks):
                yield result
                bar.advance(task)


def _init_worker(threads: int, mel: dict) -> None:
    """Worker initializer: at most ``threads`` torch threads; the parent's mel filterbanks
    (so workers need not import librosa)."""
    import torch

    torch.set_num_threads(threads)
    _MEL.update(mel)


def _clip_chunks(t: dict[str, Any]) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray, tuple]:
    """Features and frame labels of one clip, written into chunks ``first .. first + k``.

    Returns:
        The clip's index rows, its float16 squared error and squared values per channel,
        and the :func:`~ssl_toolkit.featureset.frame_stats` of its features.
    """
    import soundfile as sf

    p, k, i0, row = t["params"], t["k"], t["first"], t["row"]
    chunk = p["chunk_frames"]
    audio, fs = sf.read(t["audio"], dtype="float32", always_2d=True)
    if not np.isfinite(audio).all():
        raise DataError(f"audio {t['audio']} holds NaN or infinite samples; fix or remove it")
    x = extract(audio.T, fs, p)[:, : k * chunk]  # (C, k*chunk, F)
    x16 = _to_float16(x)
    e2, v2 = _float16_error(x, x16)
    events = read_labels(t["labels"])
    act, dirs = frame_labels(events, k * chunk, p["hop_length"] / p["fs"], t["max_sources"])
    c, _, f = x16.shape
    out = Path(t["out_dir"])
    write_rows(out / "features.npy", i0, x16.reshape(c, k, chunk, f).transpose(1, 0, 2, 3))
    for name, arr in (("activity.npy", act), ("directions.npy", dirs)):  # (T, S[, 3])
        write_rows(out / name, i0, arr.reshape(k, chunk, *arr.shape[1:]))
    rows = [
        {
            "chunk": i0 + j,
            "clip_id": row["clip_id"],
            "fold": int(row["fold"]),
            "split": row["split"],
            "subset": row["subset"],
            "start_frame": j * chunk,
        }
        for j in range(k)
    ]
    return rows, e2, v2, frame_stats(x)


def _to_float16(x: np.ndarray) -> np.ndarray:
    """float32 -> float16 (torch converts several times faster than numpy)."""
    import torch

    return torch.from_numpy(x).half().numpy()


def _float16_error(
    x: np.ndarray, x16: np.ndarray, every: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Squared float16 error and squared value per channel, on every ``every``-th frame."""
    a = x[:, ::every].astype(np.float64)
    return np.square(x16[:, ::every] - a).sum(axis=(1, 2)), np.square(a).sum(axis=(1, 2))


def _group_errors(rel: np.ndarray, params: dict[str, Any]) -> dict[str, float]:
    """Float16 relative RMS error per channel group (max over the group's channels)."""
    m = params["n_channels"]
    if params["type"] == "stft":
        return {"magnitude": float(rel[:m].max()), "phase": float(rel[m:].max())}
    other = "intensity" if params["format"] == "foa" else "gcc_phat"
    return {"logmel": float(rel[:m].max()), other: float(rel[m:].max())}
