"""``ssl prep synth``: ANSYN/RESYN look-alike scenes, reproducible clip by clip.

A clip of subset ``ovN`` holds N *tracks*; each track is a sequence of
non-overlapping events separated by random gaps, so at most N events sound at
once. Every event is a static point source: a class, a direction (on a grid
of ``grid_deg`` like ANSYN's 10°, or continuous), a distance, and a signal
from the event library. Events that overlap in time never share a direction.

- preset ``ansyn``: free field (direct path only, 1/r attenuation and delay).
- preset ``resyn``: one shoebox room per clip, its size, RT60 and the array
  position drawn from documented ranges; image sources up to ``max_order``
  plus a late tail (see :mod:`.rooms`).

Ambient noise (pink, diffuse) is added at ``snr_db`` below the clip's event
power, and the clip is scaled to a 0.9 peak. Clip ``i`` depends only on
``(seed, i)``, never on ``jobs``.

With ``motion`` (TAU-NIGENS Spatial Sound Events 2020/2021 look-alikes), a share
``moving_fraction`` of the events moves: each travels along a great circle from its
planned start direction, at an angular speed drawn from ``angular_speeds_deg_s``, at
a constant distance, on an arc that stays within ``elevation_range_deg``
(:func:`plan_motion`). Onsets and durations are quantized to the 100 ms label frame
and the labels are DCASE metadata (:func:`motion_metadata`); moving events are
rendered block by block (:func:`.render.spatialize_moving`). The motion is drawn from
its own generator, so the draws of static scenes, and the static artifacts, are
unchanged.
"""

from __future__ import annotations

import functools
import os
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.artifacts import Manifest, build_artifact
from ..core.config import ConfigError, check_choices, check_finite, choose, to_dict
from ..core.console import log, progress
from ..core.cpu import parallel_map, worker_count
from ..core.errors import DataError
from ..core.geometry import deg, rad, sph_to_unit, unit_to_sph
from ..core.labels import (
    LABEL_COLUMNS,
    METADATA_COLUMNS,
    METADATA_HOP_S,
    assign_slots,
    max_overlap,
    metadata_events,
    metadata_max_overlap,
    write_labels,
    write_metadata,
)
from ..core.memory import check_disk
from .arrays import FORMATS, MAX_ARRAY_RADIUS_M, SPEED_OF_SOUND_M_S, array_positions
from .render import (
    BLOCK_HOP_S,
    SINC_HALF,
    block_count,
    impulse_response,
    lead_samples,
    spatialize,
    spatialize_moving,
)
from .rooms import (
    free_field_paths,
    image_paths,
    late_tail,
    max_distance_m,
    min_rt60_s,
    sample_room,
)
from .sources import EventLibrary, check_folder

SUBSETS = ("ov1", "ov2", "ov3")
LAYOUTS = ("toolkit", "tut2018")
PEAK = 0.9
MIN_SOURCE_DISTANCE_M = 0.5
#: Sub-streams of a clip's random numbers: event signals, late tails, ambient noise, motion.
EVENT_STREAM, TAIL_STREAM, NOISE_STREAM, MOTION_STREAM = 1, 2, 3, 4
#: Fastest angular speed of a moving source (9 degrees per 50 ms rendering block).
MAX_ANGULAR_SPEED_DEG_S = 180.0
#: Headings drawn per moving event; the first whose arc stays in the elevation range wins.
HEADING_TRIES = 32
#: Options that only matter with ``motion``: left out of the manifests of static scenes,
#: so that those stay byte for byte what they were before motion existed.
MOTION_OPTIONS = ("motion", "angular_speeds_deg_s", "moving_fraction")
NOISE_BANK_SAMPLES = 3_000_000  # 68 s at 44.1 kHz
PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786], np.float32)
PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400], np.float32)


