"""Label files of the two dataset families, and the frame labels derived from them.

- TUT2018 (ANSYN/RESYN/REAL): one row per static event,
  ``sound_event_recording,start_time,end_time,ele,azi,dist`` (class name, seconds,
  degrees, metres).
- DCASE 2020-2024 metadata (TAU-NIGENS Spatial Sound Events 2020/2021, STARSS22/23):
  one row per active event per 100 ms label frame and no header,
  ``frame,class,source,azimuth,elevation[,distance]`` (integers in the originals;
  degrees; distance in cm, DCASE 2024). Sources may move: the row of each frame holds
  the direction at the frame's start.

Frame labels assign each event a source slot (greedy interval colouring in onset order:
the lowest slot free at its onset), so at most S = max overlap slots are ever used. A
DCASE event is a maximal run of consecutive label frames of one ``(class, source)``;
its direction between label frames is interpolated along the great circle
(:func:`metadata_frame_labels`).
"""

from __future__ import annotations

import csv
import heapq
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .console import warn as console_warn
from .errors import DataError
from .geometry import rad, slerp, sph_to_unit

LABEL_COLUMNS = ["sound_event_recording", "start_time", "end_time", "ele", "azi", "dist"]
#: Columns of a DCASE metadata table in memory (the file has no header; degrees, and the
#: distance in cm in the file, metres here; NaN when the file has no distance column).
METADATA_COLUMNS = ["frame", "class", "source", "azimuth_deg", "elevation_deg", "distance_m"]
#: Label frame of the DCASE metadata files.
METADATA_HOP_S = 0.1
#: Label file formats of a scenes artifact (``extra.label_format``; absent: ``tut2018``).
LABEL_FORMATS = ("tut2018", "dcase")


def write_labels(path: str | os.PathLike, events: pd.DataFrame) -> None:
    """Write events (the :data:`LABEL_COLUMNS`) as a TUT2018 label CSV."""
    events[LABEL_COLUMNS].to_csv(path, index=False, float_format="%.6g")


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a TUT2018 label CSV (a header line, then one row per event).

    Read by :func:`_text_rows` (any line ending, a byte-order mark, blank lines anywhere and a
    trailing comma are tolerated); a file holding a header and no event is an empty table.

    Raises:
        DataError: naming the file (and line) when it is unreadable or empty, a column is
            missing, a row has another number of fields than the header, a value is not
            a finite number, a time is negative or ends before it starts, or an angle is
            out of range.
    """
    p = Path(path)
    rows = _text_rows(p, "label file", len(LABEL_COLUMNS))
    if not rows:
        raise DataError(f"label file {p} is empty (expected header {','.join(LABEL_COLUMNS)})")
    _, _, header = rows[0]
    missing = [c for c in LABEL_COLUMNS if c not in header]
    if missing:
        raise DataError(f"label file {p} lacks column(s) {', '.join(missing)}")
    body = rows[1:]
    for n, text, fields in body:
        if len(fields) != len(header):
            raise DataError(
                f"label file {p}, line {n}: row {text[:80]!r} has {len(fields)} fields, the "
                f"header {len(header)}"
            )
    df = pd.DataFrame([f for _, _, f in body], columns=header, dtype=object)
    if df.empty:
        df = pd.DataFrame({c: pd.Series(dtype=object) for c in header})
    num = df[LABEL_COLUMNS[1:]].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    bad = ~np.isfinite(num.to_numpy()).all(axis=1) | (df["sound_event_recording"] == "").to_numpy()
    bad |= ((num["start_time"] < 0) | (num["end_time"] <= num["start_time"])).to_numpy()
    bad |= ((num["ele"].abs() > 90) | (num["azi"] < -180) | (num["azi"] > 360)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        n, text, _ = body[row]
        raise DataError(
            f"label file {p}, line {n}: malformed event {text[:80]!r} "
            "(need finite numeric times with 0 <= start < end, |ele| <= 90, azi in [-180, 360])"
        )
    out = num.reset_index(drop=True)
    out.insert(0, "sound_event_recording", df["sound_event_recording"].astype(str).to_numpy())
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
        ``activity [T, S]`` bool and ``directions [T, S, 3]`` float64 unit vectors
        (zeros where inactive; float64 so that scores against them are exact: a float32
        unit vector is off unit length by up to 1e-7, which arccos turns into 0.03 deg).

    Raises:
        DataError: when more than ``max_sources`` events overlap.
    """
    activity = np.zeros((n_frames, max_sources), dtype=bool)
    directions = np.zeros((n_frames, max_sources, 3), dtype=np.float64)
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
    return activity, directions


