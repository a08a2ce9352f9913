"""Resources and signals through the CLI: the disk, worker processes, SIGTERM and Ctrl-C.

- Every stage that writes large outputs (``ssl prep synth``, ``ssl prep features``,
  ``ssl prep import --copy``) estimates its output's size and refuses with one line when it
  exceeds the free space of the output's file system; the estimate is honest (checked
  against ``du``) and an up-to-date output is still reused on a full disk.
- ``--jobs`` is capped at the work items and the cores this process may use, with a note.
- SIGTERM (a scheduler, ``kill``), Ctrl-C (SIGINT to the process group) and ``kill -9`` of
  the parent alone stop every worker within seconds and leave no output or temporary
  sibling behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_inputs import FS, SYNTH, snapshot
from typer.testing import CliRunner

from ssl_toolkit.cli import app
from ssl_toolkit.core import memory
from ssl_toolkit.core.cpu import available_cores

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output, res.output
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def du(path: Path) -> int:
    return int(subprocess.check_output(["du", "-s", "--block-size=1", str(path)]).split()[0])


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Tiny scenes (TUT2018 layout too, as a dataset to import) and their features."""
    w = tmp_path_factory.mktemp("resources")
    for args in (
        ("prep", "synth", w / "scenes", *SYNTH, "--seed", 1),
        ("prep", "synth", w / "tut", *SYNTH, "--seed", 2, "--layout", "tut2018"),
        ("prep", "features", w / "scenes", w / "feats"),
    ):
        res = run(*args)
        assert res.exit_code == 0, res.output
    (w / "dataset").mkdir()
    for d in (w / "tut").iterdir():
        if d.name.startswith(("wav_", "desc_")):
            shutil.copytree(d, w / "dataset" / d.name)
    return w


@pytest.fixture
def disk_free(monkeypatch):
    """Pretend the output's file system has ``free[0]`` bytes free."""
    free = [0]
    monkeypatch.setattr(memory, "free_disk_bytes", lambda path: (free[0], Path(path)))
    return free


# ----------------------------------------------------------------------------- disk


def test_synth_far_larger_than_the_disk_is_refused_before_writing(tmp_path):
    out = tmp_path / "huge"
    line = one_error_line(run("prep", "synth", out, "--n-clips", 1_000_000))
    assert "ssl prep synth would write ~" in line and "TB to" in line, line
    assert str(out) in line and "free there" in line and "--n-clips" in line, line
    assert list(tmp_path.iterdir()) == [], "something was left at the output"


@pytest.mark.parametrize(
    "stage",
    ["synth", "features", "import --copy", "import --copy --layout dcase"],
)
def test_each_large_writer_checks_the_free_disk(ws, tmp_path, disk_free, stage):
    before = snapshot(ws)
    out = tmp_path / "out"
    if stage == "synth":
        args = ("prep", "synth", out, *SYNTH)
    elif stage == "features":
        args = ("prep", "features", ws / "scenes", out)
    elif stage == "import --copy":
        args = ("prep", "import", ws / "dataset", out, "--copy", "--val-fraction", 0.5)
    else:
        from ssl_toolkit.testing import write_dcase_dataset

        write_dcase_dataset(tmp_path / "dcase", family="starss", fs=FS, clip_seconds=1.0)
        args = ("prep", "import", tmp_path / "dcase", out, "--layout", "dcase", "--copy")
    disk_free[0] = 1000
    line = one_error_line(run(*args))
    cmd = "ssl prep " + stage.split(" --layout")[0]
    assert line.startswith(f"error: {cmd} would write ~"), line
    assert "1.00 kB free there" in line and "choose another disk" in line, line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert snapshot(ws) == before, "an input changed"
    disk_free[0] = 1 << 40  # with room enough the same command succeeds
    res = run(*args)
    assert res.exit_code == 0, res.output


def test_an_up_to_date_output_is_reused_on_a_full_disk(ws, disk_free):
    disk_free[0] = 0
    res = run("prep", "features", ws / "scenes", ws / "feats")
    assert res.exit_code == 0 and "reusing" in res.output, res.output


