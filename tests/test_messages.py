"""Messages and uses a new user meets (issue 25): evaluation-only imports, ..."""

from __future__ import annotations

import pandas as pd
from test_data_import import _write_dataset
from typer.testing import CliRunner

from ssl_toolkit.cli import app

runner = CliRunner()


def test_an_evaluation_only_import_is_accepted_with_a_note(tmp_path):
    """All clips held out as test (a dataset to score models trained elsewhere on): imported,
    with one line saying so, and its features are made for the test split alone."""
    root = _write_dataset(tmp_path / "ANSYN")
    res = runner.invoke(app, ["prep", "import", str(root), str(tmp_path / "scenes"),
                              "--test-folds", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "evaluation-only import" in res.output
    clips = pd.read_csv(tmp_path / "scenes" / "clips.csv")
    assert set(clips["split"]) == {"test"} and len(clips) == 16
    res = runner.invoke(app, ["prep", "features", str(tmp_path / "scenes"),
                              str(tmp_path / "feats"), "--type", "logmel"])  # fmt: skip
    assert res.exit_code == 0, res.output
    index = pd.read_csv(tmp_path / "feats" / "index.csv")
    assert set(index["split"]) == {"test"}


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a sub-app
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


def test_flags_are_shown_without_a_type_in_every_help():
    """`--force` is a flag: help must not show it as `--force <bool>` (users then type
    `--force true`); options with values keep their type."""
    import typer

    commands = list(_commands(typer.main.get_command(app)))
    assert ("prep", "synth") in commands and ("predict",) in commands
    for cmd in commands:
        res = runner.invoke(app, [*cmd, "--help"], terminal_width=200)
        assert res.exit_code == 0, res.output
        assert "<bool>" not in res.output, cmd
    res = runner.invoke(app, ["prep", "synth", "--help"], terminal_width=200)
    assert "<int>" in res.output  # the other types are still shown


def test_choices_are_matched_up_to_case(tmp_path):
    """`--preset RESYN --format MIC` and `--method RMCL` mean resyn, mic and rmcl; the
    artifacts record the exact spelling."""
    import json

    from ssl_toolkit.testing import make_features_artifact

    res = runner.invoke(app, ["prep", "synth", str(tmp_path / "s"), "--preset", "ReSyn",
                              "--format", "MIC", "--n-clips", "2", "--clip-seconds", "1",
                              "--fs", "8000", "--subsets", "ov1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "s" / "manifest.json").read_text())["config"]
    assert (cfg["preset"], cfg["format"]) == ("resyn", "mic")
    feats = make_features_artifact(tmp_path / "f", n_chunks=8, bins=8).path
    toml = tmp_path / "tiny.toml"
    toml.write_text("[train]\nchannels = [4]\ngru_layers = 1\ngru_units = 8\n")
    res = runner.invoke(app, ["train", str(feats), str(tmp_path / "r"), "--method", "RMCL",
                              "--epochs", "1", "--max-steps", "1", "--batch-size", "2",
                              "--device", "CPU", "--config", str(toml)])  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "r" / "manifest.json").read_text())["config"]
    assert (cfg["method"], cfg["device"]) == ("rmcl", "cpu")


def test_an_unknown_choice_is_one_line_in_one_format_with_the_closest_name(tmp_path):
    from ssl_toolkit.testing import make_features_artifact

    feats = str(make_features_artifact(tmp_path / "f", n_chunks=4, bins=8).path)
    cases = [
        (["train", feats, str(tmp_path / "r"), "--method", "rmc"], "method", "rmc", "rmcl"),
        (["train", feats, str(tmp_path / "r"), "--method", "WTA-topn"], "method", "WTA-topn",
         "wta-top-n"),
        (["prep", "synth", str(tmp_path / "s"), "--preset", "resin"], "preset", "resin", "resyn"),
        (["prep", "synth", str(tmp_path / "s"), "--format", "fao"], "format", "fao", "foa"),
        (["eval", str(tmp_path / "r"), str(tmp_path / "e"), "--data", feats, "--split", "tset"],
         "split", "tset", "test"),
        (["baseline", str(tmp_path / "s"), str(tmp_path / "b"), "--data", feats, "--method",
          "musik"], "method", "musik", "music"),
    ]  # fmt: skip
    for args, name, value, close in cases:
        res = runner.invoke(app, args)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code != 0 and len(lines) == 1, (args, res.output)
        flag = "--" + name.replace("_", "-")
        assert lines[0].startswith(f"error: option {flag}: '{value}' is not one of "), lines[0]
        assert lines[0].endswith(f"did you mean '{close}'?"), lines[0]
    assert not any((tmp_path / d).exists() for d in "rseb")


def test_an_interruption_names_the_stage_and_what_was_kept(tmp_path, monkeypatch):
    """Ctrl-C in `ssl baseline` says that ssl baseline stopped (not train's --resume
    advice); in `ssl train` it says the resumable state was kept."""
    import ssl_toolkit.evaluation.baselines as baselines
    import ssl_toolkit.training as training

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(baselines, "run_baseline", ctrl_c)
    monkeypatch.setattr(training, "train", ctrl_c)
    res = runner.invoke(app, ["baseline", str(tmp_path / "s"), str(tmp_path / "b"), "--data",
                              str(tmp_path / "f")])  # fmt: skip
    assert res.exit_code == 130
    assert "interrupted: ssl baseline stopped" in res.output and "--resume" not in res.output
    res = runner.invoke(app, ["train", str(tmp_path / "f"), str(tmp_path / "r")])
    assert res.exit_code == 130
    assert "interrupted: ssl train stopped" in res.output and "--resume" in res.output


def test_a_missing_path_does_not_exist_and_swapped_predict_arguments_are_named(tmp_path):
    import numpy as np
    import soundfile as sf

    res = runner.invoke(app, ["eval", str(tmp_path / "runs" / "rmlc5"), str(tmp_path / "e"),
                              "--data", str(tmp_path / "feats")])  # fmt: skip
    assert res.exit_code == 1
    assert f"error: {tmp_path / 'runs' / 'rmlc5'} does not exist" in res.output
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text('{"kind": "export", "schema": 1}')
    wav = tmp_path / "rec.wav"
    sf.write(wav, np.zeros((800, 4), np.float32), 8000)
    res = runner.invoke(app, ["predict", str(wav), str(export), "--out", str(tmp_path / "o")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert "the arguments are swapped; the model comes first" in lines[0]
    assert f"ssl predict {export} {wav}" in lines[0]
    assert not (tmp_path / "o").exists()


def test_eval_names_each_step_between_its_two_predictions(tmp_path, tiny_features):
    """No silent gap and no two bars of one name: 'predicting val', the fits on val,
    'predicting test', then scoring (plain lines: stderr is not a terminal here)."""
    from test_eval import make_run

    run = make_run(tmp_path / "run", tiny_features)
    res = runner.invoke(app, ["eval", str(run), str(tmp_path / "e"), "--data",
                              str(tiny_features.path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = res.output
    steps = ["predicting val: ", "fitting on val (", "predicting test: ", "scoring "]
    at = [out.find(s) for s in steps]
    assert -1 not in at and at == sorted(at), out
    assert out.count("predicting val: ") == 1 and out.count("predicting test: ") == 1
