"""``train()``: one run artifact from a features artifact and a TrainConfig."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .. import console
from ..artifacts import Manifest, build_artifact, fingerprint
from ..config import ConfigError, to_dict
from ..errors import DataError
from ..featureset import FeatureSet, open_features
from ..models import build_model, save_model
from ..models.crnn import pooled_bins
from .config import TrainConfig
from .data import make_loader
from .engine import Job, fit, validate, write_history
from .objectives import make_loss
from .runtime import Runtime, seed_everything, setup, teardown


def model_kwargs(cfg: TrainConfig, fs: FeatureSet, k: int) -> dict[str, Any]:
    """Constructor arguments of the CRNN for ``cfg`` on features ``fs`` with ``k`` outputs."""
    c, _t, f = fs.shape
    if pooled_bins(f, cfg.pools) < 1:
        raise ConfigError(
            f"option 'pools' {list(cfg.pools)} pools the {f} frequency bins of "
            f"{fs.manifest.path} down to nothing; use smaller pools"
        )
    return {
        "n_channels": int(c),
        "n_bins": int(f),
        "K": int(k),
        "channels": list(cfg.channels),
        "pools": list(cfg.pools),
        "gru_layers": cfg.gru_layers,
        "gru_units": cfg.gru_units,
        "dropout": cfg.dropout,
        "output": cfg.output,
        "confidence": cfg.scored,
    }


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
        cfg: the resolved config.
        force: replace an existing run built with another config.
        resume: continue an interrupted run from its checkpoint (a killed process
            loses at most the epoch it was in).

    Returns:
        The run's manifest.

    Raises:
        DataError: when the features have no train or val chunks.
        ArtifactError: when ``out`` holds another artifact and ``force`` is False.
    """
    fs = open_features(features)
    rows = {s: fs.rows(s) for s in ("train", "val")}
    for split, r in rows.items():
        if len(r) == 0:
            raise DataError(f"{fs.manifest.path} has no {split!r} chunks; cannot train")
    rt = setup(cfg.device, cfg.amp)
    try:
        return _train(fs, rows, Path(out), cfg, rt, force, resume)
    finally:
        teardown(rt)


def _train(fs, rows, out: Path, cfg, rt: Runtime, force: bool, resume: bool) -> Manifest:
    if cfg.batch_size % rt.world:
        raise DataError(f"--batch-size {cfg.batch_size} is not a multiple of {rt.world} processes")
    cfg_dict = to_dict(cfg)
    partial_dir = out.parent / f".{out.name}.partial"
    if rt.main and not resume and partial_dir.exists():
        shutil.rmtree(partial_dir)
    if not rt.main:
        rt.all_sum([0.0])  # learn from rank 0 whether the run is up to date
        rt.barrier()
        _fit_all(fs, rows, partial_dir, cfg, cfg_dict, rt, resume)
        rt.barrier()
        return None  # type: ignore[return-value]
    with build_artifact(
        out, "run", cfg_dict, [fs.manifest], force=force, resumable=True, log=console.log
    ) as b:
        reused = rt.all_sum([float(b.reused)])[0] > 0
        rt.barrier()
        if not reused:
            b.extra.update(_fit_all(fs, rows, b.dir, cfg, cfg_dict, rt, resume))
            rt.barrier()
    return b.manifest


