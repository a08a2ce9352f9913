"""Versioned, atomic stage outputs.

Every stage writes one directory holding a ``manifest.json``::

    {"kind": "features", "schema": 1, "toolkit_version": "0.1.0",
     "config": {...}, "inputs": [{"path": ..., "kind": ..., "fingerprint": ...}],
     "fingerprint": "…", "created": "2026-11-22T21:00:00+00:00", "extra": {...}}

A stage reads its inputs only through :func:`read_manifest`, which refuses a
missing directory, a wrong kind or an unknown schema with one line naming the
stage that makes the right input. It writes its output with
:func:`build_artifact`: the work happens in a hidden sibling directory that is
renamed into place once the manifest is written, so an interrupted stage never
leaves a directory that looks complete. With the same config and inputs an
existing output is reused; ``force=True`` rebuilds it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from . import readers
from .errors import ArtifactError  # re-exported: artifacts.ArtifactError

MANIFEST = "manifest.json"

#: Current schema of each artifact kind, and the command that makes it.
#: eval 2: DCASE metrics equal to the official code, ``valid`` slots, ``scored`` from the method.
SCHEMAS: dict[str, int] = {
    "scenes": 1, "features": 1, "run": 1, "eval": 2, "export": 1, "toy": 1, "report": 1,
}  # fmt: skip
MAKERS: dict[str, str] = {
    "scenes": "ssl prep synth (or ssl prep import)",
    "features": "ssl prep features",
    "run": "ssl train",
    "eval": "ssl eval (or ssl baseline)",
    "export": "ssl export",
    "toy": "ssl toy",
    "report": "ssl report",
}


@dataclass(frozen=True)
class Manifest:
    """A parsed ``manifest.json`` and the directory it describes."""

    path: Path
    kind: str
    schema: int
    fingerprint: str
    config: dict[str, Any]
    inputs: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    toolkit_version: str = ""
    created: str = ""

    def ref(self) -> dict[str, Any]:
        """How an output that uses this artifact records it among its inputs."""
        return {"path": str(self.path), "kind": self.kind, "fingerprint": self.fingerprint}

    def file(self, name: str) -> Path:
        """A file of this artifact; refuses names that escape its directory."""
        return safe_join(self.path, name)


def safe_join(root: str | os.PathLike, relative: str) -> Path:
    """Join ``relative`` under ``root`` and refuse anything that escapes it.

    Raises:
        ArtifactError: when the path is absolute or climbs out with ``..``.
    """
    root_p = Path(root).resolve()
    p = (root_p / relative).resolve()
    if p != root_p and root_p not in p.parents:
        raise ArtifactError(f"{relative!r} points outside {root_p}; refusing to read it")
    return p


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-serializable object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_manifest(path: str | os.PathLike, kind: str | tuple[str, ...]) -> Manifest:
    """Read and check the manifest of a stage input.

    The manifest must be a strict JSON object with the right ``kind`` and ``schema``,
    fields of the right types, and the extras of its kind well-typed (see
    :data:`EXTRA_FIELDS`); the ``audio_root`` of a scenes artifact must be the artifact
    itself or the dataset recorded (and fingerprinted) at import.

    Args:
        path: the artifact directory.
        kind: the kind (or kinds) the caller accepts.

    Raises:
        ArtifactError: one line naming the problem and the stage that makes
            the right input.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    maker = " / ".join(MAKERS.get(k, k) for k in kinds)
    p = Path(path)
    mpath = p / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(
            f"{p} is not a {'/'.join(kinds)} artifact (no {MANIFEST}): run `{maker}` first"
        )
    raw = readers.read_json_object(mpath, f"{maker} --force")
    got = raw.get("kind")
    if got not in kinds:
        raise ArtifactError(
            f"{p} is a {got!r} artifact, expected {'/'.join(kinds)}: run `{maker}` first"
        )
    schema = raw.get("schema")
    if schema != SCHEMAS[got]:
        raise ArtifactError(
            f"{p} has {got} schema {schema}, this toolkit reads schema {SCHEMAS[got]}: "
            f"rebuild it with `{MAKERS[got]} --force`"
        )
    rebuild = f"{MAKERS[got]} --force"
    readers.check_fields(raw, _MANIFEST_FIELDS, mpath, rebuild)
    extra = raw.get("extra", {})
    readers.check_fields(extra, EXTRA_FIELDS.get(got, {}), mpath, rebuild,
                         EXTRA_REQUIRED.get(got, ()), "extra.")  # fmt: skip
    man = Manifest(
        path=p.resolve(),
        kind=got,
        schema=schema,
        fingerprint=raw.get("fingerprint", ""),
        config=raw.get("config", {}),
        inputs=raw.get("inputs", []),
        extra=extra,
        toolkit_version=raw.get("toolkit_version", ""),
        created=raw.get("created", ""),
    )
    if got == "scenes":
        _check_audio_root(man, mpath, rebuild)
        _check_clip_header(man.path / "clips.csv", rebuild)
    return man