def read_metadata(path: str | os.PathLike, warn=None, what: str = "metadata file") -> pd.DataFrame:
    """Read and check a DCASE 2020-2024 metadata (or result) CSV, row by row.

    As the official readers (``load_output_format_file`` of the DCASE baselines), each row
    is parsed on its own: ``frame,class,source,azimuth,elevation`` (5 fields),
    ``...,distance`` (6 fields: DCASE 2024, in cm; an empty distance is unknown) or
    ``frame,class,azimuth,elevation`` (4 fields: the 2020 result format without a source
    index; rows of one class in one frame get sources 0, 1, ... in file order). 5 and 6
    fields mix freely within a file; 4 fields among more is refused (a truncated row).
    Read by :func:`_text_rows`: any line ending, a byte-order mark, blank lines anywhere
    and a trailing comma are tolerated; a first line that is not numeric (a header of 4
    to 6 names) is skipped; line numbers in messages count every line. A row
    repeated identically is kept once, with one warning line naming the file.

    Args:
        path: the CSV file.
        warn: ``warn(line)`` for the duplicate warning (default: a line on stderr).
        what: how messages name the file (``metadata file``, ``result file``).

    Returns:
        A table of :data:`METADATA_COLUMNS` sorted by frame, class and source (distance
        in metres, NaN where unknown); no rows for a file without any.

    Raises:
        DataError: naming the file and line when it is unreadable, a row has another number
            of fields, a value is not a finite number, a frame, class or source index is
            negative, not an integer or too large (a class above :data:`MAX_CLASS`), an
            angle is out of range (|azimuth| <= 180, |elevation| <= 90 degrees), a distance
            is negative, or one (frame, class, source) is listed twice with other values.
    """
    p = Path(path)
    rows = _text_rows(p, what, 5)
    if rows and _is_header(rows[0][2]):  # a header line (some copies have one)
        rows = rows[1:]
    if not rows:
        return empty_metadata()
    parsed = np.full((len(rows), 6), np.nan)  # frame, class, source, azimuth, elevation, cm
    no_source = np.zeros(len(rows), bool)
    for i, (n, text, fields) in enumerate(rows):
        if len(fields) not in (4, 5, 6):
            sep = next((c for c in ";\t|" if c in text), None)
            hint = f" (separated by {sep!r}? DCASE rows are comma-separated)" if sep else ""
            raise DataError(
                f"{what} {p}, line {n}: row {text[:80]!r} has {len(fields)} field(s); a DCASE "
                "row has 5 (frame,class,source,azimuth,elevation), 6 (and distance in cm) or "
                f"4 (frame,class,azimuth,elevation){hint}"
            )
        cols = (0, 1, 3, 4) if len(fields) == 4 else range(len(fields))
        no_source[i] = len(fields) == 4
        for j, f in zip(cols, fields, strict=True):
            v = _number(f)
            if v is None and not (j == 5 and f == ""):
                raise DataError(
                    f"{what} {p}, line {n}: malformed row {text[:80]!r} "
                    f"({_FIELD_NAMES[j]} {f!r} is not a finite number)"
                )
            parsed[i, j] = np.nan if v is None else v
    if no_source.any() and not no_source.all():  # 4 fields among 5 or 6: a truncated row
        i = int(np.flatnonzero(no_source)[0])
        other = rows[int(np.flatnonzero(~no_source)[0])][0]
        raise DataError(
            f"{what} {p}, line {rows[i][0]}: row {rows[i][1][:80]!r} has 4 fields, line "
            f"{other} 5 or more: a truncated row? (4 fields, frame,class,azimuth,elevation, "
            "only in files without source indices)"
        )
    parsed[no_source, 2] = 0.0
    why = _out_of_range(parsed)
    if why is not None:
        i, reason = why
        n, text, _ = rows[i]
        raise DataError(f"{what} {p}, line {n}: malformed row {text[:80]!r} ({reason})")
    line = np.array([n for n, _, _ in rows])
    out = pd.DataFrame(
        {
            "frame": parsed[:, 0].astype(np.int64),
            "class": parsed[:, 1].astype(np.int64),
            "source": parsed[:, 2].astype(np.int64),
            "azimuth_deg": parsed[:, 3],
            "elevation_deg": parsed[:, 4],
            "distance_m": parsed[:, 5] / 100.0,
        }
    )
    same = out.duplicated(keep="first").to_numpy() & ~no_source  # identical rows: keep one
    if no_source.any():  # 4 fields: identical rows once, then sources 0, 1... per class
        same |= out.duplicated(keep="first").to_numpy() & no_source
        keep4 = no_source & ~same
        rank = out[keep4].groupby(["frame", "class"]).cumcount().to_numpy()
        out.loc[keep4, "source"] = rank
    if same.any():
        first = int(line[np.flatnonzero(same)[0]])
        (warn or console_warn)(
            f"{what} {p}: {int(same.sum())} identical duplicate row(s) ignored (first at line "
            f"{first})"
        )
        out, line = out[~same].reset_index(drop=True), line[~same]
    dup = out.duplicated(["frame", "class", "source"])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        f, c, s = (int(out[k].iloc[row]) for k in ("frame", "class", "source"))
        raise DataError(
            f"{what} {p}, line {line[row]}: frame {f} lists class {c} source {s} twice, with "
            "other values"
        )
    return out.sort_values(["frame", "class", "source"], kind="stable").reset_index(drop=True)


