"""The epoch loop: AdamW with warm-up/decay, validation, best weights, early stopping, resume."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from .. import console
from ..config import ConfigError
from ..geometry import deg
from ..losses import oracle_error
from .runtime import Runtime, rng_state, set_rng_state

#: loss(hyps, conf, directions, activity, progress) -> scalar; progress None = validation.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]


@dataclass
class Job:
    """One model to fit (a run has one; an IE run has one per member).

    Attributes:
        label: shown on the progress bar and in ``history.csv`` (``member`` column).
        model: the bare model (not wrapped), normalization buffers already set.
        loss: the training objective.
        checkpoint: resume-state file of this job.
        fingerprint: of the run's config; a resume with another config is refused.
        on_best: called with the bare model whenever the val loss improves.
    """

    label: str
    model: nn.Module
    loss: LossFn
    checkpoint: Path
    fingerprint: str
    on_best: Callable[[nn.Module], None] = lambda _m: None


@dataclass
class FitState:
    """Everything a resumed job needs besides model/optimizer/scheduler/scaler/RNG."""

    epoch: int = 0
    step: int = 0
    best_val: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None


def warmup_decay(step: int, warmup: int) -> float:
    """LR factor: linear warm-up to 1 over ``warmup`` steps, then ``sqrt(warmup / step)``.

    The warm-up then inverse-square-root decay of the Transformer ("Noam") schedule,
    with its peak at the configured learning rate.
    """
    s = step + 1
    w = max(warmup, 1)
    return min(s / w, math.sqrt(w / s))


def _save_checkpoint(path: Path, state: FitState, model, opt, sched, scaler, fp: str) -> None:
    """Write the resume state atomically (temporary file, then rename)."""
    blob = {
        "fingerprint": fp,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_state(),
        "state": {k: v for k, v in vars(state).items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, job: Job, opt, sched, scaler, device) -> FitState:
    """Restore a job from its checkpoint (loaded with ``weights_only=True``)."""
    blob = torch.load(path, map_location=device, weights_only=True)
    if blob["fingerprint"] != job.fingerprint:
        raise ConfigError(
            f"--resume: the checkpoint in {path.parent} was made with another config; "
            "use the same options, or drop --resume to start over"
        )
    job.model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    scaler.load_state_dict(blob["scaler"])
    set_rng_state({k: v.cpu() for k, v in blob["rng"].items()})
    return FitState(**blob["state"])


def _batch_to(batch, device) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device, non_blocking=True) for t in batch)


def train_epoch(
    net, job: Job, loader, opt, sched, scaler, st: FitState, total: int, cfg, rt, bar
) -> tuple[float, int]:
    """One pass over the training loader (stops early at ``total`` steps).

    Returns:
        ``(mean loss, chunks seen by this process)``.
    """
    net.train()
    loss_sum, n_batches, n_chunks = 0.0, 0, 0
    for batch in loader:
        if st.step >= total:
            break
        x, d, a = _batch_to(batch, rt.device)  # (b, C, T, F), (b, T, S, 3), (b, T, S)
        with rt.autocast():
            hyps, conf = net(x)  # (b, T, K, 3), (b, T, K)
        loss = job.loss(hyps.float(), conf.float(), d, a, st.step / total)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(job.model.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        sched.step()
        st.step += 1
        loss_sum, n_batches, n_chunks = loss_sum + loss.item(), n_batches + 1, n_chunks + len(x)
        if bar is not None:
            bar[0].update(bar[1], advance=1, info=f"loss {loss.item():.4f}")
    return loss_sum / max(n_batches, 1), n_chunks


@torch.no_grad()
def validate(net, job: Job, loader, rt: Runtime, seed: int = 0) -> tuple[float, float]:
    """Validation loss and oracle error (degrees), averaged over all processes.

    Random terms of the loss (rMCL*'s drawn negatives) come from a generator seeded
    with ``seed`` and the rank, anew at each call: the same weights give the same
    loss, so early stopping and the best checkpoint do not follow noise.
    """
    net.eval()
    gen = torch.Generator(device=rt.device).manual_seed(int(seed) * 1009 + rt.rank)
    sums = [0.0, 0.0, 0.0, 0.0]  # loss * chunks, chunks, oracle * active, active
    for batch in loader:
        x, d, a = _batch_to(batch, rt.device)
        with rt.autocast():
            hyps, conf = net(x)
        hyps, conf = hyps.float(), conf.float()
        n_act = float(a.sum())
        sums[0] += job.loss(hyps, conf, d, a, None, generator=gen).item() * len(x)
        sums[1] += len(x)
        sums[2] += oracle_error(hyps, d, a).item() * n_act
        sums[3] += n_act
    s = rt.all_sum(sums)
    return s[0] / max(s[1], 1), deg(s[2] / max(s[3], 1))


def fit(job: Job, loaders, cfg, rt: Runtime, *, resume: bool, log_rows=None) -> FitState:
    """Train ``job.model`` and leave its best weights (on val loss) in it.

    Args:
        job: the model, its loss and checkpoint path.
        loaders: ``(train_loader, train_sampler, val_loader, val_sampler)``.
        cfg: the TrainConfig.
        rt: the runtime (device, DDP rank, AMP).
        resume: continue from ``job.checkpoint`` when it exists.
        log_rows: called with the job's history rows after every epoch (rank 0).

    Returns:
        The final :class:`FitState` (history, best epoch and loss).
    """
    train_loader, train_sampler, val_loader, val_sampler = loaders
    model = job.model.to(rt.device)
    net = model
    if rt.world > 1:
        dev_ids = [rt.device] if rt.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=dev_ids)
    if cfg.compile:
        net = torch.compile(net)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(train_loader)
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, round(0.05 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(warmup_decay, warmup=warmup))
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    st = FitState()
    if resume and job.checkpoint.is_file():
        st = _load_checkpoint(job.checkpoint, job, opt, sched, scaler, rt.device)
        if rt.main:
            console.log(f"{job.label}: resuming after epoch {st.epoch} (step {st.step})")
    with console.progress() if rt.main else _null_progress() as prog:
        task = prog.add_task(job.label, total=total, completed=st.step, info="")
        while not st.done and st.epoch < cfg.epochs and st.step < total:
            _one_epoch(
                net,
                job,
                (train_loader, train_sampler, val_loader, val_sampler),
                (opt, sched, scaler),
                st,
                total,
                cfg,
                rt,
                (prog, task),
            )
            if rt.main:
                _save_checkpoint(job.checkpoint, st, model, opt, sched, scaler, job.fingerprint)
                if log_rows is not None:
                    log_rows(st.history)
            rt.barrier()
    if st.best_state is not None:
        model.load_state_dict(st.best_state)
    st.done = True
    if rt.main:
        _save_checkpoint(job.checkpoint, st, model, opt, sched, scaler, job.fingerprint)
    return st


def _one_epoch(net, job, loaders, optim, st: FitState, total, cfg, rt, bar) -> None:
    """Train, validate, keep the best weights, and decide on early stopping."""
    train_loader, train_sampler, val_loader, _ = loaders
    opt, sched, scaler = optim
    train_sampler.set_epoch(st.epoch)
    t0 = time.perf_counter()
    train_loss, n_chunks = train_epoch(
        net, job, train_loader, opt, sched, scaler, st, total, cfg, rt, bar
    )
    seconds = time.perf_counter() - t0
    val_loss, val_oracle = validate(net, job, val_loader, rt, cfg.seed)
    improved = val_loss < st.best_val
    if improved:
        st.best_val, st.best_epoch, st.bad_epochs = val_loss, st.epoch, 0
        st.best_state = {k: v.detach().clone().cpu() for k, v in job.model.state_dict().items()}
        if rt.main:
            job.on_best(job.model)
    else:
        st.bad_epochs += 1
    st.history.append(
        {
            "epoch": st.epoch,
            "step": st.step,
            "lr": sched.get_last_lr()[0],
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_oracle_deg": val_oracle,
            "best": improved,
            "train_chunks_per_s": n_chunks * rt.world / max(seconds, 1e-9),
            "seconds": seconds,
        }
    )
    st.epoch += 1
    st.done = st.bad_epochs >= cfg.patience
    bar[0].update(bar[1], info=f"epoch {st.epoch} val {val_loss:.4f} ({val_oracle:.1f} deg)")


class _null_progress:
    """Stands in for the progress bar on processes other than rank 0."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """``history.csv``: one row per epoch (and member, for IE)."""
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, path)
