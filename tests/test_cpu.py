"""The CPU runtime the CLI sets up before torch loads: threads from the cores this process
may use, idle OpenMP workers that sleep, and the user's settings winning."""

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os, sys
{pre}
from ssl_toolkit.cli import app
import torch
print(json.dumps({{"threads": torch.get_num_threads(),
                  "policy": os.environ.get("OMP_WAIT_POLICY")}}))
"""


def probe(env_extra, pre=""):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "SSL_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
    }
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_defaults_follow_the_cpu_affinity_and_sleep_when_idle():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    got = probe({}, pre="os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})")
    assert got == {"threads": 1, "policy": "PASSIVE"}  # one allowed core, not the machine's
    assert probe({})["threads"] == len(os.sched_getaffinity(0))


def test_user_settings_win():
    assert probe({"OMP_NUM_THREADS": "1"})["threads"] == 1
    assert probe({"OMP_NUM_THREADS": "2", "SSL_THREADS": "1"})["threads"] == 1
    assert probe({"OMP_WAIT_POLICY": "ACTIVE"})["policy"] == "ACTIVE"


def test_threads_option_and_bad_values():
    import torch
    from typer.testing import CliRunner

    from ssl_toolkit.cli import app

    before = torch.get_num_threads()
    try:
        res = CliRunner().invoke(app, ["--threads", "1", "prep", "--help"])
        assert res.exit_code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    res = CliRunner().invoke(app, ["--threads", "0", "prep", "--help"])
    assert res.exit_code != 0 and "--threads must be a positive integer" in res.output
    env = {**os.environ, "SSL_THREADS": "lots"}
    out = subprocess.run([sys.executable, "-m", "ssl_toolkit", "--help"], env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode != 0 and "SSL_THREADS must be a positive integer" in out.stderr
