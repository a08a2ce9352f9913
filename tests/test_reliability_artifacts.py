"""Issue 20, outputs and inputs of every stage: ``--force`` never deletes what is not an
artifact of the stage's kind; impossible paths (names too long, a file as a directory, a
symbolic link loop) end in one line; a stage never reuses an output built from files that
changed since (the audio and labels it reads, the dataset an import reads)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_bad_inputs import SYNTH, build_base, runner, snapshot
from typer.testing import Result

from ssl_toolkit.cli import app
from ssl_toolkit.core.artifacts import (
    ArtifactError,
    build_artifact,
    content_fingerprint,
    read_manifest,
    resumable_dir,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_base(tmp_path_factory.mktemp("base"))


def invoke(*args) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(res: Result) -> str:
    """The single ``error: ...`` line of a failed command (no traceback)."""
    assert res.exit_code == 1, f"exit {res.exit_code}:\n{res.output}"
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def ok(res: Result) -> str:
    assert res.exit_code == 0, res.output
    return res.output


def copy_needs(base: Path, ws: Path, needs: str) -> None:
    for name in needs.split():
        src = base / name
        if src.is_dir():
            shutil.copytree(src, ws / name, symlinks=True)
        else:
            shutil.copy(src, ws / name)


#: Every stage that writes an artifact: (what it needs, its command with {out}, its kind).
STAGES = {
    "synth": ("", "prep synth {out} " + " ".join(SYNTH), "scenes"),
    "import": ("dataset", "prep import {ws}/dataset {out} --val-fraction 0.5", "scenes"),
    "features": ("scenes", "prep features {ws}/scenes {out}", "features"),
    "train": ("feats tiny.toml", "train {ws}/feats {out} --epochs 1 --max-steps 1 "
              "--batch-size 2 -K 2 --device cpu --config {ws}/tiny.toml", "run"),
    "eval": ("run feats", "eval {ws}/run {out} --data {ws}/feats", "eval"),
    "baseline": ("mic feats", "baseline {ws}/mic {out} --data {ws}/feats", "eval"),
    "export": ("run", "export {ws}/run {out}", "export"),
    "report": ("ev bl", "report {ws}/ev {ws}/bl --out {out}", "report"),
}  # fmt: skip
#: An artifact of another kind than each stage writes (copied from the base).
OTHER_KIND = {"scenes": "feats", "features": "scenes", "run": "ev", "eval": "run",
              "export": "run", "report": "ev"}  # fmt: skip


def stage_args(stage: str, ws: Path, out: Path) -> list[str]:
    return STAGES[stage][1].format(ws=ws, out=out).split()


# ----------------------------------------------------------------------------- --force


@pytest.mark.parametrize("stage", list(STAGES))
def test_force_never_replaces_a_foreign_directory_nor_another_kind(stage, base, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    needs, _, kind = STAGES[stage]
    copy_needs(base, ws, needs)
    thesis = ws / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("three years of work")
    (thesis / "chapters" / "one.tex").write_text("chapter one")
    other = ws / "other"
    shutil.copytree(base / OTHER_KIND[kind], other)
    before = snapshot(ws)
    for force in ([], ["--force"]):
        line = one_error_line(invoke(*stage_args(stage, ws, thesis), *force))
        assert str(thesis) in line and "not an artifact of this toolkit" in line, line
        assert "--force" not in line and "choose another output path" in line, line
        line = one_error_line(invoke(*stage_args(stage, ws, other), *force))
        assert str(other) in line and "artifact" in line and "choose another" in line, line
        assert snapshot(ws) == before, "the user's files changed"


def test_demo_force_keeps_a_users_folder_in_its_workdir(tmp_path):
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "field-recording.wav").write_bytes(b"RIFF mine")
    before = snapshot(tmp_path)
    res = invoke("demo", tmp_path, "--force")
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    line = res.output.strip().splitlines()[-1]  # after the demo's stage banner
    assert line.startswith("error: ") and "not an artifact of this toolkit" in line, line
    assert "--force" not in line, line
    assert snapshot(tmp_path) == before


def test_force_replaces_an_artifact_of_its_kind_and_an_empty_directory_is_usable(base, tmp_path):
    ws = tmp_path
    copy_needs(base, ws, "scenes")
    out = ws / "feats"
    out.mkdir()  # empty: usable
    ok(invoke("prep", "features", ws / "scenes", out))
    assert read_manifest(out, "features").config["type"] == "stft"
    line = one_error_line(invoke("prep", "features", ws / "scenes", out, "--type", "logmel"))
    assert "another config" in line and "--force" in line  # its own kind: --force offered
    ok(invoke("prep", "features", ws / "scenes", out, "--type", "logmel", "--force"))
    assert read_manifest(out, "features").config["type"] == "logmel"
    assert sorted(p.name for p in ws.iterdir()) == ["feats", "scenes"]  # no leftovers


def _features_like(path: Path, manifest) -> None:
    path.mkdir()
    (path / "features.npy").write_bytes(b"\0" * 10)
    (path / "manifest.json").write_text(manifest if isinstance(manifest, str) else
                                        json.dumps(manifest))  # fmt: skip


def test_damaged_manifests_decided(tmp_path):
    """A manifest naming the stage's kind (damaged or of another schema) is the toolkit's:
    ``--force`` replaces it. One that is not a toolkit manifest (a web app's, invalid JSON,
    an unknown kind) makes the directory foreign: never replaced."""
    ours = tmp_path / "ours"
    _features_like(ours, {"kind": "features", "schema": 99})
    with pytest.raises(ArtifactError, match="cannot reuse.*--force"):
        with build_artifact(ours, "features", {"a": 1}):
            pass
    with build_artifact(ours, "features", {"a": 1}, force=True) as b:
        (b.dir / "new.txt").write_text("x")
    assert sorted(p.name for p in ours.iterdir()) == ["manifest.json", "new.txt"]
    for i, foreign in enumerate(
        ['{"name": "My App", "start_url": "/"}', "{not json", '{"kind": "thesis"}', "[1]"]
    ):
        d = tmp_path / f"foreign{i}"
        _features_like(d, foreign)
        before = snapshot(d)
        for force in (False, True):
            with pytest.raises(ArtifactError, match="not an artifact of this toolkit") as e:
                with build_artifact(d, "features", {"a": 1}, force=force):
                    pass
            assert "--force" not in str(e.value)
        assert snapshot(d) == before


def test_files_appearing_in_an_empty_output_during_the_build_are_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArtifactError, match="not an artifact"):
        with build_artifact(out, "features", {"a": 1}, force=True) as b:
            (b.dir / "x").write_text("built")
            (out / "notes.txt").write_text("written meanwhile")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_only_the_toolkits_own_leftovers_are_removed(tmp_path):
    out = tmp_path / "feat"
    dead = tmp_path / ".feat.tmp-4242-deadbeef"  # a killed writer's
    dead.mkdir()
    old = tmp_path / ".feat.old-0123abcd"  # an interrupted replacement's
    old.mkdir()
    mine = [tmp_path / ".feat.tmp-notes", tmp_path / ".feat.tmp-1-deadbeef.bak",
            tmp_path / ".featx.tmp-1-deadbeef", tmp_path / "feat.tmp-1-deadbeef"]  # fmt: skip
    for p in mine:
        p.write_text("user's")
    with build_artifact(out, "features", {"a": 1}):
        pass
    assert not dead.exists() and not old.exists()
    assert all(p.read_text() == "user's" for p in mine)


def test_resume_state_of_train_is_the_toolkits_own(tmp_path):
    """``--force``/a fresh run discards ``.RUN.partial`` (the toolkit's own resumable state),
    even when it is a file or a link, never what the link points to."""
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    partial = resumable_dir(tmp_path / "run")
    partial.symlink_to(target)
    with build_artifact(tmp_path / "run", "run", {"e": 1}, resumable=True, fresh=True) as b:
        (b.dir / "w").write_text("1")
    assert (target / "keep.txt").read_text() == "keep"
    assert (tmp_path / "run" / "w").is_file() and not os.path.lexists(partial)


# ----------------------------------------------------------------------------- paths


def test_long_output_names_work_and_longer_ones_are_one_line(base, tmp_path):
    copy_needs(base, tmp_path, "scenes")
    long = tmp_path / ("f" * 250)
    ok(invoke("prep", "features", tmp_path / "scenes", long))
    assert "up to date" in ok(invoke("prep", "features", tmp_path / "scenes", long))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["scenes", long.name])
    ok(invoke("prep", "features", tmp_path / "scenes", long, "--type", "logmel", "--force"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["scenes", long.name])
    # multi-byte names: 120 characters, 240 bytes
    ok(invoke("prep", "features", tmp_path / "scenes", tmp_path / ("é" * 120)))
    too_long = tmp_path / ("g" * 256)
    line = one_error_line(invoke("prep", "features", tmp_path / "scenes", too_long))
    assert "256 bytes" in line and "choose a shorter" in line


@pytest.mark.parametrize("stage", ["synth", "features", "train", "eval", "report"])
def test_impossible_output_paths_are_one_line(stage, base, tmp_path):
    ws = tmp_path
    copy_needs(base, ws, STAGES[stage][0])
    (ws / "afile").write_text("mine")
    (ws / "loop").symlink_to(ws / "loop")
    (ws / "dangling").symlink_to(ws / "nowhere")
    before = snapshot(ws)
    for out, says in [
        (ws / "afile" / "out", "afile is an existing file, not a directory"),
        (ws / "afile" / "deeper" / "out", "afile is an existing file, not a directory"),
        (ws / "afile", "afile is an existing file"),
        (ws / "loop" / "out", "symbolic link loop"),
        (ws / "loop", "symbolic link loop"),
        (ws / "dangling", "broken symbolic link"),
        (ws / ("h" * 300) / "out", "300 bytes"),
    ]:
        line = one_error_line(invoke(*stage_args(stage, ws, out)))
        assert says in line, line
    assert snapshot(ws) == before


@pytest.mark.parametrize(
    "args",
    [
        "prep features {bad} {ws}/out",
        "prep import {bad} {ws}/out",
        "train {bad} {ws}/out --epochs 1",
        "eval {bad} {ws}/out --data {bad}",
        "baseline {bad} {ws}/out --data {bad}",
        "export {bad} {ws}/out",
        "report {bad} --out {ws}/out",
        "predict {bad} {bad} --out {ws}/out",
        "prep synth {ws}/out --config {bad}",
    ],
)
def test_impossible_input_paths_are_one_line(args, tmp_path):
    ws = tmp_path
    (ws / "afile").write_text("mine")
    (ws / "loop").symlink_to(ws / "loop")
    before = snapshot(ws)
    for bad in [ws / "afile" / "x", ws / "loop" / "x", ws / "loop", ws / ("i" * 300),
                ws / "nowhere" / "x"]:  # fmt: skip
        line = one_error_line(invoke(*args.format(ws=ws, bad=bad).split()))
        assert str(bad)[:40] in line, line
    assert snapshot(ws) == before


def test_an_os_error_naming_no_file_is_still_a_bug():
    """The shared handler words OS errors about a path; any other keeps its traceback."""
    from ssl_toolkit.cli._common import user_errors

    @user_errors
    def about_a_path():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/a.wav/x")

    @user_errors
    def a_bug():
        raise OSError(errno.EBADF, "Bad file descriptor")

    import typer

    with pytest.raises(typer.Exit):
        about_a_path()
    with pytest.raises(OSError, match="Bad file descriptor"):
        a_bug()
    with pytest.raises(KeyError):
        user_errors(lambda: {}["x"])()


# ----------------------------------------------------------------------------- stale inputs


def rewrite_same_size(wav: Path, keep_mtime: bool = False) -> None:
    """Rewrite ``wav`` in place with other samples: same size, same header."""
    st = wav.stat()
    x, fs = sf.read(wav, always_2d=True)
    info = sf.info(wav)
    sf.write(wav, np.roll(x, 1234, axis=0) * 0.5, fs, subtype=info.subtype)
    assert wav.stat().st_size == st.st_size
    if keep_mtime:
        os.utime(wav, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_edited_audio_of_an_imported_dataset_is_never_reused_silently(base, tmp_path):
    ws = tmp_path
    copy_needs(base, ws, "dataset")
    imp = ["prep", "import", ws / "dataset", ws / "scenes", "--val-fraction", "0.5"]
    ok(invoke(*imp))  # the audio is referenced in place
    ok(invoke("prep", "features", ws / "scenes", ws / "feats"))
    assert "up to date" in ok(invoke("prep", "features", ws / "scenes", ws / "feats"))
    first = (ws / "feats" / "features.npy").read_bytes()
    wav = [w for w in sorted((ws / "dataset").rglob("*.wav")) if sf.read(w)[0].any()][0]
    rewrite_same_size(wav)
    kept = snapshot(ws / "feats")
    line = one_error_line(invoke("prep", "features", ws / "scenes", ws / "feats"))
    assert wav.name in line and "changed" in line and "--force" in line, line
    assert snapshot(ws / "feats") == kept
    line = one_error_line(invoke(*imp))
    assert wav.name in line and "changed" in line, line  # the import read it too
    ok(invoke("prep", "features", ws / "scenes", ws / "feats", "--force"))
    assert read_manifest(ws / "feats", "features").reads["files"] > 0
    assert (ws / "feats" / "features.npy").read_bytes() != first  # rebuilt from the new audio
    assert "up to date" in ok(invoke("prep", "features", ws / "scenes", ws / "feats"))
    # a label file of the dataset edited: the import is not reused either
    csv = sorted((ws / "dataset").rglob("desc_*/*.csv"))[0]
    st = csv.stat()
    csv.write_text(csv.read_text())  # rewritten (same content): a change, on the safe side
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    line = one_error_line(invoke(*imp))
    assert csv.name in line, line
    ok(invoke(*imp, "--force"))


def test_edited_audio_or_labels_of_synthesized_scenes_are_never_reused_silently(base, tmp_path):
    ws = tmp_path
    copy_needs(base, ws, "scenes")
    ok(invoke("prep", "features", ws / "scenes", ws / "feats"))
    wav = sorted((ws / "scenes" / "wav").glob("*.wav"))[1]
    rewrite_same_size(wav, keep_mtime=True)  # same size and time: the content sample tells
    line = one_error_line(invoke("prep", "features", ws / "scenes", ws / "feats"))
    assert wav.name in line and "changed" in line, line
    ok(invoke("prep", "features", ws / "scenes", ws / "feats", "--force"))
    lab = sorted((ws / "scenes" / "labels").glob("*.csv"))[0]
    st = lab.stat()
    lab.write_text(lab.read_text())  # same content, new time: taken as a change (safe side)
    os.utime(lab, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    line = one_error_line(invoke("prep", "features", ws / "scenes", ws / "feats"))
    assert lab.name in line, line


def test_edited_audio_of_a_baseline_is_never_reused_silently(base, tmp_path):
    ws = tmp_path
    copy_needs(base, ws, "mic feats bl")  # copied with their times: still up to date
    kept = snapshot(ws / "bl")
    ok(invoke("baseline", ws / "mic", ws / "bl", "--data", ws / "feats"))  # reused
    assert snapshot(ws / "bl") == kept
    for wav in sorted((ws / "mic" / "wav").glob("*.wav")):
        rewrite_same_size(wav)
    line = one_error_line(invoke("baseline", ws / "mic", ws / "bl", "--data", ws / "feats"))
    assert ".wav" in line and "changed" in line, line


def test_content_fingerprint(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    data = bytearray(os.urandom(1_000_000))
    a.write_bytes(data)
    fp = content_fingerprint([a]).fingerprint
    st = a.stat()
    data[0] ^= 1  # head
    a.write_bytes(data)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content_fingerprint([a]).fingerprint != fp
    data[0] ^= 1
    a.write_bytes(data)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content_fingerprint([a]).fingerprint == fp  # a fingerprint of contents and time
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert content_fingerprint([a]).fingerprint != fp  # rewritten: a new time
    shutil.copy2(a, b)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert content_fingerprint([b]).fingerprint == fp  # not the path
    with pytest.raises(Exception, match="nope.wav: no such file"):
        content_fingerprint([tmp_path / "nope.wav"])


def test_an_output_of_an_earlier_version_is_rebuilt_once_with_force(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF" + bytes(100))
    out = tmp_path / "feat"
    with build_artifact(out, "features", {"a": 1}):  # no reads: as before this rule
        pass
    with pytest.raises(ArtifactError, match="earlier version.*--force"):
        with build_artifact(out, "features", {"a": 1}, reads=[wav]):
            pass
    with build_artifact(out, "features", {"a": 1}, reads=[wav], force=True):
        pass
    with build_artifact(out, "features", {"a": 1}, reads=[wav]) as b:
        assert b.reused
