"""`ssl predict` shares its output folder safely: collisions are refused before anything is
written, one writer per output file, atomic result files, `--force` replaces only predict's
own files, and the streaming block is bounded by the memory whatever `--block-seconds` says.

Everything goes through the CLI (in-process, or as subprocesses where two processes or a
SIGKILL are the point) on a tiny TorchScript export of a 3-hypothesis GRU.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from export_fixtures import FS, N_FFT, make_run
from test_bad_inputs import snapshot
from typer.testing import CliRunner

from ssl_toolkit.cli import app
from ssl_toolkit.core.artifacts import writer_lock
from ssl_toolkit.inference.export import export_run

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def write_wav(path: Path, seconds: float = 1.0, seed: int = 0, subtype: str = "FLOAT") -> Path:
    x = np.random.default_rng(seed).normal(scale=0.1, size=(int(seconds * FS), 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), FS, subtype=subtype, format="WAV")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """``run`` (a tiny GRU) and ``exp`` (its TorchScript export) under one folder."""
    d = tmp_path_factory.mktemp("models")
    run, _ = make_run(d / "run", kwargs={"channels": 8, "bins": N_FFT // 2})
    export_run(run.path, d / "exp")
    return d


def predict(*args):
    res = runner.invoke(app, ["predict", *map(str, args)])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    return res, lines


def assert_refused(res, lines, *names):
    """Exit 1, no traceback, one line ``error: ...`` naming each of ``names``."""
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for n in names:
        assert str(n) in lines[0], (n, lines[0])


# ------------------------------------------------------------------ collisions in one call


@pytest.mark.parametrize(
    "names, opts",
    [
        (("a.wav", "a_hypotheses.wav"), ()),  # a's hypotheses CSV = a_hypotheses' detections
        (("x/rec.wav", "y/rec.wav"), ()),  # one stem from two folders
        (("x/rec.wav", "y/rec.flac"), ("--plot",)),
        (("x/rec.wav", "y/rec.wav"), ("--dcase",)),
    ],
)
def test_outputs_that_collide_are_refused_naming_both_inputs(models, tmp_path, names, opts):
    files = [write_wav(tmp_path / n) if n.endswith(".wav") else tmp_path / n for n in names]
    if not files[1].exists():
        files[1].parent.mkdir(parents=True, exist_ok=True)
        sf.write(files[1], np.zeros((FS, 4), np.float32), FS, format="FLAC")
    before = snapshot(tmp_path)
    res, lines = predict(models / "exp", *files, "--out", tmp_path / "out", *opts)
    assert_refused(res, lines, files[0], files[1], "would both write")
    assert snapshot(tmp_path) == before  # nothing written, no --out folder made


def test_a_file_given_twice_is_predicted_once(models, tmp_path):
    wav = write_wav(tmp_path / "rec.wav")
    res, lines = predict(models / "exp", wav, tmp_path / "." / "rec.wav", "-o", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["rec.csv", "rec_hypotheses.csv"]


def test_an_output_that_is_an_input_is_refused(models, tmp_path):
    """A recording stored under a name predict writes (here a WAV named .csv)."""
    out = tmp_path / "out"
    sneaky = write_wav(out / "b_hypotheses.csv")
    b = write_wav(tmp_path / "b.wav")
    before = snapshot(tmp_path)
    res, lines = predict(models / "exp", b, sneaky, "--out", out)
    assert_refused(res, lines, sneaky)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ where --out may be


@pytest.mark.parametrize("where", ["exp", "exp/sub", "run", "run/a/b"])
def test_out_inside_an_artifact_is_refused(models, tmp_path, where):
    wav = write_wav(tmp_path / "rec.wav")
    before = snapshot(models)
    res, lines = predict(models / "exp", wav, "--out", models / where, "--force")
    assert_refused(res, lines, "artifact", str(models / where.split("/")[0]))
    assert snapshot(models) == before


def test_out_may_be_the_audio_folder_or_hold_the_model(models, tmp_path):
    wav = write_wav(tmp_path / "rec.wav")
    res, _ = predict(models / "exp", wav, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rec.csv").is_file() and wav.is_file()
    # the folder that holds the export (outputs beside it, never in it)
    before = snapshot(models / "exp")
    res, _ = predict(models / "exp", wav, "--out", models)
    assert res.exit_code == 0, res.output
    assert snapshot(models / "exp") == before
    for name in ("rec.csv", "rec_hypotheses.csv"):
        (models / name).unlink()


def test_an_output_named_as_the_model_is_refused(tmp_path, models):
    """An export stored as ``OUT/rec.csv``: predicting rec.wav into OUT would replace it."""
    import shutil

    shutil.copytree(models / "exp", tmp_path / "rec.csv")
    wav = write_wav(tmp_path / "rec.wav")
    before = snapshot(tmp_path)
    res, lines = predict(tmp_path / "rec.csv", wav, "--out", tmp_path, "--force")
    assert_refused(res, lines, "rec.csv", "model artifact")
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ --force and existing files


def test_existing_results_need_force_and_force_replaces_them(models, tmp_path):
    wav = write_wav(tmp_path / "rec.wav")
    out = tmp_path / "out"
    res, _ = predict(models / "exp", wav, "-o", out, "--plot", "--dcase")
    assert res.exit_code == 0, res.output
    names = ["dcase", "rec.csv", "rec.png", "rec_hypotheses.csv"]
    assert sorted(p.name for p in out.iterdir()) == names
    first = snapshot(out)
    res, lines = predict(models / "exp", wav, "-o", out, "--plot", "--dcase")
    assert_refused(res, lines, "exist;", "--force", out / "dcase" / "rec.csv", "and 1 more")
    assert snapshot(out) == first
    res, _ = predict(models / "exp", wav, "-o", out, "--plot", "--dcase", "--force")
    assert res.exit_code == 0, res.output
    assert snapshot(out).keys() == first.keys()  # no leftovers (locks, temporary files)


@pytest.mark.parametrize(
    "name, content, opts",
    [
        ("rec.csv", "onset,offset,class,azimuth,elevation\n0.1,0.5,3,10,20\n", ()),  # labels
        ("rec_hypotheses.csv", "my notes\n", ()),  # never checked before
        ("rec.png", b"\x89PNG\r\n\x1a\nnot a matplotlib plot", ("--plot",)),
        ("dcase/rec.csv", "frame,class\nnot numbers\n", ("--dcase",)),
        ("rec.csv", None, ()),  # a folder
    ],
)
def test_force_never_replaces_a_file_predict_did_not_write(models, tmp_path, name, content, opts):
    wav = write_wav(tmp_path / "rec.wav")
    target = tmp_path / "out" / name
    target.parent.mkdir(parents=True)
    if content is None:
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    before = snapshot(tmp_path)
    for force in ((), ("--force",)):
        res, lines = predict(models / "exp", wav, "-o", tmp_path / "out", *opts, *force)
        assert_refused(res, lines, target, "not a", "written by ssl predict")
        assert "--force" not in lines[0]  # the advice must not lead to a loss
        assert snapshot(tmp_path) == before


def test_a_result_of_another_role_is_not_replaced(models, tmp_path):
    """a.wav then a_hypotheses.wav into one folder: a's hypotheses CSV is kept (--force too)."""
    a, b = write_wav(tmp_path / "a.wav"), write_wav(tmp_path / "a_hypotheses.wav", seed=1)
    out = tmp_path / "out"
    assert predict(models / "exp", a, "-o", out)[0].exit_code == 0
    before = snapshot(out)
    res, lines = predict(models / "exp", b, "-o", out, "--force")
    assert_refused(res, lines, out / "a_hypotheses.csv", "detections CSV")
    assert snapshot(out) == before