#: Names of the fields of a metadata row, in messages.
_FIELD_NAMES = ("frame", "class", "source", "azimuth", "elevation", "distance")
#: Largest class index a label file may hold: classes are stored as int16, -1 for none, and
#: a scenes or features manifest holds at most 32767 classes.
MAX_CLASS = int(np.iinfo(np.int16).max) - 1
#: Largest frame or source index (a 100 ms frame index of 2**31 is 6.8 years).
MAX_INDEX = 2**31 - 1


def _is_header(fields: list[str]) -> bool:
    """A header line of a metadata file: 4 to 6 fields, none of them a number."""
    return len(fields) in (4, 5, 6) and all(_number(f) is None and f for f in fields)


def _number(text: str) -> float | None:
    """A finite number written in ``text``, or None."""
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _out_of_range(num: np.ndarray) -> tuple[int, str] | None:
    """The first row of parsed metadata ``num [R, 6]`` (distance NaN when absent) with a
    value out of range, and why; None when every row is fine."""
    checks = (
        ((num[:, :3] < 0).any(axis=1), "frame, class and source indices must be >= 0"),
        ((num[:, :3] != np.round(num[:, :3])).any(axis=1),
         "frame, class and source indices must be integers"),
        ((num[:, [0, 2]] > MAX_INDEX).any(axis=1),
         f"frame and source indices must be at most {MAX_INDEX}"),
        (num[:, 1] > MAX_CLASS, f"a class index must be at most {MAX_CLASS}"),
        (np.abs(num[:, 3]) > 180, "the azimuth must lie in [-180, 180] degrees"),
        (np.abs(num[:, 4]) > 90, "the elevation must lie in [-90, 90] degrees"),
        (num[:, 5] < 0, "a distance must be >= 0 cm"),
        (num[:, 5] / 100 > np.finfo(np.float32).max, "the distance is too large"),
    )  # fmt: skip
    for bad, why in checks:
        if bad.any():
            return int(np.flatnonzero(bad)[0]), why
    return None


def empty_metadata() -> pd.DataFrame:
    """A metadata table without rows (:data:`METADATA_COLUMNS`)."""
    return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in METADATA_COLUMNS})


