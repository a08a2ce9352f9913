"""Multi-hypothesis losses on the sphere, vectorized over ``[batch, frames, ...]``.

Every loss but ADPIT works on the great-circle distance between unit vectors
(:func:`ssl_toolkit.core.geometry.great_circle`). Shapes:

- ``hyps``    ``[B, T, K, 3]`` unit-vector hypotheses;
- ``conf``    ``[B, T, K]`` confidences in (0, 1);
- ``targets`` ``[B, T, S, 3]`` unit-vector source directions;
- ``active``  ``[B, T, S]`` bool, which source slots are present.

Modules: :mod:`.wta` (MCL, relaxed and top-n WTA, rMCL), :mod:`.annealed`
(annealed MCL), :mod:`.pit` (permutation-invariant training). The WTA pieces (assignment,
winner indicator, drawn negatives, confidence BCE) take a distance matrix ``[..., S, K]``,
so the toy experiment uses them on the plane. :mod:`.adpit` (ADPIT of multi-ACCDOA) is a
squared error on Cartesian outputs ``[B, T, N tracks, C classes, 3]``
whose norms are activities.
"""

from .adpit import adpit_loss
from .annealed import amcl_weights, temperature_at
from .pit import pit_loss
from .wta import (
    MODES,
    assigned_distance,
    assignment_weights,
    confidence_loss,
    distance_matrix,
    negative_mask,
    oracle_angle,
    rmcl_loss,
    winner_indicator,
)

__all__ = [
    "MODES",
    "adpit_loss",
    "amcl_weights",
    "assigned_distance",
    "assignment_weights",
    "confidence_loss",
    "distance_matrix",
    "negative_mask",
    "oracle_angle",
    "pit_loss",
    "rmcl_loss",
    "temperature_at",
    "winner_indicator",
]
