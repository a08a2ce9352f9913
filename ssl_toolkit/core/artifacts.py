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
leaves a directory that looks complete. With the same config, inputs and
contents of the files it reads (``reads=``, see :func:`content_fingerprint`) an
existing output is reused; ``force=True`` rebuilds it. ``force`` replaces only an
artifact of the same kind (or the toolkit's own leftovers): never another kind of
artifact, nor a directory or file that is not an artifact of this toolkit.
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
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from . import readers
from .errors import (
    ArtifactError,  # re-exported: artifacts.ArtifactError
    DataError,
    describe_os_error,
)

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
    reads: dict[str, Any] = field(default_factory=dict)

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
    root_p = resolved(root)
    p = resolved(root_p / relative)
    if p != root_p and root_p not in p.parents:
        raise ArtifactError(f"{relative!r} points outside {root_p}; refusing to read it")
    return p


def resolved(path: str | os.PathLike) -> Path:
    """``Path(path).resolve()``, with a symbolic link loop raised as the OSError (ELOOP)
    naming the path that it is, not Python 3.11's RuntimeError."""
    try:
        return Path(path).resolve()
    except RuntimeError as e:
        if not str(e).startswith("Symlink loop"):
            raise
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path)) from None


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-serializable object."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _output_fingerprint(
    kind: str, schema: Any, config: Any, inputs: list[Any], reads: str | None
) -> str:
    """The fingerprint of an artifact: its kind, schema, config, its inputs' fingerprints and,
    when it reads files (``reads=``), their :func:`content_fingerprint`."""
    obj = {"kind": kind, "schema": schema, "config": config, "inputs": inputs}
    if reads is not None:
        obj["reads"] = reads
    return fingerprint(obj)


#: Bytes hashed at the start, the middle and the end of each file a stage reads.
SAMPLE_BYTES = 64 * 1024
#: How :func:`content_fingerprint` sees a file (recorded in manifests, stated in the README).
CONTENT_RULE = "size, mtime_ns and sha256 of the first, middle and last 64 KiB of each file"
#: Per-file digests of the files an artifact was built from (for the refusal naming one).
READS_FILE = "reads.json"


@dataclass(frozen=True)
class Contents:
    """What :func:`content_fingerprint` saw: one fingerprint, and a digest per file."""

    fingerprint: str
    files: list[tuple[str, str]]
    bytes: int

    def summary(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "files": len(self.files),
                "bytes": self.bytes, "rule": CONTENT_RULE}  # fmt: skip


def content_fingerprint(paths) -> Contents:
    """Fingerprint the files a stage reads, so that a changed input is never reused silently.

    Each file counts by its size, its modification time (ns) and a sha256 of its first,
    middle and last :data:`SAMPLE_BYTES` (the whole file when smaller): a rewritten file of
    the same size changes its time, and ``touch`` alone is taken as a change too (safe side).
    The fingerprint depends on the files' order and contents, not on their paths (an
    artifact moved with ``mv`` keeps its fingerprint).

    Raises:
        DataError: one line naming a file that cannot be read.
    """
    digests, total, h = [], 0, hashlib.sha256()
    for p in paths:
        d, size = _file_digest(Path(p))
        digests.append((str(p), d))
        total += size
        h.update(d.encode())
    return Contents(h.hexdigest()[:16], digests, total)


