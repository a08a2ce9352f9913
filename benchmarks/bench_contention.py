"""Throughput on a shared CPU: quiet, and beside one and two busy processes, in one run.

Two workloads, each timed in a fresh child process (so the OpenMP runtime starts with the
environment under test):

- ``gru``: a 2-layer bidirectional GRU forward on ``[16, 25, 128]`` (128 units), ms per call;
- ``train``: training steps of ``ssl demo``'s CRNN with the rMCL loss on its input
  ``[16, 7, 25, 64]`` (log-mel + intensity vectors, batch 16), ms per step; the demo's
  training stage is 15 epochs of these steps.

Two runtimes: ``default`` (torch's own: as many threads as cores, OpenMP's default wait
policy, what ``ssl`` did before it set up the CPU) and ``ssl`` (what the toolkit does now:
threads from the CPU affinity, and ``ssl_toolkit.core.cpu.tick`` between calls, which gives
cores back to other processes; the threads column is the count in force at the end). The
busy processes are pure-Python spin loops, one per extra load level. Each child warms up for
3 s, then the median of repeated calls is taken; ratios are against the quiet time of the
same runtime in the same run, and ``ssl`` quiet against ``default`` quiet.

Usage::

    .venv/bin/python benchmarks/bench_contention.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time
runtime, workload, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
tick = lambda: None
if runtime == "ssl":
    import ssl_toolkit.cli  # noqa: F401  (sets up the CPU runtime before torch)
    from ssl_toolkit.core.cpu import tick  # what the toolkit's loops call between steps
import statistics
import torch
import torch.nn.functional as F

def timed(fn, n, warm_s=3.0):
    t_end = time.perf_counter() + warm_s  # long enough for the governor to sample the load
    while time.perf_counter() < t_end:
        tick(); fn()
    out = []
    for _ in range(n):
        tick()
        t0 = time.perf_counter(); fn(); out.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(out)

torch.manual_seed(0)
if workload == "gru":
    gru = torch.nn.GRU(128, 128, num_layers=2, batch_first=True, bidirectional=True).eval()
    x = torch.randn(16, 25, 128)
    with torch.no_grad():
        ms = timed(lambda: gru(x), repeats)
else:
    from ssl_toolkit.losses import rmcl_loss
    from ssl_toolkit.models import build_model
    model = build_model("crnn", n_channels=7, n_bins=64, K=5, channels=(32, 32, 32),
                        pools=(4, 4, 2), gru_layers=2, gru_units=64).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(16, 7, 25, 64)
    d = F.normalize(torch.randn(16, 25, 3, 3), dim=-1)
    a = torch.rand(16, 25, 3) > 0.3
    def step():
        hyps, conf = model(x)
        loss = rmcl_loss(hyps, conf, d, a)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    ms = timed(step, repeats)
print(json.dumps({"ms": ms, "threads": torch.get_num_threads(),
                  "policy": os.environ.get("OMP_WAIT_POLICY", "(default)")}))
"""

SPIN = "while True: pass"


def child(runtime: str, workload: str, repeats: int) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "SSL_THREADS", "MKL_NUM_THREADS")
    }
    res = subprocess.run([sys.executable, "-c", CHILD, runtime, workload, str(repeats)],
                         env=env, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--loads", default="0,1,2", help="busy processes beside the workload")
    args = ap.parse_args()
    from rich.table import Table

    from ssl_toolkit.core.console import out

    rows = []
    for load in (int(x) for x in args.loads.split(",")):
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(load)]
        time.sleep(0.5)
        try:
            for workload in ("gru", "train"):
                for runtime in ("default", "ssl"):
                    rows.append({"load": load, "workload": workload, "runtime": runtime,
                                 **child(runtime, workload, args.repeats)})  # fmt: skip
        finally:
            for p in spinners:
                p.kill()
                p.wait()
    quiet = {(r["workload"], r["runtime"]): r["ms"] for r in rows if r["load"] == 0}
    t = Table(title=f"contention ({os.cpu_count()} CPUs; median ms per call)")
    for col in ("workload", "runtime", "threads", "wait policy", "busy procs", "ms", "x quiet"):
        t.add_column(col, justify="right")
    for r in sorted(rows, key=lambda r: (r["workload"], r["runtime"], r["load"])):
        base = quiet.get((r["workload"], r["runtime"]))
        ratio = f"{r['ms'] / base:.2f}" if base else "-"
        t.add_row(r["workload"], r["runtime"], str(r["threads"]), r["policy"], str(r["load"]),
                  f"{r['ms']:.1f}", ratio)  # fmt: skip
    out.print(t)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
