"""DCASE SELD result files (2020-2024): detections written out, and read back in to be scored.

A result file holds one recording's detections, no header, one row per detected source per
100 ms label frame: ``frame,class,source,azimuth,elevation[,distance]`` (degrees in the
DCASE frame, distance in cm). The format itself is read and written by
:func:`ssl_toolkit.core.labels.read_metadata` / :func:`~ssl_toolkit.core.labels.write_metadata`
(the reference metadata files have the same columns); this module maps it to and from the
toolkit's feature frames (hop ``FeatureSpec.hop_s``, 20 ms by default).

**Label frame of a feature frame.** Feature frame t (centred at ``t * hop_s``) lies in label
frame ``l = floor(t * hop_s / 0.1 s)``, the rule of
:func:`~ssl_toolkit.core.labels.metadata_frame_labels` (reference labels).

**Writing (decimation).** Label frame l is represented by one feature frame: among its frames
that are present (the split's frames of the clip, the file's frames in ``ssl predict``), the
one whose centre is nearest the label frame's centre ``(l + 1/2) * 0.1 s``, the earlier one on
a tie: frame ``5 l + 2`` at a 20 ms hop, the last frame in a label frame cut short at the end
of a clip. Its detected hypotheses (valid, confidence >= the threshold) are the label frame's
rows, ``source`` = the hypothesis slot, ``class`` = the slot's predicted class (a class-aware
localizer: :attr:`~ssl_toolkit.models.localize.Localization.classes`), 0 for a class-agnostic
one. One frame rather than a pooling or a vote, because a multi-hypothesis model's slots are
not tracks (averaging a slot's directions over frames can mix two sources); and the middle
frame is the best single frame: for a source that starts or stops once inside the label frame,
its activity is the majority vote of the label frame's (odd number of) frames, and for a moving
source its direction, held over the label frame, is the nearest to every frame's (the time
offset is at most half a label frame, not a whole one). The rule only needs the frames of the
label frame, so it streams (:class:`StreamDecimator`).

**Reading (holding).** A file's rows of label frame l are the predictions of every feature
frame of l, as they are (no interpolation: another system's track indices need not be
continuous). Within a label frame the rows, in (class, source) order, fill slots 0, 1, ...;
K is the most rows in any label frame; unused slots are invalid. Each slot keeps its row's
class (``Localization.classes``: per frame, since a slot has no fixed class here), so that
``ssl eval`` scores the files both class-agnostically (every method's metrics) and, on
features with classes, class-aware (the ``*_cls`` metrics); distances are ignored, and rows
of label frames that hold no scored feature frame are not scored. Such predictions have
no scores (confidence 1 on every listed row: detection = listed) but do estimate the number of
sources (:class:`DcaseCsvLocalizer`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.console import warn as console_warn
from ..core.errors import DataError, UserError
from ..core.geometry import rad, sph_to_unit, unit_to_sph
from ..core.labels import (
    MAX_OVERLAP,
    METADATA_COLUMNS,
    METADATA_HOP_S,
    RADIANS_AZ,
    RADIANS_EL,
    empty_metadata,
    looks_like_radians,
    read_metadata,
    write_metadata,
)
from ..models.localize import Localizer

__all__ = [
    "DcaseCsvLocalizer",
    "StreamDecimator",
    "check_degrees",
    "check_hop",
    "label_frame",
    "read_results",
    "representatives",
    "result_tables",
    "write_results",
]

#: Names of the extra files listed in the one-line warning of :func:`read_results`.
_LISTED = 8
#: Most rows one label frame of a result file may hold (as many sources as a scenes
#: artifact can hold at once): the scored arrays are dense in the most rows of any frame.
MAX_ROWS_PER_FRAME = MAX_OVERLAP
#: Label frames a result file may run past the end of its clip's scored frames: the
#: features may leave out the last partial chunk (0.5 s) and a label frame of rounding.
FRAME_SLACK = 10


def check_hop(hop_s: float) -> None:
    """Refuse features coarser than the 100 ms label frame (a label frame would hold none)."""
    if not hop_s <= METADATA_HOP_S + 1e-12:
        raise UserError(
            f"DCASE result files have {METADATA_HOP_S * 1000:g} ms label frames; features with "
            f"a {hop_s * 1000:g} ms hop are coarser and cannot be written or read as such"
        )


def label_frame(frame, hop_s: float) -> np.ndarray:
    """Label frame ``[N]`` int64 of feature frames ``frame [N]`` (feature hop ``hop_s``, s):
    ``floor(t * hop_s / 0.1 s)``, as :func:`~ssl_toolkit.core.labels.metadata_frame_labels`."""
    t_s = np.asarray(frame, np.int64) * hop_s
    return np.floor(t_s / METADATA_HOP_S + 1e-9).astype(np.int64)


def representatives(group, frame, hop_s: float) -> np.ndarray:
    """The feature frame that represents each (group, label frame), as a mask.

    Among the given frames of one group (a clip) and one label frame, the one whose centre
    ``t * hop_s`` is nearest the label frame's centre ``(l + 1/2) * 0.1 s``; the earlier one
    on a tie (offsets compared to 1e-6 hop, so 20 ms and 60 ms into a label frame tie).

    Args:
        group: ``[N]`` group of each frame (clip ids; any sortable values).
        frame: ``[N]`` int feature frame index in its group.
        hop_s: feature hop, seconds.

    Returns:
        ``[N]`` bool, exactly one True per (group, label frame) present.
    """
    t = np.asarray(frame, np.int64)
    n = len(t)
    out = np.zeros(n, bool)
    if n == 0:
        return out
    g = np.unique(np.asarray(group), return_inverse=True)[1].ravel()
    lf = label_frame(t, hop_s)
    offset = np.round(np.abs(t * hop_s - (lf + 0.5) * METADATA_HOP_S) / hop_s, 6)  # in hops
    order = np.lexsort((t, offset, lf, g))  # per (group, label frame): nearest, then earliest
    gs, ls = g[order], lf[order]
    first = np.ones(n, bool)
    first[1:] = (gs[1:] != gs[:-1]) | (ls[1:] != ls[:-1])
    out[order[first]] = True
    return out


def result_tables(
    clip_id, frame, hyps, detected, hop_s: float, classes=None
) -> dict[str, pd.DataFrame]:
    """The DCASE result table of each clip from per-frame detections (decimated).

    Args:
        clip_id: ``[N]`` clip of each feature frame.
        frame: ``[N]`` int feature frame index in its clip.
        hyps: ``[N, K, 3]`` unit vectors (DCASE frame).
        detected: ``[N, K]`` bool: the detected hypotheses (valid, confidence >= threshold;
            :func:`ssl_toolkit.models.localize.detect`).
        hop_s: feature hop, seconds (at most 0.1 s).
        classes: ``[N, K]`` (or ``[K]``, per slot) int class of each hypothesis (>= 0 where
            detected), or None: class 0 (class-agnostic).

    Returns:
        ``{clip_id: table}`` for every clip of ``clip_id`` (an empty table where nothing is
        detected), tables of :data:`~ssl_toolkit.core.labels.METADATA_COLUMNS` (one row per
        detected hypothesis of each label frame's representative frame, ``source`` = slot,
        degrees, distance NaN), ready for :func:`write_results`.

    Raises:
        ValueError: a detected hypothesis of unknown class (< 0) among given ``classes``.
    """
    check_hop(hop_s)
    clip_id = np.asarray(clip_id).astype(str)
    frame = np.asarray(frame, np.int64)
    det = np.asarray(detected, bool)
    rep = representatives(clip_id, frame, hop_s)
    n, k = np.nonzero(rep[:, None] & det)  # (R,) each: frame row, slot
    az, el = unit_to_sph(np.asarray(hyps, np.float64)[n, k])  # (R,) radians
    cls = np.zeros(len(n), np.int64)
    if classes is not None:
        cls = np.broadcast_to(np.asarray(classes, np.int64), det.shape)[n, k]
        if (cls < 0).any():
            raise ValueError("a detected hypothesis has no class (< 0): cannot write its row")
    table = pd.DataFrame(
        {
            "frame": label_frame(frame[n], hop_s),
            "class": cls,
            "source": k.astype(np.int64),
            "azimuth_deg": np.degrees(az),
            "elevation_deg": np.degrees(el),
            "distance_m": np.full(len(n), np.nan),
        }
    )
    empty = table.iloc[:0]
    by_clip = dict(tuple(table.groupby(clip_id[n], sort=False))) if len(n) else {}
    return {
        c: by_clip.get(c, empty).reset_index(drop=True) for c in dict.fromkeys(clip_id.tolist())
    }


def _file_name(directory: Path, clip: str) -> Path:
    """``directory / <clip>.csv``, refusing a clip id that is not a plain file name."""
    if not clip or clip in (".", "..") or any(s in clip for s in ("/", "\\", "\0")):
        raise DataError(f"clip id {clip!r} cannot name a DCASE result file")
    return directory / f"{clip}.csv"


def write_results(directory: str | os.PathLike, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write ``<clip_id>.csv`` for each table (:func:`result_tables`) into ``directory``
    (created); returns the files in the order of ``tables``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for clip, table in tables.items():
        path = _file_name(d, clip)
        write_metadata(path, table)
        paths.append(path)
    return paths


def read_results(
    directory: str | os.PathLike, clip_ids, warn=None, n_frames: dict[str, int] | None = None
) -> dict[str, pd.DataFrame]:
    """Read and check the result file ``<clip_id>.csv`` of each clip from ``directory``.

    Each file is read row by row (:func:`~ssl_toolkit.core.labels.read_metadata`): sparse
    files (frames without a row), empty files and files of one row are what real systems
    write, and are scored as they are. A file is refused (naming it) when one label frame
    holds more than :data:`MAX_ROWS_PER_FRAME` rows, or when ``n_frames`` is given and a
    row lies more than :data:`FRAME_SLACK` label frames past its clip's end: frame indices
    counted in 20 ms feature frames rather than 100 ms label frames are 5 times too large.

    Args:
        directory: a folder of DCASE result files (any system's).
        clip_ids: the clips needed (one file each).
        warn: ``warn(line)`` for the warning lines: the folder's other files, duplicate
            rows, every file empty (default: printed on stderr).
        n_frames: ``{clip_id: label frames}`` the clips span (None: not checked).

    Returns:
        ``{clip_id: table}`` (:func:`~ssl_toolkit.core.labels.read_metadata`), in the order
        of ``clip_ids`` (duplicates once).

    Raises:
        DataError: the folder does not exist, a clip's file is missing (naming it), or a
            file is malformed (naming the file and line: see ``read_metadata``), holds too
            many rows in one frame or frames past its clip's end (naming file and frame).
    """
    warn = warn or console_warn
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"--dcase-csv {d} is not a directory of DCASE result files")
    need = list(dict.fromkeys(np.asarray(clip_ids).astype(str).tolist()))
    files = {c: _file_name(d, c) for c in need}
    missing = [p for p in files.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"{missing[0]} is missing: --dcase-csv needs one <clip_id>.csv per clip of the split "
            f"({len(missing)} of {len(need)} missing)"
        )
    names = {p.name for p in files.values()}
    extra = sorted(p.name for p in d.iterdir() if p.name not in names)
    if extra:
        more = f", ... ({len(extra)} in all)" if len(extra) > _LISTED else ""
        shown = ", ".join(extra[:_LISTED]) + more
        warn(f"{d}: {len(extra)} file(s) not of a clip of the split, ignored: {shown}")
    tables = {}
    for c, p in files.items():
        t = read_metadata(p, warn=warn, what="result file")
        if len(t):
            per_frame = t.groupby("frame").size()
            if per_frame.max() > MAX_ROWS_PER_FRAME:
                raise DataError(
                    f"result file {p}, frame {int(per_frame.idxmax())}: {int(per_frame.max())} "
                    f"rows in one label frame, more than {MAX_ROWS_PER_FRAME} (a DCASE frame "
                    "lists each detected source once)"
                )
            last = int(t["frame"].max())
            if n_frames is not None and c in n_frames and last >= n_frames[c] + FRAME_SLACK:
                span = n_frames[c] * METADATA_HOP_S
                raise DataError(
                    f"result file {p} lists frame {last} ({last * METADATA_HOP_S:.1f} s) but "
                    f"clip {c} lasts about {span:.1f} s ({n_frames[c]} label frames): frames "
                    f"counted in 20 ms units? DCASE result files count "
                    f"{METADATA_HOP_S * 1000:g} ms label frames"
                )
        tables[c] = t
    if tables and not any(len(t) for t in tables.values()):
        warn(f"no result file in {d} holds a row: the system detected nothing (scored as such)")
    return tables


def check_degrees(tables: dict[str, pd.DataFrame], directory, reference_az_deg) -> None:
    """Refuse result files whose directions are plainly radians: every row of the folder
    (at least 50) within +-3.2 azimuth and +-1.6 elevation, spread over 2 or more, while the
    reference azimuths reach beyond +-10 degrees (a system localizing everything within 3
    degrees of the front while the sources lie elsewhere).

    Args:
        tables: ``{clip_id: table}`` (:func:`read_results`); directory: their folder;
        reference_az_deg: the active reference azimuths, degrees.

    Raises:
        DataError: naming the folder and a file, with the hint.
    """
    full = {c: t for c, t in tables.items() if len(t)}
    if not full:
        return
    az = np.concatenate([t["azimuth_deg"].to_numpy(np.float64) for t in full.values()])
    el = np.concatenate([t["elevation_deg"].to_numpy(np.float64) for t in full.values()])
    ref = np.asarray(reference_az_deg, np.float64)
    if looks_like_radians(az, el, min_rows=50, spread=2.0) and (np.abs(ref) > 10).any():
        first = _file_name(Path(directory), next(iter(full)))
        raise DataError(
            f"azimuths in {Path(directory)} (e.g. {first.name}) all lie within "
            f"+-{RADIANS_AZ:g} and elevations within +-{RADIANS_EL:g} ({len(az)} rows) while "
            f"the reference sources reach {np.abs(ref).max():.0f} degrees: radians? DCASE "
            "result files are in degrees"
        )


class DcaseCsvLocalizer(Localizer):
    """Predictions of DCASE result files behind the localizer interface.

    ``localize((clip_id [N], frame [N]))`` gives the feature frames ``frame`` of clips
    ``clip_id`` the rows of their label frame (see the module docstring): ``hyps [N, K, 3]``,
    ``conf [N, K]`` (1 on listed rows), ``valid [N, K]`` (the listed rows) and ``classes
    [N, K]`` (the rows' classes, -1 on other slots; slots in (class, source) order). Frames
    of a clip without a table, or of a label frame without rows, have no valid slot.

    Attributes:
        method: ``dcase_csv``; label: the name in reports; K: the most rows in any label
            frame of the tables (at least 1); scored: False (no confidence scores);
            counts: True (the listed rows estimate the number of sources, so frame recall is
            reported); threshold: 0.5 (detection = listed); source: the folder read.

    Args:
        tables: ``{clip_id: table}`` (:func:`read_results`).
        hop_s: feature hop, seconds (at most 0.1 s).
        label: the name of the system in reports.
        source: where the tables come from.
    """

    method = "dcase_csv"
    scored = False
    counts = True
    threshold = 0.5

    def __init__(self, tables: dict[str, pd.DataFrame], hop_s: float, label: str, source=None):
        check_hop(hop_s)
        self.hop_s = float(hop_s)
        self.label = str(label)
        self.source = None if source is None else Path(source)
        self.clips = np.array(sorted(tables), dtype=str)  # (C,) sorted: searchsorted codes
        parts = [t[METADATA_COLUMNS[:5]].assign(_clip=i) for i, t in
                 enumerate(tables[c] for c in self.clips.tolist())]  # fmt: skip
        rows = pd.concat(parts, ignore_index=True) if parts else empty_metadata().assign(_clip=0)
        rows = rows.sort_values(["_clip", "frame", "class", "source"], kind="stable")
        self._clip = rows["_clip"].to_numpy(np.int64)  # (R,)
        self._frame = rows["frame"].to_numpy(np.int64)
        self._class = rows["class"].to_numpy(np.int64)  # (R,)
        self._u = sph_to_unit(
            rad(rows["azimuth_deg"].to_numpy(np.float64)),
            rad(rows["elevation_deg"].to_numpy(np.float64)),
        ).reshape(-1, 3)  # (R, 3)
        # groups = (clip, label frame): keys sorted, first row and row count of each
        self._span = int(self._frame.max(initial=0)) + 1
        keys = self._clip * self._span + self._frame
        self._keys, self._start, self._count = np.unique(
            keys, return_index=True, return_counts=True
        )
        self.K = max(1, int(self._count.max(initial=0)))

    def _localize(self, x) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        clip_id, frame = x
        clip_id = np.asarray(clip_id).astype(str)
        lf = label_frame(frame, self.hop_s)  # (N,)
        n, k = len(lf), self.K
        hyps = np.zeros((n, k, 3), np.float32)
        hyps[..., 0] = 1.0  # the placeholder of invalid slots, never scored
        valid = np.zeros((n, k), bool)
        classes = np.full((n, k), -1, np.int64)
        if n and len(self._keys):
            code = np.minimum(np.searchsorted(self.clips, clip_id), len(self.clips) - 1)
            key = code * self._span + np.minimum(lf, self._span - 1)  # (N,) group key
            pos = np.minimum(np.searchsorted(self._keys, key), len(self._keys) - 1)
            hit = (self.clips[code] == clip_id) & (lf < self._span) & (self._keys[pos] == key)
            with_rows = np.flatnonzero(hit)  # (H,) frames whose label frame has rows
            cnt = self._count[pos[with_rows]]  # (H,)
            slot = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)  # (P,)
            f = np.repeat(with_rows, cnt)  # (P,) frame of each (frame, row) pair
            r = np.repeat(self._start[pos[with_rows]], cnt) + slot  # (P,) its row
            hyps[f, slot] = self._u[r]
            valid[f, slot] = True
            classes[f, slot] = self._class[r]
        return hyps, valid.astype(np.float32), valid, classes


class StreamDecimator:
    """:func:`result_tables` of one recording whose frames come block by block.

    Each block keeps only its own representatives (:func:`representatives`): the frame that
    represents a label frame over the whole recording is the representative of that label
    frame within its block, so choosing again among the kept frames at the end gives the same
    rows as decimating the whole recording at once, in O(frames / label frame) memory.

    Args:
        hop_s: feature hop, seconds (at most 0.1 s).
    """

    def __init__(self, hop_s: float):
        check_hop(hop_s)
        self.hop_s = float(hop_s)
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add(self, frame, hyps, detected, classes=None) -> None:
        """Frames ``frame [L]`` (indices in the recording) of one block, their ``hyps
        [L, K, 3]``, ``detected [L, K]`` bool and optional ``classes [L, K]`` or ``[K]`` int."""
        frame = np.asarray(frame, np.int64)
        keep = representatives(np.zeros(len(frame), np.int8), frame, self.hop_s)
        det = np.asarray(detected, bool)
        cls = np.zeros(det.shape, np.int64)
        if classes is not None:
            cls = np.broadcast_to(np.asarray(classes, np.int64), det.shape)
        self._parts.append((frame[keep], np.asarray(hyps)[keep], det[keep], cls[keep]))

    def table(self) -> pd.DataFrame:
        """The recording's result table (:data:`~ssl_toolkit.core.labels.METADATA_COLUMNS`)."""
        if not self._parts:
            return empty_metadata()
        frame, hyps, det, cls = (np.concatenate(a) for a in zip(*self._parts, strict=True))
        group = np.zeros(len(frame), "U1")
        return result_tables(group, frame, hyps, det, self.hop_s, cls)[""]
