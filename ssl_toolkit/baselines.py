"""``ssl baseline``: classical localization (pyroomacoustics.doa) in the eval harness.

The classical methods (SRP-PHAT, MUSIC, NormMUSIC, TOPS) localize on the MIC-format
audio of a scenes artifact, with the array geometry of its manifest. To be scored
on exactly the frames of a learned model, they take the features artifact too:
its index gives the clips and frames of a split, its labels the targets, its
``hop_length`` / ``fs`` the frame times (frame t of a clip is centred at
``t * hop_length / fs`` seconds). Each frame is localized from the STFT
snapshots within ``window_s`` around its centre, with the number of sources known
(from the labels) or estimated (MDL on the spatial covariance, Wax & Kailath 1985).
The output is an eval artifact in the same format as ``ssl eval``'s; detected
sources get confidence 1, unused slots 0.

The features usually come from FOA scenes (what the learned models train on) and the
scenes scored here are their MIC-format twin (``ssl prep synth`` with the same seed
and options and ``--format mic``). :func:`check_labels` refuses scenes whose labels,
turned into frame labels the way ``ssl prep features`` does, differ from the
features' labels on any scored frame: the baseline would be scored against targets
that are not in its audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .artifacts import Manifest, build_artifact, read_manifest, safe_join
from .config import ConfigError, to_dict
from .data_prep.labels import frame_labels as clip_frame_labels
from .data_prep.labels import read_labels
from .errors import DataError, UserError
from .evaluation import Frames, frame_labels, score_predictions, segment_frames, write_eval
from .featureset import SPLITS, FeatureSet, open_features
from .geometry import sph_to_unit

__all__ = [
    "METHODS",
    "BaselineConfig",
    "check_labels",
    "estimate_n_sources",
    "run_baseline",
    "stft",
]

#: Largest difference (unit-vector components) between two labels of the same direction.
LABEL_TOLERANCE = 1e-4
_TWIN = "score the MIC twin of the features' scenes (same seed and options, --format mic)"

#: ``--method`` -> name in ``pyroomacoustics.doa.algorithms``.
METHODS = {"srp": "SRP", "music": "MUSIC", "normmusic": "NormMUSIC", "tops": "TOPS"}


@dataclass(frozen=True)
class BaselineConfig:
    """Options of ``ssl baseline``.

    Attributes:
        method: srp | music | normmusic | tops.
        n_sources: ``known`` (from the labels) or ``estimate`` (MDL).
        split: the split of the features artifact scored.
        nfft: STFT size (Hann window, hop nfft / 2).
        window_s: span of STFT snapshots used for one frame, seconds.
        freq_min_hz, freq_max_hz: band searched.
        grid_deg: step of the azimuth / colatitude search grid, degrees; None: 5,
            or 10 for TOPS (pyroomacoustics' TOPS loops over grid points in Python:
            about 2 s per frame at 10 degrees, 11 s at 5 on one core).
        speed_of_sound_m_s: speed of sound.
    """

    method: str = "srp"
    n_sources: str = "known"
    split: str = "test"
    nfft: int = 512
    window_s: float = 0.2
    freq_min_hz: float = 300.0
    freq_max_hz: float = 3500.0
    grid_deg: float | None = None
    speed_of_sound_m_s: float = 343.0

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.n_sources not in ("known", "estimate"):
            raise ConfigError(f"--n-sources must be known or estimate, got {self.n_sources!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.grid_deg is not None and not 0.5 <= self.grid_deg <= 45:
            raise ConfigError(f"--grid-deg must be in [0.5, 45], got {self.grid_deg}")
        if self.nfft < 16 or self.window_s <= 0 or self.freq_min_hz >= self.freq_max_hz:
            raise ConfigError("nfft >= 16, window_s > 0 and freq_min_hz < freq_max_hz are needed")


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


def estimate_n_sources(x: np.ndarray, bins: np.ndarray, max_sources: int) -> int:
    """Source count by the MDL criterion (Wax & Kailath 1985), median over bins.

    Args:
        x: ``[M, F, snapshots]`` STFT; bins: frequency bins used; max_sources: cap.
    """
    m, _, n = x.shape
    xb = x[:, bins].transpose(1, 0, 2)  # (B, M, n)
    cov = xb @ xb.conj().transpose(0, 2, 1) / n  # (B, M, M)
    ev = np.clip(np.linalg.eigvalsh(cov)[:, ::-1].real, 1e-20, None)  # (B, M) descending
    ks = np.arange(m)  # candidate counts 0..M-1
    mdl = np.empty((len(bins), m))
    for k in ks:  # M <= a few: loop over candidate counts, vectorized over bins
        tail = ev[:, k:]
        ratio = np.exp(np.log(tail).mean(1)) / tail.mean(1)
        mdl[:, k] = -n * (m - k) * np.log(ratio) + 0.5 * k * (2 * m - k) * np.log(n)
    return int(min(np.median(mdl.argmin(1)), max_sources))


def _grid(cfg: BaselineConfig) -> tuple[np.ndarray, np.ndarray]:
    step = np.deg2rad(cfg.grid_deg or (10.0 if cfg.method == "tops" else 5.0))
    az = np.arange(-np.pi, np.pi, step)
    colat = np.arange(step / 2, np.pi, step)
    return az, colat


def _make_doa(cfg: BaselineConfig, mics_m: np.ndarray, fs: int):
    import pyroomacoustics as pra

    az, colat = _grid(cfg)
    cls = pra.doa.algorithms[METHODS[cfg.method]]
    return cls(
        L=mics_m.T, fs=fs, nfft=cfg.nfft, c=cfg.speed_of_sound_m_s, num_src=1, dim=3,
        azimuth=az, colatitude=colat,
    )  # fmt: skip


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
    :func:`ssl_toolkit.data_prep.labels.frame_labels` (as ``ssl prep features`` does)
    and compared, slot by slot, with the features' activity and directions.

    Args:
        scenes: the scenes artifact scored; clips: its ``clips.csv``.
        feats: the features artifact; lab: its scored frames
            (:func:`ssl_toolkit.evaluation.frame_labels`).

    Raises:
        UserError: one line naming the first clip that differs and both artifacts.
    """
    params = feats.feature_params
    hop_s = float(params["hop_length"]) / float(params["fs"])
    for clip in dict.fromkeys(lab["clip_id"].tolist()):
        sel = np.flatnonzero(lab["clip_id"] == clip)
        row = _clip_row(scenes, clips, clip, str(feats.manifest.path))
        path = safe_join(scenes.path, row["labels"])
        events = read_labels(path)  # a missing or malformed file: DataError naming it
        why = _mismatch(events, lab["frame"][sel], lab["active"][sel], lab["targets"][sel], hop_s)
        if why:
            raise UserError(
                f"clip {clip!r}: the labels of {scenes.path} ({path.name}) {why} those of "
                f"{feats.manifest.path}; {_TWIN}"
            )


