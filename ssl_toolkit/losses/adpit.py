"""ADPIT: auxiliary duplicating permutation-invariant training of multi-ACCDOA outputs.

Multi-ACCDOA (activity-coupled Cartesian DOA) gives, per frame, N tracks x C classes x a
3-D vector whose norm is the activity: the target of a track is the unit DOA vector of the
event it carries, or zero. ADPIT trains it without fixing which track carries which event:
per ``(batch, frame, class)``, with ``n`` active events of the class (``e_0, e_1, ...`` in
slot order, the first N kept), the candidate targets of the N tracks are

- ``n = 0``: every track zero;
- ``1 <= n <= N``: every assignment of the tracks to the events that uses each event at
  least once (the surjections of N tracks onto n events), the extra tracks duplicating
  events. With N = 3: ``n = 1``: ``(A, A, A)``; ``n = 2``: the 6 arrangements of
  ``B0, B1`` using both (``B0B0B1, B0B1B0, B0B1B1, B1B0B0, B1B0B1, B1B1B0``);
  ``n = 3``: the 6 permutations of ``C0, C1, C2`` -- the 13 candidates of the official code.

The loss is the mean squared error of the output against its best candidate, chosen per
``(batch, frame, class)``, averaged over batch, frames, classes, tracks and xyz: what the
official ``MSELoss_ADPIT`` of the DCASE 2022-2024 SELD baselines computes with 13 stacked
candidates padded so that inapplicable ones equal the applicable one. Here the candidates
that do not apply to a count are masked instead, and any N tracks work (``-K``).

More than N active events of one class in a frame: the first N (in slot order) are the
targets and the others are ignored, as the official labels keep the first 3 events of a
class (``get_adpit_labels_for_file``).

Reference:
    Shimada et al., "Multi-ACCDOA: localizing and detecting overlapping sounds from the
    same class with auxiliary duplicating permutation invariant training", ICASSP 2022.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
import torch.nn.functional as F

from .wta import full_precision

#: Most tracks ADPIT enumerates the candidates of (N = 6: 4,683 candidates per frame and class).
MAX_TRACKS = 6


@functools.cache
def candidate_table(n_tracks: int) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate assignment of ``n_tracks`` tracks to events.

    Returns:
        ``(events [M, N], counts [M])`` int64: candidate m gives track i the event
        ``events[m, i]`` of a (frame, class) with ``counts[m]`` active events. The first
        row is the silent candidate (count 0): every track gets index N, the zero target.
        Then, for n = 1..N, the surjections of the N tracks onto the n events, in
        lexicographic order (``N = 3``: 1 + 1 + 6 + 6 = 14 rows).

    Raises:
        ValueError: ``n_tracks`` outside ``1..MAX_TRACKS``.
    """
    if not 1 <= n_tracks <= MAX_TRACKS:
        raise ValueError(f"ADPIT takes 1 to {MAX_TRACKS} tracks, got {n_tracks}")
    rows, counts = [(n_tracks,) * n_tracks], [0]
    for n in range(1, n_tracks + 1):
        for f in itertools.product(range(n), repeat=n_tracks):
            if len(set(f)) == n:  # every event carried by a track at least once
                rows.append(f)
                counts.append(n)
    return np.array(rows, np.int64), np.array(counts, np.int64)


