"""Tiny artifacts and datasets built in code, for tests, benchmarks and CI smoke runs.

- :func:`make_features_artifact`: a features artifact whose features encode directions.
- :func:`write_dcase_dataset`: a few seconds of a DCASE 2020-2024 development set (folder
  layout, file names, metadata CSVs; plane waves rendered in FOA or on a tetrahedral
  array), for ``ssl prep import --layout dcase``. Also a command::

      python -m ssl_toolkit.testing dcase-fixture OUT --family starss [--format mic]
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .core.artifacts import Manifest, build_artifact
from .core.geometry import sph_to_unit
from .features.spec import ArraySpec
from .features.store import FeatureWriter


def random_directions(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit vectors uniform on the sphere, ``[*shape, 3]`` float32."""
    v = rng.normal(size=(*shape, 3))
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def make_features_artifact(
    path: str | os.PathLike,
    *,
    n_chunks: int = 24,
    channels: int = 8,
    frames: int = 25,
    bins: int = 64,
    max_sources: int = 3,
    seed: int = 0,
    n_classes: int | None = None,
    force: bool = False,
) -> Manifest:
    """A features artifact whose features encode the labelled directions.

    Each chunk has 1..max_sources static sources; the features are noise plus
    a pattern of the directions (so a model can learn something). Splits are
    60 % train, 20 % val, 20 % test; subset ``ovN`` = number of sources.

    With ``n_classes`` the features also carry per-frame classes (``classes.npy``, as
    DCASE labels give them, and ``n_classes`` in the manifest): each source of a chunk
    has a class drawn uniformly from ``0..n_classes - 1`` (by another random stream, so
    every other array is the same as without classes).
    """
    rng = np.random.default_rng(seed)
    crng = np.random.default_rng([seed, 1])  # the classes' own stream
    cfg = {
        "type": "dummy",
        "n_chunks": n_chunks,
        "channels": channels,
        "frames": frames,
        "bins": bins,
        "max_sources": max_sources,
        "seed": seed,
    }
    if n_classes is not None:  # only then: the fingerprints of the other fixtures stay
        cfg["n_classes"] = int(n_classes)
    params = {
        "type": "dummy",
        "fs": 16000,
        "hop_length": 320,
        "win_length": 640,
        "n_fft": 1024,
        "n_channels": 4,
        "format": "mic",
        "chunk_frames": frames,
        "n_mels": bins,
        "array": ArraySpec.mic(_TETRAHEDRON_M).to_dict(),  # the tetrahedral MIC array
    }
    with build_artifact(path, "features", cfg, force=force) as b:
        if b.reused:
            return b.manifest
        w = FeatureWriter(b.dir, n_chunks, (channels, frames, bins), max_sources,
                          classes=n_classes is not None)  # fmt: skip
        for i in range(n_chunks):
            n_src = 1 + i % max_sources
            x, act, dirs = _dummy_chunk(rng, n_src, channels, frames, bins, max_sources)
            split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
            labels = {}
            if n_classes is not None:  # (T, S): the class of each source, -1 where inactive
                labels["classes"] = np.where(act, crng.integers(0, n_classes, max_sources), -1)
            w.put(
                i,
                x.astype(np.float16),
                act,
                dirs,
                **labels,
                clip_id=f"clip{i // 4:03d}",
                fold=1,
                split=split,
                subset=f"ov{n_src}",
                start_frame=(i % 4) * frames,
            )
        w.finish()
        b.extra.update(
            {
                "feature_params": params,
                "shape": [channels, frames, bins],
                "max_sources": max_sources,
                "n_chunks": n_chunks,
            }
        )
        if n_classes is not None:
            b.extra.update({"n_classes": int(n_classes), "has_distance": False})
    return b.manifest


def _dummy_chunk(rng, n_src: int, channels: int, frames: int, bins: int, max_sources: int):
    """One chunk of :func:`make_features_artifact`: ``n_src`` static sources at random
    directions (a few silent frames first) and noise plus a pattern of each direction.

    Returns:
        ``(x [C, T, F] float64, active [T, S], directions [T, S, 3])``.
    """
    az = rng.uniform(-np.pi, np.pi, n_src)
    el = rng.uniform(-np.pi / 4, np.pi / 4, n_src)
    act = np.zeros((frames, max_sources), bool)
    act[:, :n_src] = True
    act[: rng.integers(0, 3), :] = False  # a few silent frames at the start
    dirs = np.zeros((frames, max_sources, 3), np.float32)
    dirs[:, :n_src] = sph_to_unit(az, el)[None]
    x = rng.normal(scale=0.3, size=(channels, frames, bins))
    freqs = np.linspace(0, np.pi, bins)
    for s in range(n_src):
        u = dirs[0, s]
        for c in range(channels):
            pattern = np.cos(freqs * (c + 1) * 0.5 + u[c % 3] * 3.0)
            x[c] += act[:, s, None] * pattern[None, :]
    return x, act, dirs


# ----------------------------------------------------------------------------- DCASE fixture