@dataclass(frozen=True)
class SynthConfig:
    """Options of ``ssl prep synth`` (defaults: preset ``ansyn``; see :func:`preset_config`).

    Attributes:
        preset: ``ansyn`` (free field) or ``resyn`` (shoebox rooms).
        format: ``foa`` (ACN/SN3D) or ``mic`` (tetrahedral array, 4.2 cm radius).
        fs: sample rate in Hz.
        n_clips: number of clips, spread evenly over ``subsets``.
        clip_seconds: clip length.
        subsets: overlap subsets among ov1, ov2, ov3 (at most 1, 2, 3 simultaneous events).
        folds: cross-validation folds the clips are spread over (``fold`` column).
        split_fractions: train/val/test fractions, applied within each subset.
        seed: master seed; clip i uses the generator seeded with ``(seed, i)``.
        event_seconds: range of event durations.
        gap_seconds: range of the silences between consecutive events of a track.
        grid_deg: direction grid step (ANSYN: 10); 0 draws continuous directions.
        azimuth_range_deg: azimuth range (grid: -180..170 as ANSYN).
        elevation_range_deg: elevation range (reference loaders: -60..50).
        distance_range_m: source distance range (clamped to stay inside a room).
        snr_db: event-to-ambient-noise ratio.
        room_min_m, room_max_m: ranges of the room dimensions (resyn).
        rt60_range_s: range of the reverberation time (resyn; drawn per clip).
        max_order: image-source order cap (resyn); a late tail covers the rest.
        late_tail: add the stochastic late tail (resyn).
        room: shoebox rooms (True for resyn) or free field.
        mic_positions_m: capsule positions ``[[x, y, z], ...]`` in metres (DCASE frame,
            array centre at the origin) of your own array for the ``mic`` format; empty:
            the tetrahedral DCASE array. Any number M >= 2 of omnidirectional capsules.
        sources_dir: user folder of event clips (``<class>/<clip>.wav``); empty = built-in.
        layout: ``toolkit`` (``wav/``, ``labels/``) or ``tut2018`` (original folder names).
        subtype: soundfile subtype of the written wavs.
        motion: moving sources (TAU-NIGENS 2020/2021 style): moving events travel along
            great circles; onsets and durations fall on the 100 ms label frame and the
            labels are DCASE metadata CSVs (``label_format`` ``dcase``). Needs layout
            ``toolkit``, ``clip_seconds`` a multiple of 0.1 s and events of at least 0.1 s.
        angular_speeds_deg_s: the angular speeds (degrees per second, in (0, 180]) a
            moving event draws from, uniformly; its heading (the direction of travel,
            so also the sense) is drawn uniformly around its start direction, redrawn
            until the whole arc stays within ``elevation_range_deg`` (slower speeds, then
            a static event, if no heading fits).
        moving_fraction: share of the events that move (with ``motion``); the others
            stay static.
    """

    #: Options with a fixed set of values (checked and matched up to case by core.config).
    CHOICES = {"preset": ("ansyn", "resyn"), "format": FORMATS, "layout": LAYOUTS}

    preset: str = "ansyn"
    format: str = "foa"
    fs: int = 44100
    n_clips: int = 60
    clip_seconds: float = 30.0
    subsets: tuple[str, ...] = SUBSETS
    folds: int = 1
    split_fractions: tuple[float, ...] = (0.6, 0.2, 0.2)
    seed: int = 0
    event_seconds: tuple[float, ...] = (0.5, 3.0)
    gap_seconds: tuple[float, ...] = (0.1, 1.5)
    grid_deg: float = 10.0
    azimuth_range_deg: tuple[float, ...] = (-180.0, 170.0)
    elevation_range_deg: tuple[float, ...] = (-60.0, 50.0)
    distance_range_m: tuple[float, ...] = (1.0, 10.0)
    snr_db: float = 30.0
    room_min_m: tuple[float, ...] = (4.0, 3.0, 2.5)
    room_max_m: tuple[float, ...] = (10.0, 8.0, 4.0)
    rt60_range_s: tuple[float, ...] = (0.2, 0.8)
    max_order: int = 8
    late_tail: bool = True
    room: bool = False
    mic_positions_m: tuple[tuple[float, ...], ...] = ()
    sources_dir: str = ""
    layout: str = "toolkit"
    subtype: str = "PCM_16"
    motion: bool = False
    angular_speeds_deg_s: tuple[float, ...] = (10.0, 20.0, 40.0)
    moving_fraction: float = 1.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid option."""
        check_finite(self)
        check_choices(self)
        _check(8000 <= self.fs <= 192000, "fs", "must be in 8000..192000 Hz")
        _check(self.n_clips >= 1, "n_clips", "must be at least 1")
        _check(self.clip_seconds > 0, "clip_seconds", "must be positive")
        _check(
            len(self.subsets) > 0 and set(self.subsets) <= set(SUBSETS),
            "subsets",
            f"must be among {SUBSETS}",
        )
        _check(len(set(self.subsets)) == len(self.subsets), "subsets", "has duplicates")
        _check(self.folds >= 1, "folds", "must be at least 1")
        fr = self.split_fractions
        _check(
            len(fr) == 3 and min(fr) >= 0 and abs(sum(fr) - 1) < 1e-6,
            "split_fractions",
            "must be 3 non-negative numbers (train, val, test) summing to 1",
        )
        _range(self.event_seconds, "event_seconds", lo=1e-3)
        _check(self.event_seconds[0] <= self.clip_seconds, "event_seconds", "exceeds clip_seconds")
        _range(self.gap_seconds, "gap_seconds", lo=0.0)
        _check(0 <= self.grid_deg <= 90, "grid_deg", "must be in [0, 90] (0: continuous)")
        _range(self.azimuth_range_deg, "azimuth_range_deg", lo=-180.0, hi=180.0)
        _range(self.elevation_range_deg, "elevation_range_deg", lo=-90.0, hi=90.0)
        _range(self.distance_range_m, "distance_range_m", lo=MIN_SOURCE_DISTANCE_M)
        n_dirs = len(direction_grid(self)[0]) if self.grid_deg > 0 else np.inf
        _check(
            n_dirs >= max_sources(self),
            "grid_deg",
            f"gives {n_dirs} directions, fewer than the {max_sources(self)} simultaneous sources",
        )
        if self.mic_positions_m:
            self._validate_array()
        if self.room:
            self._validate_room()
        self._validate_motion()

    def _validate_motion(self) -> None:
        _check(
            len(self.angular_speeds_deg_s) > 0
            and all(0 < v <= MAX_ANGULAR_SPEED_DEG_S for v in self.angular_speeds_deg_s),
            "angular_speeds_deg_s",
            f"must list speeds in (0, {MAX_ANGULAR_SPEED_DEG_S:g}] degrees per second",
        )
        _check(0 <= self.moving_fraction <= 1, "moving_fraction", "must be in [0, 1]")
        if not self.motion:
            return
        _check(
            self.layout != "tut2018",
            "motion",
            "cannot be used with option 'layout' = 'tut2018': TUT2018 label files hold "
            "static events only; use layout 'toolkit' (DCASE metadata labels)",
        )
        frames = self.clip_seconds / METADATA_HOP_S
        _check(
            abs(frames - round(frames)) < 1e-6,
            "clip_seconds",
            f"must be a multiple of the {METADATA_HOP_S} s label frame with motion "
            f"(got {self.clip_seconds})",
        )
        _check(
            self.event_seconds[0] >= METADATA_HOP_S - 1e-9,
            "event_seconds",
            f"must start at {METADATA_HOP_S} s or more with motion (one label frame)",
        )

    def _validate_array(self) -> None:
        _check(self.format == "mic", "mic_positions_m", "needs format 'mic' (FOA has no capsules)")
        array_positions(self.mic_positions_m)

    def _validate_room(self) -> None:
        _check(len(self.room_min_m) == 3, "room_min_m", "needs 3 dimensions")
        _check(len(self.room_max_m) == 3, "room_max_m", "needs 3 dimensions")
        _check(
            all(
                2 * MIN_SOURCE_DISTANCE_M + 1 <= a <= b
                for a, b in zip(self.room_min_m, self.room_max_m, strict=True)
            ),
            "room_min_m",
            "must be >= 2 m and <= room_max_m in every dimension",
        )
        _range(self.rt60_range_s, "rt60_range_s", lo=0.05)
        need = 1.05 * min_rt60_s(self.room_max_m)
        _check(
            self.rt60_range_s[1] >= need,
            "rt60_range_s",
            f"upper bound {self.rt60_range_s[1]} s: a {list(self.room_max_m)} m room cannot "
            f"reverberate less than {need:.2f} s",
        )
        _check(0 <= self.max_order <= 40, "max_order", "must be in 0..40")


def _check(ok: bool, name: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"option {name!r} {why}")


def _range(v: tuple[float, ...], name: str, lo: float = -np.inf, hi: float = np.inf) -> None:
    _check(
        len(v) == 2 and lo <= v[0] <= v[1] <= hi, name, f"must be [min, max] within [{lo}, {hi}]"
    )


#: Presets: ANSYN (anechoic) and RESYN (reverberant) look-alikes.
PRESETS: dict[str, dict[str, Any]] = {
    "ansyn": {"preset": "ansyn", "room": False, "distance_range_m": (1.0, 10.0)},
    "resyn": {"preset": "resyn", "room": True, "distance_range_m": (1.0, 4.0)},
}


def synth_config(toml: dict[str, Any] | None, cli: dict[str, Any] | None) -> SynthConfig:
    """Resolve :class:`SynthConfig`: preset < TOML < CLI options (None: not given).

    The preset named on the command line beats the TOML's, which beats ``ansyn``.
    """
    from ..core.config import resolve

    toml, cli = toml or {}, cli or {}
    name = cli.get("preset") or toml.get("preset") or "ansyn"
    return resolve(SynthConfig, preset_config(choose("preset", name, PRESETS)), toml, cli)


def preset_config(name: str) -> dict[str, Any]:
    """The options a preset sets (a layer for :func:`config.resolve`)."""
    return dict(PRESETS[choose("preset", name, PRESETS)])


def mic_positions(cfg: SynthConfig) -> np.ndarray | None:
    """Capsule positions ``[M, 3]`` of the ``mic`` format (None for ``foa``)."""
    return array_positions(cfg.mic_positions_m) if cfg.format == "mic" else None


def max_sources(cfg: SynthConfig) -> int:
    """S, the largest number of simultaneous sources of the chosen subsets."""
    return max(int(s[2:]) for s in cfg.subsets)


def direction_grid(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """Azimuths and elevations (degrees) of the direction grid, flattened."""
    az = np.arange(cfg.azimuth_range_deg[0], cfg.azimuth_range_deg[1] + 1e-9, cfg.grid_deg)
    el = np.arange(cfg.elevation_range_deg[0], cfg.elevation_range_deg[1] + 1e-9, cfg.grid_deg)
    a, e = np.meshgrid(az, el, indexing="ij")
    return a.ravel(), e.ravel()


# ----------------------------------------------------------------------------- scene plans


def plan_events(
    rng: np.random.Generator, cfg: SynthConfig, n_tracks: int, n_classes: int
) -> pd.DataFrame:
    """Draw the events of one clip: tracks of events, then classes and directions.

    Returns:
        One row per event (onset order): ``class_index, start_time, end_time, track, azi,
        ele, dist`` (``track``: the index of the track the event belongs to).
    """
    rows = []
    for track in range(n_tracks):
        t = rng.uniform(0, cfg.gap_seconds[1])
        while t + cfg.event_seconds[0] <= cfg.clip_seconds:
            dur = min(rng.uniform(*cfg.event_seconds), cfg.clip_seconds - t)
            rows.append((t, t + dur, track))
            t += dur + rng.uniform(*cfg.gap_seconds)
    ev = pd.DataFrame(rows, columns=["start_time", "end_time", "track"])
    ev = ev.sort_values("start_time")
    ev = ev.reset_index(drop=True)
    ev.insert(0, "class_index", rng.integers(0, n_classes, len(ev)))
    azi, ele = _directions(rng, cfg, ev["start_time"].to_numpy(), ev["end_time"].to_numpy())
    ev["azi"], ev["ele"] = azi, ele
    ev["dist"] = rng.uniform(*cfg.distance_range_m, len(ev))
    return ev


def _directions(
    rng: np.random.Generator, cfg: SynthConfig, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Directions (degrees) such that events overlapping in time never share one."""
    n = len(start)
    if cfg.grid_deg > 0:
        ga, ge = direction_grid(cfg)
        azi, ele = np.zeros(n), np.zeros(n)
        for i in range(n):  # loop over events (a few per clip), not frames
            busy = (start < end[i]) & (end > start[i]) & (np.arange(n) < i)
            taken = {(azi[j], ele[j]) for j in np.flatnonzero(busy)}
            free = [k for k in range(len(ga)) if (ga[k], ge[k]) not in taken] if taken else None
            k = rng.choice(free) if free is not None else rng.integers(len(ga))
            azi[i], ele[i] = ga[k], ge[k]
        return azi, ele
    azi = rng.uniform(*cfg.azimuth_range_deg, n)
    s_lo, s_hi = np.sin(rad(np.asarray(cfg.elevation_range_deg)))
    ele = deg(np.arcsin(rng.uniform(s_lo, s_hi, n)))  # uniform on the spherical band
    return azi, ele


