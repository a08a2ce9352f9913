"""Multi-hypothesis losses on the sphere, vectorized over ``[batch, frames, ...]``.

Every loss works on the great-circle distance between unit vectors
(:func:`ssl_toolkit.core.geometry.great_circle`). Shapes:

- ``hyps``    ``[B, T, K, 3]`` unit-vector hypotheses;
- ``conf``    ``[B, T, K]`` confidences in (0, 1);
- ``targets`` ``[B, T, S, 3]`` unit-vector source directions;
- ``active``  ``[B, T, S]`` bool, which source slots are present.

Modules: :mod:`.wta` (MCL, relaxed and top-n WTA, rMCL), :mod:`.annealed`
(annealed MCL), :mod:`.pit` (permutation-invariant training).
"""

from .annealed import amcl_weights, temperature_at
from .pit import pit_loss
from .wta import (
    MODES,
    assignment_weights,
    confidence_loss,
    distance_matrix,
    oracle_angle,
    rmcl_loss,
    winner_indicator,
)

__all__ = [
    "MODES",
    "amcl_weights",
    "assignment_weights",
    "confidence_loss",
    "distance_matrix",
    "oracle_angle",
    "pit_loss",
    "rmcl_loss",
    "temperature_at",
    "winner_indicator",
]