#: Dataset families of :func:`write_dcase_dataset`.
DCASE_FAMILIES = ("starss", "tau2020", "tau2021")
#: STARSS22/23-style sub-folders: (fold, room) of their clips.
_STARSS_FOLDERS = {
    "dev-train-sony": (3, 21),
    "dev-train-tau": (3, 4),
    "dev-test-sony": (4, 23),
    "dev-test-tau": (4, 2),
}
_SPEED_OF_SOUND_M_S = 343.0
#: A regular tetrahedron of 4.2 cm radius: the DCASE MIC array's capsules (45°, 35°),
#: (-45°, -35°), (135°, -35°), (-135°, 35°) up to 0.3° of elevation.
_TETRAHEDRON_M = 0.042 / np.sqrt(3) * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])


def write_dcase_dataset(
    root: str | os.PathLike,
    *,
    family: str = "starss",
    fmt: str = "foa",
    fs: int = 24000,
    clip_seconds: float = 3.0,
    clips: tuple[int, int] | None = None,
    distance: bool = False,
    n_classes: int = 5,
    seed: int = 0,
) -> Path:
    """Write a tiny DCASE development set: ``ROOT/<fmt>_dev/`` and ``ROOT/metadata_dev/``.

    Families (:data:`DCASE_FAMILIES`):

    - ``starss`` (STARSS22/23, DCASE 2024): sub-folders ``dev-train-sony``,
      ``dev-train-tau`` (fold 3), ``dev-test-sony``, ``dev-test-tau`` (fold 4), files
      ``fold3_room21_mix001.wav``; ``clips`` = (per train folder, per test folder),
      default (5, 2): with the default ``--val-fraction 0.2``, 4 train + 1 val per site.
    - ``tau2020`` / ``tau2021`` (TAU-NIGENS Spatial Sound Events): flat folders, folds
      1-6, files ``fold1_room1_mix001_ov1.wav`` (2020: ``ovN`` = the clip's largest
      overlap) or ``fold1_room1_mix001.wav`` (2021); ``clips[0]`` clips per fold (2).

    Each clip holds 3 or 4 events of ``n_classes`` classes (class-specific noise bands),
    some static, some moving at 10-60°/s along a great circle (which often crosses
    azimuth ±180°), overlapping (two instances of one class among them), rendered as
    plane waves with 1/distance gain: FOA (ACN/SN3D: W, Y, Z, X) or the tetrahedral
    array with per-sample delays; plus faint uncorrelated noise. Metadata rows hold the
    direction at each 100 ms label frame's start (2 decimals), and with ``distance`` a
    6th column in cm (DCASE 2024). Deterministic in ``seed``; 14 clips of 3 s take
    about a second.

    Args:
        root: output folder (created; existing files of the same names are replaced).
        family: one of :data:`DCASE_FAMILIES`.
        fmt: ``foa`` or ``mic``.
        fs: sample rate in Hz (24 kHz as the originals).
        clip_seconds: length of every clip (at least 1 s).
        clips: clip counts (see the families); None: the defaults.
        distance: write the DCASE 2024 distance column.
        n_classes: number of classes used (indices 0..n_classes - 1, at least 2).
        seed: master seed.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.
    """
    import soundfile as sf

    from .core.labels import write_metadata

    if family not in DCASE_FAMILIES:
        raise ValueError(f"family must be one of {DCASE_FAMILIES}, got {family!r}")
    if fmt not in ("foa", "mic") or clip_seconds < 1 or n_classes < 2:
        raise ValueError("need fmt foa or mic, clip_seconds >= 1 and n_classes >= 2")
    root = Path(root)
    rng = np.random.default_rng(seed)
    n_frames = int(round(clip_seconds * 10))  # 100 ms label frames
    n_samples = int(round(clip_seconds * fs))
    for folder, fold, room, index in _dcase_clips(family, clips):
        meta, audio = _dcase_clip(rng, fmt, fs, n_frames, n_samples, n_classes, distance)
        stem = f"fold{fold}_room{room}_mix{index:03d}"
        if family == "tau2020":
            stem += f"_ov{int(meta.groupby('frame').size().max())}"
        for top in (f"{fmt}_dev", "metadata_dev"):
            (root / top / folder).mkdir(parents=True, exist_ok=True)
        sf.write(root / f"{fmt}_dev" / folder / f"{stem}.wav", audio, fs, subtype="PCM_16")
        write_metadata(root / "metadata_dev" / folder / f"{stem}.csv", meta)
    return root


def _dcase_clips(family: str, clips: tuple[int, int] | None):
    """``(folder, fold, room, index)`` of each clip of a :func:`write_dcase_dataset` family."""
    if family == "starss":
        n_train, n_test = clips or (5, 2)
        for folder, (fold, room) in _STARSS_FOLDERS.items():
            n = n_train if "train" in folder else n_test
            yield from ((folder, fold, room, i + 1) for i in range(n))
        return
    per_fold = (clips or (2, 0))[0]
    for fold in range(1, 7):
        yield from (("", fold, fold, i + 1) for i in range(per_fold))


