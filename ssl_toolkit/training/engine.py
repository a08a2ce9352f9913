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

from ..core import cpu
from ..core.config import ConfigError
from ..core.errors import UserError
from ..core.geometry import deg
from ..losses import oracle_angle
from .monitor import Monitor, say
from .runtime import Runtime, rng_state, set_rng_state

#: loss(hyps, conf, directions, activity, progress) -> scalar; progress None = validation.
#: Batches with classes (class-aware accdoa) also pass ``classes=[b, T, S]``.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]


@dataclass
class Job:
    """One model to fit (a run has one; an IE run has one per member).

    Attributes:
        label: shown in the epoch lines and on the progress bar.
        model: the bare model (not wrapped), normalization buffers already set.
        loss: the training objective.
        checkpoint: resume-state file of this job.
        fingerprint: of the run's config; a resume with another config is refused.
        on_best: called with the bare model whenever the val loss improves.
        tag: prefix of its TensorBoard tags (``member0/`` for an IE member).
        forward_kwargs: keyword arguments of the model's forward in training and
            validation (accdoa: ``raw=True``, every track for ADPIT).
    """

    label: str
    model: nn.Module
    loss: LossFn
    checkpoint: Path
    fingerprint: str
    on_best: Callable[[nn.Module], None] = lambda _m: None
    tag: str = ""
    forward_kwargs: dict[str, Any] = field(default_factory=dict)


class Diverged(UserError):
    """Training stopped: a model's outputs or its loss are not finite (the message says
    which, where, and what to change)."""


class _NotFinite(UserError):
    """Raised by :func:`check_finite` (``what``: which is not finite); the epoch loop
    turns it into :class:`Diverged`, saying where."""

    def __init__(self, what: str):
        super().__init__(f"the model diverged: {what}; lower --lr")
        self.what = what


def check_finite(hyps: torch.Tensor, conf: torch.Tensor, loss: torch.Tensor | None = None):
    """The one check of every method's forward pass (training and validation): the
    outputs before the loss sees them (a NaN confidence makes a BCE raise, or assert on
    CUDA), and the loss. One device sync per call.

    Raises:
        _NotFinite: naming the outputs or the loss.
    """
    ok = torch.isfinite(hyps).all() & torch.isfinite(conf).all()
    if loss is not None:
        ok = ok & torch.isfinite(loss).all()
    if not bool(ok):
        outputs = bool(torch.isfinite(hyps).all() & torch.isfinite(conf).all())
        raise _NotFinite("its loss is not finite" if outputs else "its outputs are not finite")


def _diverged(job: Job, e: _NotFinite, cfg, epoch: int, step: int | None) -> Diverged:
    where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch} (validation)"
    return Diverged(
        f"{job.label}: training diverged at {where}: the model's weights left the range "
        f"of finite numbers ({e.what}); lower --lr (now {cfg.lr:g}) or --grad-clip and "
        "train again (--resume would repeat it)"
    )


def _extra(rest: list) -> dict[str, Any]:
    """The loss's keyword arguments from a batch's items after ``(x, d, a)``: its classes."""
    return {"classes": rest[0]} if rest else {}


@dataclass
class FitState:
    """Everything a resumed job needs besides model/optimizer/scheduler/scaler/RNG.

    ``epoch`` counts the epochs done; epochs are numbered from 1 (``history.csv``,
    ``best_epoch``: 0 = none yet).
    """

    epoch: int = 0
    step: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None


def planned_steps(cfg, per_epoch: int) -> int:
    """Optimizer steps of a job: ``epochs * per_epoch``, capped by ``max_steps``."""
    total = cfg.epochs * per_epoch
    return min(total, cfg.max_steps) if cfg.max_steps else total


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
    from .resume import load_state

    blob = load_state(path, map_location=device)
    if blob["fingerprint"] != job.fingerprint:
        raise ConfigError(
            f"--resume: the checkpoint in {path.parent} was made with another config; "
            "use the same options, or drop --resume to start over"
        )
    job.model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    if blob["scaler"]:  # empty when written without fp16 loss scaling (fp32, bf16)
        scaler.load_state_dict(blob["scaler"])
    set_rng_state({k: v.cpu() for k, v in blob["rng"].items()})
    return FitState(**blob["state"])


def _no_mark(_phase: str) -> None:
    pass


def train_step(
    net, job: Job, batch, optim, cfg, rt: Runtime, progress: float, mark=_no_mark
) -> torch.Tensor:
    """One optimizer step on ``batch`` (already on the device); returns the detached loss.

    Args:
        net: the model as trained (DDP-wrapped and/or compiled).
        job: its loss and bare model (gradient clipping).
        batch: ``(x [b, C, T, F], d [b, T, S, 3], a [b, T, S])``, then ``classes [b, T, S]``
            when the loader reads classes.
        optim: ``(optimizer, scheduler, grad scaler)``.
        cfg: the TrainConfig (``grad_clip``).
        rt: the runtime (autocast).
        progress: fraction of training done (annealed losses).
        mark: called with ``"forward"`` (with the loss), ``"backward"`` and ``"step"`` as
            each phase ends; ``benchmarks/bench_train.py`` times them.
    """
    opt, sched, scaler = optim
    x, d, a, *rest = batch  # (b, C, T, F), (b, T, S, 3), (b, T, S)[, classes (b, T, S)]
    with rt.autocast():
        hyps, conf = net(x, **job.forward_kwargs)  # (b, T, K, 3), (b, T, K)
    hyps, conf = hyps.float(), conf.float()
    check_finite(hyps, conf)  # before the loss: inputs were checked by the loader
    loss = job.loss(hyps, conf, d, a, progress, **_extra(rest))
    mark("forward")
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    mark("backward")
    if cfg.grad_clip:
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(job.model.parameters(), cfg.grad_clip)
    scaler.step(opt)
    scaler.update()
    sched.step()
    mark("step")
    return loss.detach()