# ----------------------------------------------------------------------------- motion


def quantize_events(ev: pd.DataFrame, clip_seconds: float) -> pd.DataFrame:
    """Move onsets and ends to the 100 ms label frame (``motion``), track by track.

    Each time goes to the nearest frame boundary; an event keeps at least one frame and
    never starts before the previous event of its track ends, so the overlap (at most the
    number of tracks) is kept.

    Returns:
        A copy with ``start_frame, end_frame`` (int; the event sounds in label frames
        ``[start_frame, end_frame)``) and ``start_time, end_time`` on the frame grid.
    """
    ev = ev.copy()
    n_frames = int(round(clip_seconds / METADATA_HOP_S))
    f0 = np.floor(ev["start_time"].to_numpy() / METADATA_HOP_S + 0.5).astype(np.int64)
    f1 = np.floor(ev["end_time"].to_numpy() / METADATA_HOP_S + 0.5).astype(np.int64)
    track = ev["track"].to_numpy()
    for k in np.unique(track):  # a few events per track: a loop over events, not samples
        busy_until = 0
        for i in np.flatnonzero(track == k):  # onset order
            f0[i] = max(f0[i], busy_until)
            f1[i] = min(max(f1[i], f0[i] + 1), n_frames)
            busy_until = f1[i]
    ev["start_frame"], ev["end_frame"] = f0, f1
    # a validated config never empties an event (onsets are >= 1 frame before the end);
    # drop one anyway rather than write an empty event
    ev = ev[f1 > f0].reset_index(drop=True)
    ev["start_time"] = ev["start_frame"] * METADATA_HOP_S
    ev["end_time"] = ev["end_frame"] * METADATA_HOP_S
    return ev


