"""``ssl train --resume``: the config a run was started with, stored beside its checkpoint.

A run writes its resolved config (and its features' path) to
``checkpoint/config.json`` before its first epoch, so an interrupted run
(``.RUN.partial``) can be continued from it with no option repeated; a finished
run's config is in its manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.artifacts import MANIFEST, Manifest, read_manifest, write_json
from ..core.artifacts import resumable_dir as partial_dir  # where build_artifact keeps the run
from ..core.config import ConfigError
from ..core.errors import ArtifactError, UserError
from .options import LATE_OPTIONS, RUNTIME_OPTIONS, TrainConfig, config_dict, resolve_train_config

STORED = Path("checkpoint") / "config.json"


def stored_config(out: str | Path) -> dict[str, Any] | None:
    """What run ``out`` was started with: ``config`` (dict), ``features`` (path, fingerprint).

    Read from the interrupted run ``.OUT.partial`` first, else from the finished
    run's manifest.

    Returns:
        ``{"config": ..., "features": {"path": ..., "fingerprint": ...}}``, or None
        when ``out`` has neither. Options the config does not record are the values
        older runs were trained with (:data:`~.options.LATE_OPTIONS`).
    """
    path = partial_dir(out) / STORED
    if path.is_file():
        stored = json.loads(path.read_text())
    elif (Path(out) / MANIFEST).is_file():
        man = read_manifest(out, "run")
        stored = {"config": man.config, "features": man.inputs[0]}
    else:
        return None
    stored["config"] = {**LATE_OPTIONS, **stored["config"]}  # what an older run had
    return stored


def store_config(run_dir: Path, cfg: TrainConfig, features: Manifest) -> None:
    """Write ``cfg`` and its features (absolute path, fingerprint) for ``--resume``."""
    ref = {"path": str(Path(features.path).resolve()), "fingerprint": features.fingerprint}
    (run_dir / STORED).parent.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / STORED, {"config": config_dict(cfg), "features": ref})


def train_config(
    out: str | Path, features: str | Path | None, resume: bool, *layers: dict[str, Any] | None
) -> tuple[TrainConfig, Path]:
    """The config and features of ``ssl train``; with ``resume``, those ``out`` was started with.

    Args:
        out: the run directory.
        features: the features artifact; None to take the stored one (``resume`` only).
        resume: start from the run's stored config (when it has one), then ``layers``.
        layers: a TOML table, CLI options (None = not given), in increasing priority,
            over the defaults of the method (``options.METHOD_DEFAULTS``).
            With ``resume``, those that differ from the stored config make
            :func:`check_resume` refuse the run, naming them.

    Raises:
        UserError: when ``features`` is None and ``out`` has no stored config.
    """
    stored = stored_config(out) if resume else None
    if stored is None:
        if features is None:
            raise UserError(f"--resume: {out} has no run to continue; give its features too")
        return resolve_train_config(*layers), Path(features)
    cfg = resolve_train_config(stored["config"], *layers)
    return cfg, Path(features or stored["features"]["path"])


def learning_config(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """``cfg_dict`` without the :data:`RUNTIME_OPTIONS`: what a resumed run must keep."""
    return {k: v for k, v in cfg_dict.items() if k not in RUNTIME_OPTIONS}


def check_resume(out: str | Path, cfg: TrainConfig, features: Manifest) -> None:
    """Refuse to resume ``out`` with options or features other than it was started with.

    The :data:`~ssl_toolkit.training.options.RUNTIME_OPTIONS` (device, amp, compile,
    data loading, tensorboard) may differ: a run trained under AMP can go on in fp32.

    Raises:
        ConfigError: one line naming each differing option, its stored and given value.
        UserError: when the features differ.
    """
    stored = stored_config(out)
    if stored is None:
        return
    if stored["features"].get("fingerprint") != features.fingerprint:
        raise UserError(
            f"--resume: {out} was started on other features ({stored['features']['path']}); "
            "give those, or start over without --resume"
        )
    old = learning_config(stored["config"])
    new = learning_config({**LATE_OPTIONS, **config_dict(cfg)})
    changed = [
        f"option {k!r} is {new.get(k)!r} here but {old.get(k)!r} there"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if changed:
        raise ConfigError(
            f"--resume: {out} was started with another config ({'; '.join(changed)}); "
            "drop these options to continue it with its own, or start over without --resume"
        )
    for state in sorted((partial_dir(Path(out)) / "checkpoint").glob("*.pt")):
        load_state(state)


def load_state(path: Path, map_location="cpu") -> dict[str, Any]:
    """A training state (``checkpoint/*.pt``), loaded with ``weights_only=True``.

    Raises:
        ArtifactError: one line naming the file when it is not a training state.
    """
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's protocol notes
            blob = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(blob, dict) or "fingerprint" not in blob or "model" not in blob:
            raise ValueError("not a training state")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise ArtifactError(
            f"{path}: not a readable training state ({type(e).__name__}); drop --resume "
            "(or pass --force) to start the run over"
        ) from None
    return blob