def train_epoch(
    net, job: Job, loader, opt, sched, scaler, st: FitState, total: int, cfg, rt, mon: Monitor
) -> tuple[float, int]:
    """One pass over the training loader (stops early at ``total`` steps).

    Returns:
        ``(mean loss, chunks seen by this process)``.

    Raises:
        Diverged: the outputs or the loss of a step are not finite (before its update).
    """
    net.train()
    loss_sum, n_batches, n_chunks = 0.0, 0, 0
    for batch in loader:
        if st.step >= total:
            break
        if not cfg.deterministic:  # a fixed thread count keeps deterministic runs exact
            cpu.tick()
        try:
            loss = train_step(net, job, batch, (opt, sched, scaler), cfg, rt, st.step / total)
        except _NotFinite as e:
            raise _diverged(job, e, cfg, st.epoch + 1, st.step + 1) from None
        loss = loss.item()
        if not math.isfinite(loss):
            raise _diverged(
                job, _NotFinite("its loss is not finite"), cfg, st.epoch + 1, st.step + 1
            )
        st.step += 1
        loss_sum, n_batches, n_chunks = loss_sum + loss, n_batches + 1, n_chunks + len(batch[0])
        mon.step(loss)
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
    for x, d, a, *rest in loader:  # on the device
        with rt.autocast():
            hyps, conf = net(x, **job.forward_kwargs)
        hyps, conf = hyps.float(), conf.float()
        check_finite(hyps, conf)
        n_act = float(a.sum())
        loss = job.loss(hyps, conf, d, a, None, generator=gen, **_extra(rest))
        check_finite(hyps, conf, loss)
        sums[0] += loss.item() * len(x)
        sums[1] += len(x)
        sums[2] += oracle_angle(hyps, d, a).item() * n_act
        sums[3] += n_act
    s = rt.all_sum(sums)
    return s[0] / max(s[1], 1), deg(s[2] / max(s[3], 1))


def fit(
    job: Job, loaders, cfg, rt: Runtime, *, resume: bool, log_rows=None, writer=None
) -> FitState:
    """Train ``job.model`` and leave its best weights (on val loss) in it.

    Args:
        job: the model, its loss and checkpoint path.
        loaders: ``(train_loader, train_sampler, val_loader, val_sampler)``.
        cfg: the TrainConfig.
        rt: the runtime (device, DDP rank, AMP).
        resume: continue from ``job.checkpoint`` when it exists.
        log_rows: called with the job's history rows after every epoch (rank 0).
        writer: a TensorBoard ``SummaryWriter`` (rank 0), or None.

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
    total = planned_steps(cfg, len(train_loader))
    opt, sched, scaler = make_optimizer(model, cfg, rt, total)
    st = FitState()
    if resume and job.checkpoint.is_file():
        st = _load_checkpoint(job.checkpoint, job, opt, sched, scaler, rt.device)
        if rt.main:
            say(f"{job.label}: resuming after epoch {st.epoch} (step {st.step})")
    epochs = min(cfg.epochs, -(-total // max(len(train_loader), 1)))
    mon = Monitor(job.label, total, epochs, st.step, show=rt.main, writer=writer, tag=job.tag)
    with mon:
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
                mon,
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


def make_optimizer(model, cfg, rt: Runtime, total: int) -> tuple:
    """AdamW, its warm-up/decay schedule over ``total`` steps, and the fp16 loss scaler."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, round(0.05 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, partial(warmup_decay, warmup=warmup))
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    return opt, sched, scaler


def _one_epoch(net, job, loaders, optim, st: FitState, total, cfg, rt, mon: Monitor) -> None:
    """Train, validate, keep the best weights, and decide on early stopping."""
    train_loader, train_sampler, val_loader, _ = loaders
    opt, sched, scaler = optim
    train_sampler.set_epoch(st.epoch)
    t0 = time.perf_counter()
    train_loss, n_chunks = train_epoch(
        net, job, train_loader, opt, sched, scaler, st, total, cfg, rt, mon
    )
    seconds = time.perf_counter() - t0
    try:
        val_loss, val_oracle = validate(net, job, val_loader, rt, cfg.seed)
    except _NotFinite as e:
        raise _diverged(job, e, cfg, st.epoch + 1, None) from None
    st.epoch += 1  # numbered from 1
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
    st.done = st.bad_epochs >= cfg.patience
    mon.epoch(st.history[-1])


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """``history.csv``: one row per epoch (and member, for IE)."""
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, path)
