"""`ssl demo`: the embedded defaults are valid options, and the CLI runs every stage."""

import json

import pytest
import torch
from typer.testing import CliRunner

from ssl_toolkit.cli import app
from ssl_toolkit.core.config import ConfigError, resolve
from ssl_toolkit.data_prep.featurize import FeatureConfig
from ssl_toolkit.data_prep.synth import SynthConfig, preset_config
from ssl_toolkit.experiments import demo
from ssl_toolkit.training import TrainConfig


def test_embedded_defaults_resolve():
    """Every key of the demo's defaults is an option of its stage (caught a renamed option)."""
    synth = resolve(SynthConfig, preset_config("resyn"), demo.DEMO_SYNTH)
    train = resolve(TrainConfig, demo.DEMO_TRAIN)
    resolve(FeatureConfig, demo.DEMO_FEATURES)
    assert synth.room and train.method == "rmcl" and train.K == 5


def test_bad_override_fails_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="unknown option 'conv_channels'"):
        demo.run_demo(tmp_path / "d", train={"conv_channels": 8})
    assert not (tmp_path / "d").exists()


def test_cli_demo_on_tiny_settings(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_SYNTH", {**demo.DEMO_SYNTH, "n_clips": 10, "clip_seconds": 2.0})
    tiny = {"epochs": 2, "channels": (8, 8, 8), "gru_layers": 1, "gru_units": 16}
    monkeypatch.setattr(demo, "DEMO_TRAIN", {**demo.DEMO_TRAIN, **tiny})
    wd = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", str(wd), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    for stage, kind in [
        ("scenes", "scenes"),
        ("features", "features"),
        ("run", "run"),
        ("eval", "eval"),
        ("export", "export"),
    ]:
        assert json.loads((wd / stage / "manifest.json").read_text())["kind"] == kind
    assert "chance°" in res.output and "oracle°" in res.output and "ssl predict" in res.output
    metrics = json.loads((wd / "eval" / "metrics.json").read_text())
    assert metrics["K"] == 5 and metrics["method"] == "rmcl"
    ts = torch.jit.load(str(wd / "export" / "model.ts"))
    hyps, conf = ts(torch.randn(1, 7, 25, 64))  # FOA log-mel + intensity: 7 maps, 64 bands
    assert hyps.shape == (1, 25, 5, 3) and conf.shape == (1, 25, 5)
    # a second run reuses every artifact (nothing is retrained)
    before = (wd / "run" / "manifest.json").read_text()
    again = demo.run_demo(wd, train=tiny)
    assert (wd / "run" / "manifest.json").read_text() == before
    assert set(again.seconds) == set(demo.STAGES)
    for subset in ("D1", "D2", "overall"):
        chance = again.metrics[subset]["chance_oracle_deg"]
        assert 25 < chance < 50  # 5 random directions: about 36 degrees from a source