_INPUT_REF = readers.mapping
_MANIFEST_FIELDS: dict[str, readers.Check] = {
    "fingerprint": readers.text(),
    "config": readers.mapping,
    "inputs": readers.sequence(_INPUT_REF),
    "extra": readers.mapping,
    "toolkit_version": readers.text(),
    "created": readers.text(),
}
#: Types of the manifest extras each kind's readers rely on (checked where present).
EXTRA_FIELDS: dict[str, dict[str, readers.Check]] = {
    "scenes": {
        "fs": readers.integer(1, 10_000_000),
        "format": readers.text(("foa", "mic")),
        "n_channels": readers.integer(1, 4096),
        "max_sources": readers.integer(1, 1000),
        "audio_root": readers.text(),
        "mic_positions_m": readers.sequence(readers.sequence(readers.number(), 3)),
        "label_format": readers.text(("tut2018", "dcase")),  # core.labels.LABEL_FORMATS
        "n_classes": readers.integer(1, 32767),
    },
    "features": {
        "feature_params": readers.mapping,
        "shape": readers.sequence(readers.integer(1), 3),
        "max_sources": readers.integer(1, 1000),
        "n_chunks": readers.integer(0),
        "n_classes": readers.integer(1, 32767),  # classes.npy is int16
    },
}
#: Extras every reader of the kind needs (the features' are required by ``open_features``).
EXTRA_REQUIRED: dict[str, tuple[str, ...]] = {
    "scenes": ("fs", "format", "n_channels", "max_sources", "audio_root"),
}


#: Columns of a scenes artifact's ``clips.csv`` that stages read.
CLIP_COLUMNS = ("clip_id", "audio", "labels", "fold", "split", "subset")
#: The splits of a dataset (``split`` of clips.csv and of a features index).
SPLITS = ("train", "val", "test")