def _mismatch(events, frame, active, targets, hop_s: float) -> str:
    """Where the frame labels of ``events`` differ from ``active [n, S]`` / ``targets
    [n, S, 3]`` at clip frames ``frame [n]`` (empty string: nowhere)."""
    s = active.shape[1]
    try:
        act, dirs = clip_frame_labels(events, int(frame.max()) + 1, hop_s, s)
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


def _localize_clip(doa, audio, frame, counts, cfg, fs, hop_s, k) -> tuple[np.ndarray, np.ndarray]:
    """Hypotheses ``[n, k, 3]`` and confidences ``[n, k]`` for frames ``frame`` of one clip."""
    x, centres = stft(audio, cfg.nfft)
    half = cfg.window_s * fs / 2
    bins = np.arange(
        int(round(cfg.freq_min_hz * cfg.nfft / fs)), int(round(cfg.freq_max_hz * cfg.nfft / fs))
    )
    hyps = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (len(frame), k, 1))
    conf = np.zeros((len(frame), k), np.float32)
    m = audio.shape[0]
    for i, (t, n_src) in enumerate(zip(frame, counts, strict=True)):  # one frame at a time
        c = t * hop_s * fs
        snap = np.flatnonzero(np.abs(centres - c) <= half)
        if len(snap) == 0:
            continue
        xs = x[:, :, snap]
        if n_src is None:
            n_src = estimate_n_sources(xs, bins, min(k, m - 1))
        n_src = int(min(n_src, k, m - 1))
        if n_src == 0:
            continue
        doa.locate_sources(xs, num_src=n_src, freq_bins=bins)
        found = len(doa.azimuth_recon)
        hyps[i, :found] = sph_to_unit(doa.azimuth_recon, np.pi / 2 - doa.colatitude_recon)
        conf[i, :found] = 1.0
    return hyps, conf


