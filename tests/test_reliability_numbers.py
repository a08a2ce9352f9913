"""Numbers that go wrong, through the CLI: each ends in one line naming the culprit, or in a
correct result, never in `inf` features, a NaN loss or a traceback.

- Loud float audio: features are stored as float32 where float16 would overflow, with a
  finite error figure; features that are not finite even then are one line naming the clip.
- Damaged features (NaN on disk) name the chunk and clip, in training and evaluation; a
  diverging model (``--lr 1e30``) stops with one line saying where, for every method.
- TOML: a bool is not an int or a float; a UTF-8 BOM is skipped.
- Models and batches too large for the memory are refused from their sizes, before any
  allocation (also a ``model.json`` read by eval and predict).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ssl_toolkit.cli import app

runner = CliRunner()
FS = 8000
TINY = "[train]\nchannels = [8, 8]\npools = [4, 4]\ngru_layers = 1\ngru_units = 16\n"
SYNTH = ["--n-clips", "3", "--clip-seconds", "1", "--fs", str(FS), "--subsets", "ov1"]
TRAIN = ["--epochs", "1", "--max-steps", "2", "--batch-size", "2", "-K", "2", "--device", "cpu"]


#: A plain progress line (core.console.progress when stderr is not a terminal).
PROGRESS_LINE = re.compile(r"^\S.*: \d+(/\d+ \(\d+%\))?  elapsed \d+:\d\d:\d\d")


def ssl(*args) -> None:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"ssl {' '.join(map(str, args))} failed:\n{res.output}"


def fails(*args, progress: bool = False) -> str:
    """Run ``ssl ARGS``; assert one ``error:`` line, a non-zero exit and no traceback.

    ``progress``: the error comes once training has started, after its banner and epoch
    lines (then the error is the last line and the only one that says ``error``).
    """
    res = runner.invoke(app, [str(a) for a in args])
    out = res.output
    assert res.exit_code != 0, f"exit 0:\n{out}"
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in out and "Warning" not in out, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if progress:
        said = ("train ", "pit: ", "predicting ", "augment: ")  # banner and notes
        lines = [ln for ln in lines if not ln.startswith(said)]
        lines = [ln for ln in lines if " epoch " not in ln or ln.startswith("error: ")]
        lines = [ln for ln in lines if not PROGRESS_LINE.match(ln)]  # stderr is no terminal
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Scenes with noise in every clip (so no clip is silent), features, a 2-step run."""
    b = tmp_path_factory.mktemp("numbers")
    (b / "tiny.toml").write_text(TINY)
    ssl("prep", "synth", b / "scenes", *SYNTH, "--seed", 1)
    rng = np.random.default_rng(0)
    for p in sorted((b / "scenes" / "wav").glob("*.wav")):
        x, fs = sf.read(p, dtype="float32", always_2d=True)
        x = 0.5 * x + rng.normal(scale=0.05, size=x.shape)
        sf.write(p, x.astype(np.float32), fs, subtype="FLOAT")
    ssl("prep", "features", b / "scenes", b / "feats")
    ssl("train", b / "feats", b / "run", *TRAIN, "--config", b / "tiny.toml")
    return b


def scaled_scenes(base: Path, dst: Path, gain: float, subtype: str = "FLOAT", clip: int = 0):
    """A copy of the scenes whose clip ``clip`` (None: every clip) is multiplied by ``gain``
    and rewritten in ``subtype``."""
    shutil.copytree(base / "scenes", dst)
    wavs = sorted((dst / "wav").glob("*.wav"))
    for p in wavs if clip is None else [wavs[clip]]:
        x, fs = sf.read(p, dtype="float64", always_2d=True)
        sf.write(p, x * gain, fs, subtype=subtype)
    return wavs[0 if clip is None else clip]


def extra(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())["extra"]


def features(path: Path) -> np.ndarray:
    return np.load(path / "features.npy", mmap_mode="r")


# ----------------------------------------------------------------------------- loud audio


def test_quiet_features_stay_float16(base):
    ex = extra(base / "feats")
    assert ex["dtype"] == "float16"
    assert all(0 < v < 1e-2 for v in ex["float16_rel_rms_error"].values())