def _file_digest(path: Path) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            h = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:".encode())
            n = SAMPLE_BYTES
            if st.st_size <= 3 * n:
                h.update(f.read())
            else:
                for at in (0, (st.st_size - n) // 2, st.st_size - n):
                    h.update(os.pread(f.fileno(), n, at))
    except OSError as e:
        raise DataError(f"cannot read {path}: {describe_os_error(e)}") from e
    return h.hexdigest()[:16], st.st_size


def scene_files(scenes: Manifest, clips: Any, audio_root: Path, clip_ids=None) -> list[Path]:
    """The audio and label files of (some of) the clips of a scenes artifact: what a stage
    that reads them passes as ``build_artifact(reads=...)``.

    Args:
        scenes, clips, audio_root: the artifact and what :func:`read_clips` returned.
        clip_ids: the clips read (None: all), in any order.
    """
    rows = clips if clip_ids is None else clips[clips["clip_id"].isin(set(clip_ids))]
    audio = [safe_join(audio_root, a) for a in rows["audio"]]
    return audio + [safe_join(scenes.path, lab) for lab in rows["labels"]]


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
        why = _why_absent(mpath)
        if why == "no such file or directory":  # a misspelled path, most often
            raise ArtifactError(
                f"{p} does not exist ({_a('/'.join(kinds))} artifact is expected there): "
                f"check the path, or run `{maker}` first"
            )
        what = _a("/".join(kinds))
        raise ArtifactError(f"{p} is not {what} artifact ({why}): run `{maker}` first")
    raw = readers.read_json_object(mpath, f"{maker} --force")
    got = raw.get("kind")
    if got not in kinds:
        raise ArtifactError(
            f"{p} is {_a(repr(got))} artifact, expected {'/'.join(kinds)}: run `{maker}` first"
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
        path=resolved(p),
        kind=got,
        schema=schema,
        fingerprint=raw.get("fingerprint", ""),
        config=raw.get("config", {}),
        inputs=raw.get("inputs", []),
        extra=extra,
        toolkit_version=raw.get("toolkit_version", ""),
        created=raw.get("created", ""),
        reads=raw.get("reads", {}),
    )
    if got == "scenes":
        _check_audio_root(man, mpath, rebuild)
        _check_clip_header(man.path / "clips.csv", rebuild)
    return man


def _a(word: str) -> str:
    """``word`` with its indefinite article: ``an eval``, ``a features``."""
    return f"{'an' if word.lstrip(chr(39)).startswith(tuple('aeiou')) else 'a'} {word}"


def _why_absent(mpath: Path) -> str:
    """Why there is no manifest file at ``mpath``, in a few words."""
    try:
        os.stat(mpath)
    except OSError as e:
        if e.errno != errno.ENOENT:
            return describe_os_error(e)
        parent = mpath.parent
        if not os.path.lexists(parent):
            return "no such file or directory"
        return f"no {MANIFEST}"
    return f"{MANIFEST} is not a file"


_INPUT_REF = readers.mapping
_MANIFEST_FIELDS: dict[str, readers.Check] = {
    "fingerprint": readers.text(),
    "config": readers.mapping,
    "inputs": readers.sequence(_INPUT_REF),
    "extra": readers.mapping,
    "toolkit_version": readers.text(),
    "created": readers.text(),
    "reads": readers.mapping,
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
    want = _output_fingerprint(man.kind, man.schema, man.config, ins,
                               man.reads.get("fingerprint") if man.reads else None)  # fmt: skip
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
    out = resolved(final)
    for p in [m.path for m in inputs] + [Path(x) for x in protect]:
        src = resolved(p)
        if _overlaps(out, src):
            raise ArtifactError(
                f"output {final} overlaps the input {p}: a stage never writes over, into or "
                "around its inputs (even with --force); choose another output path"
            )


#: Longest name (bytes) a file system takes, where ``pathconf`` does not say.
NAME_MAX = 255
#: Room kept after ``.<name>`` for the suffixes of the sibling names (``.tmp-<pid>-<hex>``).
_SUFFIX_ROOM = 32


def _name_max(directory: Path) -> int:
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def _check_output_path(final: Path) -> None:
    """Refuse, in one line, an output path that cannot be a directory: a name longer than
    the file system allows, a component that is a file, a symbolic link loop or a broken
    symbolic link, or an existing file."""
    anc = final.parent
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    limit = _name_max(anc) if anc.is_dir() else NAME_MAX
    for part in final.parts:
        if len(os.fsencode(part)) > limit:
            raise ArtifactError(
                f"{final}: the name {part[:40]}... is {len(os.fsencode(part))} bytes long, "
                f"more than the file system allows ({limit}); choose a shorter output name"
            )
    try:
        resolved(final)
        for p in [*reversed(final.parents), final]:
            if os.path.lexists(p) and not p.is_dir():
                what = "a broken symbolic link" if p.is_symlink() and not p.exists() else (
                    "an existing file, not a directory")  # fmt: skip
                raise ArtifactError(f"{p} is {what}; choose another output path")
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(final) else ""
        raise ArtifactError(
            f"{final}: {describe_os_error(e)}{where}; choose another output path"
        ) from None


def sibling(final: Path, suffix: str) -> Path:
    """``.<name>.<suffix>`` beside ``final``: the toolkit's own files of that output (lock,
    temporary, replaced and resumable directories). A name too long for that is shortened
    to its first bytes and a hash of the whole, so the sibling names stay within the file
    system's limit for any output name it accepts."""
    return final.parent / f"{sibling_stem(final)}.{suffix}"


def sibling_stem(final: Path) -> str:
    raw = os.fsencode(final.name)
    if len(raw) + 1 + _SUFFIX_ROOM <= NAME_MAX:
        return f".{final.name}"
    short = raw[:150].decode("utf-8", errors="ignore")
    return f".{short}~{hashlib.sha256(raw).hexdigest()[:16]}"


def _leftovers(final: Path) -> list[Path]:
    """Temporary and replaced directories of earlier writers of ``final`` (by exact name)."""
    pat = re.compile(re.escape(sibling_stem(final)) + r"\.(tmp-\d+-|old-)[0-9a-f]{8}")
    try:
        with os.scandir(final.parent) as it:
            return [final.parent / e.name for e in it if pat.fullmatch(e.name)]
    except OSError:
        return []


def _remove_leftover(p: Path) -> None:
    """Remove one of the toolkit's own siblings (a directory, or a file or link there)."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


@contextlib.contextmanager
def _writer_lock(final: Path) -> Iterator[None]:
    """One writer per artifact: an advisory lock on ``.<name>.lock`` beside it.

    The lock dies with its process, so a killed writer never blocks the next one. While
    holding it, leftovers of earlier writers of the same output (temporary and replaced
    directories) are removed.

    Raises:
        ArtifactError: naming the PID of the process that holds the lock.
    """
    lock = sibling(final, "lock")
    fd = _lock_file(lock, final)
    try:
        for old in _leftovers(final):
            _remove_leftover(old)
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
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
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
    return sibling(Path(final), "partial")


def _partial_dir(final: Path, resumable: bool) -> Path:
    if resumable:
        return resumable_dir(final)
    return sibling(final, f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


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
    reads=None,
    log: Callable[[str], None] | None = None,
) -> Iterator[Build]:
    """Build a stage output atomically, or reuse an up-to-date one.

    Usage::

        with build_artifact(out, "features", cfg, [scenes], reads=audio_files) as b:
            if not b.reused:
                write_files_into(b.dir)

    The manifest is written last and the directory renamed into place only
    when the block finishes without error. On error the partial directory is
    deleted, unless ``resumable`` (then it is kept as ``.<name>.partial`` for
    a later run to continue from; ``fresh`` discards such a state first).

    Guarantees: an output that is, contains or lies inside an input (or a path of
    ``protect``, e.g. a dataset being imported) is refused even with ``force``; one
    process at a time builds a given output (advisory lock, see :func:`_writer_lock`);
    ``force`` replaces the old output only once the new one is complete, and only when it
    is an artifact of the same ``kind`` (or an empty directory): another kind of artifact,
    a directory that is no artifact and a file are never replaced nor written into; a full
    disk, a read-only location or an impossible path ends in one line and leaves nothing
    half-written.

    Args:
        reads: the files the stage reads besides its input artifacts' manifests (audio,
            labels, a dataset): their :func:`content_fingerprint` is part of the output's
            fingerprint and recorded in its manifest (``reads``, per file in
            ``reads.json``), so an output built from files that changed since is not
            reused: it is refused, naming a changed file, until ``force`` rebuilds it.

    Raises:
        ArtifactError: when ``out`` holds something else (another config or inputs without
            ``force``; another kind or files without a manifest, even with ``force``),
            overlaps an input, is being written by another process, or cannot be written.
        DataError: a file of ``reads`` cannot be read.
    """
    final = Path(out)
    inputs = list(inputs)
    _check_output_path(final)
    _check_inputs_untouched(final, inputs, protect)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        lock = _writer_lock(final)
        lock.__enter__()
    except OSError as e:
        raise (_env_error(e, final) or e) from e
    try:
        yield from _build(final, kind, config, inputs, force, resumable, fresh, reads, log)
    except OSError as e:
        err = _env_error(e, final)
        if err is None:
            raise
        raise err from e
    finally:
        lock.__exit__(None, None, None)


def peek_kind(final: Path) -> str | None:
    """The kind ``final/manifest.json`` claims, if it is a manifest of this toolkit (a JSON
    object whose ``kind`` is one of :data:`SCHEMAS`); None for anything else."""
    try:
        raw = json.loads((final / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = raw.get("kind") if isinstance(raw, dict) else None
    return kind if isinstance(kind, str) and kind in SCHEMAS else None


def _check_replaceable(final: Path, kind: str) -> bool:
    """Whether ``final`` holds an artifact of ``kind`` (True) or nothing (False: absent or
    an empty directory); refuses anything else, whatever ``--force`` says.

    Decided: a directory whose ``manifest.json`` names this kind is this toolkit's artifact
    of this kind, even when the rest of its manifest is damaged or of another schema (the
    refusals of those say "rebuild it with ... --force"); a ``manifest.json`` that is not
    such a JSON object (unreadable, no known kind: a web app's manifest) makes a directory
    foreign.

    Raises:
        ArtifactError: a file, a non-empty directory that is no artifact of this toolkit,
            or an artifact of another kind.
    """
    if not os.path.lexists(final):
        return False
    if not final.is_dir():
        raise ArtifactError(f"{final} is an existing file, not a directory; choose another path")
    with os.scandir(final) as it:
        names = sorted(e.name for e in it)
    if not names:
        return False
    got = peek_kind(final)
    if got is None:
        shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        entries = "1 entry" if len(names) == 1 else f"{len(names)} entries"
        raise ArtifactError(
            f"{final} exists and is not an artifact of this toolkit (it holds {entries}: "
            f"{shown}, and no {MANIFEST} of an ssl stage); the toolkit never writes into "
            "nor replaces it: choose another output path"
        )
    if got != kind:
        raise ArtifactError(
            f"{final} holds {_a(got)} artifact (made by `{MAKERS.get(got, got)}`), not "
            f"{_a(kind)} artifact: it is never replaced by another kind, even with --force; "
            "choose another output path"
        )
    return True


def _existing(final: Path, kind: str, fp: str, config, input_fps, contents) -> Manifest | None:
    """The artifact already at ``final`` if it is this one (same fingerprint), None if
    nothing is there.

    Raises:
        ArtifactError: ``final`` holds another artifact of this kind (built otherwise, or
            damaged: ``--force`` replaces it), or anything :func:`_check_replaceable` refuses.
    """
    if not _check_replaceable(final, kind):
        return None
    try:
        old = read_manifest(final, kind)
    except ArtifactError as e:
        raise ArtifactError(
            f"{final} holds {_a(kind)} artifact this toolkit cannot reuse ({e}); pass --force "
            "to replace it, or choose another output path"
        ) from e
    if old.fingerprint == fp:
        return old
    if (
        contents is not None
        and old.config == json.loads(json.dumps(config, default=str))
        and [i.get("fingerprint") for i in old.inputs] == list(input_fps)
    ):
        if not old.reads:
            raise ArtifactError(
                f"{final} was built by an earlier version of the toolkit, which did not "
                "fingerprint the files it reads; pass --force to rebuild it once"
            )
        raise ArtifactError(
            f"{final} was built from other contents of the files it reads"
            f"{_changed_file(final, contents)}; pass --force to rebuild it from the files "
            "as they are now, or choose another output path"
        )
    raise ArtifactError(
        f"{final} was built with another config or inputs; "
        "pass --force to replace it or choose another output path"
    )


def _changed_file(final: Path, contents: Contents) -> str:
    """``: PATH changed since`` for the first file whose digest differs from ``reads.json``."""
    try:
        old = dict(map(tuple, json.loads((final / READS_FILE).read_text())["files"]))
    except (OSError, ValueError, TypeError, KeyError):
        return ""
    for path, digest in contents.files:
        if old.get(path) != digest:
            return f" ({path} is new or has changed since: its size, time or content)"
    return " (the files it reads are others, or in another order)"


def _build(final, kind, config, inputs, force, resumable, fresh, reads, log) -> Iterator[Build]:
    """The body of :func:`build_artifact`, under the writer lock."""
    contents = None if reads is None else content_fingerprint(reads)
    input_fps = [m.fingerprint for m in inputs]
    fp = _output_fingerprint(kind, SCHEMAS[kind], config, input_fps,
                             None if contents is None else contents.fingerprint)  # fmt: skip
    if force:
        _check_replaceable(final, kind)  # force replaces an artifact of this kind only
        old = None
    else:
        old = _existing(final, kind, fp, config, input_fps, contents)
    if old is not None:
        (log or (lambda _msg: None))(f"{final}: up to date, reusing it (--force rebuilds)")
        yield Build(dir=final, final=final, reused=True, extra=dict(old.extra), manifest=old)
        return
    work = _partial_dir(final, resumable)
    if (fresh or not resumable) and os.path.lexists(work):
        _remove_leftover(work)
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
        if contents is not None:
            manifest["reads"] = contents.summary()
            write_json(work / READS_FILE, {"rule": CONTENT_RULE, "files": contents.files})
        write_json(work / MANIFEST, manifest)
        _check_replaceable(final, kind)  # again: files may have appeared there meanwhile
        _replace_dir(work, final)
    except BaseException:
        if not resumable:
            shutil.rmtree(work, ignore_errors=True)
        raise
    build.dir = final
    build.manifest = read_manifest(final, kind)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing ``dst`` (nothing, an empty directory or an artifact
    of the same kind, checked by the caller) with as short a gap as possible."""
    trash = None
    if os.path.lexists(dst):
        trash = sibling(dst, f"old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, trash)
    os.replace(src, dst)
    if trash is not None:
        _remove_leftover(trash)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write strict JSON atomically (temporary file, then rename); NaN and inf become null."""
    path = Path(path)
    tmp = sibling(path, f"tmp-{uuid.uuid4().hex[:8]}")
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
