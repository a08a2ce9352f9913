"""The TUT2018 label CSV (ANSYN/RESYN/REAL) and frame labels derived from it.

One row per event: ``sound_event_recording,start_time,end_time,ele,azi,dist``
(class name, seconds, degrees, metres). Frame labels assign each event a
source slot (greedy interval colouring in onset order: the lowest slot free
at its onset), so at most S = max overlap slots are ever used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..geometry import rad, sph_to_unit

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
            f"label file {p}, row {row + 2}: malformed event {df.iloc[row].tolist()} "
            "(need numeric times with 0 <= start < end, |ele| <= 90, azi in [-180, 360])"
        )
    out = num.copy()
    out.insert(0, "sound_event_recording", df["sound_event_recording"].astype(str))
    return out


def assign_slots(start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """Source slot of each event: the lowest slot free at its onset (onset order).

    Returns:
        ``[E]`` int slots; ``slots.max() + 1`` is the maximum overlap.
    """
    slots = np.zeros(len(start_s), dtype=np.int64)
    busy_until: list[float] = []
    for e in np.argsort(start_s, kind="stable"):
        free = [s for s, t in enumerate(busy_until) if t <= start_s[e]]
        s = free[0] if free else len(busy_until)
        if s == len(busy_until):
            busy_until.append(0.0)
        busy_until[s] = float(end_s[e])
        slots[e] = s
    return slots


def max_overlap(events: pd.DataFrame) -> int:
    """Maximum number of simultaneously active events."""
    if len(events) == 0:
        return 0
    return int(
        assign_slots(events["start_time"].to_numpy(), events["end_time"].to_numpy()).max() + 1
    )


def frame_labels(
    events: pd.DataFrame, n_frames: int, hop_s: float, max_sources: int
) -> tuple[np.ndarray, np.ndarray]:
    """Activity and directions per frame; frame t is centred at ``t * hop_s``.

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
    on = (t[:, None] >= start[None]) & (t[:, None] < end[None])  # (T, E)
    u = sph_to_unit(rad(events["azi"].to_numpy()), rad(events["ele"].to_numpy()))  # (E, 3)
    onehot = np.eye(max_sources, dtype=bool)[slots]  # (E, S)
    activity = (on[:, :, None] & onehot[None]).any(axis=1)  # (T, S)
    directions = np.einsum("te,es,ec->tsc", on.astype(np.float32), onehot.astype(np.float32), u)
    return activity, directions.astype(np.float32)
