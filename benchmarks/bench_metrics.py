"""Benchmark of ssl_toolkit.analysis.metrics: speed on 100k frames and exactness against POT.

Usage::

    .venv/bin/python benchmarks/bench_metrics.py [--frames 100000] [--k 5] [--check 2000]
        [--scaling 1,2,3,5,8]

Frames have K random hypotheses with random confidences and 1 to 3 active targets
(uniform). Prints the time of the EMD alone, of every metric together
(``metrics.all_metrics``), the largest deviation from ``ot.emd2`` called frame by
frame on ``--check`` frames (and that loop's time, extrapolated to all frames),
and the EMD time for each K of ``--scaling``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ssl_toolkit.analysis import metrics
from ssl_toolkit.core.geometry import great_circle
from ssl_toolkit.testing import random_directions


def make_frames(n: int, k: int, seed: int = 0):
    """Random hypotheses, confidences, 1..3 active targets per frame, 1 s segments."""
    rng = np.random.default_rng(seed)
    hyps = random_directions(rng, (n, k))
    conf = rng.random((n, k)).astype(np.float32)
    targets = random_directions(rng, (n, 3))
    active = np.arange(3)[None] < rng.integers(1, 4, n)[:, None]
    segment = np.arange(n) // 50
    return hyps, conf, targets, active, segment


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def pot_reference(hyps, conf, targets, active) -> np.ndarray:
    """``ot.emd2`` frame by frame, in degrees."""
    import ot

    out = np.empty(len(hyps))
    for i in range(len(hyps)):
        t = targets[i][active[i]].astype(np.float64)
        p = conf[i].astype(np.float64)
        p /= p.sum()
        cost = great_circle(hyps[i][:, None].astype(np.float64), t[None])
        out[i] = np.degrees(ot.emd2(p, np.full(len(t), 1 / len(t)), cost))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--check", type=int, default=2000)
    ap.add_argument("--scaling", default="1,2,3,5,8")
    a = ap.parse_args()

    hyps, conf, targets, active, segment = make_frames(a.frames, a.k)
    _, t_emd = timed(metrics.emd_per_frame, hyps, conf, targets, active)
    detected = conf >= 0.5
    _, t_all = timed(metrics.all_metrics, hyps, conf, targets, active, detected, segment)
    print(
        f"frames={a.frames} K={a.k}: EMD {t_emd:.2f} s (target < 3 s), "
        f"all metrics {t_all:.2f} s (target < 15 s)"
    )

    sl = slice(0, a.check)
    ours = metrics.emd_per_frame(hyps[sl], conf[sl], targets[sl], active[sl])
    ref, t_pot = timed(pot_reference, hyps[sl], conf[sl], targets[sl], active[sl])
    print(
        f"exactness on {a.check} frames: max |ours - ot.emd2| = "
        f"{np.abs(ours - ref).max():.2e} deg; POT per frame would take "
        f"{t_pot * a.frames / a.check:.1f} s on {a.frames} frames"
    )

    from ssl_toolkit.analysis import density

    n = min(a.frames, 20_000)
    sl = slice(0, n)
    args = (hyps[sl], conf[sl], targets[sl], active[sl])
    grid = np.geomspace(1.0, 3000.0, 15)  # eval's kappa search (15 Voronoi NLLs)
    _, t_kappa = timed(density.choose_kappa, *args, grid, True)
    print(
        f"Voronoi NLL kappa search on {n} frames: {t_kappa:.2f} s ({t_kappa / 15:.2f} s per kappa)"
    )

    for k in [int(x) for x in a.scaling.split(",")]:
        h, c, t, act, _ = make_frames(a.frames, k, seed=1)
        _, dt = timed(metrics.emd_per_frame, h, c, t, act)
        print(f"  K={k:2d}: EMD {dt:.2f} s")


if __name__ == "__main__":
    main()