# ------------------------------------------------------------------ one writer per file


def test_an_output_being_written_is_refused_with_the_writers_pid(models, tmp_path):
    wav = write_wav(tmp_path / "rec.wav")
    out = tmp_path / "out"
    out.mkdir()
    for held in ("rec.csv", "rec_hypotheses.csv"):
        with writer_lock(out / held):
            before = snapshot(tmp_path)
            res, lines = predict(models / "exp", wav, "-o", out, "--force")
            assert_refused(res, lines, out / held, f"PID {os.getpid()}")
            assert snapshot(tmp_path) == before
    res, _ = predict(models / "exp", wav, "-o", out)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["rec.csv", "rec_hypotheses.csv"]


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "ssl_toolkit", "predict", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "SSL_THREADS": "1"}


def test_two_processes_one_output_never_mix(models, tmp_path):
    """x/rec.wav and y/rec.wav predicted into one folder at once: exactly one succeeds (the
    other is refused, being written or existing), and the CSV is the winner's alone."""
    x = write_wav(tmp_path / "x" / "rec.wav", seconds=20, seed=1, subtype="PCM_16")
    y = write_wav(tmp_path / "y" / "rec.wav", seconds=20, seed=2, subtype="PCM_16")
    out = tmp_path / "out"
    opts = ("-o", out, "--block-seconds", "0.5")
    pipe = subprocess.PIPE
    procs = [
        subprocess.Popen(_cli(models / "exp", w, *opts), env=_env(), text=True, stdout=pipe,
                         stderr=pipe)
        for w in (x, y)
    ]  # fmt: skip
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 1], results
    winner = (x, y)[[r[0] for r in results].index(0)]
    loser_err = results[[r[0] for r in results].index(1)][2]
    assert "error:" in loser_err and "Traceback" not in loser_err, loser_err
    assert sorted(p.name for p in out.iterdir()) == ["rec.csv", "rec_hypotheses.csv"]
    alone = tmp_path / "alone"
    assert predict(models / "exp", winner, *opts[:1], alone, *opts[2:])[0].exit_code == 0
    for name in ("rec.csv", "rec_hypotheses.csv"):  # equal up to the threads' rounding
        got, want = pd.read_csv(out / name), pd.read_csv(alone / name)
        pd.testing.assert_frame_equal(got, want, check_exact=False, atol=2e-3)