@pytest.mark.parametrize("gain", [3e4, 1e6, 2**31])  # int16 / int32 units in a float WAV
def test_loud_float_audio_is_stored_as_float32_and_trains(base, tmp_path, gain):
    scaled_scenes(base, tmp_path / "scenes", gain, clip=None)
    ssl("prep", "features", tmp_path / "scenes", tmp_path / "feats")
    ex = extra(tmp_path / "feats")
    assert ex["dtype"] == "float32"
    assert ex["float16_rel_rms_error"] == {"magnitude": 0.0, "phase": 0.0}  # exact
    x = features(tmp_path / "feats")
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert np.abs(x).max() > 65504  # float16 would have held inf
    ssl("train", tmp_path / "feats", tmp_path / "run", *TRAIN, "--config", base / "tiny.toml")
    assert np.isfinite(extra(tmp_path / "run")["best_val_loss"])


def test_one_loud_clip_among_quiet_ones_with_workers(base, tmp_path):
    """The overflow is found in a worker; the whole artifact is redone in float32."""
    scaled_scenes(base, tmp_path / "scenes", 1e5, clip=2)
    ssl("prep", "features", tmp_path / "scenes", tmp_path / "feats", "--jobs", 2)
    assert extra(tmp_path / "feats")["dtype"] == "float32"
    x = features(tmp_path / "feats")
    assert np.isfinite(x).all()
    quiet = features(base / "feats")
    np.testing.assert_allclose(x[:2], quiet[:2].astype(np.float32), rtol=1e-3, atol=1e-3)


def test_loud_logmel_stays_float16_and_finite(base, tmp_path):
    """Log-mel, intensity and GCC-PHAT are bounded: no overflow, float16 kept."""
    scaled_scenes(base, tmp_path / "scenes", 1e6, clip=None)
    ssl("prep", "features", tmp_path / "scenes", tmp_path / "feats", "--type", "logmel")
    ex = extra(tmp_path / "feats")
    assert ex["dtype"] == "float16"
    assert all(np.isfinite(v) for v in ex["float16_rel_rms_error"].values())
    assert np.isfinite(features(tmp_path / "feats")).all()


@pytest.mark.parametrize("jobs", [1, 2])
def test_audio_too_loud_even_for_float32_names_the_clip(base, tmp_path, jobs):
    wav = scaled_scenes(base, tmp_path / "scenes", 1e18, clip=1)
    line = fails("prep", "features", tmp_path / "scenes", tmp_path / "out", "--jobs", jobs)
    assert str(wav) in line and "scale it down" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_samples_name_the_file(base, tmp_path, value):
    wav = scaled_scenes(base, tmp_path / "scenes", 1.0, clip=1)
    x, fs = sf.read(wav, dtype="float32", always_2d=True)
    x[100, 2] = value
    sf.write(wav, x, fs, subtype="FLOAT")
    line = fails("prep", "features", tmp_path / "scenes", tmp_path / "out")
    assert str(wav) in line and "NaN or infinite" in line
    assert not (tmp_path / "out").exists()


def test_float64_wav_beyond_float32_names_the_file(base, tmp_path):
    wav = scaled_scenes(base, tmp_path / "scenes", 1e300, subtype="DOUBLE", clip=0)
    line = fails("prep", "features", tmp_path / "scenes", tmp_path / "out")
    assert str(wav) in line


@pytest.mark.parametrize("subtype", ["DOUBLE", "PCM_32", "PCM_24"])
def test_other_sample_formats_give_the_same_features(base, tmp_path, subtype):
    scaled_scenes(base, tmp_path / "scenes", 0.5, subtype=subtype, clip=None)
    ssl("prep", "features", tmp_path / "scenes", tmp_path / "feats")
    assert extra(tmp_path / "feats")["dtype"] == "float16"
    x, ref = features(tmp_path / "feats"), features(base / "feats").astype(np.float32)
    mag = slice(0, 4)  # magnitudes halve with the gain
    np.testing.assert_allclose(x[:, mag], 0.5 * ref[:, mag], rtol=2e-2, atol=2e-3)


# ----------------------------------------------------------------------------- damaged features


def _damage(base: Path, dst: Path, array: str, chunk: int) -> Path:
    shutil.copytree(base / "feats", dst)
    a = np.load(dst / array, mmap_mode="r+")
    a[chunk].flat[7] = np.nan
    a.flush()
    del a
    return dst


@pytest.mark.parametrize("method", ["rmcl", "pit", "accdoa"])
def test_nan_features_in_training_name_the_chunk(base, tmp_path, method):
    index = (base / "feats" / "index.csv").read_text().splitlines()
    chunk = next(i - 1 for i, r in enumerate(index) if ",train," in r)
    clip = index[chunk + 1].split(",")[1]
    feats = _damage(base, tmp_path / "feats", "features.npy", chunk)
    line = fails("train", feats, tmp_path / "run", *TRAIN, "--method", method,
                 "--config", base / "tiny.toml", progress=True)  # fmt: skip
    assert f"features.npy: chunk {chunk} (clip {clip}, frames" in line
    assert "ssl prep features --force" in line
    assert not (tmp_path / "run").exists()


