"""The TUT2018 label CSV (ANSYN/RESYN/REAL) and frame labels derived from it.

One row per event: ``sound_event_recording,start_time,end_time,ele,azi,dist``
(class name, seconds, degrees, metres). Frame labels assign each event a
source slot (greedy interval colouring in onset order: the lowest slot free
at its onset), so at most S = max overlap slots are ever used.
"""

from __future__ import annotations

import heapq
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .geometry import rad, sph_to_unit

LABEL_COLUMNS = ["sound_event_recording", "start_time", "end_time", "ele", "azi", "dist"]


def write_labels(path: str | os.PathLike, events: pd.DataFrame) -> None:
    """Write events (the :data:`LABEL_COLUMNS`) as a TUT2018 label CSV."""
    events[LABEL_COLUMNS].to_csv(path, index=False, float_format="%.6g")


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a TUT2018 label CSV.

    Raises:
        DataError: naming the file (and row) when a column is missing or a value
            is not a number, a time is negative or ends before it starts, or an
            angle is out of range.
    """
    p = Path(path)
    try:
        df = pd.read_csv(p, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"label file {p} is unreadable: {e}") from e
    except pd.errors.EmptyDataError as e:
        raise DataError(
            f"label file {p} is empty (expected header {','.join(LABEL_COLUMNS)})"
        ) from e
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"label file {p} lacks column(s) {', '.join(missing)}")
    num = df[LABEL_COLUMNS[1:]].apply(pd.to_numeric, errors="coerce")
    bad = num.isna().any(axis=1) | df["sound_event_recording"].isna()
    bad |= (num["start_time"] < 0) | (num["end_time"] <= num["start_time"])
    bad |= (num["ele"].abs() > 90) | (num["azi"] < -180) | (num["azi"] > 360)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"label file {p}, row {row + 2}: malformed event "
            f"{','.join(str(v) for v in df.iloc[row].tolist())!r} "
            "(need numeric times with 0 <= start < end, |ele| <= 90, azi in [-180, 360])"
        )
    out = num.copy()
    out.insert(0, "sound_event_recording", df["sound_event_recording"].astype(str))
    return out


def assign_slots(start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """Source slot of each event: the lowest slot free at its onset (onset order).

    A slot is free at ``t`` once its last event has ended (``end <= t``). Two heaps (free
    slots; busy slots by end time) make it O(E log E) in the number of events E.

    Returns:
        ``[E]`` int slots; ``slots.max() + 1`` is the maximum overlap.
    """
    slots = np.zeros(len(start_s), dtype=np.int64)
    free: list[int] = []  # heap of slot numbers
    busy: list[tuple[float, int]] = []  # heap of (end time, slot)
    n_slots = 0
    starts, ends = np.asarray(start_s, np.float64), np.asarray(end_s, np.float64)
    for e in np.argsort(starts, kind="stable").tolist():
        t = starts[e]
        while busy and busy[0][0] <= t:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            s = heapq.heappop(free)
        else:
            s, n_slots = n_slots, n_slots + 1
        heapq.heappush(busy, (float(ends[e]), s))
        slots[e] = s
    return slots


def max_overlap(events: pd.DataFrame) -> int:
    """Maximum number of simultaneously active events (an event ending at ``t`` no longer
    overlaps one starting at ``t``); O(E log E), equal to ``assign_slots(...).max() + 1``."""
    if len(events) == 0:
        return 0
    start, end = events["start_time"].to_numpy(), events["end_time"].to_numpy()
    times = np.concatenate((start, end))
    step = np.concatenate((np.ones(len(start), np.int64), -np.ones(len(end), np.int64)))
    order = np.lexsort((step, times))  # at equal times, ends (-1) before starts (+1)
    return int(np.cumsum(step[order]).max())


def frame_labels(
    events: pd.DataFrame, n_frames: int, hop_s: float, max_sources: int
) -> tuple[np.ndarray, np.ndarray]:
    """Activity and directions per frame; frame t is centred at ``t * hop_s``.

    An event is active in the frames whose centre lies in ``[start, end)``. Events of one
    slot never overlap, so each slot is filled by a search over its events' frame
    ranges: O((T + E) log E) in frames T and events E.

    Args:
        events: a label table (:func:`read_labels`).
        n_frames: number of frames T.
        hop_s: frame hop in seconds.
        max_sources: number of slots S.

    Returns:
        ``activity [T, S]`` bool and ``directions [T, S, 3]`` float32 unit vectors
        (zeros where inactive).

    Raises:
        DataError: when more than ``max_sources`` events overlap.
    """
    activity = np.zeros((n_frames, max_sources), dtype=bool)
    directions = np.zeros((n_frames, max_sources, 3), dtype=np.float32)
    if len(events) == 0:
        return activity, directions
    start, end = events["start_time"].to_numpy(), events["end_time"].to_numpy()
    slots = assign_slots(start, end)
    if slots.max() >= max_sources:
        raise DataError(f"{slots.max() + 1} events overlap but max_sources is {max_sources}")
    t = np.arange(n_frames) * hop_s  # (T,)
    first = np.searchsorted(t, start, side="left")  # (E,) first frame with t >= start
    stop = np.searchsorted(t, end, side="left")  # (E,) first frame with t >= end
    u = sph_to_unit(rad(events["azi"].to_numpy()), rad(events["ele"].to_numpy()))  # (E, 3)
    frames = np.arange(n_frames)
    for s in range(max_sources):
        ev = np.flatnonzero((slots == s) & (stop > first))
        if len(ev) == 0:
            continue
        ev = ev[np.argsort(first[ev], kind="stable")]
        j = np.searchsorted(first[ev], frames, side="right") - 1  # (T,) last event begun
        on = (j >= 0) & (frames < stop[ev][np.maximum(j, 0)])
        activity[on, s] = True
        directions[on, s] = u[ev[j[on]]]
    return activity, directions.astype(np.float32)
