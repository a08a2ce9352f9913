"""Annealed MCL: soft-min assignments whose temperature decreases to plain WTA.

Reference:
    Perera et al., "Annealed Multiple Choice Learning: Overcoming limitations of
    Winner-takes-all with annealing", NeurIPS 2024.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "linear", "exponential")


def amcl_weights(dist: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-min assignment weights ``softmin(dist / temperature)`` over K, detached.

    Args:
        dist: ``[..., K]`` distances.
        temperature: > 0.

    Returns:
        ``[..., K]`` weights summing to 1.
    """
    return torch.softmax(-dist.detach() / temperature, dim=-1)


def temperature_at(
    progress: float,
    t0: float,
    schedule: str = "exponential",
    *,
    t_min: float = 1e-3,
    wta_fraction: float = 0.1,
) -> float:
    """Temperature after a fraction ``progress`` in [0, 1] of training.

    The last ``wta_fraction`` of training runs at temperature 0 (plain WTA).
    Before that: ``constant`` keeps ``t0``; ``linear`` goes from ``t0`` to 0;
    ``exponential`` decays geometrically from ``t0`` to ``t_min``.

    Returns:
        The temperature (0 means WTA).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown temperature schedule {schedule!r}; known: {SCHEDULES}")
    span = 1.0 - wta_fraction
    if progress >= span or t0 <= 0:
        return 0.0
    p = progress / span
    if schedule == "constant":
        return t0
    if schedule == "linear":
        return t0 * (1.0 - p)
    return t0 * math.exp(p * math.log(t_min / t0))
