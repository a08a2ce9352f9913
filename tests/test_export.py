"""Export: TorchScript / ONNX reproduce PyTorch, io.json describes the model, failures are clean."""

import json

import numpy as np
import pytest
import torch
from export_fixtures import make_run

from ssl_toolkit.core.artifacts import ArtifactError, read_manifest
from ssl_toolkit.core.errors import UserError
from ssl_toolkit.inference.export import export_run, onnx_available, run_onnx
from ssl_toolkit.models import load_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    m, _ = make_run(tmp_path_factory.mktemp("exp") / "run", kwargs={"channels": 8, "bins": 16})
    return m


def _torch_out(run_dir, x):
    model, _ = load_model(run_dir)
    with torch.no_grad():
        return [t.numpy() for t in model(torch.from_numpy(x))]


@pytest.mark.parametrize("shape", [(1, 8, 7, 16), (4, 8, 60, 16)])
def test_torchscript_matches_pytorch_on_any_batch_and_length(run, tmp_path, shape):
    export_run(run.path, tmp_path / "exp")
    ts = torch.jit.load(str(tmp_path / "exp" / "model.ts"))  # plain torch, no toolkit
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    with torch.no_grad():
        got = [t.numpy() for t in ts(torch.from_numpy(x))]
    want = _torch_out(run.path, x)
    assert got[0].shape == (shape[0], shape[2], 3, 3) and got[1].shape == (shape[0], shape[2], 3)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-4)


def test_onnx_matches_torchscript_and_pytorch(run, tmp_path):
    why = onnx_available()
    if why:
        pytest.skip(why)
    m = export_run(run.path, tmp_path / "exp", formats=("torchscript", "onnx"))
    x = np.random.default_rng(1).normal(size=(3, 8, 41, 16)).astype(np.float32)
    onnx_out = run_onnx(m.file("model.onnx"), x)
    ts = torch.jit.load(str(m.file("model.ts")))
    with torch.no_grad():
        ts_out = [t.numpy() for t in ts(torch.from_numpy(x))]
    for o, t, w in zip(onnx_out, ts_out, _torch_out(run.path, x), strict=True):
        np.testing.assert_allclose(o, w, atol=1e-4)
        np.testing.assert_allclose(t, w, atol=1e-4)
    assert set(m.extra["max_abs_diff"]) == {"torchscript", "onnx"}


def test_io_json_describes_inputs_outputs_and_features(run, tmp_path):
    m = export_run(run.path, tmp_path / "exp")
    io = json.loads(m.file("io.json").read_text())
    assert io["inputs"][0]["name"] == "features"
    assert io["inputs"][0]["shape"] == ["batch", 8, "frames", 16]
    assert [o["name"] for o in io["outputs"]] == ["hyps", "conf"]
    assert io["outputs"][0]["shape"] == ["batch", "frames", 3, 3]
    assert io["feature_params"]["hop_length"] == 320 and io["frame_hop_s"] == pytest.approx(0.02)
    assert io["threshold"] == 0.5 and io["method"] == "rmcl" and io["K"] == 3
    assert io["files"] == {"torchscript": "model.ts"}
    assert read_manifest(m.path, "export").inputs[0]["kind"] == "run"


def test_input_shape_is_the_one_the_run_recorded(tmp_path):
    """Export traces the [C, T, F] chunks of model.json (no guessing from buffers or
    features); a run that lacks it is refused with the file and the fix."""
    kwargs = {"channels": 8, "bins": 32}
    run, _ = make_run(tmp_path / "run", kwargs=kwargs, input_shape=[8, 40, 32])
    m = export_run(run.path, tmp_path / "exp")
    assert json.loads(m.file("io.json").read_text())["inputs"][0]["shape"][1::2] == [8, 32]
    old, _ = make_run(tmp_path / "old", kwargs=kwargs, input_shape=None)
    with pytest.raises(ArtifactError, match=r"model.json: field 'input_shape'.*ssl train"):
        export_run(old.path, tmp_path / "exp_old")
    assert not (tmp_path / "exp_old").exists()


def test_untraceable_model_fails_export_and_leaves_nothing(tmp_path):
    run, _ = make_run(tmp_path / "run", name="test_frozen_length", kwargs={"bins": 16})
    with pytest.raises(ArtifactError, match="not traceable with variable B and T"):
        export_run(run.path, tmp_path / "exp")
    assert not (tmp_path / "exp").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exp")]


def test_refuses_wrong_input_unknown_format_and_overwrite(run, tmp_path, tiny_features):
    with pytest.raises(ArtifactError, match="ssl train"):
        export_run(tiny_features.path, tmp_path / "exp")
    with pytest.raises(UserError, match="--format: 'tflite' is not one of torchscript, onnx"):
        export_run(run.path, tmp_path / "exp", formats=("tflite",))
    export_run(run.path, tmp_path / "exp")
    export_run(run.path, tmp_path / "exp")  # same config and input: reused
    with pytest.raises(ArtifactError, match="--force"):
        export_run(run.path, tmp_path / "exp", formats=("torchscript", "onnx"))


@pytest.mark.parametrize("method", ["rmcl", "amcl", "pit", "wta", "wta-relaxed", "wta-top-n", "ie"])
def test_every_method_exports_to_onnx_through_the_cli(tmp_path, method):
    """The real CRNN (with or without a score layer) or IE ensemble of each method:
    `ssl export --format onnx` succeeds, and ONNX / TorchScript equal PyTorch on a
    batch and length other than the tracing example."""
    from typer.testing import CliRunner

    from ssl_toolkit.cli import app
    from ssl_toolkit.models.localize import is_scored

    why = onnx_available()
    if why:
        pytest.skip(why)
    crnn = {"n_channels": 8, "n_bins": 16, "K": 2, "channels": [4], "pools": [4],
            "gru_layers": 1, "gru_units": 8, "confidence": is_scored(method)}  # fmt: skip
    if method == "ie":
        name, kwargs = "ensemble", {"members": 2, "member_kwargs": crnn}
    else:
        name, kwargs = "crnn", crnn
    run, _ = make_run(tmp_path / "run", name, kwargs, method=method, K=2)
    res = CliRunner().invoke(
        app, ["export", str(run.path), str(tmp_path / "exp"), "-f", "torchscript", "-f", "onnx"]
    )
    assert res.exit_code == 0, res.output
    m = read_manifest(tmp_path / "exp", "export")
    x = np.random.default_rng(2).normal(size=(3, 8, 33, 16)).astype(np.float32)
    want = _torch_out(run.path, x)
    ts = torch.jit.load(str(m.file("model.ts")))
    with torch.no_grad():
        ts_out = [t.numpy() for t in ts(torch.from_numpy(x))]
    for o, t, w in zip(run_onnx(m.file("model.onnx"), x), ts_out, want, strict=True):
        assert o.shape == w.shape
        np.testing.assert_allclose(o, w, atol=1e-4)
        np.testing.assert_allclose(t, w, atol=1e-4)
    io = json.loads(m.file("io.json").read_text())
    assert io["method"] == method and io["scored"] == is_scored(method)