def class_events(
    directions: torch.Tensor,
    activity: torch.Tensor,
    classes: torch.Tensor | None,
    n_classes: int,
    n_tracks: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The active events of each class, in slot order, the first ``n_tracks`` kept.

    Args:
        directions: ``[B, T, S, 3]`` unit vectors.
        activity: ``[B, T, S]`` bool.
        classes: ``[B, T, S]`` integer class of each slot, or None (every slot class 0).
            Active slots whose class is outside ``0..n_classes-1`` are ignored.
        n_classes: C.
        n_tracks: N, the most events kept per class.

    Returns:
        ``(events [B, T, C, N, 3], count [B, T, C])``: event j of class c in
        ``events[..., c, j, :]`` (zero for ``j >= count``), count in ``0..N``.
    """
    act = activity.bool().unsqueeze(-1)  # (B, T, S, 1)
    if classes is None:
        if n_classes != 1:
            raise ValueError(f"without classes there is one class, got n_classes={n_classes}")
        member = act
    else:
        ids = torch.arange(n_classes, device=classes.device)
        member = act & (classes.long().unsqueeze(-1) == ids)  # (B, T, S, C)
    rank = member.long().cumsum(-2) - 1  # (B, T, S, C): position among its class's events
    kept = member & (rank < n_tracks)
    slot = torch.where(kept, rank, torch.full_like(rank, n_tracks))  # N = not kept
    onehot = F.one_hot(slot, n_tracks + 1)[..., :n_tracks]  # (B, T, S, C, N)
    d = full_precision(directions)
    events = torch.einsum("btscn,btsx->btcnx", onehot.to(d.dtype), d)  # (B, T, C, N, 3)
    return events, kept.sum(-2)  # (B, T, C, N, 3), (B, T, C)


def adpit_errors(
    output: torch.Tensor,
    directions: torch.Tensor,
    activity: torch.Tensor,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Squared error of the best ADPIT candidate per ``(batch, frame, class)``.

    Args: see :func:`adpit_loss`.

    Returns:
        ``[B, T, C]``: the sum over tracks and xyz of the squared error to the best
        candidate target (the silent target when the class has no active event).
    """
    if output.dim() != 5 or output.shape[-1] != 3:
        raise ValueError(f"output must be [B, T, N, C, 3], got {list(output.shape)}")
    b, t, n, c, _ = output.shape
    if directions.shape[:2] != (b, t) or activity.shape != directions.shape[:3]:
        raise ValueError(
            f"output {list(output.shape)}, directions {list(directions.shape)} and activity "
            f"{list(activity.shape)} disagree (want [B, T, S, 3] and [B, T, S])"
        )
    if classes is None and c != 1:
        raise ValueError(f"without classes the output needs C = 1 class, got C = {c}")
    if classes is not None and classes.shape != activity.shape:
        raise ValueError(
            f"classes {list(classes.shape)} must match activity {list(activity.shape)}"
        )
    y = full_precision(output).transpose(2, 3)  # (B, T, C, N, 3)
    events, count = class_events(directions, activity, classes, c, n)
    zero = events.new_zeros(b, t, c, 1, 3)
    targets = torch.cat((events, zero), -2)  # (B, T, C, N + 1, 3): index N = silent
    sq = (y.unsqueeze(-2) - targets.unsqueeze(-3)).pow(2).sum(-1)  # (B, T, C, N, N + 1)
    table, counts = (torch.as_tensor(a, device=y.device) for a in candidate_table(n))
    m = table.shape[0]
    idx = table.T.expand(b, t, c, n, m)  # (B, T, C, N, M): target of track i in candidate m
    err = sq.gather(-1, idx).sum(-2)  # (B, T, C, M)
    applies = counts == count.unsqueeze(-1)  # (B, T, C, M): candidates of the event count
    best = err.masked_fill(~applies, float("inf")).argmin(-1, keepdim=True)  # (B, T, C, 1)
    return err.gather(-1, best).squeeze(-1)


def adpit_loss(
    output: torch.Tensor,
    directions: torch.Tensor,
    activity: torch.Tensor,
    classes: torch.Tensor | None = None,
) -> torch.Tensor:
    """ADPIT loss of a multi-ACCDOA output (module docstring).

    Args:
        output: ``[B, T, N, C, 3]`` ACCDOA vectors of N tracks and C classes (norm =
            activity).
        directions: ``[B, T, S, 3]`` unit vectors of the source slots.
        activity: ``[B, T, S]`` bool.
        classes: ``[B, T, S]`` integer class of each slot (read where active; -1 elsewhere
            by convention), or None: class-agnostic, every source is class 0 and C = 1.
            An active slot with a class outside ``0..C-1`` is ignored.

    Returns:
        Scalar: the squared error of the best candidate of every ``(batch, frame,
        class)``, averaged over ``B * T * C * N * 3`` values (the official reduction).
    """
    err = adpit_errors(output, directions, activity, classes)  # (B, T, C)
    n = output.shape[2]
    return err.sum() / (err.numel() * n * 3)
