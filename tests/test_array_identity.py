"""The model knows its array (issue 25, item 1), through the CLI.

Features record the array (format, channel order, capsule positions, acoustic model), the
band and the train split's levels; they travel to ``model.json`` and ``io.json``.
``ssl eval`` and ``ssl report`` refuse a model on features of another array; ``ssl predict``
states the model's input and warns on audio that does not fit it; artifacts made before
arrays were recorded still load, with one warning naming them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_bad_inputs import SYNTH, TINY_TOML, TRAIN, runner, ssl

from ssl_toolkit.cli import app

FS = 8000
SQUARE = "mic_positions_m = [[0.025, 0.025, 0.0], [0.025, -0.025, 0.0], " \
         "[-0.025, -0.025, 0.0], [-0.025, 0.025, 0.0]]\n"  # fmt: skip
TETRA = "4-capsule tetrahedral MIC array (r=4.2 cm)"
SQUARE_NAME = "4-capsule planar array (5 cm square)"
FOA = "first-order Ambisonics (ACN W,Y,Z,X, SN3D)"


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> Path:
    """FOA scenes and their tetrahedral MIC twin (same seed), a square-array twin; their
    features; a 2-step run on the FOA and on the tetrahedral features; an FOA export."""
    b = tmp_path_factory.mktemp("arrays")
    (b / "tiny.toml").write_text(TINY_TOML)
    (b / "square.toml").write_text(SQUARE)
    synth = [*SYNTH, "--seed", 1, "--clip-seconds", 2]
    ssl("prep", "synth", b / "foa", *synth)
    ssl("prep", "synth", b / "mic", *synth, "--format", "mic")
    ssl("prep", "synth", b / "sq", *synth, "--format", "mic", "--config", b / "square.toml")
    for name in ("foa", "mic", "sq"):
        ssl("prep", "features", b / name, b / f"f-{name}")
    ssl("train", b / "f-foa", b / "run-foa", *TRAIN, "--config", b / "tiny.toml")
    ssl("train", b / "f-mic", b / "run-mic", *TRAIN, "--config", b / "tiny.toml")
    ssl("export", b / "run-foa", b / "exp-foa", "--format", "torchscript")
    return b


def invoke(*args):
    from ssl_toolkit.features import spec

    spec._WARNED.clear()  # warned once per process: each CLI command is one
    return runner.invoke(app, [str(a) for a in args])


def one_error(res) -> str:
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def warnings(res) -> list[str]:
    return [ln for ln in res.output.splitlines() if ln.startswith("warning:")]


def test_features_run_and_export_carry_the_array(w):
    fp = json.loads((w / "f-sq" / "manifest.json").read_text())["extra"]["feature_params"]
    assert fp["array"]["description"] == SQUARE_NAME
    assert fp["array"]["positions_m"][0] == [0.025, 0.025, 0.0]
    assert fp["array"]["acoustic_model"] == "free-field" and fp["band_hz"] == [FS / 512, FS / 2]
    assert len(fp["levels_db"]) == 16
    meta = json.loads((w / "run-mic" / "model.json").read_text())["feature_params"]
    assert meta["array"]["description"] == TETRA and meta["array"]["channels"][0] == "m1"
    io = json.loads((w / "exp-foa" / "io.json").read_text())["feature_params"]
    assert io["array"]["channels"] == ["W", "Y", "Z", "X"] and io["array"]["description"] == FOA


@pytest.mark.parametrize(
    "run, feats, model_array, data_array",
    [("run-mic", "f-sq", TETRA, SQUARE_NAME), ("run-mic", "f-foa", TETRA, FOA),
     ("run-foa", "f-mic", FOA, TETRA), ("exp-foa", "f-sq", FOA, SQUARE_NAME)],
)  # fmt: skip
def test_eval_refuses_a_model_on_features_of_another_array(w, tmp_path, run, feats,
                                                           model_array, data_array):  # fmt: skip
    line = one_error(invoke("eval", w / run, tmp_path / "ev", "--data", w / feats))
    assert f"was trained on the {model_array}, features {w / feats} are of the {data_array}" in line
    assert str(w / run) in line and "evaluate on features of the" in line
    assert not (tmp_path / "ev").exists()


def test_eval_refuses_the_same_capsules_in_another_order(w, tmp_path):
    pos = json.loads((w / "mic" / "manifest.json").read_text())["extra"]["mic_positions_m"]
    (tmp_path / "perm.toml").write_text(f"mic_positions_m = {[pos[1], pos[0], *pos[2:]]}\n")
    ssl("prep", "synth", tmp_path / "perm", *SYNTH, "--seed", 1, "--format", "mic",
        "--config", tmp_path / "perm.toml")  # fmt: skip
    ssl("prep", "features", tmp_path / "perm", tmp_path / "f-perm")
    line = one_error(invoke("eval", w / "run-mic", tmp_path / "ev", "--data", tmp_path / "f-perm"))
    assert "the same capsules in another channel order" in line


def test_eval_on_the_runs_array_passes_and_report_refuses_a_mixed_eval(w, tmp_path, monkeypatch):
    ssl("eval", w / "run-mic", tmp_path / "ok", "--data", w / "f-mic")
    man = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    assert man["extra"]["model_array"]["description"] == TETRA
    # an eval made before ssl eval checked arrays: the check switched off
    monkeypatch.setattr("ssl_toolkit.evaluation.evaluate.check_same_array", lambda *a, **k: None)
    ssl("eval", w / "run-mic", tmp_path / "old", "--data", w / "f-sq")
    monkeypatch.undo()
    ssl("report", tmp_path / "ok", "--out", tmp_path / "rep")
    line = one_error(invoke("report", tmp_path / "ok", tmp_path / "old", "--out", tmp_path / "r2",
                            "--allow-mixed"))  # fmt: skip
    assert "eval old:" in line and f"was trained on the {TETRA}" in line and SQUARE_NAME in line
    assert not (tmp_path / "r2").exists()
    # without the recorded arrays, the inputs' own say the same
    man = json.loads((tmp_path / "old" / "manifest.json").read_text())
    for key in ("model_array", "data_array"):
        man["extra"].pop(key)
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(man))
    line = one_error(invoke("report", tmp_path / "old", "--out", tmp_path / "r3"))
    assert f"features {w / 'f-sq'} are of the {SQUARE_NAME}" in line


def strip_array(params: dict) -> None:
    for key in ("array", "levels_db", "band_hz"):
        params.pop(key, None)


def test_artifacts_without_an_array_still_load_with_one_warning(w, tmp_path):
    old = tmp_path / "old"
    for name in ("f-mic", "run-mic"):
        shutil.copytree(w / name, old / name)
    man_path = old / "f-mic" / "manifest.json"
    man = json.loads(man_path.read_text())
    strip_array(man["extra"]["feature_params"])
    man_path.write_text(json.dumps(man))
    meta = json.loads((old / "run-mic" / "model.json").read_text())
    strip_array(meta["feature_params"])
    (old / "run-mic" / "model.json").write_text(json.dumps(meta))
    # an old run on new features, then new features of another array: unchecked, not refused
    res = invoke("eval", old / "run-mic", tmp_path / "ev", "--data", w / "f-sq")
    assert res.exit_code == 0, res.output
    (line,) = warnings(res)
    assert f"run {old / 'run-mic'} records no array" in line and "not checked" in line
    res = invoke("eval", w / "run-mic", tmp_path / "ev2", "--data", old / "f-mic")
    assert res.exit_code == 0, res.output
    (line,) = warnings(res)
    assert f"features {old / 'f-mic'} records no array" in line
    res = invoke("predict", old / "run-mic", w / "mic" / "wav" / "clip0000_ov1.wav", "--out",
                 tmp_path / "pred")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "4-channel mic audio (array unknown) at 8000 Hz" in res.output
    assert len(warnings(res)) == 1


def wav(w: Path, fmt: str) -> Path:
    return w / fmt / "wav" / "clip0000_ov1.wav"


def predict(w, tmp_path, model, audio):
    res = invoke("predict", w / model, audio, "--out", tmp_path / "pred")
    assert res.exit_code == 0, res.output
    return res


def test_predict_states_the_models_input_in_one_line(w, tmp_path):
    res = predict(w, tmp_path, "exp-foa", wav(w, "foa"))
    first = res.output.splitlines()[0]
    assert first == (f"model {w / 'exp-foa'} expects {FOA} at 8000 Hz, stft features of "
                     "0.016-4 kHz")  # fmt: skip
    assert warnings(res) == [] and "note:" not in res.output
    res = predict(w, tmp_path / "b", "run-mic", wav(w, "mic"))
    assert f"expects {TETRA}, channels m1,m2,m3,m4 at 8000 Hz" in res.output.splitlines()[0]
    assert warnings(res) == []


def test_predict_warns_of_foa_on_mic_audio_and_mic_on_foa_audio(w, tmp_path):
    (line,) = warnings(predict(w, tmp_path, "exp-foa", wav(w, "mic")))
    assert "looks like microphone-array audio, not the first-order Ambisonics" in line
    (line,) = warnings(predict(w, tmp_path / "b", "run-mic", wav(w, "foa")))
    assert "looks like first-order Ambisonics (W,Y,Z,X), not the capsule signals" in line


def resampled(src: Path, dst: Path, fs: int) -> Path:
    from scipy.signal import resample_poly

    x, fs_in = sf.read(src, always_2d=True)
    g = np.gcd(fs, fs_in)
    sf.write(dst, resample_poly(x, fs // g, fs_in // g, axis=0), fs)
    return dst


def test_predict_says_when_it_resamples_and_warns_when_up(w, tmp_path):
    res = predict(w, tmp_path, "exp-foa", resampled(wav(w, "foa"), tmp_path / "hi.wav", 16000))
    assert f"note: {tmp_path / 'hi.wav'} is at 16000 Hz: resampled to the model's 8000 Hz" in (
        res.output)  # fmt: skip
    assert warnings(res) == []
    res = predict(w, tmp_path / "b", "exp-foa", resampled(wav(w, "foa"), tmp_path / "lo.wav", 4000))
    (line,) = warnings(res)  # the empty band is the resampling's: one line, not two
    assert "is at 4000 Hz, below the model's 8000 Hz: resampled up" in line
    assert "nothing above 2 kHz" in line


def test_predict_warns_when_the_audio_lacks_the_models_band(w, tmp_path):
    from scipy.signal import butter, sosfiltfilt

    x, fs = sf.read(wav(w, "foa"), always_2d=True)
    sf.write(tmp_path / "lp.wav", sosfiltfilt(butter(8, 2000, fs=fs, output="sos"), x, axis=0), fs)
    (line,) = warnings(predict(w, tmp_path, "exp-foa", tmp_path / "lp.wav"))
    assert "has almost no energy above" in line and "trained on content up to 4 kHz" in line
