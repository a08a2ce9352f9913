"""Training throughput (chunks/s) of the CRNN with the rMCL loss, CPU or GPU.

Runs optimizer steps on random features held in memory, so it measures the model and
loss, not the disk. Default: the paper's CRNN on the paper's input (STFT magnitude and
phase of 4 channels at 44.1 kHz: [8, 25, 1024]).

Usage::

    .venv/bin/python benchmarks/bench_train.py [--device auto --batch 32 --steps 20]
    .venv/bin/python benchmarks/bench_train.py --small --channels 7 --bins 64   # the demo's
    .venv/bin/python benchmarks/bench_train.py --device cuda --amp --compile
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from rich.table import Table

from ssl_toolkit.console import out
from ssl_toolkit.losses import rmcl_loss
from ssl_toolkit.models import build_model
from ssl_toolkit.training.runtime import pick_device

#: The CRNN of ``ssl demo`` and of the recipes' small scale (on log-mel input [7, 25, 64]).
SMALL = {"channels": (32, 32, 32), "pools": (4, 4, 2), "gru_layers": 2, "gru_units": 64}


def throughput(model, device, batch, steps, shape, amp: bool) -> float:
    """Chunks per second of forward + rMCL loss + backward + AdamW step."""
    c, t, f = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c, t, f, generator=g).to(device)
    d = F.normalize(torch.randn(batch, t, 3, 3, generator=g), dim=-1).to(device)
    a = (torch.rand(batch, t, 3, generator=g) > 0.3).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    use_amp = amp and device.type == "cuda" and dtype is not None

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
            hyps, conf = model(x)
        loss = rmcl_loss(hyps.float(), conf.float(), d, a)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up (and compilation)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--channels", type=int, default=8, help="feature maps C (STFT of 4 ch.: 8)")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--bins", type=int, default=1024, help="frequency bins F (44.1 kHz: 1024)")
    ap.add_argument("-K", type=int, default=5)
    ap.add_argument(
        "--small", action="store_true", help="the demo CRNN (with --channels 7 --bins 64)"
    )
    ap.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = ap.parse_args()
    dev = pick_device(args.device)
    sizes = SMALL if args.small else {}
    kwargs = dict(n_channels=args.channels, n_bins=args.bins, K=args.K, **sizes)
    model = build_model("crnn", **kwargs).to(dev).train()
    if args.compile:
        model = torch.compile(model)
    shape = (args.channels, args.frames, args.bins)
    rate = throughput(model, dev, args.batch, args.steps, shape, args.amp)
    n_params = sum(p.numel() for p in model.parameters())
    t = Table(title=f"training throughput on {dev} ({torch.get_num_threads()} CPU threads)")
    for col in ("model", "params", "input [C, T, F]", "batch", "amp", "compile", "chunks/s"):
        t.add_column(col, justify="right")
    t.add_row(
        "demo CRNN" if args.small else "paper CRNN",
        f"{n_params:,}",
        str(list(shape)),
        str(args.batch),
        str(args.amp),
        str(args.compile),
        f"{rate:.1f}",
    )
    out.print(t)


if __name__ == "__main__":
    main()