def test_a_killed_predict_leaves_no_result_and_the_rerun_cleans_up(models, tmp_path):
    wav = write_wav(tmp_path / "rec.wav", seconds=120, subtype="PCM_16")
    out = tmp_path / "out"
    out.mkdir()
    cmd = _cli(models / "exp", wav, "-o", out, "--block-seconds", "0.5")
    null = subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=_env(), stdout=null, stderr=null)
    deadline = time.monotonic() + 120
    try:
        while not list(out.glob(".rec.csv.tmp-*")):
            assert proc.poll() is None, "predict ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not [p for p in out.iterdir() if not p.name.startswith(".")]  # nothing looks done
    res, _ = predict(models / "exp", wav, "-o", out, "--block-seconds", "10")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["rec.csv", "rec_hypotheses.csv"]


# ------------------------------------------------------------------ memory


def test_block_seconds_is_bounded_and_results_do_not_depend_on_it(models, tmp_path, monkeypatch):
    """`--block-seconds 1e9` is clamped (the cap, then the memory), with a warning naming
    the option; the audio is read block by block; the CSVs are those of the default block."""
    from ssl_toolkit.inference import predict as mod

    wav = write_wav(tmp_path / "rec.wav", seconds=3)
    spans = []
    read_in = mod.AudioReader._read_in

    def spy(self, start, stop):
        spans.append(stop - start)
        return read_in(self, start, stop)

    monkeypatch.setattr(mod.AudioReader, "_read_in", spy)
    res, _ = predict(models / "exp", wav, "-o", tmp_path / "ref")
    assert res.exit_code == 0 and "warning" not in res.output, res.output
    monkeypatch.setattr(mod, "MAX_BLOCK_SECONDS", 1.0)
    monkeypatch.setattr("ssl_toolkit.inference.input_checks.EXCERPT_S", 0.5)  # bounded too
    spans.clear()
    res, _ = predict(models / "exp", wav, "-o", tmp_path / "cap", "--block-seconds", "1e9")
    assert res.exit_code == 0, res.output
    assert "warning: --block-seconds 1e+09 lowered to 1 s" in res.output
    assert max(spans) < 1.1 * FS and len(spans) >= 3  # never the whole file at once
    # a machine with memory for about half a second of blocks (one 25-frame chunk)
    per_frame = mod.frame_bytes(mod.load_localizer(models / "exp").spec, 3)
    monkeypatch.setattr("ssl_toolkit.core.memory.available_bytes", lambda: per_frame * 60)
    res, _ = predict(models / "exp", wav, "-o", tmp_path / "mem", "--block-seconds", "1e9")
    assert res.exit_code == 0, res.output
    assert "lowered to 0.5 s" in res.output and "of memory available" in res.output
    ref = pd.read_csv(tmp_path / "ref" / "rec_hypotheses.csv")
    for d in ("cap", "mem"):  # equal up to float rounding (the model's batches differ)
        got = pd.read_csv(tmp_path / d / "rec_hypotheses.csv")
        pd.testing.assert_frame_equal(got, ref, check_exact=False, atol=2e-3)
    # not even one chunk fits: refused naming the option, nothing written
    monkeypatch.setattr("ssl_toolkit.core.memory.available_bytes", lambda: per_frame * 10)
    res, lines = predict(models / "exp", wav, "-o", tmp_path / "none")
    assert_refused(res, lines, "--block-seconds")
    assert not (tmp_path / "none").exists()
