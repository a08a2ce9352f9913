"""End to end through the CLI on tiny data: prep -> train -> eval -> export -> reload."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ssl_toolkit.cli import app

runner = CliRunner()

TINY_MODEL = """
[train]
channels = [8, 8, 8]
gru_units = 16
gru_layers = 1
"""


def ssl(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"ssl {' '.join(map(str, args))} failed:\n{res.output}"
    return res


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    wd = tmp_path_factory.mktemp("e2e")
    (wd / "tiny.toml").write_text(TINY_MODEL)
    ssl(
        "prep",
        "synth",
        wd / "scenes",
        "--preset",
        "resyn",
        "--clips",
        6,
        "--clip-seconds",
        2,
        "--fs",
        16000,
        "--subsets",
        "ov1,ov2",
        "--seed",
        3,
    )
    ssl("prep", "features", wd / "scenes", wd / "features")
    ssl(
        "train",
        wd / "features",
        wd / "run",
        "--method",
        "rmcl",
        "-K",
        3,
        "--epochs",
        1,
        "--max-steps",
        3,
        "--batch-size",
        4,
        "--config",
        wd / "tiny.toml",
    )
    ev = ssl("eval", wd / "run", wd / "eval", "--data", wd / "features", "--split", "test")
    ssl("export", wd / "run", wd / "export", "--format", "torchscript")
    return wd, ev.output


def test_every_stage_wrote_its_artifact(pipeline):
    wd, eval_output = pipeline
    kinds = {
        d: json.loads((wd / d / "manifest.json").read_text())["kind"]
        for d in ("scenes", "features", "run", "eval", "export")
    }
    assert kinds == {
        "scenes": "scenes",
        "features": "features",
        "run": "run",
        "eval": "eval",
        "export": "export",
    }
    metrics = json.loads((wd / "eval" / "metrics.json").read_text())
    overall = metrics["overall"]
    # Errors are angles on the sphere: between 0 and 180 degrees.
    for key in ("oracle_deg", "emd_deg"):
        assert 0.0 <= overall[key] <= 180.0
    assert overall["emd_deg"] >= overall["oracle_deg"] - 1e-6  # EMD can't beat the oracle
    assert "oracle" in eval_output.lower()


def test_export_matches_checkpoint(pipeline):
    from ssl_toolkit.features.store import open_features
    from ssl_toolkit.models import load_model

    wd, _ = pipeline
    scripted = torch.jit.load(str(wd / "export" / "model.ts"))
    model, meta = load_model(wd / "run")
    fs = open_features(wd / "features")
    x = torch.from_numpy(np.asarray(fs.features[:3], dtype=np.float32))
    with torch.no_grad():
        h_ref, c_ref = model(x)
        h_ts, c_ts = scripted(x)
    assert h_ref.shape == (3, fs.shape[1], meta["K"], 3)
    torch.testing.assert_close(h_ts, h_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(c_ts, c_ref, atol=1e-5, rtol=1e-4)


def test_rerun_reuses_and_force_is_needed_to_change(pipeline):
    wd, _ = pipeline
    before = (wd / "features" / "manifest.json").read_text()
    ssl("prep", "features", wd / "scenes", wd / "features")
    assert (wd / "features" / "manifest.json").read_text() == before
    res = runner.invoke(
        app,
        [
            "train",
            str(wd / "features"),
            str(wd / "run"),
            "--method",
            "wta",
            "-K",
            "3",
            "--epochs",
            "1",
            "--max-steps",
            "2",
        ],
    )
    assert res.exit_code == 1 and "--force" in res.output
