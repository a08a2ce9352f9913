"""`ssl train`: every method from the CLI, resume after a kill, DDP vs one process."""

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from ssl_toolkit.core.artifacts import ArtifactError
from ssl_toolkit.core.config import ConfigError, resolve
from ssl_toolkit.core.errors import DataError
from ssl_toolkit.models import load_model
from ssl_toolkit.testing import make_features_artifact
from ssl_toolkit.training import METHODS, TrainConfig, train
from ssl_toolkit.training.data import make_loader

ROOT = Path(__file__).resolve().parents[1]
TINY = {"channels": [8, 8], "pools": [4, 4], "gru_layers": 1, "gru_units": 16}
TOML = "[train]\nchannels = [8, 8]\npools = [4, 4]\ngru_layers = 1\ngru_units = 16\n"


def cfg(**kw):
    return resolve(TrainConfig, TINY, kw)


def weights(run):
    return load_file(str(Path(run) / "model.safetensors"))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_from_the_cli(tiny_features, tmp_path, method):
    from ssl_toolkit.cli import app

    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML)
    out = tmp_path / "run"
    args = [
        "train",
        str(tiny_features.path),
        str(out),
        "--method",
        method,
        "-K",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "6",
        "--max-steps",
        "4",
        "--config",
        str(toml),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    model, meta = load_model(out)
    k = 3 if method == "pit" else 2  # PIT has one slot per source (S = 3)
    assert meta["method"] == method and meta["K"] == k
    assert meta["feature_params"]["type"] == "dummy"
    if method in ("rmcl", "amcl", "pit", "accdoa"):  # scored: threshold learned on val, in (0, 1)
        assert 0 < meta["threshold"] < 1 and "val" in meta["threshold_source"]
    else:
        assert meta["threshold"] == 0.5
    hyps, conf = model(torch.randn(2, 8, 25, 32))
    assert hyps.shape == (2, 25, k, 3) and conf.shape == (2, 25, k)
    hist = pd.read_csv(out / "history.csv")
    assert {"epoch", "train_loss", "val_loss", "val_oracle_deg", "lr"} <= set(hist.columns)
    assert hist["step"].max() == 4  # --max-steps caps the run
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "run" and man["config"]["method"] == method
    assert hist["epoch"].min() == 1  # epochs are numbered from 1, as on the epoch lines
    if method == "ie":  # each member's best epoch (no -1)
        best = [int(g.loc[g["val_loss"].idxmin(), "epoch"]) for _, g in hist.groupby("member")]
        assert man["extra"]["best_epoch"] == best and "per member" in res.output
    else:
        assert man["extra"]["best_epoch"] == hist.loc[hist["val_loss"].idxmin(), "epoch"]
    assert (out / "curves.png").stat().st_size > 10_000
    if method in ("wta", "wta-relaxed", "wta-top-n", "ie"):
        assert (conf == 1).all()  # no learned scores: equal confidence


def test_training_lowers_the_loss(tiny_features, tmp_path):
    man = train(tiny_features.path, tmp_path / "run", cfg(K=3, epochs=6, batch_size=6, lr=3e-3))
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert hist["train_loss"].iloc[-1] < 0.85 * hist["train_loss"].iloc[0]
    assert man.extra["best_val_loss"] == pytest.approx(hist["val_loss"].min())
    assert man.extra["best_epoch"] == hist.loc[hist["val_loss"].idxmin(), "epoch"]


def test_run_threshold_is_sgl_on_the_val_predictions(tiny_features, tmp_path):
    from ssl_toolkit.analysis.frames import predict_split
    from ssl_toolkit.analysis.metrics import segment_ids
    from ssl_toolkit.analysis.thresholds import learn_threshold_sgl
    from ssl_toolkit.features.store import open_features
    from ssl_toolkit.models.localize import model_localizer

    man = train(tiny_features.path, tmp_path / "run", cfg(K=3, epochs=4, batch_size=6, lr=3e-3))
    model, meta = load_model(man.path)
    fs = open_features(tiny_features.path)
    fr = predict_split(model_localizer(model, meta, man.path), fs, fs.rows("val"))
    seg = segment_ids(fr.clip_id, fr.frame, fs.spec.segment_frames(1.0))
    want = learn_threshold_sgl(fr.conf, fr.hyps, fr.targets, fr.active, seg)
    assert meta["threshold"] == pytest.approx(want, abs=1e-6)
    assert man.extra["threshold"] == meta["threshold"]


def test_refuses_to_overwrite_and_reuses_up_to_date_runs(tiny_features, tmp_path):
    out = tmp_path / "run"
    first = train(tiny_features.path, out, cfg(epochs=1, max_steps=1))
    again = train(tiny_features.path, out, cfg(epochs=1, max_steps=1))
    assert again.created == first.created  # reused, not retrained
    with pytest.raises(ArtifactError, match="--force"):
        train(tiny_features.path, out, cfg(epochs=1, max_steps=2))
    train(tiny_features.path, out, cfg(epochs=1, max_steps=2), force=True)


def test_bad_inputs_name_the_problem(tmp_path):
    no_val = make_features_artifact(tmp_path / "f", n_chunks=3, bins=32)
    with pytest.raises(DataError, match="'val'"):
        train(no_val.path, tmp_path / "r", cfg())
    ok = make_features_artifact(tmp_path / "g", n_chunks=10, bins=32)
    with pytest.raises(ConfigError, match="'pools'"):
        train(ok.path, tmp_path / "r", cfg(pools=[8, 8]))
    with pytest.raises(ConfigError, match="'negatives'"):
        cfg(negatives="some")
    with pytest.raises(ArtifactError, match="ssl prep features"):
        train(tmp_path / "missing", tmp_path / "r", cfg())


def test_distributed_sampler_splits_each_global_batch(tiny_features):
    from ssl_toolkit.features.store import open_features

    fs = open_features(tiny_features.path)
    rows = fs.rows("train")  # 18 chunks
    one, s1 = make_loader(fs, rows, 6, shuffle=True, seed=3)
    halves = [make_loader(fs, rows, 3, shuffle=True, seed=3, rank=r, world=2) for r in (0, 1)]
    for s in (s1, *(h[1] for h in halves)):
        s.set_epoch(2)
    for whole, a, b in zip(one, halves[0][0], halves[1][0], strict=True):
        key = lambda x: sorted(map(bytes, x[1].numpy()))  # noqa: E731 (directions identify chunks)
        joined = (torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
        assert key(whole) == key(joined)


def _cli(*args):
    return [sys.executable, "-m", "ssl_toolkit", "train", *map(str, args)]


def test_kill_mid_run_then_resume_with_no_option_reaches_the_same_weights(
    tmp_path, request, monkeypatch
):
    """A run started with non-default options, killed, then `ssl train FEATS RUN --resume`
    alone: the stored config is used, and the weights equal an uninterrupted run's."""
    from ssl_toolkit.cli import app
    from ssl_toolkit.core import cpu
    from ssl_toolkit.core.cpu import available_cores

    feats = make_features_artifact(tmp_path / "f", n_chunks=40, bins=32)
    opts = dict(K=3, epochs=5, batch_size=4, lr=2e-3, deterministic=True, patience=100)
    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML)
    out = tmp_path / "run"
    ckpt = tmp_path / ".run.partial" / "checkpoint" / "state.pt"
    flags = ["-K", 3, "--epochs", 5, "--batch-size", 4, "--lr", 2e-3, "--deterministic"]
    # The weights depend on the thread count (float sums): the in-process runs below use the
    # subprocess's (the cores), whatever the CPU governor of earlier tests left.
    # A chosen count (SSL_THREADS, inherited by the subprocess) also keeps the CPU governor
    # from changing it when other processes load the machine.
    threads = torch.get_num_threads()
    gov = (cpu.GOVERNOR.max_threads, cpu.GOVERNOR.adaptive)
    monkeypatch.setenv("SSL_THREADS", str(available_cores()))
    cpu.configure()
    request.addfinalizer(lambda: (torch.set_num_threads(threads), cpu.GOVERNOR.reset(*gov)))
    proc = subprocess.Popen(
        _cli(feats.path, out, *flags, "--patience", 100, "--config", toml),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup: like a lost machine
    proc.wait()
    assert ckpt.exists() and not out.exists(), "the run was not interrupted mid-way"
    done = torch.load(ckpt, weights_only=True)["state"]["epoch"]
    assert 1 <= done < 5
    runner = CliRunner()
    other = runner.invoke(app, ["train", str(feats.path), str(out), "--resume", "--lr", "0.01"])
    assert other.exit_code == 1 and "'lr'" in other.output and "0.002" in other.output
    assert other.output.strip().count("\n") == 0  # one line
    res = runner.invoke(app, ["train", str(feats.path), str(out), "--resume"])
    assert res.exit_code == 0, res.output
    assert f"resuming after epoch {done}" in res.output
    ref = tmp_path / "ref"
    train(feats.path, ref, cfg(**opts))
    a, b = weights(out), weights(ref)
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist = pd.read_csv(out / "history.csv")
    assert hist["epoch"].tolist() == [1, 2, 3, 4, 5]
    pd.testing.assert_frame_equal(
        hist[["step", "train_loss", "val_loss"]],
        pd.read_csv(ref / "history.csv")[["step", "train_loss", "val_loss"]],
    )
    # `ssl train RUN --resume`: the features come from the run; a finished run is reused
    created = json.loads((out / "manifest.json").read_text())["created"]
    again = runner.invoke(app, ["train", str(out), "--resume"])
    assert again.exit_code == 0 and "up to date" in again.output, again.output
    assert json.loads((out / "manifest.json").read_text())["created"] == created


def test_resume_with_another_config_is_refused(tiny_features, tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / ".run.partial"
    _interrupt_after_first_epoch()
    with pytest.raises(KeyboardInterrupt):
        train(tiny_features.path, out, cfg(epochs=3, method="wta"))
    assert (partial / "checkpoint" / "state.pt").exists()
    with pytest.raises(ConfigError, match="another config"):
        train(tiny_features.path, out, cfg(epochs=3, method="wta", lr=1e-2), resume=True)


def _interrupt_after_first_epoch():
    """Make the next checkpoint write raise KeyboardInterrupt once it is on disk."""
    from ssl_toolkit.training import engine

    real = engine._save_checkpoint

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        engine._save_checkpoint = real
        raise KeyboardInterrupt

    engine._save_checkpoint = save_then_stop
    return True


def _param_vector(state):
    return torch.cat(
        [
            v.flatten()
            for k, v in state.items()
            if "running" not in k and "num_batches" not in k and not k.startswith("norm.")
        ]
    )


def test_two_process_ddp_matches_one_process(tmp_path):
    feats = make_features_artifact(tmp_path / "f", n_chunks=40, bins=32)  # 24 train chunks
    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML)
    ddp = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "ssl_toolkit",
        "train",
        str(feats.path),
        str(ddp),
        "-K",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--deterministic",
        "--config",
        str(toml),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    man = json.loads((ddp / "manifest.json").read_text())
    assert man["extra"]["world_size"] == 2
    single = {s: tmp_path / f"one{s}" for s in (0, 1)}
    for s, out in single.items():
        train(
            feats.path, out, cfg(K=3, epochs=2, batch_size=8, lr=3e-3, seed=s, deterministic=True)
        )
    w_ddp, w0, w1 = (_param_vector(weights(p)) for p in (ddp, single[0], single[1]))
    # Same data per step; only BatchNorm statistics (per process) and the loss
    # normalization (per-process means) differ, so the runs stay close compared
    # with a run from another seed.
    assert (w_ddp - w0).norm() < 0.2 * (w1 - w0).norm()
    v_ddp = pd.read_csv(ddp / "history.csv")["val_loss"].to_numpy()
    v0 = pd.read_csv(single[0] / "history.csv")["val_loss"].to_numpy()
    np.testing.assert_allclose(v_ddp, v0, rtol=0.03)


def test_random_directions_oracle_is_90_degrees_for_one_hypothesis(tmp_path):
    from ssl_toolkit.training.check import random_oracle_deg

    feats = make_features_artifact(tmp_path / "f", n_chunks=100, bins=8)  # ~1000 val targets
    # the angle between a fixed direction and a uniform one has mean 90 deg (std 39 deg)
    assert random_oracle_deg(feats.path, 1) == pytest.approx(90.0, abs=5.0)
    assert random_oracle_deg(feats.path, 5) < random_oracle_deg(feats.path, 2) < 80.0


def test_ddp_trains_every_method(tmp_path):
    """Two gloo processes, every method (unscored ones have no parameter without a
    gradient, which DDP would refuse); each run is complete and loads."""
    feats = make_features_artifact(tmp_path / "f", n_chunks=40, bins=32)
    script = ROOT / "tests" / "scripts" / "ddp_every_method.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(script), str(feats.path), str(tmp_path / "runs")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for method in METHODS:
        man = json.loads((tmp_path / "runs" / method / "manifest.json").read_text())
        assert man["extra"]["world_size"] == 2 and man["extra"]["method"] == method
        model, meta = load_model(tmp_path / "runs" / method)
        x = torch.zeros(1, *open_features_shape(feats))
        hyps, conf = model(x)
        assert torch.isfinite(hyps).all() and torch.isfinite(conf).all()


def open_features_shape(feats):
    from ssl_toolkit.features.store import open_features

    return open_features(feats.path).shape


def test_rmcl_star_validation_loss_is_deterministic(tiny_features):
    """rMCL* draws negatives; its validation loss must not follow the global RNG."""
    from ssl_toolkit.features.store import open_features
    from ssl_toolkit.models import build_model
    from ssl_toolkit.training.engine import Job, validate
    from ssl_toolkit.training.objectives import make_loss
    from ssl_toolkit.training.run import model_kwargs
    from ssl_toolkit.training.runtime import Runtime

    c = cfg(K=4, negatives="1", seed=3)
    fs = open_features(tiny_features.path)
    torch.manual_seed(0)
    model = build_model("crnn", **model_kwargs(c, fs, 4))
    loader = make_loader(fs, fs.rows("val"), 4, shuffle=False, seed=0)[0]
    job = Job("v", model, make_loss(c), Path("unused"), "fp")
    rt = Runtime(torch.device("cpu"), 0, 1, None)
    torch.manual_seed(1)
    first = validate(model, job, loader, rt, c.seed)
    torch.rand(1000)  # move the global RNG
    assert validate(model, job, loader, rt, c.seed) == first
    # and the loss does draw negatives: another seed gives another loss
    assert validate(model, job, loader, rt, c.seed + 1)[0] != first[0]


def test_a_run_logged_to_a_file_shows_the_banner_one_line_per_epoch_and_curves(tmp_path):
    """A batch job: stderr is a file. It gets the device banner first, then one line per
    epoch whose numbers are history.csv's, and the run directory gets curves.png."""
    feats = make_features_artifact(tmp_path / "f", n_chunks=20, bins=32)  # 12 train, 4 val
    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML)
    out, log = tmp_path / "run", tmp_path / "train.log"
    with log.open("w") as f:
        args = _cli(feats.path, out, "--epochs", 3, "--batch-size", 4, "--config", toml)
        res = subprocess.run(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f, timeout=300)
    text = log.read_text()
    assert res.returncode == 0, text
    lines = text.splitlines()
    for part in ("device cpu", "fp32", "torch threads", "0 data-loader workers",
                 "DDP world size 1", "12 train / 4 val chunks", "9 steps planned"):  # fmt: skip
        assert part in lines[0], lines[0]
    pattern = re.compile(
        r"epoch (\d+)/3  train loss ([\d.]+)  val loss ([\d.]+)  val oracle ([\d.]+) deg  "
        r"(\d+) chunks/s  elapsed \d+:\d\d:\d\d  ETA \d+:\d\d:\d\d( {2}\* best)?$"
    )
    epochs = [m.groups() for m in map(pattern.search, lines) if m]
    hist = pd.read_csv(out / "history.csv")
    assert [int(e[0]) for e in epochs] == hist["epoch"].tolist() == [1, 2, 3]
    for col, i in (("train_loss", 1), ("val_loss", 2), ("val_oracle_deg", 3)):
        np.testing.assert_allclose([float(e[i]) for e in epochs], hist[col], atol=1e-2)
    assert [e[5] is not None for e in epochs] == hist["best"].tolist()
    best = json.loads((out / "manifest.json").read_text())["extra"]["best_epoch"]
    assert best == hist.loc[hist["val_loss"].idxmin(), "epoch"]
    png = (out / "curves.png").read_bytes()
    width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR chunk
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000 and width > 600 and height > 300


@pytest.mark.parametrize(("bins", "pools"), [(64, [4, 4, 2]), (513, [8, 8, 2])])
def test_default_pools_fit_logmel_and_stft_features(tmp_path, bins, pools):
    """64 mel bands and 513 STFT bins both train with the default CRNN (3 conv blocks);
    the run's resolved config records the pools used."""
    from ssl_toolkit.cli import app

    feats = make_features_artifact(tmp_path / "f", n_chunks=10, channels=2, bins=bins)
    toml = tmp_path / "tiny.toml"
    toml.write_text("[train]\nchannels = [4, 4, 4]\ngru_layers = 1\ngru_units = 8\n")
    out = tmp_path / "run"
    args = ["train", str(feats.path), str(out), "--epochs", "1", "--max-steps", "1"]
    res = CliRunner().invoke(app, [*args, "--batch-size", "3", "--config", str(toml)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "manifest.json").read_text())["config"]["pools"] == pools
    model, _ = load_model(out)
    hyps, _ = model(torch.randn(1, 2, 25, bins))
    assert hyps.shape == (1, 25, 5, 3)


@pytest.mark.parametrize("pools", ["8,8,2", "4,4", "4,x"])
def test_bad_pools_option_is_one_line_naming_it(tmp_path, pools):
    from ssl_toolkit.cli import app

    feats = make_features_artifact(tmp_path / "f", n_chunks=10, channels=2, bins=64)
    res = CliRunner().invoke(app, ["train", str(feats.path), str(tmp_path / "r"), "--pools", pools])
    assert res.exit_code == 1 and "--pools" in res.output, res.output
    assert res.output.strip().count("\n") == 0
    assert not (tmp_path / "r").exists()


def test_tensorboard_without_the_package_is_one_line_naming_the_install(
    tiny_features, tmp_path, monkeypatch
):
    from ssl_toolkit.cli import app

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(tiny_features.path), str(out), "--tensorboard"])
    assert res.exit_code == 1 and "pip install tensorboard" in res.output, res.output
    assert res.output.strip().count("\n") == 0 and not out.exists()