def _text_rows(path: Path, what: str, min_fields: int) -> list[tuple[int, str, list[str]]]:
    """The non-blank lines of a label file: ``(line number, text, fields)``.

    The one way every label and result file is read: UTF-8 (a byte-order mark is dropped),
    any line ending (LF, CRLF, CR), blank and whitespace-only lines skipped wherever they
    are (line numbers still count them), fields split at commas (CSV quoting understood)
    and stripped of spaces, and empty fields at the end of a row beyond ``min_fields``
    dropped (a trailing comma).

    Raises:
        DataError: naming the file when it cannot be read, is not UTF-8 text, or is binary.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{what} {path} is unreadable: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{what} {path} is not UTF-8 text (undecodable byte at offset {e.start})"
        ) from e
    if "\0" in text:
        raise DataError(f"{what} {path} is binary (holds NUL bytes), not a CSV text file")
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        try:
            fields = [f.strip() for f in next(csv.reader([s]))]
        except csv.Error as e:
            raise DataError(f"{what} {path}, line {n}: unreadable row {s[:80]!r} ({e})") from e
        while len(fields) > min_fields and fields[-1] == "":
            fields.pop()
        rows.append((n, s, fields))
    return rows


def write_metadata(path: str | os.PathLike, meta: pd.DataFrame) -> None:
    """Write a metadata table (:data:`METADATA_COLUMNS`) as a DCASE CSV (no header).

    Angles are written with 2 decimals (the originals hold integers; the official readers
    parse floats); the distance column (cm) only when some distance is known.
    """
    m = meta.sort_values(["frame", "class", "source"], kind="stable")
    cols = {
        "frame": m["frame"].astype(np.int64),
        "class": m["class"].astype(np.int64),
        "source": m["source"].astype(np.int64),
        "azimuth": m["azimuth_deg"].astype(np.float64).round(2),
        "elevation": m["elevation_deg"].astype(np.float64).round(2),
    }
    dist = m["distance_m"].astype(np.float64) if "distance_m" in m else None
    if dist is not None and dist.notna().any():
        cols["distance"] = (dist * 100).round(1)
    pd.DataFrame(cols).to_csv(path, header=False, index=False)


def metadata_events(meta: pd.DataFrame) -> np.ndarray:
    """``[R]`` event index of each metadata row: rows of one ``(class, source)`` in
    consecutive frames form one event (an event ends where a frame is skipped)."""
    if len(meta) == 0:
        return np.zeros(0, np.int64)
    cls, src = meta["class"].to_numpy(np.int64), meta["source"].to_numpy(np.int64)
    frame = meta["frame"].to_numpy(np.int64)
    order = np.lexsort((frame, src, cls))
    c, s, f = cls[order], src[order], frame[order]
    new = np.ones(len(c), bool)
    new[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1]) | (f[1:] != f[:-1] + 1)
    ev = np.empty(len(c), np.int64)
    ev[order] = np.cumsum(new) - 1
    return ev


def metadata_max_overlap(meta: pd.DataFrame) -> int:
    """Most events active in one label frame."""
    return int(meta.groupby("frame").size().max()) if len(meta) else 0


def metadata_frame_labels(
    meta: pd.DataFrame,
    n_frames: int,
    hop_s: float,
    max_sources: int,
    meta_hop_s: float = METADATA_HOP_S,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Activity, directions, classes and distances per feature frame from DCASE metadata.

    Feature frame t (centred at ``t * hop_s``) lies in label frame
    ``i = floor(t * hop_s / meta_hop_s)``; an event is active in it when the metadata
    lists it in frame i. Its direction is interpolated along the great circle between
    its rows of frames i and i + 1 (each row holds the direction at its frame's start),
    extrapolated along the arc from frame i - 1 in its last frame, and held when the
    event lasts one frame: exact for a source moving at constant angular speed on a
    great circle, where linear interpolation in azimuth is not. Distances are
    interpolated linearly in the same way. Slots are assigned per event as for TUT2018
    labels (:func:`assign_slots`), so a source keeps its slot while it is active.

    Args:
        meta: a metadata table (:func:`read_metadata`).
        n_frames: number of feature frames T.
        hop_s: feature hop in seconds.
        max_sources: number of slots S.
        meta_hop_s: label frame of the metadata (100 ms).

    Returns:
        ``activity [T, S]`` bool, ``directions [T, S, 3]`` float64 unit vectors (zeros
        where inactive), ``classes [T, S]`` int16 (-1 where inactive) and
        ``distance_m [T, S]`` float32 (NaN where inactive or unknown).

    Raises:
        DataError: when more than ``max_sources`` events overlap, or a class index does not
            fit the int16 ``classes`` (> 32767).
    """
    if len(meta) and int(meta["class"].max()) > np.iinfo(np.int16).max:
        raise DataError(f"class index {int(meta['class'].max())} does not fit int16 (> 32767)")
    activity = np.zeros((n_frames, max_sources), bool)
    directions = np.zeros((n_frames, max_sources, 3), np.float64)
    classes = np.full((n_frames, max_sources), -1, np.int16)
    distance = np.full((n_frames, max_sources), np.nan, np.float32)
    if len(meta) == 0 or n_frames == 0:
        return activity, directions, classes, distance
    frame = meta["frame"].to_numpy(np.int64)
    ev = metadata_events(meta)
    n_ev = int(ev.max()) + 1
    start = np.full(n_ev, np.iinfo(np.int64).max)
    end = np.full(n_ev, -1)
    np.minimum.at(start, ev, frame)
    np.maximum.at(end, ev, frame + 1)
    slot_of = assign_slots(start, end)
    if slot_of.max() >= max_sources:
        raise DataError(f"{slot_of.max() + 1} events overlap but max_sources is {max_sources}")
    u = sph_to_unit(rad(meta["azimuth_deg"].to_numpy()), rad(meta["elevation_deg"].to_numpy()))
    dist = meta["distance_m"].to_numpy(np.float64)
    # the row of the same event in the next and the previous label frame (-1: none): an
    # event's rows are consecutive frames, so they are neighbours in (event, frame) order
    order = np.lexsort((frame, ev))
    same = ev[order][1:] == ev[order][:-1]
    nxt, prv = np.full(len(meta), -1), np.full(len(meta), -1)
    nxt[order[:-1][same]] = order[1:][same]
    prv[order[1:][same]] = order[:-1][same]
    # feature frames of each label frame: t with floor(t * hop / meta_hop) == i
    t_s = np.arange(n_frames) * hop_s
    label_frame = np.floor(t_s / meta_hop_s + 1e-9).astype(np.int64)  # (T,)
    first = np.searchsorted(label_frame, frame, side="left")  # (R,)
    stop = np.searchsorted(label_frame, frame, side="right")
    count = stop - first
    rows = np.repeat(np.arange(len(meta)), count)  # (P,) one pair per (row, feature frame)
    tt = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
    w = (tt * hop_s - frame[rows] * meta_hop_s) / meta_hop_s  # (P,) in [0, 1)
    a, b = rows.copy(), nxt[rows]
    wa = w.copy()
    back = (b < 0) & (prv[rows] >= 0)  # last frame of an event: extrapolate along its arc
    a[back], b[back], wa[back] = prv[rows][back], rows[back], 1 + w[back]
    hold = b < 0
    b[hold], wa[hold] = a[hold], 0.0
    dirs = slerp(u[a], u[b], wa)
    d = dist[a] + wa * (dist[b] - dist[a])
    s = slot_of[ev[rows]]
    activity[tt, s] = True
    directions[tt, s] = dirs
    classes[tt, s] = meta["class"].to_numpy()[rows]
    distance[tt, s] = d
    return activity, directions, classes, distance