def tangent_directions(azi_deg, ele_deg, heading_rad) -> np.ndarray:
    """Unit tangents ``[..., 3]`` of the sphere at directions (degrees) along headings.

    Heading 0 points towards increasing azimuth (along the parallel), pi/2 straight up
    (along the meridian): ``cos(h) e_az + sin(h) e_el``.
    """
    az, el = rad(np.asarray(azi_deg, np.float64)), rad(np.asarray(ele_deg, np.float64))
    h = np.asarray(heading_rad, np.float64)
    e_az = np.stack((-np.sin(az), np.cos(az), np.zeros_like(az)), axis=-1)
    e_el = np.stack((-np.cos(az) * np.sin(el), -np.sin(az) * np.sin(el), np.cos(el)), axis=-1)
    return np.cos(h)[..., None] * e_az + np.sin(h)[..., None] * e_el


def arc_directions(u0: np.ndarray, v: np.ndarray, angle_rad) -> np.ndarray:
    """Points of the great circle through ``u0`` along tangent ``v``: ``cos a u0 + sin a v``.

    Args:
        u0: unit vectors ``[..., 3]``; v: unit tangents ``[..., 3]`` (``v . u0 = 0``);
        angle_rad: arc angles ``[...]`` travelled from ``u0``.

    Returns:
        Unit vectors ``[..., 3]`` float64.
    """
    a = np.asarray(angle_rad, np.float64)[..., None]
    return np.cos(a) * np.asarray(u0, np.float64) + np.sin(a) * np.asarray(v, np.float64)


def arc_fits(u0: np.ndarray, v: np.ndarray, arc_rad, sin_lo: float, sin_hi: float) -> np.ndarray:
    """Whether the arc of ``arc_rad`` from ``u0`` along ``v`` keeps ``z`` (the sine of the
    elevation) within ``[sin_lo, sin_hi]``, exactly.

    ``z(a) = z0 cos a + v_z sin a = R cos(a - delta)`` is extreme at the arc's ends and at
    ``a = delta (mod pi)`` inside it.

    Returns:
        ``[...]`` bool (broadcasting ``u0``, ``v`` ``[..., 3]`` and ``arc_rad`` ``[...]``).
    """
    z0, vz = np.asarray(u0)[..., 2], np.asarray(v)[..., 2]
    arc = np.asarray(arc_rad, np.float64)
    r, delta = np.hypot(z0, vz), np.arctan2(vz, z0)
    ends = (z0, z0 * np.cos(arc) + vz * np.sin(arc))
    first = np.mod(delta, np.pi)  # stationary points: first, first + pi, ... (+R or -R)
    inner = [np.where(a <= arc, r * np.cos(a - delta), np.nan) for a in (first, first + np.pi)]
    z = np.stack(np.broadcast_arrays(*ends, *inner))
    eps = 1e-9
    return np.all(np.isnan(z) | ((z >= sin_lo - eps) & (z <= sin_hi + eps)), axis=0)


def plan_motion(rng: np.random.Generator, cfg: SynthConfig, ev: pd.DataFrame) -> pd.DataFrame:
    """Draw which events move, their speeds and headings (``motion``).

    ``rng`` is the clip's own motion generator (``(seed, index, MOTION_STREAM)``), so the
    static draws of a clip stay as they were. For every event, in this order: whether it
    moves (probability ``moving_fraction``), a speed from ``angular_speeds_deg_s``
    (uniform) and :data:`HEADING_TRIES` headings (uniform in [0, 2 pi)). A moving event
    takes the first heading whose arc over its duration stays within
    ``elevation_range_deg`` (:func:`arc_fits`); if none fits it tries the slower speeds
    of the set, then stays static. The azimuth range bounds start directions only.

    Args:
        ev: quantized events (:func:`quantize_events`).

    Returns:
        A copy with ``speed_deg_s`` (0 for a static event) and ``heading_rad``.
    """
    ev = ev.copy()
    e = len(ev)
    moving = rng.random(e) < cfg.moving_fraction
    speeds = np.asarray(cfg.angular_speeds_deg_s, np.float64)
    speed = speeds[rng.integers(0, len(speeds), e)]
    headings = rng.uniform(0.0, 2 * np.pi, (e, HEADING_TRIES))
    azi, ele = ev["azi"].to_numpy(np.float64), ev["ele"].to_numpy(np.float64)
    u0 = sph_to_unit(rad(azi), rad(ele)).astype(np.float64)  # (E, 3)
    v = tangent_directions(azi[:, None], ele[:, None], headings)  # (E, T, 3)
    duration = (ev["end_frame"] - ev["start_frame"]).to_numpy() * METADATA_HOP_S
    sin_lo, sin_hi = np.sin(rad(np.asarray(cfg.elevation_range_deg, np.float64)))
    out_speed, out_heading = np.zeros(e), np.zeros(e)
    for i in np.flatnonzero(moving):  # a few events per clip; headings are vectorized
        for w in np.sort(np.unique(speeds[speeds <= speed[i]]))[::-1]:
            ok = arc_fits(u0[i], v[i], rad(w) * duration[i], sin_lo, sin_hi)  # (T,)
            if ok.any():
                out_speed[i], out_heading[i] = w, headings[i, int(np.argmax(ok))]
                break
    ev["speed_deg_s"], ev["heading_rad"] = out_speed, out_heading
    return ev


