"""``ssl prep`` through the CLI: options, TOML configs, one-line errors, nothing half-written."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from ssl_toolkit.cli import app

runner = CliRunner()


def test_synth_toml_and_cli_options_then_features(tmp_path):
    (tmp_path / "c.toml").write_text(
        '[synth]\npreset = "resyn"\nformat = "mic"\nrt60_range_s = [0.3, 0.4]\nsnr_db = 20.0\n'
    )
    res = runner.invoke(
        app,
        [
            "prep",
            "synth",
            str(tmp_path / "s"),
            "--config",
            str(tmp_path / "c.toml"),
            "--clips",
            "3",
            "--clip-seconds",
            "1",
            "--fs",
            "8000",
            "--subsets",
            "ov1,ov2",
        ],
    )
    assert res.exit_code == 0, res.output
    clips = pd.read_csv(tmp_path / "s" / "clips.csv")
    assert len(clips) == 3 and set(clips["subset"]) == {"ov1", "ov2"}
    assert clips["rt60_s"].between(0.3, 0.4).all()  # the TOML range reached the rooms
    res = runner.invoke(
        app, ["prep", "features", str(tmp_path / "s"), str(tmp_path / "f"), "--type", "logmel"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "f" / "features.npy").is_file()


def test_impossible_rt60_is_one_line_naming_the_option(tmp_path):
    res = runner.invoke(
        app,
        ["prep", "synth", str(tmp_path / "s"), "--preset", "resyn", "--clips", "2", "--fs", "8000"]
        + ["--config", str(_toml(tmp_path, "rt60_range_s = [0.05, 0.1]"))],
    )
    assert res.exit_code == 1
    assert "rt60_range_s" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "s").exists()


def test_features_of_a_non_scenes_folder_names_the_stage(tmp_path):
    (tmp_path / "x").mkdir()
    res = runner.invoke(app, ["prep", "features", str(tmp_path / "x"), str(tmp_path / "f")])
    assert res.exit_code == 1 and "ssl prep synth" in res.output


def _toml(tmp_path, line):
    p = tmp_path / "bad.toml"
    p.write_text(f"[synth]\n{line}\n")
    return p


def test_user_array_from_toml_flows_to_features_and_training(tmp_path):
    """A 3-capsule array given in TOML: 3-channel audio, its geometry in the manifest,
    log-mel + 3 GCC-PHAT maps, and a model that trains on them."""
    import json

    (tmp_path / "a.toml").write_text(
        '[synth]\nformat = "mic"\n'
        "mic_positions_m = [[0.03, 0.0, 0.0], [-0.03, 0.0, 0.0], [0.0, 0.03, 0.01]]\n"
    )
    args = ["--clips", "6", "--clip-seconds", "1", "--fs", "8000", "--subsets", "ov1,ov2"]
    res = runner.invoke(
        app, ["prep", "synth", str(tmp_path / "s"), "--config", str(tmp_path / "a.toml"), *args]
    )
    assert res.exit_code == 0, res.output
    extra = json.loads((tmp_path / "s" / "manifest.json").read_text())["extra"]
    assert extra["n_channels"] == 3 and extra["mic_positions_m"][2] == [0.0, 0.03, 0.01]
    feats = ["prep", "features", str(tmp_path / "s"), str(tmp_path / "f"), "--type", "logmel"]
    assert runner.invoke(app, feats).exit_code == 0
    shape = json.loads((tmp_path / "f" / "manifest.json").read_text())["extra"]["shape"]
    assert shape[0] == 3 + 3  # 3 log-mel maps + 3 capsule pairs
    (tmp_path / "t.toml").write_text(
        "[train]\nchannels = [4, 4]\npools = [4, 4]\ngru_layers = 1\ngru_units = 8\n"
    )
    train = ["train", str(tmp_path / "f"), str(tmp_path / "r"), "--epochs", "1"]
    train += ["--max-steps", "2", "--batch-size", "4", "--config", str(tmp_path / "t.toml")]
    res = runner.invoke(app, train)
    assert res.exit_code == 0, res.output


def test_cli_options_beat_the_toml_which_beats_the_preset():
    from ssl_toolkit.data_prep.synth import synth_config

    toml = {"preset": "resyn", "n_clips": 5, "snr_db": 10.0}
    cfg = synth_config(toml, {"preset": "ansyn", "n_clips": 3, "snr_db": None})
    assert cfg.preset == "ansyn" and not cfg.room  # --preset beats the TOML's preset
    assert cfg.n_clips == 3 and cfg.snr_db == 10.0  # CLI > TOML > preset defaults
    cfg = synth_config(toml, {"preset": None})
    assert cfg.preset == "resyn" and cfg.room
    assert synth_config({}, {}).preset == "ansyn"


def test_the_readme_array_toml_serves_synth_and_import(tmp_path):
    """The bring-your-own-array TOML of the README, taken from the README itself."""
    import re
    from pathlib import Path

    import numpy as np
    import pytest

    from ssl_toolkit.core.config import ConfigError, load_toml
    from ssl_toolkit.data_prep.arrays import read_array_toml
    from ssl_toolkit.data_prep.synth import synth_config

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if "mic_positions_m" in b
    )
    path = tmp_path / "my_array.toml"
    path.write_text("\n".join(line.strip() for line in block.splitlines()))
    mics = read_array_toml(path)  # what `ssl prep import --array` reads
    cfg = synth_config(load_toml(path, "synth"), {})  # what `ssl prep synth --config` reads
    np.testing.assert_allclose(np.asarray(cfg.mic_positions_m), mics)
    path.write_text("[array]\nmic_positions_m = [[0.05, 0, 0], [-0.05, 0, 0]]\n")
    assert read_array_toml(path) == [[0.05, 0, 0], [-0.05, 0, 0]]
    path.write_text('[synth]\nformat = "mic"\n')
    with pytest.raises(ConfigError, match="my_array.toml has no mic_positions_m"):
        read_array_toml(path)