def test_nan_directions_name_the_chunk(base, tmp_path):
    index = (base / "feats" / "index.csv").read_text().splitlines()
    chunk = next(i - 1 for i, r in enumerate(index) if ",val," in r)
    feats = _damage(base, tmp_path / "feats", "directions.npy", chunk)
    line = fails("train", feats, tmp_path / "run", *TRAIN, "--config", base / "tiny.toml",
                 progress=True)  # fmt: skip
    assert f"directions.npy: chunk {chunk} (clip" in line


def test_nan_features_in_eval_name_the_chunk(base, tmp_path):
    index = (base / "feats" / "index.csv").read_text().splitlines()
    chunk = next(i - 1 for i, r in enumerate(index) if ",test," in r)
    feats = _damage(base, tmp_path / "feats", "features.npy", chunk)
    line = fails("eval", base / "run", tmp_path / "ev", "--data", feats, progress=True)
    assert f"features.npy: chunk {chunk} (clip" in line
    assert not (tmp_path / "ev").exists()


METHODS = ["rmcl", "wta", "wta-relaxed", "wta-top-n", "amcl", "pit", "ie", "accdoa"]


@pytest.mark.parametrize("method", METHODS)
def test_divergence_stops_every_method_in_one_line(base, tmp_path, method):
    line = fails("train", base / "feats", tmp_path / "run", *TRAIN, "--method", method,
                 "--lr", "1e30", "--config", base / "tiny.toml", progress=True)  # fmt: skip
    assert "diverged at epoch 1" in line and "lower --lr (now 1e+30)" in line
    assert not (tmp_path / "run").exists()


def test_a_diverged_run_is_retrained_with_a_lower_lr(base, tmp_path):
    fails("train", base / "feats", tmp_path / "run", *TRAIN, "--lr", "1e30",
          "--config", base / "tiny.toml", progress=True)  # fmt: skip
    ssl("train", base / "feats", tmp_path / "run", *TRAIN, "--config", base / "tiny.toml")
    assert np.isfinite(extra(tmp_path / "run")["best_val_loss"])


def test_the_engine_check_names_outputs_and_loss():
    import torch

    from ssl_toolkit.training.engine import _NotFinite, check_finite

    h, c = torch.zeros(2, 3, 4, 3), torch.full((2, 3, 4), 0.5)
    check_finite(h, c, torch.tensor(1.0))
    with pytest.raises(_NotFinite, match="outputs"):
        check_finite(h, c.clone().fill_(float("nan")))
    with pytest.raises(_NotFinite, match="loss"):
        check_finite(h, c, torch.tensor(float("inf")))


# ----------------------------------------------------------------------------- TOML


@pytest.mark.parametrize(
    "line, key",
    [
        ("K = true", "'K'"),
        ("lr = false", "'lr'"),
        ("channels = [8, true]", "'channels'"),
        ("gru_units = 16.0", "'gru_units'"),
        ("max_steps = true", "'max_steps'"),
    ],
)
def test_toml_bool_or_float_for_an_int_names_the_key(base, tmp_path, line, key):
    (tmp_path / "c.toml").write_text(f"[train]\n{line}\n")
    msg = fails("train", base / "feats", tmp_path / "run", "--config", tmp_path / "c.toml")
    assert key in msg and "expects" in msg


def test_toml_bool_for_a_features_option(base, tmp_path):
    (tmp_path / "c.toml").write_text("[features]\nchunk_frames = true\n")
    msg = fails(
        "prep", "features", base / "scenes", tmp_path / "f", "--config", tmp_path / "c.toml"
    )
    assert "'chunk_frames'" in msg


def test_toml_bool_in_mic_positions(base, tmp_path):
    (tmp_path / "a.toml").write_text(
        "[synth]\nformat = 'mic'\nmic_positions_m = [[true, 0, 0], [0, 0.1, 0]]\n"
    )
    msg = fails("prep", "synth", tmp_path / "s", *SYNTH, "--config", tmp_path / "a.toml")
    assert "mic_positions_m" in msg