def read_label_file(path: str | os.PathLike, label_format: str) -> pd.DataFrame:
    """A clip's label file in a scenes artifact's ``label_format`` (``tut2018`` event list or
    ``dcase`` metadata; :data:`LABEL_FORMATS`).

    Raises:
        DataError: an unknown format, or the reader's error naming the file and row.
    """
    if label_format == "dcase":
        return read_metadata(path)
    if label_format == "tut2018":
        return read_labels(path)
    raise DataError(f"label file {path}: unknown label format {label_format!r} ({LABEL_FORMATS})")


def table_frame_labels(
    table: pd.DataFrame, label_format: str, n_frames: int, hop_s: float, max_sources: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Frame labels of a table read by :func:`read_label_file`: :func:`frame_labels` or
    :func:`metadata_frame_labels`.

    Returns:
        ``activity [T, S]``, ``directions [T, S, 3]``, and for DCASE metadata ``classes
        [T, S]`` int16 and ``distance_m [T, S]`` float32 (None for TUT2018 labels, which
        have class names and static events only).
    """
    if label_format == "dcase":
        return metadata_frame_labels(table, n_frames, hop_s, max_sources)
    return (*frame_labels(table, n_frames, hop_s, max_sources), None, None)


# ----------------------------------------------------------------------------- label sets

#: Most sources active at once that a scenes or features manifest may hold (``max_sources``).
MAX_OVERLAP = 1000
#: Degrees that are plainly radians: at least this many rows, all azimuths within
#: +-RADIANS_AZ and elevations within +-RADIANS_EL, and the azimuths spread over at least
#: RADIANS_SPREAD (a few degrees, which in radians is most of the circle). A source near 0
#: degrees does not trip it: its rows would all have to lie within +-3.2 degrees and still
#: span RADIANS_SPREAD degrees.
RADIANS_AZ, RADIANS_EL = 3.2, 1.6
RADIANS_MIN_ROWS, RADIANS_SPREAD = 100, 4.0


def looks_like_radians(
    azimuth_deg, elevation_deg, min_rows: int = RADIANS_MIN_ROWS, spread: float = RADIANS_SPREAD
) -> bool:
    """Whether directions read as degrees are plainly radians (see :data:`RADIANS_MIN_ROWS`)."""
    az = np.asarray(azimuth_deg, np.float64)
    el = np.asarray(elevation_deg, np.float64)
    if len(az) < min_rows:
        return False
    inside = (np.abs(az) <= RADIANS_AZ).all() and (np.abs(el) <= RADIANS_EL).all()
    return bool(inside and az.max() - az.min() >= spread)


def check_label_set(tables, fmt: str, n_classes: int | None = None,
                    edition: str = "") -> list[str]:  # fmt: skip
    """The checks an import makes on its label files as a set, before anything is written.

    - A file that holds no event, for a clip that has audio: a silent clip is legitimate (a
      recording of background; short synthesized clips; the official readers accept an
      empty file), so it is one warning line naming the files; every file empty is
      refused (nothing labelled at all: surely a wrong folder or format).
    - More than :data:`MAX_OVERLAP` events at once (what a manifest can hold): refused,
      naming the file and the frame or time.
    - Directions that are plainly radians over the whole set (:func:`looks_like_radians`):
      refused, naming a file.
    - A DCASE class index beyond the edition's ``n_classes``: one warning line naming the
      file, frame and class (the class count grows to hold it).

    Args:
        tables: ``[(label file, table)]``: tables of :func:`read_label_file` in ``fmt``.
        fmt: ``tut2018`` or ``dcase``.
        n_classes, edition: the DCASE edition's class count and name (None: not checked).

    Returns:
        The warning lines, for the caller to print once the import has succeeded (a failed
        command prints its error line only).

    Raises:
        DataError: naming the file at fault.
    """
    warnings: list[str] = []
    tables = list(tables)
    empty = [Path(p) for p, t in tables if len(t) == 0]
    if tables and len(empty) == len(tables):
        raise DataError(
            f"no label file holds an event ({empty[0]} and {len(empty) - 1} other(s)): a "
            "wrong folder, or labels in another format?"
        )
    if empty:
        shown = ", ".join(p.name for p in empty[:8]) + (", ..." if len(empty) > 8 else "")
        warnings.append(
            f"{len(empty)} label file(s) hold no event, their clips are imported as silent: "
            f"{shown} (in {empty[0].parent})"
        )
    az_col, el_col = ("azimuth_deg", "elevation_deg") if fmt == "dcase" else ("azi", "ele")
    full = [(p, t) for p, t in tables if len(t)]
    for p, t in full:
        if fmt == "dcase":
            per_frame = t.groupby("frame").size()
            if per_frame.max() > MAX_OVERLAP:
                f = int(per_frame.idxmax())
                raise DataError(
                    f"metadata file {p}, frame {f}: {int(per_frame.max())} events at once, "
                    f"more than the {MAX_OVERLAP} a scenes artifact can hold"
                )
        elif max_overlap(t) > MAX_OVERLAP:
            raise DataError(
                f"label file {p}: {max_overlap(t)} events overlap, more than the "
                f"{MAX_OVERLAP} a scenes artifact can hold"
            )
    if full:
        az = np.concatenate([t[az_col].to_numpy(np.float64) for _, t in full])
        el = np.concatenate([t[el_col].to_numpy(np.float64) for _, t in full])
        az = np.where(az > 180, az - 360, az)  # TUT2018 azimuths may be in [0, 360)
        if looks_like_radians(az, el):
            raise DataError(
                f"the directions of all {len(az)} events of the label files (e.g. {full[0][0]}) "
                f"lie within +-{RADIANS_AZ:g} (azimuth) and +-{RADIANS_EL:g} (elevation): "
                "radians? Label files are in degrees"
            )
    if fmt == "dcase" and n_classes is not None:
        for p, t in full:
            big = t[t["class"] >= n_classes]
            if len(big):
                top = int(t["class"].max())
                warnings.append(
                    f"metadata file {p}, frame {int(big['frame'].iloc[0])}: class "
                    f"{int(big['class'].iloc[0])} is beyond the {n_classes} classes of "
                    f"{edition or 'this edition'} (0..{n_classes - 1}); the scenes get "
                    f"{top + 1} or more classes"
                )
                break
    return warnings