def test_import_without_copy_writes_only_labels_and_needs_no_audio_room(ws, tmp_path, disk_free):
    disk_free[0] = 0
    res = run("prep", "import", ws / "dataset", tmp_path / "ref", "--val-fraction", 0.5)
    assert res.exit_code == 0, res.output


def test_the_size_estimates_are_honest(ws, tmp_path):
    """Estimated vs real disk use (du) of the tiny scenes and features, and of a motion
    MIC scenes artifact (DCASE labels): within a factor 1.5 (measured on the demo size, 60
    clips of 10 s at 16 kHz: 77.2 MB scenes and 247 MB STFT features, both within 1%)."""
    from ssl_toolkit.core.artifacts import read_manifest
    from ssl_toolkit.data_prep import featurize
    from ssl_toolkit.data_prep.synth import output_bytes, synth_config

    def close(est: float, path: Path) -> bool:
        return 1 / 1.5 < est / du(path) < 1.5

    tiny = {"n_clips": 3, "clip_seconds": 1.0, "fs": FS, "subsets": ["ov1"], "seed": 1}
    assert close(output_bytes(synth_config({}, tiny)), ws / "scenes")
    ex = read_manifest(ws / "feats", "features").extra
    est = featurize.output_bytes(ex["n_chunks"], tuple(ex["shape"]), ex["max_sources"], False)
    assert close(est, ws / "feats")
    motion = {"n_clips": 2, "clip_seconds": 3.0, "fs": FS, "motion": True, "format": "mic"}
    res = run("prep", "synth", tmp_path / "mot", "--n-clips", 2, "--clip-seconds", 3,
              "--fs", FS, "--motion", "--format", "mic")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert close(output_bytes(synth_config({}, motion)), tmp_path / "mot")


def test_human_sizes():
    h = memory.human_bytes
    assert [h(41e12), h(120e9), h(3.5e6), h(999.9e9), h(512)] == [
        "41.0 TB", "120 GB", "3.50 MB", "1.00 TB", "512 B",
    ]  # fmt: skip
    free, where = memory.free_disk_bytes("/nonexistent/deep/path/out")
    assert where == Path("/") and free > 0


# ----------------------------------------------------------------------------- --jobs


def test_jobs_are_capped_at_the_clips_and_the_cores_with_a_note(tmp_path):
    res = run("prep", "synth", tmp_path / "s", *SYNTH, "--jobs", 2000)
    assert res.exit_code == 0, res.output
    n = min(3, available_cores())
    assert f"note: --jobs 2000: {n} worker process" in res.output, res.output
    assert f"(3 clips, {available_cores()} core" in res.output, res.output
    res = run("prep", "features", tmp_path / "s", tmp_path / "f", "--jobs", 2000)
    assert res.exit_code == 0 and "note: --jobs 2000" in res.output, res.output


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_jobs_below_one_is_one_line(tmp_path, ws, jobs):
    for args in (("prep", "synth", tmp_path / "s", *SYNTH),
                 ("prep", "features", ws / "scenes", tmp_path / "f")):  # fmt: skip
        line = one_error_line(run(*args, "--jobs", jobs))
        assert "jobs" in line, line
    assert list(tmp_path.iterdir()) == []


def test_an_error_in_one_clip_stops_the_other_workers(ws, tmp_path):
    """A damaged wav among many: one line naming it, from the worker, and no wait for the
    other clips (the pool is terminated)."""
    scenes = tmp_path / "scenes"
    shutil.copytree(ws / "scenes", scenes)
    wav = sorted((scenes / "wav").glob("*.wav"))[0]
    wav.write_bytes(wav.read_bytes()[:20])
    line = one_error_line(run("prep", "features", scenes, tmp_path / "f", "--jobs", 2))
    assert wav.name in line, line
    assert not (tmp_path / "f").exists()


