"""``train()``: one run artifact from a features artifact and a TrainConfig."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import console
from ..core.artifacts import Manifest, build_artifact, fingerprint
from ..core.config import ConfigError
from ..core.errors import DataError
from ..features.store import FeatureSet, open_features
from ..models import build_model, save_model
from ..models.crnn import default_pools, pooled_bins
from ..models.localize import MERGE_RADII_DEG
from .curves import plot_curves
from .data import loader_options, make_loader
from .engine import Job, fit, planned_steps, validate, write_history
from .monitor import banner, open_tensorboard, precision_name, require_tensorboard, say
from .objectives import make_loss
from .options import TrainConfig, config_dict
from .resume import check_resume, learning_config, partial_dir, store_config
from .runtime import Runtime, seed_everything, setup, teardown


def fit_to_features(cfg: TrainConfig, fs: FeatureSet) -> TrainConfig:
    """``cfg`` with its pools chosen for the features' bins when unset (``default_pools``).

    Raises:
        ConfigError: naming ``--pools`` when given pools leave no frequency bin.
    """
    f = int(fs.shape[-1])
    if cfg.pools is None:
        return dataclasses.replace(cfg, pools=default_pools(f, len(cfg.channels)))
    if pooled_bins(f, cfg.pools) < 1:
        fit = ",".join(map(str, default_pools(f, len(cfg.channels))))
        raise ConfigError(
            f"option 'pools' (--pools) {list(cfg.pools)} pools the {f} frequency bins of "
            f"{fs.manifest.path} down to nothing; use smaller pools (e.g. --pools {fit}) "
            "or leave them unset to fit the features"
        )
    return cfg


def _check_memory(cfg: TrainConfig, fs: FeatureSet) -> None:
    """Refuse, before anything is written, a model or a batch the memory cannot hold."""
    from ..core.memory import TRAIN_FACTOR, check_batch
    from ..models import builtin_sizes, check_model_memory

    k = 1 if cfg.method == "ie" else n_outputs(cfg, fs)  # IE: members of one hypothesis
    kwargs = model_kwargs(cfg, fs, k)
    frames = fs.shape[1]
    check_model_memory(model_name(cfg), kwargs, copies=4, frames=frames)  # weights, grads,
    sizes = builtin_sizes(model_name(cfg), kwargs, frames)  # 2 moments; a chunk's activations
    per_chunk = 3 * sizes[1] if sizes else 0.0  # kept for backward, their gradients, workspace
    check_batch(cfg.batch_size, fs.shape, k, "--batch-size", TRAIN_FACTOR, per_chunk,
                "channels, gru_units")  # fmt: skip


def n_outputs(cfg: TrainConfig, fs: FeatureSet) -> int:
    """Hypotheses of the model: PIT has one slot per source of the features, accdoa K
    tracks per class (one class unless ``classes``), the others K."""
    if cfg.method == "pit":
        return fs.max_sources
    if cfg.method == "accdoa":
        return cfg.K * n_classes(cfg, fs)
    return cfg.K


def model_name(cfg: TrainConfig) -> str:
    """The registered model a method trains (IE: of its members)."""
    return "accdoa" if cfg.method == "accdoa" else "crnn"


def n_classes(cfg: TrainConfig, fs: FeatureSet) -> int:
    """Classes the model tells apart: the features' with ``classes``, else 1.

    Raises:
        ConfigError: ``classes`` on features without per-frame classes.
    """
    if not cfg.classes:
        return 1
    if fs.classes is None or fs.n_classes is None:
        raise ConfigError(
            f"option 'classes' (--classes): {fs.manifest.path} has no per-frame classes; "
            "drop --classes (class-agnostic) or give features made with classes"
        )
    return fs.n_classes


def check_classes(fs: FeatureSet, n: int) -> None:
    """Refuse features whose active slots have a class outside ``0..n-1``.

    Raises:
        DataError: naming the features, the first bad value and ``n``.
    """
    for start in range(0, len(fs.classes), 4096):  # chunk by chunk: no whole copy in memory
        c = np.asarray(fs.classes[start : start + 4096])
        a = np.asarray(fs.activity[start : start + 4096])
        bad = a & ((c < 0) | (c >= n))
        if bad.any():
            raise DataError(
                f"{fs.manifest.path}: an active source has class {int(c[bad][0])}, outside "
                f"0..{n - 1} (n_classes = {n}); rebuild the features"
            )


def model_kwargs(cfg: TrainConfig, fs: FeatureSet, k: int) -> dict[str, Any]:
    """Constructor arguments of :func:`model_name`'s model for ``cfg`` on features ``fs``
    with ``k`` outputs (accdoa: ``k`` = K tracks x classes)."""
    cfg = fit_to_features(cfg, fs)
    c, _t, f = fs.shape
    inputs = {"n_channels": int(c), "n_bins": int(f)}
    trunk = {  # ConvRecurrent, shared by both heads
        "channels": list(cfg.channels),
        "pools": list(cfg.pools),
        "gru_layers": cfg.gru_layers,
        "gru_units": cfg.gru_units,
        "dropout": cfg.dropout,
    }
    if cfg.method == "accdoa":
        return {**inputs, "tracks": cfg.K, "n_classes": k // cfg.K, **trunk}
    return {**inputs, "K": int(k), **trunk, "output": cfg.output, "confidence": cfg.scored}


def train(
    features: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TrainConfig,
    force: bool = False,
    resume: bool = False,
) -> Manifest:
    """Train ``cfg.method`` on ``features`` and write the run artifact ``out``.

    Args:
        features: a features artifact (``ssl prep features``).
        out: the run directory to create.
        cfg: the resolved config (unset pools are fitted to the features, and the
            run's manifest records the pools used).
        force: replace an existing run built with another config.
        resume: continue an interrupted run from its checkpoint (a killed process
            loses at most the epoch it was in); ``cfg`` must equal the config the
            run was started with (``resume_config`` reads it).

    Returns:
        The run's manifest.

    Raises:
        DataError: when the features have no train or val chunks.
        ArtifactError: when ``out`` holds another artifact and ``force`` is False.
        ConfigError: on a resume with another config, or pools too large for the features.
        UserError: for ``tensorboard`` without the tensorboard package.
    """
    if cfg.tensorboard:
        require_tensorboard()
    fs = open_features(features)
    cfg = fit_to_features(cfg, fs)
    if cfg.classes:
        check_classes(fs, n_classes(cfg, fs))
    if resume:
        check_resume(out, cfg, fs.manifest)
    rows = {s: fs.rows(s) for s in ("train", "val")}
    for split, r in rows.items():
        if len(r) == 0:
            raise DataError(f"{fs.manifest.path} has no {split!r} chunks; cannot train")
    _check_memory(cfg, fs)
    rt = setup(cfg.device, cfg.amp, cfg.amp_dtype)
    try:
        return _train(fs, rows, Path(out), cfg, rt, force, resume)
    finally:
        teardown(rt)


def _train(fs, rows, out: Path, cfg, rt: Runtime, force: bool, resume: bool) -> Manifest:
    if cfg.batch_size % rt.world:
        raise DataError(f"--batch-size {cfg.batch_size} is not a multiple of {rt.world} processes")
    cfg_dict = config_dict(cfg)
    work = partial_dir(out)
    if not rt.main:
        rt.all_sum([0.0])  # learn from rank 0 whether the run is up to date
        rt.barrier()
        _fit_all(fs, rows, work, cfg, cfg_dict, rt, resume)
        rt.barrier()
        return None  # type: ignore[return-value]
    with build_artifact(
        out,
        "run",
        cfg_dict,
        [fs.manifest],
        force=force,
        resumable=True,
        fresh=not resume,
        log=console.log,
    ) as b:  # a fresh run discards an old resumable state, under the lock
        reused = rt.all_sum([float(b.reused)])[0] > 0
        rt.barrier()
        if not reused:
            store_config(b.dir, cfg, fs.manifest)
            b.extra.update(_fit_all(fs, rows, b.dir, cfg, cfg_dict, rt, resume))
            rt.barrier()
    return b.manifest


def _fit_all(fs, rows, run_dir: Path, cfg, cfg_dict, rt: Runtime, resume: bool) -> dict:
    """Fit the model (IE: each member), save the best weights, plot ``curves.png``.

    Returns:
        The manifest's extras (the run's summary).
    """
    loaders = _loaders(fs, rows, cfg, rt)
    if rt.main:
        per_epoch = len(loaders[0])
        n_chunks = (len(rows["train"]), len(rows["val"]))
        steps = planned_steps(cfg, per_epoch)
        say(banner(rt, cfg, n_chunks, steps, per_epoch, fs.shape[-1], loaders[0].options))
        say(augment_line(cfg, loaders[0].augment))
    writer = open_tensorboard(run_dir) if cfg.tensorboard and rt.main else None
    fit_one = _fit_ensemble if cfg.method == "ie" else _fit_model
    fp = fingerprint(learning_config(cfg_dict))  # a resume may change how it runs
    try:
        summary = fit_one(fs, rows, loaders, run_dir, cfg, fp, rt, resume, writer)
    finally:
        if writer is not None:
            writer.close()
    summary["data_loader"] = loaders[0].options.as_dict()
    if rt.main:
        plot_curves(run_dir / "history.csv", run_dir / "curves.png", f"{cfg.method} K={cfg.K}")
    return summary


def training_augment(cfg: TrainConfig, fs: FeatureSet, device, rank: int = 0, world: int = 1):
    """The :class:`~ssl_toolkit.features.augment.SpatialAugment` of ``cfg.augment`` and
    ``cfg.freq_mask`` on features ``fs`` (its :attr:`note` says what it does)."""
    from ..features.augment import SpatialAugment, plan

    maps, note = plan(fs.spec, cfg.augment)
    aug = SpatialAugment(maps, cfg.freq_mask, fs.mean, device, rank, world)
    aug.note = note
    return aug


def augment_line(cfg: TrainConfig, aug) -> str:
    """``augment: <what the symmetries are>[; frequency mask of up to N bins]``."""
    line = f"augment: {aug.note}"
    if cfg.freq_mask:
        line += f"; frequency mask of up to {cfg.freq_mask} bins per chunk"
    return line


def _loaders(fs, rows, cfg, rt: Runtime) -> tuple:
    """``(train_loader, train_sampler, val_loader, val_sampler)`` of this process.

    Batches arrive on ``rt.device``; workers, pinning and prefetching are chosen by
    :func:`~ssl_toolkit.training.data.loader_options` unless the config sets them. The
    training batches are augmented there (:func:`training_augment`), never validation's.
    """
    aug = training_augment(cfg, fs, rt.device, rt.rank, rt.world)
    per_rank = cfg.batch_size // rt.world
    opts = loader_options(
        rt.device, cfg.num_workers, cfg.pin_memory, cfg.prefetch_factor, world=rt.world
    )
    return tuple(
        part
        for split in ("train", "val")
        for part in make_loader(
            fs,
            rows[split],
            per_rank,
            shuffle=split == "train",
            seed=cfg.seed,
            rank=rt.rank,
            world=rt.world,
            device=rt.device,
            options=opts,
            classes=cfg.classes,
            augment=aug if split == "train" else None,
        )
    )


def _fit_model(fs, rows, loaders, run_dir: Path, cfg, fp: str, rt: Runtime, resume, writer):
    """One CRNN (every method but IE); its threshold is learned on val when it has scores."""
    k = n_outputs(cfg, fs)
    if cfg.method == "pit" and k != cfg.K and rt.main:
        say(f"pit: {k} slots (the features' max sources), not K={cfg.K}")
    kwargs = model_kwargs(cfg, fs, k)
    name = model_name(cfg)
    seed_everything(cfg.seed, cfg.deterministic)
    model = build_model(name, **kwargs)
    model.norm.set_stats(fs.mean, fs.std)
    meta = {"method": cfg.method, **_input_meta(fs), "threshold": 0.5, "K": k}
    job = Job(
        cfg.method,
        model,
        make_loss(cfg),
        run_dir / "checkpoint" / "state.pt",
        fp,
        on_best=lambda m: save_model(run_dir, m, name, kwargs, **meta),
        forward_kwargs={"raw": True} if cfg.method == "accdoa" else {},  # ADPIT: every track
    )
    st = fit(
        job,
        loaders,
        cfg,
        rt,
        resume=resume,
        log_rows=lambda h: write_history(run_dir / "history.csv", h),
        writer=writer,
    )
    if rt.main:
        if cfg.scored:
            per_rank = cfg.batch_size // rt.world
            radii = (0.0,) if cfg.method == "accdoa" else MERGE_RADII_DEG  # classes: no merge
            thr, merge = learned_detection(model, fs, rows["val"], per_rank, rt.device, radii)
            meta["threshold"], meta["merge_deg"] = thr, merge
            meta["threshold_source"] = "SGL-Thresh on the val split"
            if len(radii) > 1:
                among = ", ".join(f"{r:g}" for r in radii)
                meta["threshold_source"] += f", merge radius (deg) of the best F20 among {among}"
        save_model(run_dir, model, name, kwargs, **meta)
    return _summary(cfg, k, st.history, st.best_epoch, st.best_val, rt, threshold=meta["threshold"])


def learned_detection(model, fs: FeatureSet, rows, batch_size: int, device,
                      radii=(0.0,)) -> tuple[float, float]:  # fmt: skip
    """How the model's detections are made, learned on chunks ``rows``: ``(threshold,
    merge radius)`` (:func:`~ssl_toolkit.analysis.thresholds.learn_detection`)."""
    from ..analysis.frames import predict_split
    from ..analysis.metrics import segment_ids
    from ..analysis.thresholds import learn_detection
    from ..models.localize import model_localizer

    model.eval()
    loc = model_localizer(model, {"K": model.K}, fs.manifest.path, device)
    fr = predict_split(loc, fs, rows, batch_size)
    seg = segment_ids(fr.clip_id, fr.frame, fs.spec.segment_frames(1.0))
    thr, merge, _ = learn_detection(fr.hyps, fr.conf, fr.valid, fr.targets, fr.active, seg, radii)
    return thr, merge


def _fit_ensemble(fs, rows, loaders, run_dir: Path, cfg, fp: str, rt: Runtime, resume, writer):
    """IE: K single-hypothesis members, seeds ``seed + n``, combined with equal confidence."""
    member_kwargs = model_kwargs(cfg, fs, 1)
    ens_kwargs = {"members": cfg.K, "member": "crnn", "member_kwargs": member_kwargs}
    ensemble = build_model("ensemble", **ens_kwargs)
    history: list[dict] = []
    best_epochs: list[int] = []
    for n, member in enumerate(ensemble.members):
        seed_everything(cfg.seed + n, cfg.deterministic)
        fresh = build_model("crnn", **{**member_kwargs, "confidence": False})
        member.load_state_dict(fresh.state_dict())
        member.norm.set_stats(fs.mean, fs.std)
        done = list(history)
        ckpt = run_dir / "checkpoint" / f"member{n}.pt"
        job = Job(f"ie member {n}", member, make_loss(cfg), ckpt, fp, tag=f"member{n}/")
        st = fit(
            job,
            loaders,
            cfg,
            rt,
            resume=resume,
            log_rows=lambda h, done=done, n=n: write_history(
                run_dir / "history.csv", done + [{"member": n, **r} for r in h]
            ),
            writer=writer,
        )
        history += [{"member": n, **r} for r in st.history]
        best_epochs.append(st.best_epoch)
    ensemble.to(rt.device)
    val_job = Job("ie", ensemble, make_loss(cfg), run_dir / "unused", fp)
    val_loss, val_oracle = validate(ensemble, val_job, loaders[2], rt, cfg.seed)
    if rt.main:
        meta = {"method": "ie", **_input_meta(fs), "threshold": 0.5, "K": cfg.K}
        save_model(run_dir, ensemble, "ensemble", ens_kwargs, **meta)
        write_history(run_dir / "history.csv", history)
    return _summary(cfg, cfg.K, history, best_epochs, val_loss, rt, oracle=val_oracle)


@torch.no_grad()
def _summary(
    cfg, k, history: list[dict], best_epoch, best_val, rt, oracle=None, threshold=0.5
) -> dict:
    """The run's summary (manifest extras).

    ``best_epoch`` is numbered from 1 as in ``history.csv``; an IE run lists each
    member's, and its ``best_val_loss`` and ``val_oracle_deg`` are the ensemble's.
    """
    best = [r for r in history if r.get("best")]
    if oracle is None and best:
        oracle = best[-1]["val_oracle_deg"]
    return {
        "method": cfg.method,
        "K": k,
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
        "val_oracle_deg": oracle,
        "steps": history[-1]["step"] if history else 0,
        "epochs_run": len(history),
        "world_size": rt.world,
        "device": str(rt.device),
        "precision": precision_name(rt),
        "torch_threads": torch.get_num_threads(),
        "threshold": threshold,
    }


def _input_meta(fs: FeatureSet) -> dict[str, Any]:
    """What ``model.json`` records of the model's input: the features' spec and chunk shape."""
    return {"feature_params": fs.spec.to_dict(), "input_shape": list(fs.shape)}
