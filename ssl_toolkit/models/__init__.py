"""Model registry and self-describing checkpoints.

Every model maps features ``[B, C, T, F]`` to ``(hyps [B, T, K, 3], conf [B, T, K])``:
K unit-vector hypotheses per frame and their confidences in (0, 1).

A checkpoint is two files in a run directory:
``<stem>.safetensors`` (the state dict) and ``<stem>.json``
(``{"name", "kwargs", "toolkit_version", "torch_version", ...extra}``).
Loading needs nothing else and never unpickles anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..artifacts import safe_join, write_json
from ..errors import UserError

#: name -> constructor. A config names an entry and gives its keyword arguments.
REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator adding a model to :data:`REGISTRY`."""

    def deco(cls: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[name] = cls
        return cls

    return deco


def build_model(name: str, **kwargs: Any):
    """Instantiate a registered model."""
    _load_builtin()
    if name not in REGISTRY:
        raise UserError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**kwargs)


def save_model(
    directory: str | os.PathLike,
    model,
    name: str,
    kwargs: dict[str, Any],
    stem: str = "model",
    **extra: Any,
) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` describing how to rebuild it."""
    import torch
    from safetensors.torch import save_file

    from .. import __version__

    d = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(d / f"{stem}.safetensors"))
    meta = {
        "name": name,
        "kwargs": kwargs,
        "toolkit_version": __version__,
        "torch_version": torch.__version__,
        **extra,
    }
    write_json(d / f"{stem}.json", meta)
    return d / f"{stem}.safetensors"


def read_model_meta(directory: str | os.PathLike, stem: str = "model") -> dict[str, Any]:
    """The JSON description of a checkpoint."""
    p = safe_join(directory, f"{stem}.json")
    if not p.is_file():
        raise UserError(f"{directory} has no {stem}.json: not a trained run (run `ssl train`)")
    return json.loads(p.read_text())


def load_model(directory: str | os.PathLike, stem: str = "model", map_location: str = "cpu"):
    """Rebuild a model from its checkpoint, in eval mode.

    Returns:
        ``(model, meta)``.
    """
    from safetensors.torch import load_file

    meta = read_model_meta(directory, stem)
    model = build_model(meta["name"], **meta["kwargs"])
    state = load_file(str(safe_join(directory, f"{stem}.safetensors")), device=map_location)
    own = model.state_dict()
    # runs of toolkit 0.1 kept an unused score layer in models without scores
    state = {k: v for k, v in state.items() if k in own or ".scores." not in f".{k}"}
    model.load_state_dict(state)
    model.eval()
    return model, meta


def _load_builtin() -> None:
    """Import the modules that register the built-in models."""
    from . import crnn, ensemble  # noqa: F401  (registration)
