"""Propagation paths: free field (ANSYN-like) and shoebox rooms (RESYN-like).

A source reaches the array by a set of paths. Each path is a point (the source
itself, or one of its images in the walls of a shoebox room) with an energy
damping from the wall reflections it has undergone; the renderer
(:mod:`.render`) turns paths into impulse responses, each path with its own
direction, delay and 1/r attenuation.

Rooms use the image-source model of pyroomacoustics with the reflection order
capped (``max_order``) so that a 30 s clip renders in seconds; the energy the
cap drops is replaced by a stochastic late tail (Gaussian noise decaying by
60 dB over the room's RT60, diffuse across channels), the usual hybrid of
room acoustics simulators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.config import ConfigError

SABINE_S_PER_M = 24.0 * np.log(10.0) / 343.0  # RT60 = SABINE * V / (S * alpha)
WALL_MARGIN_M = 0.3


@dataclass(frozen=True)
class Paths:
    """The propagation paths from one source to the array centre.

    Attributes:
        positions_m: ``[P, 3]`` points the sound leaves from (source and its images),
            relative to the array centre; row 0 is the direct path.
        damping: ``[P]`` amplitude factor of the wall reflections (1 for the direct path).
        orders: ``[P]`` reflection order of each path (0 for the direct path).
    """

    positions_m: np.ndarray
    damping: np.ndarray
    orders: np.ndarray | None = None

    def complete_until_m(self) -> float:
        """Path length up to which the image set is complete (inf in free field).

        With the order capped at N, images of order N+1 are missing; none is
        closer than the closest image of order N, so up to that distance no
        path is missing.
        """
        if self.orders is None or self.orders.max() == 0:
            return float("inf")
        top = self.orders == self.orders.max()
        return float(np.linalg.norm(self.positions_m[top], axis=1).min())


@dataclass(frozen=True)
class Room:
    """A shoebox room sampled for one clip."""

    dims_m: tuple[float, float, float]
    rt60_s: float
    array_m: tuple[float, float, float]
    absorption: float
    max_order: int


def min_rt60_s(dims_m) -> float:
    """Shortest RT60 (Sabine, fully absorbing walls) a shoebox room can have."""
    lx, ly, lz = dims_m
    volume, surface = lx * ly * lz, 2 * (lx * ly + lx * lz + ly * lz)
    return float(SABINE_S_PER_M * volume / surface)


def absorption_for(dims_m, rt60_s: float) -> float:
    """Wall energy absorption that gives ``rt60_s`` by Sabine's formula."""
    return min_rt60_s(dims_m) / rt60_s


def sample_room(
    rng: np.random.Generator,
    size_min_m: tuple[float, float, float],
    size_max_m: tuple[float, float, float],
    rt60_range_s: tuple[float, float],
    max_order: int,
) -> Room:
    """Draw room size, RT60 and array position for one clip.

    The RT60 is drawn in ``rt60_range_s`` above the shortest RT60 the drawn
    room can have; the array stands in the middle third of the room, at a
    height within the middle third as well.
    """
    dims = rng.uniform(size_min_m, size_max_m)
    lo = max(rt60_range_s[0], 1.05 * min_rt60_s(dims))
    if lo > rt60_range_s[1]:
        raise ConfigError(
            f"option 'rt60_range_s' {tuple(rt60_range_s)}: a {dims.round(1).tolist()} m room "
            f"cannot have an RT60 below {min_rt60_s(dims):.2f} s; raise the RT60 range or "
            "shrink 'room_max_m'"
        )
    rt60 = rng.uniform(lo, rt60_range_s[1])
    array = dims * rng.uniform(1 / 3, 2 / 3, 3)
    return Room(
        tuple(dims.tolist()),
        float(rt60),
        tuple(array.tolist()),
        absorption_for(dims, rt60),
        int(max_order),
    )


def max_distance_m(room: Room, direction: np.ndarray) -> float | np.ndarray:
    """How far from the array a source can stand along ``direction`` and stay inside.

    Args:
        room: the room.
        direction: a unit vector ``[3]`` or unit vectors ``[..., 3]``.

    Returns:
        The distance in metres: a float for one direction, ``[...]`` for several.
    """
    a, d = np.asarray(room.array_m), np.asarray(room.dims_m)
    u = np.asarray(direction, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        to_hi = np.where(u > 0, (d - WALL_MARGIN_M - a) / u, np.inf)
        to_lo = np.where(u < 0, (WALL_MARGIN_M - a) / u, np.inf)
    out = np.minimum(to_hi.min(axis=-1), to_lo.min(axis=-1))
    return float(out) if out.ndim == 0 else out


def free_field_paths(source_m: np.ndarray) -> Paths:
    """The single direct path of free-field (anechoic) propagation."""
    return Paths(np.asarray(source_m, dtype=np.float64)[None, :], np.ones(1))


def image_paths(room: Room, sources_m: np.ndarray, fs: int) -> list[Paths]:
    """Image sources of each source in a shoebox room (pyroomacoustics ISM).

    Args:
        room: the room.
        sources_m: ``[E, 3]`` source positions relative to the array centre.
        fs: sample rate (pyroomacoustics needs one; it does not change the images).

    Returns:
        One :class:`Paths` per source, the direct path first.
    """
    import pyroomacoustics as pra

    array = np.asarray(room.array_m)
    shoebox = pra.ShoeBox(
        list(room.dims_m),
        fs=fs,
        materials=pra.Material(room.absorption),
        max_order=room.max_order,
        air_absorption=False,
    )
    for s in np.asarray(sources_m):
        shoebox.add_source(list(array + s))
    shoebox.add_microphone(list(array))
    shoebox.image_source_model()
    out = []
    for src in shoebox.sources:
        pos = src.images.T - array  # (P, 3)
        damp = src.damping[0] if src.damping.ndim > 1 else src.damping
        order = np.argsort(src.orders, kind="stable")  # direct path first
        damp = np.asarray(damp, dtype=np.float64)
        out.append(Paths(pos[order], damp[order], np.asarray(src.orders)[order]))
    return out


def decay_rate(rt60_s: float, fs: int) -> float:
    """Amplitude decay per sample of a late tail: ``exp(-rate * n)`` is -60 dB at RT60."""
    return float(np.log(1000.0) / (rt60_s * fs))


def late_tail(
    rng: np.random.Generator,
    n_samples: int,
    rt60_s: float,
    fs: int,
    fmt: str,
    n_channels: int = 4,
) -> np.ndarray:
    """Diffuse late reverberation: decaying noise, unit power at its start.

    In ``foa`` the channels of a diffuse field have powers 1, 1/3, 1/3, 1/3
    (W, Y, Z, X in SN3D); in ``mic`` the capsules get independent noise.

    Returns:
        ``[n_channels, n_samples]`` float32 (4 in ``foa``).
    """
    rate = np.float32(decay_rate(rt60_s, fs))
    decay = np.exp(-rate * np.arange(n_samples, dtype=np.float32))
    noise = rng.standard_normal((n_channels, n_samples), dtype=np.float32)
    if fmt == "foa":
        noise[1:] /= np.sqrt(3.0)
    return noise * decay