def run_baseline(
    scenes: str | os.PathLike,
    features: str | os.PathLike,
    out: str | os.PathLike,
    cfg: BaselineConfig | None = None,
    force: bool = False,
    **options,
) -> Manifest:
    """Localize the frames of a features split with a classical method; write an eval artifact.

    Args:
        scenes: a MIC-format scenes artifact (audio and array geometry) whose labels
            match the features' on the scored frames (see :func:`check_labels`).
        features: the features artifact whose split, frames and labels are scored.
        out: the eval artifact to write.
        cfg: options (or give them as keyword arguments, see :class:`BaselineConfig`).
        force: replace an existing, different artifact.

    Raises:
        UserError: scenes not in MIC format, no chunk in the split, or labels that
            differ from the features' on a scored clip.
    """
    cfg = cfg or BaselineConfig(**options)
    cfg.validate()
    sc = read_manifest(scenes, "scenes")
    if sc.extra.get("format") != "mic" or "mic_positions_m" not in sc.extra:
        raise UserError(f"{sc.path} is not in MIC format: classical baselines need mic audio")
    fs_art = open_features(features)
    rows = fs_art.rows(cfg.split)
    if len(rows) == 0:
        raise UserError(f"{fs_art.manifest.path} has no chunk in split {cfg.split!r} (--split)")
    fs = int(sc.extra["fs"])
    params = fs_art.feature_params
    hop_s = float(params["hop_length"]) / float(params["fs"])
    mics = np.asarray(sc.extra["mic_positions_m"], np.float64)  # (M, 3)
    clips = pd.read_csv(sc.file("clips.csv"), dtype={"clip_id": str})
    lab = frame_labels(fs_art, rows)
    check_labels(sc, clips, fs_art, lab)
    k = fs_art.max_sources
    with build_artifact(out, "eval", to_dict(cfg), [sc, fs_art.manifest], force=force) as b:
        if b.reused:
            return b.manifest
        doa = _make_doa(cfg, mics, fs)
        hyps = np.zeros((len(lab["frame"]), k, 3), np.float32)
        conf = np.zeros((len(lab["frame"]), k), np.float32)
        known = lab["active"].sum(1)
        from .console import track

        for clip in track(list(dict.fromkeys(lab["clip_id"].tolist())), f"{cfg.method}"):
            sel = np.flatnonzero(lab["clip_id"] == clip)
            counts = known[sel] if cfg.n_sources == "known" else [None] * len(sel)
            audio = _read_audio(sc, clips, clip, fs)
            hyps[sel], conf[sel] = _localize_clip(
                doa, audio, lab["frame"][sel], counts, cfg, fs, hop_s, k
            )
        fr = Frames(hyps=hyps, conf=conf, **lab)
        detected = conf >= 0.5
        seg = segment_frames(params, 1.0)
        scores = score_predictions(fr, detected, 0.5, seg)
        write_eval(b.dir, fr, detected, cfg.method, 0.5, scores, split=cfg.split,
                   n_sources=cfg.n_sources)  # fmt: skip
        b.extra.update({"method": cfg.method, "K": k, "threshold": 0.5, "frames": len(fr.frame)})
    return b.manifest
