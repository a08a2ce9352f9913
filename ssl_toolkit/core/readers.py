"""Validating readers: a damaged or foreign file becomes one line, never a traceback.

Every file a stage reads goes through one reader per file kind, built on these helpers:
manifests (:func:`ssl_toolkit.core.artifacts.read_manifest`), the features arrays
(:func:`ssl_toolkit.features.store.open_features`), ``model.json`` and ``model.safetensors``
(:func:`ssl_toolkit.models.load_model`), ``io.json`` (:func:`ssl_toolkit.models.localize.read_io`),
the clip table of scenes (:func:`ssl_toolkit.core.artifacts.read_clips`). Each refuses
with :class:`~ssl_toolkit.core.errors.ArtifactError`::

    <file>: <what is wrong> (rebuild it with `<command>`)

Numbers must be finite; ``.npy`` sizes are checked against their headers before anything
is memory-mapped; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ArtifactError

#: A field check: None when ``value`` is fine, else what is wrong ("must be ...").
Check = Callable[[Any], "str | None"]


def damaged(path: str | os.PathLike, what: str, rebuild: str | None) -> ArtifactError:
    """The one-line error for a damaged file, with the command that rebuilds it."""
    hint = f" (rebuild it with `{rebuild}`)" if rebuild else ""
    return ArtifactError(f"{path}: {what}{hint}")


def _must_exist(p: Path, rebuild: str | None) -> None:
    if not p.exists():
        raise damaged(p, "is missing", rebuild)
    if not p.is_file():
        raise damaged(p, "is not a file", rebuild)


def read_text(path: str | os.PathLike, rebuild: str | None) -> str:
    """The UTF-8 text of a file.

    Raises:
        ArtifactError: missing, not a file, unreadable or not UTF-8.
    """
    p = Path(path)
    _must_exist(p, rebuild)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise damaged(p, f"cannot be read ({e.strerror or e})", rebuild) from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise damaged(p, f"is not UTF-8 text (byte {e.start})", rebuild) from e


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in strict JSON")


def read_json_object(path: str | os.PathLike, rebuild: str | None) -> dict[str, Any]:
    """A strict JSON file holding an object (no NaN / Infinity).

    Raises:
        ArtifactError: not readable, not UTF-8, not JSON, or not an object.
    """
    text = read_text(path, rebuild)
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise damaged(path, f"is not valid JSON ({e.msg} at {where})", rebuild) from e
    except (ValueError, RecursionError) as e:
        raise damaged(path, f"is not valid JSON ({e})", rebuild) from e
    if not isinstance(obj, dict):
        raise damaged(path, f"holds a JSON {_json_type(obj)}, not an object", rebuild)
    return obj


def _json_type(v: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(v), "number")


# ----------------------------------------------------------------------------- field checks


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """An integer (not a bool) in ``[lo, hi]``."""

    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool)
        ok = ok and (lo is None or v >= lo) and (hi is None or v <= hi)
        return None if ok else f"must be an integer{_bounds(lo, hi)}"

    return check


def number(lo: float | None = None, hi: float | None = None) -> Check:
    """A finite real number (not a bool) in ``[lo, hi]``."""

    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (lo is None or v >= lo) and (hi is None or v <= hi)
        return None if ok else f"must be a finite number{_bounds(lo, hi)}"

    return check


def text(choices: Iterable[str] | None = None) -> Check:
    """A string (one of ``choices`` when given)."""
    allowed = tuple(choices) if choices is not None else None

    def check(v: Any) -> str | None:
        if isinstance(v, str) and (allowed is None or v in allowed):
            return None
        return "must be a string" + (f" among {', '.join(allowed)}" if allowed else "")

    return check


def mapping(v: Any) -> str | None:
    """A JSON object."""
    return None if isinstance(v, dict) else "must be an object"


def sequence(item: Check | None = None, length: int | None = None) -> Check:
    """A list (of ``length`` items, each passing ``item``)."""

    def check(v: Any) -> str | None:
        if not isinstance(v, list) or (length is not None and len(v) != length):
            return "must be a list" + (f" of {length} items" if length is not None else "")
        for x in v:
            if item is not None and (why := item(x)):
                return f"has an item that {why}"
        return None

    return check


def optional(check: Check) -> Check:
    """``check``, or null."""
    return lambda v: None if v is None else check(v)


def _bounds(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


def check_fields(
    obj: dict[str, Any],
    spec: dict[str, Check],
    path: str | os.PathLike,
    rebuild: str | None,
    required: Iterable[str] = (),
    where: str = "",
) -> None:
    """Check the fields of a JSON object: ``required`` ones present, all of ``spec`` valid.

    Args:
        obj: the object; spec: field -> check (fields absent from ``obj`` are skipped).
        path, rebuild: the file, and the command that rebuilds it (for the message).
        required: fields that must be present.
        where: prefix of the field names in messages (``"extra."``).

    Raises:
        ArtifactError: naming the file and the first bad field.
    """
    for key in required:
        if key not in obj:
            raise damaged(path, f"lacks the field '{where}{key}'", rebuild)
    for key, check in spec.items():
        if key in obj and (why := check(obj[key])):
            raise damaged(path, f"field '{where}{key}' {why}, got {_short(obj[key])}", rebuild)


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


#: Feature parameters every stage after ``ssl prep features`` relies on.
FEATURE_PARAMS: dict[str, Check] = {
    "type": text(),
    "fs": integer(1, 10_000_000),
    "hop_length": integer(1),
    "win_length": integer(1),
    "n_fft": integer(1),
    "n_mels": integer(1),
    "n_channels": integer(1, 4096),
    "format": text(),
    "chunk_frames": integer(1),
}


def check_feature_params(
    params: Any,
    path: str | os.PathLike,
    rebuild: str | None,
    required: Iterable[str] = ("fs", "hop_length"),
    where: str = "feature_params.",
) -> dict[str, Any]:
    """``feature_params`` (of a features manifest, ``model.json`` or ``io.json``), checked."""
    if not isinstance(params, dict):
        raise damaged(path, f"field '{where.rstrip('.')}' must be an object", rebuild)
    check_fields(params, FEATURE_PARAMS, path, rebuild, required, where)
    return params


# ----------------------------------------------------------------------------- arrays


def npy_header(path: str | os.PathLike, rebuild: str | None) -> tuple[tuple, np.dtype, int]:
    """Shape, dtype and data offset of a ``.npy`` file whose size matches its header.

    Raises:
        ArtifactError: not a ``.npy`` file, an object (pickled) array, a Fortran-ordered
            one, or a size other than its header says (truncated or padded).
    """
    p = Path(path)
    _must_exist(p, rebuild)
    fmt = np.lib.format
    try:
        with open(p, "rb") as f:
            version = fmt.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy version {version}")
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except (ValueError, OSError, SyntaxError, EOFError) as e:
        raise damaged(p, f"is not a .npy array ({e})", rebuild) from e
    if dtype.hasobject:
        raise damaged(p, "holds Python objects (pickled data), not numbers", rebuild)
    if fortran:
        raise damaged(p, "is Fortran-ordered; the toolkit writes C order", rebuild)
    want = offset + math.prod(shape) * dtype.itemsize
    if size != want:
        why = "is truncated" if size < want else "is longer than its header says"
        raise damaged(p, f"{why}: {size} bytes, {want} expected for {dtype} {list(shape)}", rebuild)
    return tuple(shape), dtype, offset


def open_npy(
    path: str | os.PathLike,
    rebuild: str | None,
    dtype: Any,
    shape: tuple[int | None, ...],
) -> np.ndarray:
    """Memory-map a ``.npy`` array after checking its size, dtype and shape.

    Args:
        dtype: the dtype it must have, or a tuple of the dtypes it may have (the array
            keeps its own).
        shape: the shape it must have (None: any length on that axis).

    Raises:
        ArtifactError: see :func:`npy_header`; or another dtype or shape.
    """
    got_shape, got_dtype, offset = npy_header(path, rebuild)
    allowed = [np.dtype(d) for d in (dtype if isinstance(dtype, tuple) else (dtype,))]
    fits = len(got_shape) == len(shape) and all(
        w is None or w == g for w, g in zip(shape, got_shape, strict=True)
    )
    if got_dtype not in allowed or not fits:
        want = [("*" if w is None else w) for w in shape]
        names = " or ".join(str(d) for d in allowed)
        raise damaged(
            path, f"holds {got_dtype} {list(got_shape)}, expected {names} {want}", rebuild
        )
    dtype = got_dtype
    if math.prod(got_shape) == 0:
        return np.zeros(got_shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=got_shape, offset=offset)


def read_npz(
    path: str | os.PathLike, rebuild: str | None, names: Iterable[str]
) -> dict[str, np.ndarray]:
    """Arrays ``names`` of an ``.npz`` file, loaded without unpickling.

    Raises:
        ArtifactError: missing, not a zip of arrays, pickled content, or a name missing.
    """
    import zipfile

    p = Path(path)
    _must_exist(p, rebuild)
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [n for n in names if n not in z.files]
            if missing:
                raise damaged(p, f"lacks the array(s) {', '.join(missing)}", rebuild)
            return {n: np.asarray(z[n]) for n in names}
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise damaged(p, f"is not a readable .npz archive ({e})", rebuild) from e


def read_table(
    path: str | os.PathLike,
    rebuild: str | None,
    columns: Iterable[str],
    dtype: dict[str, Any] | None = None,
):
    """A CSV file with at least ``columns``, as a DataFrame.

    Raises:
        ArtifactError: missing, unreadable, not UTF-8, not CSV, or lacking a column.
    """
    import pandas as pd

    p = Path(path)
    _must_exist(p, rebuild)
    try:
        df = pd.read_csv(p, dtype=dtype)
    except pd.errors.EmptyDataError as e:
        raise damaged(p, "is empty", rebuild) from e
    except UnicodeDecodeError as e:
        raise damaged(p, f"is not UTF-8 text (byte {e.start})", rebuild) from e
    except (pd.errors.ParserError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise damaged(p, f"is not a readable CSV table ({first})", rebuild) from e
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise damaged(p, f"lacks the column(s) {', '.join(missing)}", rebuild)
    return df
