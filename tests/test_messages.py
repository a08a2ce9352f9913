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