def arc_points(azi_deg, ele_deg, heading_rad, speed_deg_s, t_s) -> np.ndarray:
    """Directions ``[..., 3]`` (float64) of sources that start at ``(azi_deg, ele_deg)`` and
    move along the great circle of ``heading_rad`` at ``speed_deg_s``, ``t_s`` seconds
    after their onsets (all arguments broadcast)."""
    azi, ele = np.asarray(azi_deg, np.float64), np.asarray(ele_deg, np.float64)
    u0 = sph_to_unit(rad(azi), rad(ele))
    v = tangent_directions(azi, ele, heading_rad)
    angle = rad(np.asarray(speed_deg_s, np.float64)) * np.asarray(t_s, np.float64)
    return arc_directions(u0, v, angle)


def event_directions(ev: pd.DataFrame, e: int, t_s) -> np.ndarray:
    """Directions ``[..., 3]`` of event ``e`` at times ``t_s [...]`` (seconds from its onset)."""
    return arc_points(*(ev.at[e, k] for k in ("azi", "ele", "heading_rad", "speed_deg_s")), t_s)


def motion_metadata(ev: pd.DataFrame) -> pd.DataFrame:
    """The DCASE metadata of a clip with motion: one row per event per label frame.

    The row of frame f holds the direction at the frame's start, ``f * 0.1 s`` (exact
    on the arc); ``class`` is the event's class index, ``source`` the lowest index not
    taken by an event of the same class sounding at its onset or ending there
    (:func:`assign_slots` with ends one frame later), so that two events of one class
    played back to back are never read as one event
    (:func:`~ssl_toolkit.core.labels.metadata_events`).

    Args:
        ev: planned events (:func:`quantize_events`, :func:`plan_motion`).

    Returns:
        A table of :data:`METADATA_COLUMNS` (degrees, metres) sorted by frame, class, source.
    """
    f0, f1 = ev["start_frame"].to_numpy(np.int64), ev["end_frame"].to_numpy(np.int64)
    cls = ev["class_index"].to_numpy(np.int64)
    source = np.zeros(len(ev), np.int64)
    for c in np.unique(cls):
        source[cls == c] = assign_slots(f0[cls == c], f1[cls == c] + 1)
    count = f1 - f0
    e = np.repeat(np.arange(len(ev)), count)  # (R,)
    frame = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + f0[e]
    start = (ev[k].to_numpy(np.float64)[e] for k in ("azi", "ele", "heading_rad", "speed_deg_s"))
    az, el = unit_to_sph(arc_points(*start, (frame - f0[e]) * METADATA_HOP_S))  # (R,)
    meta = pd.DataFrame(
        {
            "frame": frame,
            "class": cls[e],
            "source": source[e],
            "azimuth_deg": deg(az),
            "elevation_deg": deg(el),
            "distance_m": ev["dist"].to_numpy(np.float64)[e],
        },
        columns=METADATA_COLUMNS,
    )
    return meta.sort_values(["frame", "class", "source"], kind="stable").reset_index(drop=True)


def _block_times_s(ev: pd.DataFrame, e: int, s0: int, n_samples: int, fs: int) -> np.ndarray:
    """Times (s from the event's labelled onset) of the centres of its rendering blocks."""
    hop = int(round(BLOCK_HOP_S * fs))
    k = np.arange(block_count(n_samples, hop))
    return (s0 + k * hop) / fs - ev.at[e, "start_frame"] * METADATA_HOP_S


def _render_moving(
    cfg: SynthConfig,
    ev: pd.DataFrame,
    e: int,
    sig: np.ndarray,
    s0: int,
    room,
    mic: np.ndarray | None,
    tail_rng: np.random.Generator,
) -> np.ndarray:
    """Render moving event ``e`` block by block (:func:`.render.spatialize_moving`).

    Block k is centred at signal sample ``k * hop`` (hop = 50 ms) and rendered from the
    source position at that time: the label time is the arrival of the direct sound at
    the array centre, so block k's direction is the labelled one at its centre. In a room
    the image sources of every block come from one pyroomacoustics call and the blocks
    share one late-tail noise.

    Returns:
        ``[M, len(sig) + L - 1]`` float32, aligned like :func:`.render.spatialize`.
    """
    fs = cfg.fs
    hop = int(round(BLOCK_HOP_S * fs))
    dirs = event_directions(ev, e, _block_times_s(ev, e, s0, len(sig), fs))  # (B, 3)
    positions = dirs * ev.at[e, "dist"]
    paths = image_paths(room, positions, fs) if room else [free_field_paths(p) for p in positions]
    tail = None
    if room and cfg.late_tail:
        longest = max(float(np.linalg.norm(p.positions_m, axis=1).max()) for p in paths)
        # a bound on every block's response length: its last path's delay, then the tail
        last = lead_samples(fs, mic) + (longest + MAX_ARRAY_RADIUS_M) / SPEED_OF_SOUND_M_S * fs
        n_tail = int(np.ceil(last)) + 2 * SINC_HALF + int(room.rt60_s * fs)
        channels = 4 if mic is None else len(mic)
        noise = late_tail(tail_rng, n_tail, room.rt60_s, fs, cfg.format, channels)
        tail = (noise, room.rt60_s)
    rirs = (impulse_response(p, cfg.format, fs, mic, tail) for p in paths)
    return spatialize_moving(sig, rirs, hop)


# ----------------------------------------------------------------------------- rendering


