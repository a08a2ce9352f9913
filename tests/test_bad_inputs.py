"""Bad input and faults through the CLI, table-driven: every kind ends in one line, nothing lost.

Each case copies the tiny artifacts it needs (built once per module) into its own workspace,
damages one thing (a file, an option), runs one ``ssl`` command in-process and asserts:
a non-zero exit, no traceback, exactly one output line (``error: ...``) naming the file or
option at fault, and a workspace whose files are byte for byte what they were (no artifact
changed, nothing half-written left behind). Two more tests kill ``ssl prep synth`` and
``ssl prep features --jobs 2`` with SIGKILL midway and check that nothing complete-looking
is left and that a rerun succeeds and removes the leftovers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ssl_toolkit.cli import app

runner = CliRunner()
FS = 8000
TINY_TOML = "[train]\nchannels = [8, 8]\npools = [4, 4]\ngru_layers = 1\ngru_units = 16\n"
SYNTH = ["--n-clips", "3", "--clip-seconds", "1", "--fs", str(FS), "--subsets", "ov1"]
TRAIN = ["--epochs", "1", "--max-steps", "2", "--batch-size", "2", "-K", "2", "--device", "cpu"]


def ssl(*args) -> None:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"ssl {' '.join(map(str, args))} failed:\n{res.output}"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_base(tmp_path_factory.mktemp("base"))


def build_base(b: Path) -> Path:
    """Every artifact once, on tiny data: scenes (FOA and its MIC twin), a TUT2018-layout
    dataset, features, a 2-step run, an eval, a baseline eval, an export, a wav, a TOML."""
    (b / "tiny.toml").write_text(TINY_TOML)
    ssl("prep", "synth", b / "scenes", *SYNTH, "--seed", 1)
    ssl("prep", "synth", b / "mic", *SYNTH, "--seed", 1, "--format", "mic")
    ssl("prep", "synth", b / "tut", *SYNTH, "--seed", 2, "--layout", "tut2018")
    (b / "dataset").mkdir()
    for d in (b / "tut").iterdir():
        if d.name.startswith(("wav_", "desc_")):
            shutil.copytree(d, b / "dataset" / d.name)
    ssl("prep", "features", b / "scenes", b / "feats")
    ssl("train", b / "feats", b / "run", *TRAIN, "--config", b / "tiny.toml")
    ssl("eval", b / "run", b / "ev", "--data", b / "feats")
    ssl("baseline", b / "mic", b / "bl", "--data", b / "feats")
    ssl("export", b / "run", b / "exp")
    shutil.copy(b / "scenes" / "wav" / "clip0000_ov1.wav", b / "rec.wav")
    return b


# ----------------------------------------------------------------------------- helpers


def snapshot(root: Path) -> dict[str, str]:
    """Every file (hash), link (target) and directory under ``root``, hidden ones included."""
    out = {}
    for d, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(d) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def edit_json(path: Path, fn: Callable[[dict], object]) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def write_wav(path: Path, value: float | None = None, channels: int = 4, n: int = FS) -> None:
    """A float wav of noise; ``value`` (NaN, inf) written into one sample."""
    x = np.random.default_rng(0).normal(scale=0.1, size=(n, channels)).astype(np.float32)
    if value is not None and n:
        x[n // 2, 1] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, FS, subtype="FLOAT")


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def npy(path: Path, array) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=True)


def first_wav(root: Path) -> Path:
    return sorted(root.rglob("*.wav"))[0]


def first_csv(root: Path) -> Path:
    return sorted(root.rglob("desc_*/*.csv"))[0]


def kwargs(**kw) -> Callable[[dict], None]:
    return lambda d: d["kwargs"].update(kw)


def stored_resume_state(ws: Path) -> None:
    """``.run2.partial`` as an interrupted run leaves it, with a garbage ``state.pt``."""
    man = json.loads((ws / "run" / "manifest.json").read_text())
    feats = json.loads((ws / "feats" / "manifest.json").read_text())
    ck = ws / ".run2.partial" / "checkpoint"
    ck.mkdir(parents=True)
    ref = {"path": str(ws / "feats"), "fingerprint": feats["fingerprint"]}
    (ck / "config.json").write_text(json.dumps({"config": man["config"], "features": ref}))
    (ck / "state.pt").write_bytes(b"\x80\x04garbage that is not a checkpoint")


# ----------------------------------------------------------------------------- the table


@dataclass
class Case:
    """One kind of bad input: the artifacts copied, the damage, the command, what the
    one error line must name."""

    id: str
    needs: tuple[str, ...]
    args: tuple[str, ...]
    expect: str
    damage: Callable[[Path], None] | None = None
    xfail: str | None = None
    memory: int | None = None  # bytes the machine seems to have left (None: what it has)


def C(id, needs, args, expect, damage=None, xfail=None, memory=None) -> Case:
    return Case(id, tuple(needs.split()), tuple(args.split()), expect, damage, xfail, memory)


SY = "prep synth {ws}/out " + " ".join(SYNTH)
FE = "prep features {ws}/scenes {ws}/out"
TR = "train {ws}/feats {ws}/out " + " ".join(TRAIN) + " --config {ws}/tiny.toml"
EV = "eval {ws}/run {ws}/out --data {ws}/feats"
BL = "baseline {ws}/mic {ws}/out --data {ws}/feats"
EX = "export {ws}/run {ws}/out"
PR = "predict {ws}/exp {ws}/rec.wav --out {ws}/out"
RE = "report {ws}/ev {ws}/bl --out {ws}/out"
IM = "prep import {ws}/dataset {ws}/out"
MJ = "manifest.json"
NAN, INF = float("nan"), float("inf")


def _bad_utf8(p: Path) -> None:
    p.write_bytes(b"\xff\xfe\x00garbage\xc3\x28")


def _pickled(p: Path) -> None:
    import pickle

    p.write_bytes(pickle.dumps({"weight": np.zeros(3)}))


def _torch_saved(p: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(3)}, p)


def _escape_link(target_dir: Path, link: Path) -> None:
    """Replace ``link`` by a symbolic link to a file of the same kind outside the dataset."""
    outside = target_dir / "outside" / link.name
    outside.parent.mkdir(exist_ok=True)
    shutil.copy(link, outside)
    link.unlink()
    link.symlink_to(outside)


def _csv(p: Path, text: str) -> None:
    p.write_text(text)


CASES = [
    # --- ssl prep synth: options and config files
    C("synth-clip-seconds-inf", "", SY + " --clip-seconds inf", "clip_seconds"),
    C("synth-snr-nan", "", SY + " --snr-db nan", "snr_db"),
    C("synth-clip-seconds-huge", "", SY + " --clip-seconds 1e9", "clip_seconds"),
    C("synth-n-clips-huge", "", SY + " --n-clips 100000000000", "n_clips"),
    C("synth-fs-range", "", SY + " --fs 100", "'fs'"),
    C("synth-grid-nan", "", SY + " --grid-deg nan", "grid_deg"),
    C("synth-subsets-unknown", "", SY + " --subsets ov9", "subsets"),
    C("synth-jobs-zero", "", SY + " --jobs 0", "jobs"),
    C("synth-config-directory", "", SY + " --config {ws}", "{ws}"),
    C("synth-config-not-utf8", "", SY + " --config {ws}/c.toml", "c.toml",
      lambda ws: _bad_utf8(ws / "c.toml")),
    C("synth-config-invalid-toml", "", SY + " --config {ws}/c.toml", "c.toml",
      lambda ws: (ws / "c.toml").write_text("[synth\nfs = ")),
    C("synth-config-unknown-key", "", SY + " --config {ws}/c.toml", "colour",
      lambda ws: (ws / "c.toml").write_text("[synth]\ncolour = 1\n")),
    C("synth-config-toml-nan", "", SY + " --config {ws}/c.toml", "snr_db",
      lambda ws: (ws / "c.toml").write_text("[synth]\nsnr_db = nan\n")),
    C("synth-output-is-a-file", "", SY, "{ws}/out",
      lambda ws: (ws / "out").write_text("mine")),
    # --- ssl prep import: closed datasets, bad audio and labels
    C("import-wav-link-outside", "dataset", IM, ".wav",
      lambda ws: _escape_link(ws, first_wav(ws / "dataset"))),
    C("import-label-link-outside", "dataset", IM, ".csv",
      lambda ws: _escape_link(ws, first_csv(ws / "dataset"))),
    C("import-copy-link-outside", "dataset", IM + " --copy", ".wav",
      lambda ws: _escape_link(ws, first_wav(ws / "dataset"))),
    C("import-wav-nan", "dataset", IM, ".wav",
      lambda ws: write_wav(first_wav(ws / "dataset"), NAN)),
    C("import-wav-inf", "dataset", IM, ".wav",
      lambda ws: write_wav(first_wav(ws / "dataset"), INF)),
    C("import-wav-empty", "dataset", IM, ".wav",
      lambda ws: write_wav(first_wav(ws / "dataset"), n=0)),
    C("import-wav-channels", "dataset", IM, ".wav",
      lambda ws: write_wav(first_wav(ws / "dataset"), channels=2)),
    C("import-wav-garbage", "dataset", IM, ".wav",
      lambda ws: first_wav(ws / "dataset").write_bytes(b"RIFF not really")),
    C("import-label-malformed", "dataset", IM, ".csv",
      lambda ws: _csv(first_csv(ws / "dataset"),
                      "sound_event_recording,start_time,end_time,ele,azi,dist\nx,1,0,0,0,1\n")),
    C("import-label-not-utf8", "dataset", IM, ".csv",
      lambda ws: _bad_utf8(first_csv(ws / "dataset"))),
    C("import-label-missing", "dataset", IM, ".wav",
      lambda ws: first_csv(ws / "dataset").unlink()),
    C("import-no-dataset", "", IM, "{ws}/dataset"),
    C("import-into-itself", "dataset", "prep import {ws}/dataset {ws}/dataset --force",
      "{ws}/dataset"),
    C("import-format-unknown", "dataset", IM + " --format ambisonic", "--format"),
    C("import-array-directory", "dataset", IM + " --format mic --array {ws}", "{ws}"),
    # --- ssl prep features: damaged scenes
    C("scenes-manifest-not-json", "scenes", FE, MJ,
      lambda ws: (ws / "scenes" / MJ).write_text("{not json")),
    C("scenes-manifest-array", "scenes", FE, MJ,
      lambda ws: (ws / "scenes" / MJ).write_text("[1, 2]")),
    C("scenes-manifest-not-utf8", "scenes", FE, MJ, lambda ws: _bad_utf8(ws / "scenes" / MJ)),
    C("scenes-manifest-no-fs", "scenes", FE, "fs",
      lambda ws: edit_json(ws / "scenes" / MJ, lambda d: d["extra"].pop("fs"))),
    C("scenes-manifest-fs-text", "scenes", FE, "fs",
      lambda ws: edit_json(ws / "scenes" / MJ, lambda d: d["extra"].update(fs="8k"))),
    C("scenes-manifest-extra-list", "scenes", FE, "extra",
      lambda ws: edit_json(ws / "scenes" / MJ, lambda d: d.update(extra=[1]))),
    C("scenes-audio-root-outside", "scenes", FE, "audio_root",
      lambda ws: edit_json(ws / "scenes" / MJ, lambda d: d["extra"].update(audio_root="/"))),
    C("scenes-audio-root-relative", "scenes", FE, "audio_root",
      lambda ws: edit_json(ws / "scenes" / MJ,
                           lambda d: d["extra"].update(audio_root="../.."))),
    C("scenes-audio-root-and-config-edited", "scenes", FE, "fingerprint",
      lambda ws: edit_json(ws / "scenes" / MJ, lambda d: (d["extra"].update(audio_root="/"),
                                                          d["config"].update(root="/")))),
    C("scenes-clips-missing", "scenes", FE, "clips.csv",
      lambda ws: (ws / "scenes" / "clips.csv").unlink()),
    C("scenes-clips-columns", "scenes", FE, "clips.csv",
      lambda ws: _csv(ws / "scenes" / "clips.csv", "a,b\n1,2\n")),
    C("scenes-clips-bad-split", "scenes", FE, "clips.csv",
      lambda ws: _csv(ws / "scenes" / "clips.csv",
                      (ws / "scenes" / "clips.csv").read_text().replace(",test,", ",tset,"))),
    C("scenes-clips-escaping-path", "scenes", FE, "outside",
      lambda ws: _csv(ws / "scenes" / "clips.csv",
                      (ws / "scenes" / "clips.csv").read_text().replace("wav/", "../../"))),
    C("scenes-wav-nan", "scenes", FE, ".wav",
      lambda ws: write_wav(first_wav(ws / "scenes"), NAN)),
    C("scenes-wav-link-outside", "scenes", FE, ".wav",
      lambda ws: _escape_link(ws, first_wav(ws / "scenes"))),
    C("scenes-label-malformed", "scenes", FE, ".csv",
      lambda ws: _csv(sorted((ws / "scenes" / "labels").glob("*.csv"))[0], "x\n1\n")),
    C("scenes-wrong-kind", "feats", "prep features {ws}/feats {ws}/out", "ssl prep synth"),
    C("scenes-wrong-schema", "scenes", FE, "schema",
      lambda ws: edit_json(ws / "scenes" / MJ, lambda d: d.update(schema=7))),
    C("features-over-its-scenes", "scenes", "prep features {ws}/scenes {ws}/scenes --force",
      "overlaps"),
    C("features-config-nan", "scenes", FE + " --config {ws}/c.toml", "hop_s",
      lambda ws: (ws / "c.toml").write_text("[features]\nhop_s = nan\n")),
    # --- ssl train: damaged features, options
    C("feats-npy-truncated", "feats tiny.toml", TR, "features.npy",
      lambda ws: truncate(ws / "feats" / "features.npy")),
    C("feats-npy-garbage", "feats tiny.toml", TR, "features.npy",
      lambda ws: (ws / "feats" / "features.npy").write_bytes(b"\x00" * 512)),
    C("feats-npy-pickled", "feats tiny.toml", TR, "features.npy",
      lambda ws: npy(ws / "feats" / "features.npy", np.array([{"a": 1}], dtype=object))),
    C("feats-npy-other-shape", "feats tiny.toml", TR, "features.npy",
      lambda ws: npy(ws / "feats" / "features.npy", np.zeros((6, 8, 25, 7), np.float16))),
    C("feats-activity-short", "feats tiny.toml", TR, "activity.npy",
      lambda ws: npy(ws / "feats" / "activity.npy",
                     np.load(ws / "feats" / "activity.npy")[:3])),
    C("feats-directions-dtype", "feats tiny.toml", TR, "directions.npy",
      lambda ws: npy(ws / "feats" / "directions.npy",
                     np.load(ws / "feats" / "directions.npy").astype(np.float16))),
    C("feats-index-missing", "feats tiny.toml", TR, "index.csv",
      lambda ws: (ws / "feats" / "index.csv").unlink()),
    C("feats-index-columns", "feats tiny.toml", TR, "index.csv",
      lambda ws: _csv(ws / "feats" / "index.csv", "chunk,clip\n0,a\n")),
    C("feats-index-short", "feats tiny.toml", TR, "index.csv",
      lambda ws: _csv(ws / "feats" / "index.csv",
                      "".join((ws / "feats" / "index.csv").read_text().splitlines(True)[:3]))),
    C("feats-norm-garbage", "feats tiny.toml", TR, "norm.npz",
      lambda ws: (ws / "feats" / "norm.npz").write_bytes(b"PK\x03\x04 broken")),
    C("feats-norm-nan", "feats tiny.toml", TR, "norm.npz",
      lambda ws: np.savez(ws / "feats" / "norm.npz", mean=np.full((8, 256), np.nan, np.float32),
                          std=np.ones((8, 256), np.float32))),
    C("feats-manifest-no-feature-params", "feats tiny.toml", TR, "feature_params",
      lambda ws: edit_json(ws / "feats" / MJ, lambda d: d["extra"].pop("feature_params"))),
    C("feats-manifest-shape-edited", "feats tiny.toml", TR, "features.npy",
      lambda ws: edit_json(ws / "feats" / MJ, lambda d: d["extra"].update(shape=[8, 25, 128]))),
    C("feats-manifest-hop-text", "feats tiny.toml", TR, "hop_length",
      lambda ws: edit_json(ws / "feats" / MJ,
                           lambda d: d["extra"]["feature_params"].update(hop_length="160"))),
    C("train-lr-inf", "feats tiny.toml", TR + " --lr inf", "lr"),
    C("train-beta-nan", "feats tiny.toml", TR + " --beta nan", "beta"),
    C("train-toml-lr-nan", "feats", TR.replace("tiny.toml", "c.toml"), "lr",
      lambda ws: (ws / "c.toml").write_text(TINY_TOML + "lr = nan\n")),
    C("train-batch-size-zero", "feats tiny.toml", TR + " --batch-size 0", "batch_size"),
    C("train-config-not-utf8", "feats", TR.replace("tiny.toml", "c.toml"), "c.toml",
      lambda ws: _bad_utf8(ws / "c.toml")),
    C("train-K-huge", "feats tiny.toml", TR + " -K 1000000000000", "-K"),
    C("train-resume-garbage-state", "run feats", "train {ws}/run2 --resume", "state.pt",
      stored_resume_state),
    # --- ssl eval: damaged runs, options
    C("run-weights-garbage", "run feats", EV, "model.safetensors",
      lambda ws: (ws / "run" / "model.safetensors").write_bytes(b"\x10\x00garbage")),
    C("run-weights-pickled", "run feats", EV, "model.safetensors",
      lambda ws: _torch_saved(ws / "run" / "model.safetensors")),
    C("run-weights-missing", "run feats", EV, "model.safetensors",
      lambda ws: (ws / "run" / "model.safetensors").unlink()),
    C("run-model-json-invalid", "run feats", EV, "model.json",
      lambda ws: (ws / "run" / "model.json").write_text('{"name": ')),
    C("run-model-json-array", "run feats", EV, "model.json",
      lambda ws: (ws / "run" / "model.json").write_text("[]")),
    C("run-model-json-kwargs-K", "run feats", EV, "model.safetensors",
      lambda ws: edit_json(ws / "run" / "model.json", lambda d: (kwargs(K=4)(d), d.update(K=4)))),
    C("run-model-json-K-disagrees", "run feats", EV, "model.json",
      lambda ws: edit_json(ws / "run" / "model.json", lambda d: d.update(K=7))),
    C("run-model-json-unknown-kwarg", "run feats", EV, "model.json",
      lambda ws: edit_json(ws / "run" / "model.json", kwargs(colour="red"))),
    C("run-model-json-K-huge", "run feats", EV, "model.json",
      lambda ws: edit_json(ws / "run" / "model.json",
                           lambda d: (kwargs(K=10**12)(d), d.update(K=10**12)))),
    C("run-model-json-threshold", "run feats", EV, "threshold",
      lambda ws: edit_json(ws / "run" / "model.json", lambda d: d.update(threshold="high"))),
    C("run-model-json-unknown-model", "run feats", EV, "model.json",
      lambda ws: edit_json(ws / "run" / "model.json", lambda d: d.update(name="transformer"))),
    C("eval-threshold-range", "run feats", EV + " --threshold 2", "threshold"),
    C("eval-threshold-nan", "run feats", EV + " --threshold nan", "threshold"),
    C("eval-batch-size-zero", "run feats", EV + " --batch-size 0", "batch_size"),
    C("eval-config-segment-inf", "run feats", EV + " --config {ws}/c.toml", "segment_s",
      lambda ws: (ws / "c.toml").write_text("[eval]\nsegment_s = inf\n")),
    C("eval-batch-too-large-for-memory", "run feats", EV + " --batch-size 64", "--batch-size",
      memory=1_000_000),
    C("eval-into-its-run", "run feats", "eval {ws}/run {ws}/run/ev --data {ws}/feats",
      "overlaps"),
    C("eval-wrong-kind", "feats", "eval {ws}/feats {ws}/out --data {ws}/feats", "ssl train"),
    # --- ssl baseline
    C("baseline-grid-nan", "mic feats", BL + " --grid-deg nan", "grid_deg"),
    C("baseline-mic-fs-text", "mic feats", BL, "fs",
      lambda ws: edit_json(ws / "mic" / MJ, lambda d: d["extra"].update(fs=None))),
    C("baseline-mic-clips-missing", "mic feats", BL, "clips.csv",
      lambda ws: (ws / "mic" / "clips.csv").unlink()),
    C("baseline-mic-clips-bad-split", "mic feats", BL, "clips.csv",
      lambda ws: _csv(ws / "mic" / "clips.csv",
                      (ws / "mic" / "clips.csv").read_text().replace(",test,", ",tset,"))),
    C("baseline-mic-audio-root", "mic feats", BL, "audio_root",
      lambda ws: edit_json(ws / "mic" / MJ, lambda d: d["extra"].update(audio_root="/tmp"))),
    # --- ssl export
    C("export-weights-garbage", "run", EX, "model.safetensors",
      lambda ws: (ws / "run" / "model.safetensors").write_bytes(b"garbage")),
    C("export-format-unknown", "run", EX + " --format tensorflow", "--format"),
    C("export-over-its-run", "run", "export {ws}/run {ws}/run --force", "overlaps"),
    # --- ssl predict
    C("predict-model-ts-garbage", "exp rec.wav", PR, "model.ts",
      lambda ws: (ws / "exp" / "model.ts").write_bytes(b"PK not a TorchScript archive")),
    C("predict-io-json-invalid", "exp rec.wav", PR, "io.json",
      lambda ws: (ws / "exp" / "io.json").write_text("{")),
    C("predict-io-json-string", "exp rec.wav", PR, "io.json",
      lambda ws: (ws / "exp" / "io.json").write_text('"model"')),
    C("predict-io-json-no-threshold", "exp rec.wav", PR, "threshold",
      lambda ws: edit_json(ws / "exp" / "io.json", lambda d: d.pop("threshold"))),
    C("predict-io-json-fs-text", "exp rec.wav", PR, "fs",
      lambda ws: edit_json(ws / "exp" / "io.json", lambda d: d["feature_params"].update(fs="x"))),
    C("predict-io-json-file-escapes", "exp rec.wav", PR, "outside",
      lambda ws: edit_json(ws / "exp" / "io.json",
                           lambda d: d["files"].update(torchscript="../../model.ts"))),
    C("predict-wav-nan", "exp", PR, "rec.wav", lambda ws: write_wav(ws / "rec.wav", NAN)),
    C("predict-wav-inf", "exp", PR, "rec.wav", lambda ws: write_wav(ws / "rec.wav", -INF)),
    C("predict-wav-empty", "exp", PR, "rec.wav", lambda ws: write_wav(ws / "rec.wav", n=0)),
    C("predict-wav-channels", "exp", PR, "rec.wav",
      lambda ws: write_wav(ws / "rec.wav", channels=3)),
    C("predict-wav-not-audio", "exp", PR, "rec.wav",
      lambda ws: (ws / "rec.wav").write_text("hello")),
    C("predict-wav-missing", "exp", PR, "rec.wav"),
    C("predict-threshold-range", "exp rec.wav", PR + " --threshold 2", "--threshold"),
    C("predict-threshold-nan", "exp rec.wav", PR + " --threshold nan", "--threshold"),
    C("predict-block-seconds-inf", "exp rec.wav", PR + " --block-seconds inf", "--block-seconds"),
    C("predict-block-too-large-for-memory", "exp rec.wav", PR, "--block-seconds",
      memory=1_000_000),
    C("predict-out-is-a-file", "exp rec.wav", PR, "{ws}/out",
      lambda ws: (ws / "out").write_text("mine")),
    C("predict-run-weights-garbage", "run rec.wav",
      "predict {ws}/run {ws}/rec.wav --out {ws}/out", "model.safetensors",
      lambda ws: (ws / "run" / "model.safetensors").write_bytes(b"garbage")),
    # --- ssl report
    C("report-metrics-invalid", "ev bl", RE, "metrics.json",
      lambda ws: (ws / "ev" / "metrics.json").write_text("{")),
    C("report-metrics-array", "ev bl", RE, "metrics.json",
      lambda ws: (ws / "ev" / "metrics.json").write_text("[]")),
    C("report-metrics-missing", "ev bl", RE, "metrics.json",
      lambda ws: (ws / "bl" / "metrics.json").unlink()),
    C("report-eval-manifest-not-utf8", "ev bl", RE, MJ, lambda ws: _bad_utf8(ws / "ev" / MJ)),
    C("report-wrong-kind", "ev run", "report {ws}/ev {ws}/run --out {ws}/out", "ssl eval"),
]  # fmt: skip


def _params():
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        yield pytest.param(c, id=c.id, marks=marks)


def test_the_table_covers_every_stage():
    assert len({c.id for c in CASES}) == len(CASES) >= 60
    stages = {c.args[0] if c.args[0] != "prep" else c.args[1] for c in CASES}
    assert stages >= {"synth", "import", "features", "train", "eval", "baseline", "export",
                      "predict", "report"}  # fmt: skip


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_one_line_and_changes_nothing(
    case: Case, base: Path, tmp_path: Path, monkeypatch
):
    ws = tmp_path / "ws"
    ws.mkdir()
    for name in case.needs:
        src = base / name
        if src.is_dir():
            shutil.copytree(src, ws / name, symlinks=True)
        else:
            shutil.copy(src, ws / name)
    if case.damage:
        case.damage(ws)
    before = snapshot(ws)
    if case.memory is not None:
        monkeypatch.setattr("ssl_toolkit.core.memory.available_bytes", lambda: case.memory)
    args = [a.format(ws=ws) for a in case.args]
    res = runner.invoke(app, args)
    out = res.output
    assert res.exit_code != 0, f"exit 0:\n{out}"
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"traceback: {res.exception!r}\n{out}"
    )
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert case.expect.format(ws=ws) in lines[0], lines[0]
    assert snapshot(ws) == before, "the workspace changed"


# ----------------------------------------------------------------------------- kill -9


def _kill_midway(args: list[str], out: Path, ready: Callable[[], bool], cwd: Path) -> None:
    """Start ``ssl ARGS`` in its own process group; SIGKILL the group once ``ready()``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssl_toolkit", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None, f"finished before it was killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "never got midway"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):  # workers too, whatever happened
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "something complete-looking was left at the output"


