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

    from ssl_toolkit.config_reference import SECTIONS, reference

    text = reference()
    committed = (Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md").read_text()
    assert committed == text, "docs/CONFIG.md is stale: python -m ssl_toolkit.config_reference"
    for module, name, _ in SECTIONS.values():
        for f in dataclasses.fields(getattr(importlib.import_module(module), name)):
            row = next(line for line in text.splitlines() if line.startswith(f"| `{f.name}` |"))
            assert not row.endswith("|  |"), f"{name}.{f.name} has no description"