def test_toml_with_a_utf8_bom_is_read(base, tmp_path):
    toml = tmp_path / "bom.toml"
    toml.write_bytes(b"\xef\xbb\xbf" + TINY.encode())
    ssl("train", base / "feats", tmp_path / "run", *TRAIN, "--config", toml)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["config"]["gru_units"] == 16
    toml.write_bytes(b"\xef\xbb\xbf[train]\nK = true\n")  # read, then refused for K
    assert "'K'" in fails("train", base / "feats", tmp_path / "r2", "--config", toml)


# ----------------------------------------------------------------------------- memory


@pytest.fixture
def no_model_built(monkeypatch):
    """Fail the test if a model is constructed (the check must come before)."""
    from ssl_toolkit.models import crnn

    def refuse(*a, **k):
        raise AssertionError("a model was built before the memory check")

    monkeypatch.setattr(crnn.ConvRecurrent, "__init__", refuse)


@pytest.mark.parametrize(
    "toml, expect",
    [
        ("gru_units = 1000000000", "gru_units=1000000000"),
        ("gru_units = 1000000000000000000", "gru_units=1000000000000000000"),
        ("gru_layers = 100000000", "gru_layers=100000000"),
        ("channels = [100000000, 8]", "channels=[100000000, 8]"),
    ],
)
def test_huge_layers_are_refused_before_allocation(base, tmp_path, no_model_built, toml, expect):
    key = toml.split()[0]
    tiny = "".join(ln + "\n" for ln in TINY.splitlines() if not ln.startswith(key))
    (tmp_path / "c.toml").write_text(tiny + toml + "\n")
    msg = fails("train", base / "feats", tmp_path / "run", *TRAIN, "--config", tmp_path / "c.toml")
    assert expect in msg and "GB of memory" in msg


def test_wide_conv_activations_name_the_layer_sizes(base, tmp_path, no_model_built, monkeypatch):
    monkeypatch.setattr("ssl_toolkit.core.memory.available_bytes", lambda: 2 * 10**9)
    (tmp_path / "c.toml").write_text("[train]\nchannels = [2000]\npools = [64]\ngru_units = 8\n")
    msg = fails("train", base / "feats", tmp_path / "run", *TRAIN, "--batch-size", 64,
                "--config", tmp_path / "c.toml")  # fmt: skip
    assert "--batch-size" in msg and "channels, gru_units" in msg


@pytest.mark.parametrize("batch", ["1000000000", "10000000000000000000000"])
def test_extreme_batch_size(base, tmp_path, no_model_built, batch):
    args = [*TRAIN, "--batch-size", batch]  # the last one given wins
    msg = fails("train", base / "feats", tmp_path / "run", *args, "--config", base / "tiny.toml")
    assert "--batch-size" in msg


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_huge_model_json_is_refused_before_allocation(base, tmp_path, no_model_built, command):
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    meta = json.loads((run / "model.json").read_text())
    meta["kwargs"]["gru_units"] = 10**12
    (run / "model.json").write_text(json.dumps(meta))
    wav = sorted((base / "scenes" / "wav").glob("*.wav"))[0]
    if command == "eval":
        msg = fails("eval", run, tmp_path / "ev", "--data", base / "feats")
    else:
        msg = fails("predict", run, wav, "--out", tmp_path / "pred")
    assert "model.json" in msg and "gru_units=1000000000000" in msg


def test_builtin_sizes_match_the_built_models():
    import torch

    from ssl_toolkit.models import builtin_sizes, constructor

    cases = [
        ("crnn", dict(n_channels=8, n_bins=256, K=5)),
        ("crnn", dict(n_channels=7, n_bins=64, K=2, channels=[8, 8], pools=[4, 4],
                      gru_layers=1, gru_units=16, output="sph", confidence=False)),
        ("crnn", dict(n_channels=10, n_bins=100, K=3, channels=[5, 6, 7], pools=[2, 3, 2],
                      gru_layers=3, gru_units=9)),
        ("accdoa", dict(n_channels=7, n_bins=64, tracks=3, n_classes=13, channels=[8, 8],
                        pools=[4, 4], gru_layers=2, gru_units=16)),
        ("ensemble", dict(members=3, member="crnn", member_kwargs=dict(
            n_channels=8, n_bins=256, K=1, channels=[8, 8], pools=[4, 4], gru_layers=1,
            gru_units=16))),
    ]  # fmt: skip
    for name, kw in cases:
        with torch.device("meta"):
            m = constructor(name)(**kw)
        want = sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])
        assert builtin_sizes(name, kw)[0] == want, (name, kw)
