"""The CPU runtime: threads from the cores this process may use, given back to busy
processes by the governor, and the user's settings winning."""

import json
import os
import subprocess
import sys
import time

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


def test_defaults_follow_the_cpu_affinity():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    got = probe({}, pre="os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})")
    assert got["threads"] == 1  # one allowed core, not the machine's
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


def test_governor_targets_the_cores_others_leave_free():
    from ssl_toolkit.core.cpu import Governor, available_cores

    g = Governor()
    g.reset(available_cores(), adaptive=True)
    n = min(available_cores(), os.cpu_count() or 1)
    assert g.target(0.0) == n  # quiet: every core
    assert g.target(0.7) == max(1, n - 1)  # one busy process sharing the cores
    assert g.target(float(n)) == 1  # never below one thread
    g.reset(1, adaptive=True)
    assert g.target(0.0) == 1  # never above the configured count


def test_governor_gives_cores_back_to_busy_processes():
    """Beside processes that keep every core busy, the toolkit's loops drop to one torch
    thread (one thread never spins); when they stop, it takes the cores back."""
    code = """
import time, subprocess, sys
import ssl_toolkit.cli  # configures the CPU runtime
import torch
from ssl_toolkit.core import cpu
n = torch.get_num_threads()
spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
x = torch.randn(256, 256)
try:
    t_end = time.monotonic() + 3.5
    while time.monotonic() < t_end:
        cpu.tick(); x @ x
    busy = torch.get_num_threads()
finally:
    for p in spin:
        p.kill(); p.wait()
t_end = time.monotonic() + 3.5
while time.monotonic() < t_end:
    cpu.tick(); x @ x
print(n, busy, torch.get_num_threads())
"""
    from ssl_toolkit.core import cpu

    before = cpu._proc_times()
    time.sleep(1.0)
    after = cpu._proc_times()
    if before is None or after is None:
        pytest.skip("no /proc/stat: the governor cannot measure the machine")
    if cpu.others_cores(before, after) > 0.5:  # the premise: cores come back once we stop
        pytest.skip("other processes already keep a core busy: no core can come back")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SSL_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    n, busy, after = map(int, out.stdout.split())
    if n == 1:
        pytest.skip("one core: nothing to give back")
    assert busy == 1 and after == n
