"""Directions on the sphere, stated once for the whole toolkit.

DCASE frame: origin at the array centre, x to the front, y to the left, z up.
Azimuth is counter-clockwise from x in (-pi, pi]; elevation is up from the
horizontal plane in [-pi/2, pi/2]. The unit vector of (az, el) is
``(cos az * cos el, sin az * cos el, sin el)``.

Every function accepts numpy arrays or torch tensors (and returns the same
kind), broadcasting like the underlying library. Angles are radians.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["sph_to_unit", "unit_to_sph", "great_circle", "slerp", "wrap_azimuth", "deg", "rad"]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def sph_to_unit(azimuth_rad, elevation_rad):
    """Unit vectors of directions given by azimuth and elevation.

    Args:
        azimuth_rad: azimuths, any shape ``[...]`` broadcastable with elevation.
        elevation_rad: elevations ``[...]``.

    Returns:
        Unit vectors ``[..., 3]``, numpy or torch like the inputs.
    """
    if _is_torch(azimuth_rad) or _is_torch(elevation_rad):
        import torch

        az = torch.as_tensor(azimuth_rad)
        el = torch.as_tensor(elevation_rad, dtype=az.dtype if az.is_floating_point() else None)
        az, el = torch.broadcast_tensors(az, el)
        cos_el = torch.cos(el)
        return torch.stack((torch.cos(az) * cos_el, torch.sin(az) * cos_el, torch.sin(el)), -1)
    az = np.asarray(azimuth_rad, dtype=np.result_type(azimuth_rad, np.float32))
    el = np.asarray(elevation_rad, dtype=np.result_type(elevation_rad, np.float32))
    az, el = np.broadcast_arrays(az, el)
    cos_el = np.cos(el)
    return np.stack((np.cos(az) * cos_el, np.sin(az) * cos_el, np.sin(el)), axis=-1)


def unit_to_sph(u):
    """Azimuth and elevation of (not necessarily unit) vectors.

    Args:
        u: vectors ``[..., 3]``; they are normalized first, the zero vector maps to (0, 0).

    Returns:
        ``(azimuth_rad, elevation_rad)``, each ``[...]``; azimuth in (-pi, pi],
        elevation in [-pi/2, pi/2].
    """
    if _is_torch(u):
        import torch

        x, y, z = u[..., 0], u[..., 1], u[..., 2]
        az = torch.atan2(y, x)
        az = torch.where(az <= -math.pi, az + 2 * math.pi, az)
        el = torch.atan2(z, torch.hypot(x, y))
        return az, el
    u = np.asarray(u)
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    az = np.arctan2(y, x)
    az = np.where(az <= -np.pi, az + 2 * np.pi, az)
    el = np.arctan2(z, np.hypot(x, y))
    return az, el


def great_circle(u, v):
    """Great-circle angle between unit vectors: ``arccos(clip(u . v, -1, 1))``.

    Args:
        u: unit vectors ``[..., 3]``.
        v: unit vectors ``[..., 3]``, broadcastable with ``u``.

    Returns:
        Angles in radians ``[...]``, in [0, pi].

    Note:
        The torch version clamps slightly inside [-1, 1] so that the gradient
        stays finite when u == v (arccos has an infinite slope at 1).
    """
    if _is_torch(u) or _is_torch(v):
        import torch

        dot = (torch.as_tensor(u) * torch.as_tensor(v)).sum(-1)
        eps = 1e-7 if dot.dtype == torch.float64 else 1e-6
        return torch.acos(dot.clamp(-1 + eps, 1 - eps))
    dot = np.sum(np.asarray(u) * np.asarray(v), axis=-1)
    return np.arccos(np.clip(dot, -1.0, 1.0))


def slerp(u, v, w):
    """Points along the great circle from ``u`` to ``v`` (numpy): ``w = 0`` is ``u``, ``w = 1``
    is ``v``, and ``w`` outside [0, 1] extrapolates along the same circle at the same
    angular speed (so a source moving at constant speed on a great circle is recovered
    exactly from any two of its samples).

    Args:
        u, v: unit vectors ``[..., 3]``.
        w: fractions ``[...]`` (broadcast with ``u[..., 0]``).

    Returns:
        Unit vectors ``[..., 3]`` float64. Where ``u`` and ``v`` coincide (or are opposite, an
        undefined arc) the result is ``u``.
    """
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    w = np.asarray(w, np.float64)[..., None]
    theta = great_circle(u, v)[..., None]  # (..., 1)
    sin = np.sin(theta)
    ok = (sin > 1e-9) & (theta < np.pi - 1e-6)
    safe = np.where(ok, sin, 1.0)
    out = (np.sin((1 - w) * theta) * u + np.sin(w * theta) * v) / safe
    out = np.where(ok, out, u + 0 * w)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def wrap_azimuth(azimuth_rad):
    """Wrap azimuths into (-pi, pi]."""
    if _is_torch(azimuth_rad):
        import torch

        w = torch.remainder(azimuth_rad + math.pi, 2 * math.pi) - math.pi
        return torch.where(w <= -math.pi, w + 2 * math.pi, w)
    w = np.remainder(np.asarray(azimuth_rad) + np.pi, 2 * np.pi) - np.pi
    return np.where(w <= -np.pi, w + 2 * np.pi, w)


def deg(x):
    """Radians to degrees (numpy or torch)."""
    return x * (180.0 / math.pi)


def rad(x):
    """Degrees to radians (numpy or torch)."""
    return x * (math.pi / 180.0)