class _Writer:
    """Records what a TensorBoard SummaryWriter is given."""

    def __init__(self):
        self.scalars, self.closed = [], False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_gets_each_members_history(tiny_features, tmp_path, monkeypatch):
    from ssl_toolkit.training import run

    writer = _Writer()
    monkeypatch.setattr(run, "require_tensorboard", lambda: None)
    monkeypatch.setattr(run, "open_tensorboard", lambda d: writer)
    out = tmp_path / "run"
    train(tiny_features.path, out, cfg(method="ie", K=2, epochs=2, batch_size=6, tensorboard=True))
    hist = pd.read_csv(out / "history.csv")
    got = {(t, s): v for t, v, s in writer.scalars}
    for r in hist.itertuples():
        assert got[(f"member{r.member}/loss/val", r.epoch)] == pytest.approx(r.val_loss)
        assert got[(f"member{r.member}/val/oracle_deg", r.epoch)] == pytest.approx(r.val_oracle_deg)
    assert writer.closed


def test_tensorboard_event_files(tiny_features, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(tiny_features.path, out, cfg(epochs=2, batch_size=6, tensorboard=True))
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    val = [e.value for e in acc.Scalars("loss/val")]
    np.testing.assert_allclose(val, pd.read_csv(out / "history.csv")["val_loss"], rtol=1e-6)


def test_in_a_terminal_the_bar_counts_epochs_as_history_does(tiny_features, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from ssl_toolkit.core import console

    screen = io.StringIO()
    monkeypatch.setattr(console, "err", Console(file=screen, force_terminal=True, width=200))
    train(tiny_features.path, tmp_path / "run", cfg(epochs=2, batch_size=6))
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen.getvalue())  # no colours
    assert "rmcl: epoch 1/2" in text and "rmcl: epoch 2/2" in text  # the lines
    bar = [s for s in re.split(r"[\r\n]", text) if s.startswith("rmcl ━")]
    assert bar and "epoch 2/2" in bar[-1]  # the bar's last state: epoch 2 of 2
    assert "epoch 0" not in text and "epoch 3" not in text


def test_a_second_writer_of_the_same_run_is_refused_and_loses_nothing(tmp_path):
    """Two `ssl train` on one output: the second gets one line naming the first's PID and
    neither deletes the first's resumable state nor replaces its run."""
    feats = make_features_artifact(tmp_path / "f", n_chunks=40, bins=32)
    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML)
    out = tmp_path / "run"
    base = [sys.executable, "-m", "ssl_toolkit", "train", str(feats.path), str(out),
            "--config", str(toml), "--batch-size", "4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(base + ["--epochs", "200"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        partial = tmp_path / ".run.partial" / "checkpoint"
        for _ in range(600):
            if partial.is_dir() and any(partial.iterdir()):
                break
            time.sleep(0.1)
        assert partial.is_dir(), "the first run never started"
        second = subprocess.run(base + ["--epochs", "1", "--lr", "1e-2"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 1
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert f"PID {first.pid}" in lines[-1] and "Traceback" not in second.stderr
        assert partial.is_dir() and first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()
    assert not (out / "manifest.json").exists()