def _leftovers(out: Path) -> list[Path]:
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_kill_9_during_synth_leaves_nothing_complete_and_a_rerun_cleans_up(tmp_path):
    out = tmp_path / "scenes"
    args = ["prep", "synth", str(out), "--n-clips", "150", "--clip-seconds", "2", "--fs", "8000"]

    def midway() -> bool:
        return any(any(t.rglob("*.wav")) for t in tmp_path.glob(".scenes.tmp-*"))

    _kill_midway(args, out, midway, tmp_path)
    assert any(p.name.startswith(".scenes.tmp-") for p in _leftovers(out))
    ssl(*args)
    assert (out / "manifest.json").is_file() and len(list(out.rglob("*.wav"))) == 150
    assert _leftovers(out) == []


def test_kill_9_during_features_with_2_jobs_leaves_nothing_complete_and_a_rerun_cleans_up(
    tmp_path,
):
    scenes, out = tmp_path / "scenes", tmp_path / "feats"
    ssl("prep", "synth", scenes, "--n-clips", "24", "--clip-seconds", "2", "--fs", "8000")
    args = ["prep", "features", str(scenes), str(out), "--jobs", "2"]
    t_ready: list[float] = []

    def midway() -> bool:  # the arrays are allocated; give the workers a moment to start
        if not t_ready and any((t / "features.npy").exists() for t in _leftovers(out)):
            t_ready.append(time.monotonic())
        return bool(t_ready) and time.monotonic() - t_ready[0] > 0.5

    _kill_midway(args, out, midway, tmp_path)
    assert any(".feats.tmp-" in p.name for p in _leftovers(out))
    res = subprocess.run(
        [sys.executable, "-m", "ssl_toolkit", *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert (out / "manifest.json").is_file()
    assert _leftovers(out) == []