# ----------------------------------------------------------------------------- signals


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    kids = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.add(int(d.name))
    return kids.union(*(_children(k) for k in kids)) if kids else kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_midway(args: list[str], cwd: Path, ready, sig: int, group: bool):
    """Start ``ssl ARGS``; once ``ready()`` and its workers run, send ``sig`` (to the
    process group when ``group``, as Ctrl-C does); return (seconds to exit, return code,
    workers still alive 3 s after the signal, stderr)."""
    env = dict(os.environ, SSL_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssl_toolkit", *args], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while not (ready() and len(workers := _children(proc.pid)) >= 2):
            assert proc.poll() is None, f"finished before the signal: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "never got midway"
            time.sleep(0.02)
        t0 = time.monotonic()
        (os.killpg if group else os.kill)(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        took = time.monotonic() - t0
        while time.monotonic() < t0 + 3 and any(_alive(w) for w in workers):
            time.sleep(0.05)
        left = [w for w in workers if _alive(w)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
        proc.wait(30)
        err = proc.stderr.read().decode()
        proc.stderr.close()
    return took, proc.returncode, left, err


def _long_synth(tmp_path: Path):
    """``ssl prep synth`` with 4 workers, long enough to be stopped midway, and a test of
    "midway" (the first clip is written into the temporary output)."""
    args = ["prep", "synth", str(tmp_path / "scenes"), "--n-clips", "200", "--clip-seconds",
            "2", "--fs", "8000", "--jobs", "4"]  # fmt: skip

    def midway() -> bool:
        return any(any(t.rglob("*.wav")) for t in tmp_path.glob(".scenes.tmp-*"))

    return args, midway


needs_two_cores = pytest.mark.skipif(
    available_cores() < 2, reason="--jobs runs in-process with one core: no workers to stop"
)


@needs_two_cores
def test_sigterm_during_synth_with_jobs_stops_every_worker_and_leaves_nothing(tmp_path):
    args, midway = _long_synth(tmp_path)
    took, rc, left, err = _stop_midway(args, tmp_path, midway, signal.SIGTERM, group=False)
    assert took < 5, f"SIGTERM took {took:.1f} s"
    assert rc == 130 and "interrupted" in err and "Traceback" not in err, err
    assert left == [], f"workers left running: {left}"
    assert list(tmp_path.iterdir()) == [], "an output or a temporary sibling was left"


@needs_two_cores
def test_ctrl_c_during_features_with_jobs_stops_every_worker_quietly(ws, tmp_path):
    """Ctrl-C reaches the whole process group: the workers ignore it (no traceback from
    each of them), the parent terminates them and removes the partial output."""
    scenes = tmp_path / "scenes"
    res = run("prep", "synth", scenes, "--n-clips", 24, "--clip-seconds", 4, "--fs", FS)
    assert res.exit_code == 0, res.output
    out = tmp_path / "feats"
    args = ["prep", "features", str(scenes), str(out), "--jobs", "4"]

    def midway() -> bool:
        return any((t / "features.npy").exists() for t in tmp_path.glob(".feats.tmp-*"))

    took, rc, left, err = _stop_midway(args, tmp_path, midway, signal.SIGINT, group=True)
    assert took < 5, f"Ctrl-C took {took:.1f} s"
    assert rc == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert left == [], f"workers left running: {left}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes"]


@needs_two_cores
def test_kill_9_of_the_parent_alone_takes_its_workers_with_it(tmp_path):
    args, midway = _long_synth(tmp_path)
    _, rc, left, _ = _stop_midway(args, tmp_path, midway, signal.SIGKILL, group=False)
    assert rc == -signal.SIGKILL
    assert left == [], f"workers outlived their parent: {left}"
    assert not (tmp_path / "scenes").exists()


def test_data_loader_workers_are_capped_at_the_cores(capsys):
    """`num_workers = 2000` starts no more data-loader workers than the cores this process
    may use, and says so; an explicit count within them is kept."""
    from ssl_toolkit.training.data import loader_options

    cores = available_cores()
    assert loader_options("cpu", num_workers=2000).num_workers == cores
    assert f"note: num_workers 2000: {cores} data-loader workers" in capsys.readouterr().err
    assert loader_options("cpu", num_workers=1).num_workers == 1
    assert loader_options("cpu").num_workers == 0  # the CPU default: none
