"""What a user sees: progress as plain lines in a log file, tables that never cut a number,
log lines without source locations, ``--help`` for every recipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from ssl_toolkit.core import console

REPO = Path(__file__).resolve().parents[1]


def test_progress_prints_plain_lines_with_eta_when_stderr_is_a_file(tmp_path):
    """A stage run into a log file (stderr not a terminal) reports progress while it runs:
    lines `synth ...: i/N (p%)  elapsed ...  ETA ...` at the interval, and a final one."""
    log = tmp_path / "synth.log"
    env = {**os.environ, "SSL_PROGRESS_SECONDS": "0", "SSL_THREADS": "1"}
    args = ["prep", "synth", str(tmp_path / "scenes"), "--n-clips", "4", "--clip-seconds", "1",
            "--fs", "8000", "--subsets", "ov1"]  # fmt: skip
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-m", "ssl_toolkit", *args], stdout=f, stderr=f,
                       env=env, check=True, timeout=300)  # fmt: skip
    lines = [ln for ln in log.read_text().splitlines() if re.match(r"synth \S+: \d", ln)]
    counts = [int(re.match(r"synth \S+: (\d+)/4", ln).group(1)) for ln in lines]
    assert counts == [1, 2, 3, 4], log.read_text()
    assert all("elapsed" in ln for ln in lines)
    assert "ETA" in lines[0] and "ETA" not in lines[-1]  # the last line says it is done


def test_plain_progress_interval_and_final_line(monkeypatch):
    """With a long interval only the final line of each task is printed, once."""
    monkeypatch.setenv("SSL_PROGRESS_SECONDS", "3600")
    cap = Console(file=__import__("io").StringIO(), width=120)
    monkeypatch.setattr(console, "err", cap)
    with console.progress() as p:
        a = p.add_task("features", total=5, info="")
        for _ in range(5):
            p.advance(a)
        p.advance(a, 0)  # after the end: nothing more
        b = p.add_task("steps", total=None, info="loss 0.25")
        p.update(b, advance=7)
    text = cap.file.getvalue().splitlines()
    assert text[0].startswith("features: 5/5 (100%)  elapsed")
    assert text[1].startswith("steps: 7  elapsed") and text[1].endswith("loss 0.25")
    assert len(text) == 2


def test_log_lines_carry_no_source_location(capsys):
    console.log("hello")
    assert "console.py" not in capsys.readouterr().err


def _cells(text: str) -> set[str]:
    return {c.strip() for line in text.splitlines() for c in re.split(r"[│┃]", line)}


@pytest.mark.parametrize("width", [40, 80, 200])
def test_tables_never_cut_a_number(width):
    """A report wider than the terminal is split into stacked tables led by the row names;
    every cell stays whole, and the note says where the full table is."""
    cols = ["eval", "subset", "method", "oracle°", "EMD°", "Hung°", "recall", "F20", "LE_CD°",
            "F20_cls", "LE_cls°"]  # fmt: skip
    rows = [["evals/rmcl5_a_long_name", "overall", "rmcl", "113.57", "22.41", "15.02", "0.87",
             "0.523", "21.05", "0.412", "133.12"],
            ["evals/pit", "D1", "pit", "13.57", "2.41", "5.02", "1.00", "0.500", "1.05", "0.000",
             "3.12"]]  # fmt: skip
    cap = Console(file=__import__("io").StringIO(), width=width)
    console.print_table("ssl report", cols, rows, keys=2, right=cols[3:], full="rep/report.md",
                        console=cap)  # fmt: skip
    text = cap.file.getvalue()
    assert "…" not in text
    cells = _cells(text)
    for r in rows:
        assert set(r) <= cells, (r, text)
    split = "(split to fit" in text
    assert split == (width < 150)
    if split:
        assert "rep/report.md" in text
        assert all(len(ln) <= width for ln in text.splitlines() if "evals/pit" in ln) or width < 60


RECIPES = ["resyn/run.sh", "ansyn/run.sh", "starss23/run.sh", "toy/run.sh", "learning_check.sh",
           "smoke.sh"]  # fmt: skip


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_has_help(recipe):
    res = subprocess.run(["bash", str(REPO / "recipes" / recipe), "--help"], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout or "usage" in res.stdout.lower(), res.stdout
    assert not res.stdout.startswith("#!")


def test_recipe_unknown_option_points_to_help():
    res = subprocess.run(["bash", str(REPO / "recipes" / "smoke.sh"), "--bogus"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 2
    assert "unknown option --bogus" in res.stderr and "--help" in res.stderr