def render_clip(
    cfg: SynthConfig, index: int, subset: str, library: EventLibrary
) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any]]:
    """Render clip ``index`` of ``subset``; depends only on ``(cfg, index)``.

    The scene (events, directions, room) and each event's signal come from generators
    seeded by ``(seed, index)`` and ``(seed, index, event)`` alone, so the ``foa`` and
    ``mic`` renderings of a clip (its MIC twin) hold the same events and signals; only
    the late tails and the ambient noise, drawn per channel, differ.

    With ``motion`` the events are quantized to the label frame and drawn to move
    (:func:`quantize_events`, :func:`plan_motion`, from the clip's motion generator), moving
    events are rendered block by block (:func:`_render_moving`), and the labels are DCASE
    metadata (:func:`motion_metadata`).

    Returns:
        ``audio [M, n]`` float32 (M = 4, or the user array's capsules), its label table
        (TUT2018 columns; with ``motion`` the :data:`METADATA_COLUMNS` of a DCASE metadata
        table), and a dict describing the room (empty in free field).
    """
    rng = np.random.default_rng([cfg.seed, index])
    fs, n = cfg.fs, int(round(cfg.clip_seconds * cfg.fs))
    ev = plan_events(rng, cfg, int(subset[2:]), len(library.classes))
    if cfg.motion:
        ev = quantize_events(ev, cfg.clip_seconds)
        ev = plan_motion(np.random.default_rng([cfg.seed, index, MOTION_STREAM]), cfg, ev)
    moving = ev["speed_deg_s"].to_numpy() > 0 if cfg.motion else np.zeros(len(ev), bool)
    u = sph_to_unit(rad(ev["azi"].to_numpy()), rad(ev["ele"].to_numpy())).astype(np.float64)
    room, info = None, {}
    if cfg.room:
        room = sample_room(rng, cfg.room_min_m, cfg.room_max_m, cfg.rt60_range_s, cfg.max_order)
        reach = np.array([max_distance_m(room, d) for d in u])
        for e in np.flatnonzero(moving):  # the whole path (every block centre) stays inside
            s0 = int(round(ev.at[e, "start_time"] * fs))
            t = _block_times_s(ev, e, s0, int(round(ev.at[e, "end_time"] * fs)) - s0, fs)
            reach[e] = min(reach[e], max_distance_m(room, event_directions(ev, e, t)).min())
        ev["dist"] = np.clip(ev["dist"].to_numpy(), MIN_SOURCE_DISTANCE_M, reach)
        info = {"room_m": list(room.dims_m), "rt60_s": room.rt60_s, "array_m": list(room.array_m)}
    positions = u * ev["dist"].to_numpy()[:, None]  # (E, 3)
    static = np.flatnonzero(~moving)
    paths = dict(zip(static.tolist(), _paths(room, positions[static], fs), strict=True))
    mic = mic_positions(cfg)
    lead = lead_samples(fs, mic)
    out = np.zeros((4 if mic is None else len(mic), n + lead), dtype=np.float32)
    for e in range(len(ev)):
        s0 = int(round(ev.at[e, "start_time"] * fs))
        sig = _event_signal(cfg, index, e, ev, s0, library)
        tail_rng = np.random.default_rng([cfg.seed, index, TAIL_STREAM, e])
        if moving[e]:
            y = _render_moving(cfg, ev, e, sig, s0, room, mic, tail_rng)
        else:
            tail = (tail_rng, room.rt60_s) if room and cfg.late_tail else None
            y = spatialize(sig, impulse_response(paths[e], cfg.format, fs, mic, tail))
        stop = min(out.shape[1], s0 + y.shape[1])
        out[:, s0:stop] += y[:, : stop - s0]
    audio = out[:, lead:]  # direct sound at the array centre at the label onsets
    noise_rng = np.random.default_rng([cfg.seed, index, NOISE_STREAM])
    audio = _add_noise(noise_rng, audio, cfg.snr_db, cfg.format, cfg.seed)
    audio *= np.float32(PEAK / max(np.abs(audio).max(), 1e-12))
    if cfg.motion:
        return audio.astype(np.float32), motion_metadata(ev), info
    ev["sound_event_recording"] = [library.classes[c] for c in ev["class_index"]]
    return audio.astype(np.float32), ev[LABEL_COLUMNS], info


def _paths(room, positions: np.ndarray, fs: int) -> list:
    """Propagation paths of sources at ``positions [E, 3]`` (image sources in a room)."""
    if room is None:
        return [free_field_paths(p) for p in positions]
    return image_paths(room, positions, fs) if len(positions) else []


def _event_signal(
    cfg: SynthConfig, index: int, e: int, ev: pd.DataFrame, s0: int, library: EventLibrary
) -> np.ndarray:
    """Draw the signal of event ``e`` (it starts at sample ``s0``) and fix its end time.

    Static scenes: the label ends where the signal does (a user clip may be shorter than
    planned). With ``motion`` the end stays on the label frame grid: a shorter user clip
    is cut at its last whole frame (drawn again from the same generator, so it is the same
    clip, faded out at the cut) and the event's ``end_frame`` moves there.
    """
    fs = cfg.fs
    cls = int(ev.at[e, "class_index"])
    seed = [cfg.seed, index, EVENT_STREAM, e]
    want = int(round(ev.at[e, "end_time"] * fs)) - s0
    sig = library.draw(np.random.default_rng(seed), cls, want)
    if not cfg.motion:
        ev.at[e, "end_time"] = (s0 + len(sig)) / fs
    elif len(sig) < want:
        whole = int((s0 + len(sig)) / fs / METADATA_HOP_S + 1e-9)  # frames the clip fills
        frames = max(1, whole - int(ev.at[e, "start_frame"]))
        ev.at[e, "end_frame"] = ev.at[e, "start_frame"] + frames
        ev.at[e, "end_time"] = ev.at[e, "end_frame"] * METADATA_HOP_S
        sig = library.draw(
            np.random.default_rng(seed), cls, int(round(ev.at[e, "end_time"] * fs)) - s0
        )
    return sig


