"""Array geometry and spatial encoding (DCASE frame: x front, y left, z up).

Two output formats, as in the DCASE SELD datasets:

- ``mic``: a tetrahedral array of 4 omnidirectional capsules on a sphere of
  4.2 cm radius at (azimuth, elevation) = (45°, 35°), (-45°, -35°), (135°, -35°),
  (-135°, 35°) (the Eigenmike capsules 6, 10, 26, 22 used by the DCASE MIC format).
  Capsules are modelled as free-field omnis (no spherical baffle).
- ``foa``: first-order Ambisonics, ACN channel order (W, Y, Z, X) with SN3D
  normalization: a plane wave from unit direction u has gains (1, u_y, u_z, u_x).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..core.geometry import rad, sph_to_unit
from ..features.spec import SPEED_OF_SOUND_M_S as SPEED_OF_SOUND_M_S  # one value: SALSA's too

FORMATS = ("foa", "mic")
TETRA_RADIUS_M = 0.042
MAX_ARRAY_RADIUS_M = 0.25
TETRA_AZIMUTH_DEG = (45.0, -45.0, 135.0, -135.0)
TETRA_ELEVATION_DEG = (35.0, -35.0, -35.0, 35.0)


def tetra_positions_m(radius_m: float = TETRA_RADIUS_M) -> np.ndarray:
    """Capsule positions of the tetrahedral MIC array, array centre at the origin.

    Returns:
        ``[4, 3]`` float64 positions in metres.
    """
    az = rad(np.asarray(TETRA_AZIMUTH_DEG, dtype=np.float64))
    el = rad(np.asarray(TETRA_ELEVATION_DEG, dtype=np.float64))
    return radius_m * sph_to_unit(az, el)


def array_positions(mic_positions_m=None) -> np.ndarray:
    """Checked capsule positions ``[M, 3]`` of a user array; None or empty: the tetrahedral one.

    Raises:
        ConfigError: naming ``mic_positions_m`` when there are fewer than 2 capsules, a
            position is not [x, y, z], a capsule is further than ``MAX_ARRAY_RADIUS_M``
            from the centre (sources must stay in the far field), or two coincide.
    """
    from ..core.config import ConfigError

    if mic_positions_m is None or len(mic_positions_m) == 0:
        return tetra_positions_m()

    def is_xyz(p) -> bool:  # three real numbers (a bool is not one)
        return (
            isinstance(p, (list, tuple, np.ndarray))
            and len(p) == 3
            and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in p)
        )

    if len(mic_positions_m) < 2 or not all(is_xyz(p) for p in mic_positions_m):
        raise ConfigError(
            "option 'mic_positions_m' must list at least 2 capsules as [x, y, z] in metres"
        )
    pos = np.asarray(mic_positions_m, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise ConfigError("option 'mic_positions_m' must hold finite numbers")
    radius = float(np.linalg.norm(pos, axis=1).max())
    if radius > MAX_ARRAY_RADIUS_M:
        raise ConfigError(
            f"option 'mic_positions_m' puts a capsule {radius:.2f} m from the array centre "
            f"(at most {MAX_ARRAY_RADIUS_M} m: sources must stay in the far field)"
        )
    if len(np.unique(pos, axis=0)) < len(pos):
        raise ConfigError("option 'mic_positions_m' has duplicates")
    return pos


def read_array_toml(path) -> list[list[float]]:
    """``mic_positions_m`` of an array TOML file: at the top level, or in its ``[array]``
    or ``[synth]`` table (so the file written for ``ssl prep synth --config`` serves
    ``ssl prep import --array`` too). Checked by :func:`array_positions`.

    Raises:
        ConfigError: naming the file when it has no (or two different) entries.
    """
    from ..core.config import ConfigError, load_toml

    data = load_toml(path)
    found = [
        t["mic_positions_m"]
        for t in (data, data.get("array"), data.get("synth"))
        if isinstance(t, dict) and "mic_positions_m" in t
    ]
    if not found:
        raise ConfigError(
            f"{path} has no mic_positions_m = [[x, y, z], ...] entry (top level, "
            "[array] or [synth] table)"
        )
    if any(f != found[0] for f in found[1:]):
        raise ConfigError(f"{path} gives mic_positions_m twice, with different values")
    array_positions(found[0])
    return found[0]


def scenes_array(extra: dict):
    """The :class:`~ssl_toolkit.features.spec.ArraySpec` of a scenes artifact's extras:
    FOA (ACN W,Y,Z,X, SN3D), or the MIC capsules of ``mic_positions_m`` (the tetrahedral
    array when a 4-channel MIC artifact lists none) with its ``acoustic_model``
    (``free-field`` when not stated: the toolkit's rendering); None when unknown (a MIC
    artifact of another channel count without positions)."""
    from ..features.spec import ArraySpec

    if extra.get("format") == "foa":
        return ArraySpec.foa()
    pos = extra.get("mic_positions_m")
    if not pos:
        if int(extra.get("n_channels", 4)) != 4:
            return None
        pos = tetra_positions_m()
    return ArraySpec.mic(pos, extra.get("acoustic_model", "free-field"))


def foa_gains(directions: np.ndarray) -> np.ndarray:
    """ACN/SN3D first-order gains of plane waves arriving from unit directions.

    Args:
        directions: unit vectors ``[..., 3]`` (from the array towards the source).

    Returns:
        ``[..., 4]`` gains in channel order W, Y, Z, X.
    """
    u = np.asarray(directions, dtype=np.float64)
    return np.stack((np.ones(u.shape[:-1]), u[..., 1], u[..., 2], u[..., 0]), axis=-1)