def read_clips(scenes: Manifest) -> tuple[Any, Path]:
    """The clip table of a scenes artifact (a DataFrame) and the folder its audio paths are
    relative to.

    Raises:
        ArtifactError: ``clips.csv`` missing, unreadable, lacking a column, empty, or
            with a row lacking a value or naming an unknown split.
    """
    import numpy as np
    import pandas as pd

    path = scenes.file("clips.csv")
    rebuild = f"{MAKERS['scenes']} --force"
    dtype = {c: str for c in ("clip_id", "audio", "labels", "split", "subset")}
    clips = readers.read_table(path, rebuild, CLIP_COLUMNS, dtype)
    if clips.empty:
        raise readers.damaged(path, "lists no clip", rebuild)
    if not pd.api.types.is_integer_dtype(clips["fold"]):
        raise readers.damaged(path, "column 'fold' must hold integers", rebuild)
    bad = clips[list(CLIP_COLUMNS)].isna().any(axis=1) | ~clips["split"].isin(SPLITS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise readers.damaged(
            path, f"row {row + 2}: needs every column filled and a split among "
            f"{', '.join(SPLITS)}", rebuild,
        )  # fmt: skip
    root = scenes.extra.get("audio_root", ".")
    audio_root = scenes.path if root == "." else Path(root)  # checked by read_manifest
    return clips, audio_root


def _check_clip_header(path: Path, rebuild: str) -> None:
    """A scenes artifact's ``clips.csv`` exists and its header names :data:`CLIP_COLUMNS`
    (its rows are checked by :func:`read_clips`)."""
    if not path.is_file():
        raise readers.damaged(path, "is missing", rebuild)
    try:
        with open(path, "rb") as f:
            head = f.readline(1 << 16).decode("utf-8")
    except OSError as e:
        raise readers.damaged(path, f"cannot be read ({e.strerror or e})", rebuild) from e
    except UnicodeDecodeError as e:
        raise readers.damaged(path, "is not UTF-8 text", rebuild) from e
    names = [c.strip().strip('"') for c in head.strip().split(",")]
    missing = [c for c in CLIP_COLUMNS if c not in names]
    if missing:
        raise readers.damaged(path, f"lacks the column(s) {', '.join(missing)}", rebuild)


def _check_audio_root(man: Manifest, mpath: Path, rebuild: str) -> None:
    """A scenes artifact reads its audio from itself, or from the dataset it was imported
    from, as recorded in its config and fingerprint: an edited ``audio_root`` is refused.

    Raises:
        ArtifactError: naming the manifest.
    """
    root, dataset = man.extra["audio_root"], man.config.get("root")
    if root == ".":
        return
    if not os.path.isabs(root) or root != dataset:
        nor = f" nor the dataset it was imported from ({dataset})" if dataset else ""
        raise readers.damaged(
            mpath, f"extra.audio_root {root!r} is not '.'{nor}; refusing to read audio "
            "outside the scenes' own dataset", rebuild,
        )  # fmt: skip
    ins = [i.get("fingerprint") for i in man.inputs]
    want = fingerprint({"kind": man.kind, "schema": man.schema, "config": man.config,
                        "inputs": ins})  # fmt: skip
    if want != man.fingerprint:
        raise readers.damaged(
            mpath, "its config was edited (the fingerprint does not match it); refusing to "
            "read audio from the dataset it names", rebuild,
        )  # fmt: skip


@dataclass
class Build:
    """The output of a stage while it is being built.

    Attributes:
        dir: where to write files now (a hidden sibling of the final path).
        final: the path the artifact will have once complete.
        reused: True when an up-to-date artifact already existed; nothing to do.
        extra: free-form values to store in the manifest (summaries, shapes).
    """

    dir: Path
    final: Path
    reused: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None


#: OS errors that end a build with one line instead of a traceback.
_ENV_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def _overlaps(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are the same path or one lies inside the other."""
    return a == b or a in b.parents or b in a.parents


def _check_inputs_untouched(final: Path, inputs: list[Manifest], protect) -> None:
    """Refuse (even with --force) an output that is, contains or lies in an input."""
    out = final.resolve()
    for p in [m.path for m in inputs] + [Path(x) for x in protect]:
        src = Path(p).resolve()
        if _overlaps(out, src):
            raise ArtifactError(
                f"output {final} overlaps the input {p}: a stage never writes over, into or "
                "around its inputs (even with --force); choose another output path"
            )


@contextlib.contextmanager
def _writer_lock(final: Path) -> Iterator[None]:
    """One writer per artifact: an advisory lock on ``.<name>.lock`` beside it.

    The lock dies with its process, so a killed writer never blocks the next one. While
    holding it, leftovers of earlier writers of the same output (temporary and replaced
    directories) are removed.

    Raises:
        ArtifactError: naming the PID of the process that holds the lock.
    """
    lock = final.parent / f".{final.name}.lock"
    fd = _lock_file(lock, final)
    try:
        for old in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(old, ignore_errors=True)
        for old in final.parent.glob(f".{final.name}.old-*"):
            shutil.rmtree(old, ignore_errors=True)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # under the lock; a waiting process re-checks the inode
        os.close(fd)


#: The writer lock of :func:`_writer_lock`, for outputs that are files (``ssl predict``).
writer_lock = _writer_lock


def _lock_file(lock: Path, final: Path) -> int:
    """An open descriptor holding the exclusive lock of ``lock`` (the file that is there)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ArtifactError(
                f"{final} is being written by another ssl process (PID {holder}); wait for "
                "it to finish or stop it"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not unlinked by the previous holder in the meantime
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)


def _env_error(e: OSError, final: Path) -> ArtifactError | None:
    """A one-line error for a full disk, read-only or forbidden location (else None)."""
    why = _ENV_ERRORS.get(e.errno)
    if why is None:
        return None
    where = e.filename or final
    return ArtifactError(
        f"cannot write {final}: {why} ({where}); nothing of it was kept and earlier "
        "artifacts are intact"
    )


def resumable_dir(final: str | os.PathLike) -> Path:
    """Where a resumable output ``final`` is built and kept when interrupted:
    ``.<name>.partial`` beside it."""
    final = Path(final)
    return final.parent / f".{final.name}.partial"


def _partial_dir(final: Path, resumable: bool) -> Path:
    if resumable:
        return resumable_dir(final)
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def build_artifact(
    out: str | os.PathLike,
    kind: str,
    config: dict[str, Any],
    inputs: list[Manifest] = (),
    *,
    force: bool = False,
    resumable: bool = False,
    fresh: bool = False,
    protect: tuple = (),
    log: Callable[[str], None] | None = None,
) -> Iterator[Build]:
    """Build a stage output atomically, or reuse an up-to-date one.

    Usage::

        with build_artifact(out, "features", cfg, [scenes]) as b:
            if not b.reused:
                write_files_into(b.dir)

    The manifest is written last and the directory renamed into place only
    when the block finishes without error. On error the partial directory is
    deleted, unless ``resumable`` (then it is kept as ``.<name>.partial`` for
    a later run to continue from; ``fresh`` discards such a state first).

    Guarantees: an output that is, contains or lies inside an input (or a path of
    ``protect``, e.g. a dataset being imported) is refused even with ``force``; one
    process at a time builds a given output (advisory lock, see :func:`_writer_lock`);
    ``force`` replaces the old output only once the new one is complete; a full disk
    or a read-only location ends in one line and leaves nothing half-written.

    Raises:
        ArtifactError: when ``out`` holds something else (another kind, another
            config, or files without a manifest) and ``force`` is False, overlaps an
            input, is being written by another process, or cannot be written.
    """
    final = Path(out)
    inputs = list(inputs)
    _check_inputs_untouched(final, inputs, protect)
    if final.exists() and not final.is_dir():
        raise ArtifactError(f"{final} is an existing file, not a directory; choose another path")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = _writer_lock(final)
        lock.__enter__()
    except OSError as e:
        raise (_env_error(e, final) or e) from e
    try:
        yield from _build(final, kind, config, inputs, force, resumable, fresh, log)
    except OSError as e:
        err = _env_error(e, final)
        if err is None:
            raise
        raise err from e
    finally:
        lock.__exit__(None, None, None)


def _existing(final: Path, kind: str, fp: str) -> Manifest | None:
    """The artifact already at ``final`` if it is this one (same fingerprint), None if
    nothing is there.

    Raises:
        ArtifactError: ``final`` holds another artifact, a damaged one, or foreign files.
    """
    if not final.exists():
        return None
    if (final / MANIFEST).is_file():
        try:
            old = read_manifest(final, kind)
        except ArtifactError as e:
            raise ArtifactError(
                f"{final} already holds another artifact ({e}); choose another path or pass --force"
            ) from e
        if old.fingerprint == fp:
            return old
        raise ArtifactError(
            f"{final} was built with another config or inputs; "
            "pass --force to replace it or choose another output path"
        )
    if any(final.iterdir()):
        raise ArtifactError(
            f"{final} exists and is not an artifact of this toolkit; "
            "refusing to write into it (choose another path or pass --force)"
        )
    return None


def _build(final, kind, config, inputs, force, resumable, fresh, log) -> Iterator[Build]:
    """The body of :func:`build_artifact`, under the writer lock."""
    fp = fingerprint(
        {
            "kind": kind,
            "schema": SCHEMAS[kind],
            "config": config,
            "inputs": [m.fingerprint for m in inputs],
        }
    )
    old = None if force else _existing(final, kind, fp)
    if old is not None:
        (log or (lambda _msg: None))(f"{final}: up to date, reusing it (--force rebuilds)")
        yield Build(dir=final, final=final, reused=True, extra=dict(old.extra), manifest=old)
        return
    work = _partial_dir(final, resumable)
    if (fresh or not resumable) and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    build = Build(dir=work, final=final)
    try:
        yield build
        manifest = {
            "kind": kind,
            "schema": SCHEMAS[kind],
            "toolkit_version": __version__,
            "config": config,
            "inputs": [m.ref() for m in inputs],
            "fingerprint": fp,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "extra": build.extra,
        }
        write_json(work / MANIFEST, manifest)
        _replace_dir(work, final)
    except BaseException:
        if not resumable:
            shutil.rmtree(work, ignore_errors=True)
        raise
    build.dir = final
    build.manifest = read_manifest(final, kind)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing ``dst`` with as short a gap as possible."""
    trash = None
    if dst.exists():
        trash = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dst, trash)
    os.replace(src, dst)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write strict JSON atomically (temporary file, then rename); NaN and inf become null."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    text = json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False)
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def _finite(o: Any) -> Any:
    """``o`` with every non-finite float (also in numpy scalars) replaced by None."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, float) or _is_numpy_float(o):
        return float(o) if math.isfinite(o) else None
    return o


def _is_numpy_float(o: Any) -> bool:
    import numpy as np

    return isinstance(o, np.floating)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