def _fit_all(fs, rows, run_dir: Path, cfg, cfg_dict, rt: Runtime, resume: bool) -> dict:
    """Fit the model (IE: each member) and save the best weights; returns manifest extras."""
    fp = fingerprint(cfg_dict)
    per_rank = cfg.batch_size // rt.world
    loaders = tuple(
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
            num_workers=cfg.num_workers,
        )
    )  # (train_loader, train_sampler, val_loader, val_sampler)
    if cfg.method == "ie":
        return _fit_ensemble(fs, loaders, run_dir, cfg, fp, rt, resume)
    k = fs.max_sources if cfg.method == "pit" else cfg.K
    if cfg.method == "pit" and k != cfg.K and rt.main:
        console.log(f"pit: {k} slots (the features' max sources), not K={cfg.K}")
    kwargs = model_kwargs(cfg, fs, k)
    seed_everything(cfg.seed, cfg.deterministic)
    model = build_model("crnn", **kwargs)
    model.norm.set_stats(fs.mean, fs.std)
    meta = {"method": cfg.method, "feature_params": fs.feature_params, "threshold": 0.5, "K": k}
    job = Job(
        cfg.method,
        model,
        make_loss(cfg),
        run_dir / "checkpoint" / "state.pt",
        fp,
        on_best=lambda m: save_model(run_dir, m, "crnn", kwargs, **meta),
    )
    st = fit(
        job,
        loaders,
        cfg,
        rt,
        resume=resume,
        log_rows=lambda h: write_history(run_dir / "history.csv", h),
    )
    if rt.main:
        if cfg.scored:
            meta["threshold"] = learned_threshold(model, fs, rows["val"], per_rank, rt.device)
            meta["threshold_source"] = "SGL-Thresh on the val split"
        save_model(run_dir, model, "crnn", kwargs, **meta)
    return _summary(cfg, k, st.history, st.best_epoch, st.best_val, rt, threshold=meta["threshold"])


def learned_threshold(model, fs: FeatureSet, rows, batch_size: int, device) -> float:
    """The detection threshold learned on chunks ``rows`` (SGL-Thresh, location-aware F)."""
    from ..evaluation import predict_split
    from ..localize import model_localizer
    from ..thresholds import learn_threshold_sgl

    model.eval()
    loc = model_localizer(model, {"K": model.K}, fs.manifest.path, device)
    fr = predict_split(loc, fs, rows, batch_size)
    return learn_threshold_sgl(fr.conf, fr.hyps, fr.targets, fr.active)


def _fit_ensemble(fs, loaders, run_dir: Path, cfg, fp: str, rt: Runtime, resume: bool) -> dict:
    """IE: K single-hypothesis members, seeds ``seed + n``, combined with equal confidence."""
    member_kwargs = model_kwargs(cfg, fs, 1)
    ens_kwargs = {"members": cfg.K, "member": "crnn", "member_kwargs": member_kwargs}
    ensemble = build_model("ensemble", **ens_kwargs)
    history: list[dict] = []
    for n, member in enumerate(ensemble.members):
        seed_everything(cfg.seed + n, cfg.deterministic)
        fresh = build_model("crnn", **{**member_kwargs, "confidence": False})
        member.load_state_dict(fresh.state_dict())
        member.norm.set_stats(fs.mean, fs.std)
        done = list(history)
        job = Job(
            f"ie member {n}", member, make_loss(cfg), run_dir / "checkpoint" / f"member{n}.pt", fp
        )
        st = fit(
            job,
            loaders,
            cfg,
            rt,
            resume=resume,
            log_rows=lambda h, done=done, n=n: write_history(
                run_dir / "history.csv", done + [{"member": n, **r} for r in h]
            ),
        )
        history += [{"member": n, **r} for r in st.history]
    ensemble.to(rt.device)
    val_job = Job("ie", ensemble, make_loss(cfg), run_dir / "unused", fp)
    val_loss, val_oracle = validate(ensemble, val_job, loaders[2], rt, cfg.seed)
    if rt.main:
        meta = {"method": "ie", "feature_params": fs.feature_params, "threshold": 0.5, "K": cfg.K}
        save_model(run_dir, ensemble, "ensemble", ens_kwargs, **meta)
        write_history(run_dir / "history.csv", history)
    return _summary(cfg, cfg.K, history, -1, val_loss, rt, oracle=val_oracle)


@torch.no_grad()
def _summary(
    cfg, k, history: list[dict], best_epoch, best_val, rt, oracle=None, threshold=0.5
) -> dict:
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
        "threshold": threshold,
    }
