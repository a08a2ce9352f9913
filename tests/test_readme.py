"""Every README command marked runnable (`<!-- runnable -->` before its ```bash block) runs
as written, in order, in a fresh directory, on tiny settings.

"Tiny" is added, never substituted: a bash function `ssl` calls the toolkit with the
README's own arguments followed by options that shrink the work (fewer, shorter clips;
a few training steps of a small CRNN; the toy's quick preset). Later options win, so the
README's options are all parsed and checked. Files the README says the user brings
(`synth.toml`, `amcl.toml`, `recording.wav`, `other.flac`) are made here.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "prep synth": "--n-clips 15 --clip-seconds 2 --fs 16000",  # 5 per subset: 3/1/1 split
    "train": '--epochs 1 --max-steps 2 --batch-size 4 --config "$TINY_TOML"',
    "toy": "--quick",
}

WRAPPER = r"""
set -euo pipefail
ssl() {
  local extra=()
  case "$1 ${2:-}" in
    "prep synth") read -ra extra <<< "%(synth)s" ;;
  esac
  case "$1" in
    train) extra=(--epochs 1 --max-steps 2 --batch-size 4 --config "$TINY_TOML") ;;
    toy) extra=(--quick) ;;
    predict) make_recordings ;;
  esac
  "%(python)s" -m ssl_toolkit "$@" "${extra[@]}"
}
make_recordings() {  # the user's recordings: two clips of the synthesized scenes
  [ -f recording.wav ] && return 0
  "%(python)s" - <<'PY'
import glob, soundfile as sf
from scipy.signal import resample_poly
wavs = sorted(glob.glob("data/resyn/wav/*.wav"))
x, fs = sf.read(wavs[0]); sf.write("recording.wav", x, fs)
y, fs = sf.read(wavs[1]); sf.write("other.flac", resample_poly(y, 3, 2, axis=0), fs * 3 // 2)
PY
}
"""


def runnable_blocks(text: str) -> list[str]:
    return re.findall(r"<!-- runnable -->\s*\n```bash\n(.*?)```", text, re.S)


def test_readme_marks_the_stage_examples_runnable():
    blocks = runnable_blocks((ROOT / "README.md").read_text())
    script = "\n".join(blocks)
    for stage in ("prep synth", "prep features", "train", "eval", "baseline", "report",
                  "export", "predict", "toy"):  # fmt: skip
        assert f"ssl {stage} " in script, f"no runnable README example of ssl {stage}"


def test_readme_commands_run_as_written(tmp_path):
    blocks = runnable_blocks((ROOT / "README.md").read_text())
    (tmp_path / "tiny.toml").write_text(
        "[train]\nchannels = [8, 8]\ngru_layers = 1\ngru_units = 16\n"
    )
    (tmp_path / "synth.toml").write_text("[synth]\nsnr_db = 20.0\nseed = 5\n")
    (tmp_path / "amcl.toml").write_text('[train]\ntemperature_schedule = "linear"\n')
    venv = Path(sys.executable).parents[1]
    if not (venv / "bin" / "activate").is_file():
        pytest.skip("the tests do not run in a venv: the README's `source .venv/bin/activate`")
    (tmp_path / ".venv").symlink_to(venv)  # the README runs from the clone, beside .venv
    script = WRAPPER % {"python": sys.executable, "synth": TINY["prep synth"]}
    script += "\n".join(blocks)
    env = {"TINY_TOML": str(tmp_path / "tiny.toml"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    for made in ("runs/rmcl5/curves.png", "evals/rmcl5/metrics.json", "evals/music/metrics.json",
                 "report/report.md", "exports/rmcl5/model.onnx", "predictions/recording.csv",
                 "predictions/other.csv", "toy_out/summary.md"):  # fmt: skip
        assert (tmp_path / made).is_file(), made