def _dcase_clip(rng, fmt: str, fs: int, n_frames: int, n_samples: int, n_classes: int,
                distance: bool):  # fmt: skip
    """Metadata table and audio ``[n_samples, 4]`` of one fixture clip (see
    :func:`write_dcase_dataset`)."""
    import pandas as pd

    t = np.arange(n_samples) / fs  # (L,) seconds
    audio = 0.003 * rng.normal(size=(n_samples, 4))  # faint uncorrelated noise
    rows = []
    classes = rng.choice(n_classes, size=4)
    classes[3] = classes[0]  # a second instance of one class
    n_events = int(rng.integers(3, 5))
    for e in range(n_events):
        on = int(rng.integers(0, n_frames // 2))
        off = int(rng.integers(on + max(3, n_frames // 4), n_frames + 1))
        az0, el0 = rng.uniform(-np.pi, np.pi), rng.uniform(-0.7, 0.7)
        a = sph_to_unit(az0, el0).astype(np.float64)  # start direction
        b = np.array([-np.sin(az0), np.cos(az0), 0.0])  # heading east along a great circle
        speed = 0.0 if e % 2 == 0 else np.deg2rad(rng.uniform(10, 60)) * rng.choice([-1, 1])
        dist_m = rng.uniform(1.0, 3.0)

        def where(time_s, a=a, b=b, speed=speed, on=on):
            angle = speed * (np.asarray(time_s) - on / 10)
            return np.cos(angle)[..., None] * a + np.sin(angle)[..., None] * b  # (..., 3)

        frames = np.arange(on, off)
        u = where(frames / 10)
        source = int(np.sum(classes[:e] == classes[e]))  # instance of its class
        rows.append(
            pd.DataFrame(
                {
                    "frame": frames,
                    "class": int(classes[e]),
                    "source": source,
                    "azimuth_deg": np.degrees(np.arctan2(u[:, 1], u[:, 0])),
                    "elevation_deg": np.degrees(np.arcsin(np.clip(u[:, 2], -1, 1))),
                    "distance_m": dist_m if distance else np.nan,
                }
            )
        )
        audio += _render_event(rng, fmt, fs, t, on / 10, off / 10, int(classes[e]), n_classes,
                               where) / dist_m  # fmt: skip
    meta = pd.concat(rows, ignore_index=True)
    return meta, 0.9 * audio / max(np.abs(audio).max(), 1e-9)


def _render_event(rng, fmt, fs, t, start_s, end_s, cls, n_classes, where) -> np.ndarray:
    """One event as a plane wave ``[L, 4]``: noise in a band of its class, faded in and
    out (10 ms), from the direction ``where(t)`` at every sample."""
    on = (t >= start_s) & (t < end_s)
    n = int(on.sum())
    lo = 200.0 * (fs / 2 / 200.0 / 2) ** (cls / n_classes)  # log-spaced bands below fs/4
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / fs)
    s = np.fft.irfft(spec * ((f >= lo) & (f < 2 * lo)), n)
    s /= max(np.std(s), 1e-9)
    ramp = min(n // 2, int(0.01 * fs))
    fade = np.ones(n)
    fade[:ramp] = np.sin(np.linspace(0, np.pi / 2, ramp)) ** 2
    fade[n - ramp :] = fade[:ramp][::-1]
    s *= 0.3 * fade
    u = where(t[on])  # (n, 3)
    out = np.zeros((len(t), 4))
    if fmt == "foa":
        out[on] = s[:, None] * np.stack([np.ones(n), u[:, 1], u[:, 2], u[:, 0]], axis=1)
        return out
    tau = -(u @ _TETRAHEDRON_M.T) / _SPEED_OF_SOUND_M_S  # (n, 4): earlier where closer
    tn = t[on]
    for m in range(4):
        out[on, m] = np.interp(tn - tau[:, m], tn, s, left=0.0, right=0.0)
    return out


def _main(argv: list[str] | None = None) -> int:
    """``python -m ssl_toolkit.testing dcase-fixture OUT [options]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ssl_toolkit.testing")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dcase-fixture", help="write a tiny DCASE dataset (write_dcase_dataset)")
    d.add_argument("out", help="output folder")
    d.add_argument("--family", choices=DCASE_FAMILIES, default="starss")
    d.add_argument("--format", choices=("foa", "mic"), default="foa")
    d.add_argument("--fs", type=int, default=24000, help="sample rate in Hz")
    d.add_argument("--seconds", type=float, default=3.0, help="clip length in seconds")
    d.add_argument("--clips", type=int, nargs="+", help="clip counts (see the docstring)")
    d.add_argument("--distance", action="store_true", help="write the distance column (cm)")
    d.add_argument("--classes", type=int, default=5, help="number of classes")
    d.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    clips = tuple(args.clips) + (2,) * (2 - len(args.clips)) if args.clips else None
    root = write_dcase_dataset(
        args.out, family=args.family, fmt=args.format, fs=args.fs, clip_seconds=args.seconds,
        clips=clips, distance=args.distance, n_classes=args.classes, seed=args.seed,
    )  # fmt: skip
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
