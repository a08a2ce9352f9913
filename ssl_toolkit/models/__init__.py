"""Model registry and self-describing checkpoints.

Every model maps features ``[B, C, T, F]`` to ``(hyps [B, T, K, 3], conf [B, T, K])``:
K unit-vector hypotheses per frame and their confidences in (0, 1). A zero vector (with
zero confidence) is an empty slot, which the localizer marks invalid: multi-ACCDOA
(``accdoa``) empties the tracks it unifies with another.

A checkpoint is two files in a run directory:
``<stem>.safetensors`` (the state dict) and ``<stem>.json``
(``{"name", "kwargs", "toolkit_version", "torch_version", ...extra}``).
Loading needs nothing else and never unpickles anything.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core import readers
from ..core.artifacts import safe_join, write_json
from ..core.config import ConfigError
from ..core.errors import UserError
from ..features.spec import FeatureSpec

#: name -> constructor of models registered at run time (:func:`register`, tests, plug-ins).
REGISTRY: dict[str, Callable[..., Any]] = {}
#: The built-in models as ``module:class``, imported when first built (they import torch,
#: and the registry never imports its own modules: no import cycle).
BUILTIN = {
    "crnn": "ssl_toolkit.models.crnn:CRNN",
    "accdoa": "ssl_toolkit.models.crnn:AccdoaCRNN",
    "ensemble": "ssl_toolkit.models.ensemble:Ensemble",
}


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator adding a model to :data:`REGISTRY`."""

    def deco(cls: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[name] = cls
        return cls

    return deco


def constructor(name: str) -> Callable[..., Any]:
    """The class registered as ``name`` (a built-in is imported on first use).

    Raises:
        UserError: unknown name.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    if name not in BUILTIN:
        known = ", ".join(sorted({*REGISTRY, *BUILTIN}))
        raise UserError(f"unknown model {name!r}; known: {known}")
    module, cls = BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, **kwargs: Any):
    """Instantiate a registered model.

    Its size is measured first on the ``meta`` device (nothing allocated), so a model
    too large for the memory (``-K 100000000``) is refused before it is built.

    Raises:
        UserError: unknown name.
        ConfigError: arguments the model does not take or refuses, or a model larger
            than the available memory.
    """
    make = constructor(name)
    check_model_memory(name, kwargs)
    try:
        return make(**kwargs)
    except UserError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
        raise ConfigError(f"model {name!r} cannot be built from {_short(kwargs)}: {e}") from e


def model_bytes(name: str, kwargs: dict[str, Any]) -> int | None:
    """Bytes of a model's parameters and buffers, measured on the ``meta`` device
    (nothing allocated); None when the model cannot be built there."""
    import torch

    try:
        with torch.device("meta"):
            m = constructor(name)(**kwargs)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, NotImplementedError) as e:
        if isinstance(e, UserError):  # a member refused by check_model_memory
            raise
        return None
    tensors = list(m.parameters()) + list(m.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def check_model_memory(name: str, kwargs: dict[str, Any], copies: int = 1) -> None:
    """Refuse a model whose weights (times ``copies``: 4 for training with AdamW, for
    weights, gradients and two moments) exceed the available memory.

    Raises:
        ConfigError: naming K and the layer sizes.
    """
    from ..core.memory import check_fits

    n = model_bytes(name, kwargs)
    if n is not None:
        sizes = ", ".join(f"{k}={kwargs[k]}" for k in _SIZE_ARGS if k in kwargs)
        check_fits(n * copies, f"the {name} model ({sizes or _short(kwargs)})",
                   "lower -K or the layer sizes (channels, gru_units)")  # fmt: skip


_SIZE_ARGS = ("K", "tracks", "n_classes", "members", "channels", "gru_layers", "gru_units")


def _short(v: Any, n: int = 120) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


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


#: The command that rebuilds a run (named in every damaged-file message).
REBUILD = "ssl train ... --force"
#: Fields of ``model.json`` the loaders rely on (checked where present).
META_FIELDS = {
    "name": readers.text(),
    "kwargs": readers.mapping,
    "K": readers.integer(1),
    "method": readers.optional(readers.text()),
    "threshold": readers.number(0.0, 1.0),
    "feature_params": readers.mapping,
}


def read_model_meta(directory: str | os.PathLike, stem: str = "model") -> dict[str, Any]:
    """The JSON description of a checkpoint, checked (see :data:`META_FIELDS`).

    Raises:
        UserError: the directory has no ``<stem>.json`` (not a trained run).
        ArtifactError: it is damaged: not UTF-8, not a JSON object, a field missing or
            mistyped, or a ``K`` that disagrees with the model's arguments.
    """
    p = safe_join(directory, f"{stem}.json")
    if not p.is_file():
        raise UserError(f"{directory} has no {stem}.json: not a trained run (run `ssl train`)")
    meta = readers.read_json_object(p, REBUILD)
    readers.check_fields(meta, META_FIELDS, p, REBUILD, ("name", "kwargs"))
    if "feature_params" in meta:
        FeatureSpec.from_dict(meta["feature_params"], p, REBUILD)
    kw = meta["kwargs"]
    if "K" in meta and "K" in kw and kw["K"] != meta["K"]:
        raise readers.damaged(
            p, f"says K={meta['K']} but the model's kwargs say K={kw['K']!r}", REBUILD
        )
    return meta


def load_model(directory: str | os.PathLike, stem: str = "model", map_location: str = "cpu"):
    """Rebuild a model from its checkpoint, in eval mode.

    Nothing is unpickled: the weights are safetensors, the description JSON.

    Returns:
        ``(model, meta)``.

    Raises:
        ArtifactError: ``<stem>.json`` or ``<stem>.safetensors`` damaged, missing, or
            not matching each other (one line naming the file).
    """
    meta = read_model_meta(directory, stem)
    jpath = safe_join(directory, f"{stem}.json")
    try:
        model = build_model(meta["name"], **meta["kwargs"])
    except UserError as e:
        raise readers.damaged(jpath, f"does not describe a model that builds ({e})", REBUILD) from e
    wpath = safe_join(directory, f"{stem}.safetensors")
    state = _load_weights(wpath, map_location)
    own = model.state_dict()
    # runs of toolkit 0.1 kept an unused score layer in models without scores
    state = {k: v for k, v in state.items() if k in own or ".scores." not in f".{k}"}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        why = " ".join(str(e).split())
        raise readers.damaged(
            wpath, f"does not fit the model of {jpath.name} ({_short(why, 200)})", REBUILD
        ) from e
    model.eval()
    return model, meta


def _load_weights(path, map_location: str) -> dict[str, Any]:
    """The tensors of a safetensors file (refusing anything else, pickles included)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise readers.damaged(path, "is missing", REBUILD)
    try:
        return load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        why = " ".join(str(e).split()) or type(e).__name__
        raise readers.damaged(path, f"is not a safetensors file ({_short(why)})", REBUILD) from e
