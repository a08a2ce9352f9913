"""The CLI surface: fast help, every stage listed, one-line errors for bad input."""

import subprocess
import sys

from typer.testing import CliRunner

from ssl_toolkit.cli import app

runner = CliRunner()
HEAVY = ("torch", "librosa", "pyroomacoustics", "matplotlib", "scipy", "pandas", "ot")


def test_help_lists_stages_without_heavy_imports():
    # `ssl --help` must answer instantly: building the CLI imports none of the heavy libraries.
    code = (
        "import sys; from ssl_toolkit.cli import app; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("prep", "train", "eval", "baseline", "export", "predict", "report", "demo", "toy"):
        assert cmd in res.output
    res = runner.invoke(app, ["prep", "--help"])
    for cmd in ("synth", "import", "features"):
        assert cmd in res.output


def test_missing_input_is_one_line_naming_the_stage(tmp_path):
    res = runner.invoke(app, ["train", str(tmp_path / "nothing"), str(tmp_path / "run")])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "ssl prep features" in lines[0]
    assert not (tmp_path / "run").exists()
    res = runner.invoke(
        app,
        [
            "eval",
            str(tmp_path / "nothing"),
            str(tmp_path / "ev"),
            "--data",
            str(tmp_path / "nothing"),
        ],
    )
    assert res.exit_code == 1 and "ssl train" in res.output


def test_version_and_literal_messages(tmp_path):
    from ssl_toolkit import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"ssl-toolkit {__version__}"
    bad = tmp_path / "runs[1]"  # rich markup would eat "[1]"
    res = runner.invoke(app, ["export", str(bad), str(tmp_path / "exp")])
    assert res.exit_code == 1 and f"{bad} " in res.output


def test_config_reference_is_generated_from_the_code():
    """docs/CONFIG.md documents every TOML key of every stage, with its default."""
    import dataclasses
    import importlib
    from pathlib import Path

    from ssl_toolkit.cli.config_reference import SECTIONS, reference

    text = reference()
    committed = (Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md").read_text()
    assert committed == text, "docs/CONFIG.md is stale: python -m ssl_toolkit.cli.config_reference"
    for module, name, _ in SECTIONS.values():
        for f in dataclasses.fields(getattr(importlib.import_module(module), name)):
            row = next(line for line in text.splitlines() if line.startswith(f"| `{f.name}` |"))
            assert not row.endswith("|  |"), f"{name}.{f.name} has no description"


def _command(path):
    import typer.main

    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def test_option_names_are_toml_keys_and_help_shows_their_defaults():
    """Every option of a stage with a config class is named as its TOML key (`--n-clips`
    is `n_clips`) and its --help default is the dataclass default."""
    import dataclasses

    from ssl_toolkit.cli._common import shown
    from ssl_toolkit.data_prep.featurize import FeatureConfig
    from ssl_toolkit.data_prep.synth import SynthConfig
    from ssl_toolkit.evaluation.baselines import BaselineConfig
    from ssl_toolkit.evaluation.evaluate import EvalConfig
    from ssl_toolkit.training import TrainConfig

    cases = {
        ("prep", "synth"): SynthConfig,
        ("prep", "features"): FeatureConfig,
        ("train",): TrainConfig,
        ("eval",): EvalConfig,
        ("baseline",): BaselineConfig,
    }
    not_config = {"config", "force", "jobs", "resume", "help", "out", "features", "run",
                  "data", "scenes", "dcase_csv", "name"}  # fmt: skip
    for path, cls in cases.items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for p in _command(path).params:
            key = p.name.rstrip("_")
            if key in not_config:
                continue
            assert key in defaults, f"ssl {' '.join(path)}: option {p.opts} is not a TOML key"
            assert isinstance(p.show_default, str), f"{p.opts} shows no default"
            want = shown(defaults[key])
            assert p.show_default.startswith(want), f"{p.opts}: {p.show_default} != {want}"
            long = [o for o in p.opts if o.startswith("--")]
            assert key == "K" or long[0] == "--" + key.replace("_", "-"), p.opts


def test_one_flag_style():
    """Boolean options are plain flags (--force), never --force/--no-force pairs, except
    the train switches whose TOML default can be on (--amp/--no-amp)."""
    import typer.main

    switches = {"deterministic", "amp", "compile_", "tensorboard"}
    root = typer.main.get_command(app)
    stack = [root]
    while stack:
        cmd = stack.pop()
        stack += list(getattr(cmd, "commands", {}).values())
        for p in cmd.params:
            if getattr(p, "is_flag", False) and p.secondary_opts:
                assert p.name in switches, f"{cmd.name}: {p.opts} / {p.secondary_opts}"
