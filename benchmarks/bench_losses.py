"""Forward + backward time of each loss, vectorized vs a per-frame Python loop.

The baseline is the reference code's structure: a loop over batch items and
frames, computing each frame's distances and assignment separately.

Usage::

    .venv/bin/python benchmarks/bench_losses.py [--batch 128 --frames 25 -K 5 -S 3 --device cpu]

The loop runs on ``--loop-batch`` items (16) and its time is scaled to ``--batch``
(its cost is linear in the number of frames); ``--loop-batch 128`` times it in full.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from rich.table import Table

from ssl_toolkit.core.console import out
from ssl_toolkit.core.geometry import great_circle
from ssl_toolkit.losses import pit_loss, rmcl_loss
from ssl_toolkit.losses.pit import permutations


def loop_loss(hyps, conf, targets, active, mode, beta=0.0, epsilon=0.05, top_n=2, temp=0.5):
    """Per-frame loop: the straightforward baseline (same values as the vectorized loss)."""
    dist_sum = hyps.new_zeros(())
    bce_sum = hyps.new_zeros(())
    n_act = 0
    k = hyps.shape[2]
    for b in range(hyps.shape[0]):
        for t in range(hyps.shape[1]):
            winners = torch.zeros(k, dtype=hyps.dtype, device=hyps.device)
            for s in range(targets.shape[2]):
                if not active[b, t, s]:
                    continue
                d = great_circle(hyps[b, t], targets[b, t, s])  # (K,)
                i = int(d.argmin())
                if mode == "wta":
                    w = F.one_hot(torch.tensor(i), k).to(d)
                elif mode == "relaxed":
                    w = torch.full_like(d, epsilon / (k - 1))
                    w[i] = 1 - epsilon
                elif mode == "top-n":
                    w = torch.zeros_like(d)
                    w[d.detach().topk(top_n, largest=False).indices] = 1 / top_n
                else:  # amcl
                    w = torch.softmax(-d.detach() / temp, 0)
                dist_sum = dist_sum + (w * d).sum()
                n_act += 1
                winners[i] = 1
            if beta:
                bce_sum = bce_sum + F.binary_cross_entropy(conf[b, t], winners, reduction="sum")
    return dist_sum / max(n_act, 1) + beta * bce_sum / conf.numel()


def loop_pit(hyps, conf, targets, active, beta=1.0):
    """Per-frame loop over all permutations."""
    perms = permutations(targets.shape[2]).tolist()
    total_d, total_b = hyps.new_zeros(()), hyps.new_zeros(())
    for b in range(hyps.shape[0]):
        for t in range(hyps.shape[1]):
            y = active[b, t].to(hyps.dtype)
            best = None
            for p in perms:
                d = (great_circle(hyps[b, t, p], targets[b, t]) * y).sum()
                bce = F.binary_cross_entropy(conf[b, t, p], y, reduction="sum")
                if best is None or (d + beta * bce) < best[0] + beta * best[1]:
                    best = (d, bce)
            total_d, total_b = total_d + best[0], total_b + best[1]
    return total_d / active.sum().clamp_min(1) + beta * total_b / active.numel()


def make_inputs(b, t, k, s, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(b, t, k, 3, generator=g).to(device).requires_grad_(True)
    logit = torch.randn(b, t, k, generator=g).to(device).requires_grad_(True)
    targets = F.normalize(torch.randn(b, t, s, 3, generator=g), dim=-1).to(device)
    active = (torch.rand(b, t, s, generator=g) > 0.3).to(device)
    return raw, logit, targets, active


def timed(fn, inputs, repeats, device) -> tuple[float, float]:
    """Median seconds of forward + backward, and the loss value."""
    raw, logit, targets, active = inputs
    times, value = [], None
    for i in range(repeats + 1):  # the first run warms up and is not timed
        raw.grad = logit.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = fn(F.normalize(raw, dim=-1), torch.sigmoid(logit), targets, active)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
        value = loss.item()
    return sorted(times)[len(times) // 2], value


LOSSES = {
    "wta": (lambda *a: rmcl_loss(*a, beta=0.0), lambda *a: loop_loss(*a, "wta")),
    "wta-relaxed": (
        lambda *a: rmcl_loss(*a, mode="relaxed", beta=0.0),
        lambda *a: loop_loss(*a, "relaxed"),
    ),
    "wta-top-n": (
        lambda *a: rmcl_loss(*a, mode="top-n", top_n=2, beta=0.0),
        lambda *a: loop_loss(*a, "top-n"),
    ),
    "rmcl": (lambda *a: rmcl_loss(*a, beta=1.0), lambda *a: loop_loss(*a, "wta", beta=1.0)),
    "amcl": (
        lambda *a: rmcl_loss(*a, mode="amcl", temperature=0.5, beta=1.0),
        lambda *a: loop_loss(*a, "amcl", beta=1.0),
    ),
    "pit": (lambda *a: pit_loss(*a, beta=1.0), lambda *a: loop_pit(*a, beta=1.0)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("-K", type=int, default=5)
    ap.add_argument("-S", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--loop-repeats", type=int, default=1)
    ap.add_argument(
        "--loop-batch",
        type=int,
        default=16,
        help="batch items the loop runs on; its time is scaled to --batch (it is linear in B)",
    )
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    table = Table(
        title=f"loss fwd+bwd, B={args.batch} T={args.frames} K={args.K} S={args.S} "
        f"on {dev} ({torch.get_num_threads()} threads)"
    )
    for col in ("loss", "vectorized ms", "per-frame loop ms (scaled)", "speed-up", "|diff|"):
        table.add_column(col, justify="right")
    for name, (vec, loop) in LOSSES.items():
        k = args.S if name == "pit" else args.K  # PIT: one slot per source
        inputs = make_inputs(args.batch, args.frames, k, args.S, dev)
        t_vec, _ = timed(vec, inputs, args.repeats, dev)
        sub = [x[: args.loop_batch].detach().requires_grad_(x.requires_grad) for x in inputs]
        t_loop, v_loop = timed(loop, sub, args.loop_repeats, dev)
        t_loop *= args.batch / min(args.loop_batch, args.batch)
        _, v_vec = timed(vec, sub, 1, dev)  # same inputs as the loop: the values must agree
        table.add_row(
            name,
            f"{t_vec * 1e3:.2f}",
            f"{t_loop * 1e3:.0f}",
            f"{t_loop / t_vec:.0f}x",
            f"{abs(v_vec - v_loop):.1e}",
        )
    out.print(table)


if __name__ == "__main__":
    main()