def _add_noise(
    rng: np.random.Generator, audio: np.ndarray, snr_db: float, fmt: str, seed: int
) -> np.ndarray:
    """Add diffuse pink noise at ``snr_db`` below the clip's power (channel 0).

    Each channel takes its own window, at a random offset, of a long pink-noise
    recording made once per process (:func:`noise_bank`), so channels are
    uncorrelated; in ``foa`` X, Y, Z carry 1/3 of W's power, as a diffuse field
    in SN3D.
    """
    m, n = audio.shape
    bank = noise_bank(n, seed)  # (2L,) the recording twice, for windows that wrap
    starts = rng.integers(0, len(bank) // 2, m)
    noise = np.stack([bank[s : s + n] for s in starts])  # (M, n)
    if fmt == "foa":
        noise[1:] /= np.sqrt(3.0)
    p_sig, p_noise = np.mean(audio[0] ** 2), np.mean(noise[0] ** 2)
    if p_sig <= 0 or p_noise <= 0:
        return audio
    noise *= np.float32(np.sqrt(p_sig / p_noise * 10 ** (-snr_db / 10)))
    audio += noise
    return audio


@functools.lru_cache(maxsize=2)
def noise_bank(n_samples: int, seed: int) -> np.ndarray:
    """Pink noise, unit power, of length ``L = max(n_samples, NOISE_BANK_SAMPLES)``, stored twice.

    Pink: white noise through Kellet's 3-pole 1/f filter (within 0.5 dB over
    10 Hz .. 0.45 fs). It depends only on ``seed`` and the length, so clips
    do not depend on which worker makes them.
    """
    from scipy.signal import lfilter

    n = max(n_samples, NOISE_BANK_SAMPLES)
    white = np.random.default_rng([seed, 7_777_777]).standard_normal(n, dtype=np.float32)
    pink = lfilter(PINK_B, PINK_A, white).astype(np.float32)
    pink /= np.sqrt(np.mean(pink**2))
    return np.concatenate((pink, pink))


# ----------------------------------------------------------------------------- data set


def clip_table(cfg: SynthConfig) -> pd.DataFrame:
    """Which clip belongs to which subset, fold and split (before rendering).

    Clip i goes to subset ``subsets[i % len(subsets)]``; within a subset clips
    are spread over folds round-robin and split train/val/test by
    ``split_fractions`` in a seeded random order.
    """
    idx = np.arange(cfg.n_clips)
    k = len(cfg.subsets)
    subset = np.array(cfg.subsets)[idx % k]
    pos = idx // k
    split = np.empty(cfg.n_clips, dtype=object)
    for j, s in enumerate(cfg.subsets):
        members = np.flatnonzero(subset == s)
        order = np.random.default_rng([cfg.seed, 1_000_003, j]).permutation(len(members))
        n_train, n_val, _ = split_counts(len(members), cfg.split_fractions)
        split[members[order[:n_train]]] = "train"
        split[members[order[n_train : n_train + n_val]]] = "val"
        split[members[order[n_train + n_val :]]] = "test"
    return pd.DataFrame(
        {"index": idx, "subset": subset, "fold": 1 + pos % cfg.folds, "split": split}
    )


def split_counts(n: int, fractions: tuple[float, ...]) -> tuple[int, int, int]:
    """Clips per split: largest remainders, and at least one in every split with a
    non-zero fraction when there are enough clips."""
    fr = np.asarray(fractions, dtype=np.float64)
    counts = np.floor(fr * n).astype(int)
    for k in np.argsort(-(fr * n - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    if n >= np.count_nonzero(fr):
        for k in np.flatnonzero((counts == 0) & (fr > 0)):
            counts[np.argmax(counts)] -= 1
            counts[k] += 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def clip_paths(
    cfg: SynthConfig, index: int, subset: str, fold: int, split: str
) -> tuple[str, str, str]:
    """``(clip_id, audio, labels)`` relative paths of a clip in the chosen layout."""
    if cfg.layout == "tut2018":
        prefix = "test" if split == "test" else "train"
        cid = f"{prefix}_{index:04d}_{subset}"
        snr = f"{int(round(cfg.snr_db))}db"
        return (
            cid,
            f"wav_{subset}_split{fold}_{snr}/{cid}.wav",
            f"desc_{subset}_split{fold}/{cid}.csv",
        )
    cid = f"clip{index:04d}_{subset}"
    return cid, f"wav/{cid}.wav", f"labels/{cid}.csv"


def _make_clip(cfg: SynthConfig, row: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Worker: render one clip and write its wav and label CSV."""
    import soundfile as sf

    library = _library(cfg)
    audio, events, room = render_clip(cfg, row["index"], row["subset"], library)
    if not np.isfinite(audio).all():
        raise DataError(
            f"clip {row['index']} ({row['subset']}) rendered NaN or infinite samples; "
            "check the options (snr_db, distances, room sizes) and the event clips"
        )
    cid, wav, lab = clip_paths(cfg, row["index"], row["subset"], row["fold"], row["split"])
    for rel in (wav, lab):
        (Path(out_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
    sf.write(Path(out_dir) / wav, audio.T, cfg.fs, subtype=cfg.subtype)
    if cfg.motion:  # DCASE metadata: one row per event and 100 ms frame
        write_metadata(Path(out_dir) / lab, events)
        n_max = metadata_max_overlap(events)
        n_events = int(metadata_events(events).max(initial=-1)) + 1
    else:
        write_labels(Path(out_dir) / lab, events)
        n_max, n_events = max_overlap(events), len(events)
    record = {
        "clip_id": cid,
        "audio": wav,
        "labels": lab,
        "fold": row["fold"],
        "split": row["split"],
        "subset": row["subset"],
        "duration_s": audio.shape[1] / cfg.fs,
        "n_sources_max": n_max,
        "n_events": n_events,
    }
    if room:  # the drawn room, documented per clip
        record.update({"rt60_s": round(room["rt60_s"], 4)})
        record.update(
            {f"room_{a}_m": round(v, 3) for a, v in zip("xyz", room["room_m"], strict=True)}
        )
        record.update(
            {f"array_{a}_m": round(v, 3) for a, v in zip("xyz", room["array_m"], strict=True)}
        )
    return record


_LIBRARIES: dict[tuple[int, str], EventLibrary] = {}


def _library(cfg: SynthConfig) -> EventLibrary:
    """One event library per process (user clips are cached across clips)."""
    key = (cfg.fs, cfg.sources_dir)
    if key not in _LIBRARIES:
        _LIBRARIES[key] = EventLibrary(cfg.fs, cfg.sources_dir or None)
    return _LIBRARIES[key]


def synthesize(
    out: str | os.PathLike, cfg: SynthConfig, jobs: int = 1, force: bool = False
) -> Manifest:
    """Synthesize a scenes artifact (see docs/ARCHITECTURE.md for its layout).

    Args:
        out: output directory.
        cfg: the resolved config (call ``cfg.validate()`` or build it with ``config.resolve``).
        jobs: worker processes (at most the clips and the cores this process may use;
            :func:`~ssl_toolkit.core.cpu.worker_count`); the output does not depend on it.
        force: rebuild even when ``out`` holds an artifact built otherwise.

    Returns:
        The manifest of the scenes artifact.
    """
    cfg.validate()
    workers = worker_count(jobs, cfg.n_clips, "clips")
    _check_memory(cfg, workers)
    classes = check_folder(cfg.sources_dir, cfg.fs) if cfg.sources_dir else None
    with build_artifact(out, "scenes", config_dict(cfg), force=force, log=log) as b:
        if b.reused:
            return b.manifest
        check_disk(
            output_bytes(cfg), b.final, "ssl prep synth", "lower --n-clips or --clip-seconds"
        )
        rows = _run_clips(cfg, clip_table(cfg), b.dir, workers)
        clips = pd.DataFrame(rows).sort_values("clip_id").reset_index(drop=True)
        clips.to_csv(b.dir / "clips.csv", index=False)
        b.extra.update(_extra(cfg, classes or list(_library(cfg).classes), clips))
    return b.manifest


def config_dict(cfg: SynthConfig) -> dict[str, Any]:
    """The config a scenes manifest records: without :data:`MOTION_OPTIONS` when ``motion``
    is off, so static artifacts keep the fingerprint they had before motion existed (and
    are reused, not rebuilt)."""
    d = to_dict(cfg)
    if not cfg.motion:
        for k in MOTION_OPTIONS:
            d.pop(k)
    return d


#: float32 copies of a clip's audio alive at once while rendering it (signals, noise, output).
_WORKING_COPIES = 8
#: Memory of one clip's rows in the clip tables (plan, records, clips.csv).
_BYTES_PER_CLIP_ROW = 2000


def _check_memory(cfg: SynthConfig, jobs: int) -> None:
    """Refuse clips too long to render in the available memory (``jobs`` workers at a
    time)."""
    from ..core.memory import check_fits

    channels = len(cfg.mic_positions_m) if cfg.mic_positions_m else 4
    per_clip = cfg.clip_seconds * cfg.fs * channels * 4 * _WORKING_COPIES
    check_fits(
        per_clip * min(jobs, cfg.n_clips) + 16 * NOISE_BANK_SAMPLES,
        f"option 'clip_seconds' ({cfg.clip_seconds} s at {cfg.fs} Hz, --jobs {jobs})",
        "use shorter clips (--clip-seconds) or fewer --jobs",
    )
    check_fits(cfg.n_clips * _BYTES_PER_CLIP_ROW, f"option 'n_clips' ({cfg.n_clips})",
               "synthesize fewer clips (--clips)")  # fmt: skip


#: Bytes per sample of the wav subtypes (:attr:`SynthConfig.subtype`).
_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
                 "DOUBLE": 8}  # fmt: skip
#: Bytes of a label row: a TUT2018 event (name, onset, offset, direction, distance) and a
#: DCASE metadata row (one per event and 100 ms frame), as written (measured: 45 and 24).
_EVENT_ROW_BYTES, _METADATA_ROW_BYTES = 50, 26


def output_bytes(cfg: SynthConfig) -> float:
    """Estimated disk use of a scenes artifact of ``cfg`` (wavs, label CSVs, clips.csv),
    each file rounded up to whole disk blocks."""
    from ..core.memory import file_bytes

    channels = 4 if cfg.format == "foa" else len(mic_positions(cfg))
    samples = int(round(cfg.clip_seconds * cfg.fs))
    wav = file_bytes(samples * channels * _SAMPLE_BYTES.get(cfg.subtype.upper(), 4) + 80)
    event_s, gap_s = float(np.mean(cfg.event_seconds)), float(np.mean(cfg.gap_seconds))
    tracks = float(np.mean([int(sub[2:]) for sub in cfg.subsets]))  # tracks of a clip
    if cfg.motion:  # one row per active 100 ms frame of each track
        rows = tracks * cfg.clip_seconds * event_s / (event_s + gap_s) / METADATA_HOP_S
        labels = file_bytes(rows * _METADATA_ROW_BYTES)
    else:
        rows = tracks * cfg.clip_seconds / (event_s + gap_s) + 1
        labels = file_bytes(rows * _EVENT_ROW_BYTES)
    return cfg.n_clips * (wav + labels) + file_bytes(cfg.n_clips * 120.0)


def _run_clips(
    cfg: SynthConfig, table: pd.DataFrame, out_dir: Path, workers: int
) -> list[dict[str, Any]]:
    records = table.to_dict("records")
    rows = []
    make = functools.partial(_make_clip, cfg, out_dir=str(out_dir))
    with progress() as bar, closing(parallel_map(make, records, workers)) as results:
        task = bar.add_task(f"synth {cfg.preset}/{cfg.format}", total=len(records), info="")
        for row in results:
            rows.append(row)
            bar.advance(task)
    return rows


def _extra(cfg: SynthConfig, classes: list[str], clips: pd.DataFrame) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "fs": cfg.fs,
        "format": cfg.format,
        "n_channels": 4 if cfg.format == "foa" else len(mic_positions(cfg)),
        "max_sources": max_sources(cfg),
        "audio_root": ".",
        "classes": classes,
        "layout": cfg.layout,
        "n_clips": len(clips),
        "hours": float(clips["duration_s"].sum() / 3600),
    }
    if cfg.format == "mic":
        extra["mic_positions_m"] = mic_positions(cfg).tolist()
    if cfg.motion:  # labels/<clip>.csv are DCASE metadata (core.labels.read_metadata)
        extra["label_format"] = "dcase"
        extra["n_classes"] = len(classes)
        extra["has_distance"] = True  # every row carries its source's distance
    return extra
