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
    """Bytes of a model's parameters and buffers, nothing allocated: computed from the
    arguments for the built-in models (:func:`builtin_sizes`), measured on the ``meta``
    device for others; None when a registered model cannot be built there."""
    sizes = builtin_sizes(name, kwargs)
    if sizes is not None:
        return sizes[0]
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


#: Frames of the chunk whose activations :func:`check_model_memory` counts (0.5 s).
CHUNK_FRAMES = 25


def builtin_sizes(name: str, kwargs: dict[str, Any], frames: int = CHUNK_FRAMES):
    """``(bytes of parameters and buffers, bytes of the activations of one chunk of
    frames)`` of a built-in model (``crnn``, ``accdoa``, ``ensemble``), computed from its
    arguments with Python integers (no overflow, nothing allocated, even for
    ``gru_units = 10**12``); None for another model or arguments it does not take.

    The parameters are exact (``tests`` compare them with the ``meta`` device). The
    activations are what one forward pass in training keeps for the backward pass
    (float32): the normalized input, each conv block's convolution, normalization and
    pooled outputs, each GRU layer's outputs and gates, the heads.
    """
    import inspect

    if name == "ensemble":
        member = kwargs.get("member", "crnn")
        n = kwargs.get("members")
        one = builtin_sizes(member, {**kwargs.get("member_kwargs", {}), "K": 1,
                                     "confidence": False}, frames)  # fmt: skip
        if one is None or not _is_int(n):
            return None
        return n * one[0], n * one[1]
    if name not in ("crnn", "accdoa") or name in REGISTRY:
        return None
    try:
        args = inspect.signature(constructor(name)).bind(**kwargs)
    except TypeError:
        return None
    args.apply_defaults()
    a = args.arguments
    ints = ("n_channels", "n_bins", "gru_layers", "gru_units")
    if not all(_is_int(a[k]) and a[k] >= 1 for k in ints) or not a["channels"]:
        return None
    chans, pools = list(a["channels"]), list(a["pools"])
    if len(chans) != len(pools) or not all(_is_int(v) and v >= 1 for v in chans + pools):
        return None
    c, f, h, t = a["n_channels"], a["n_bins"], a["gru_units"], frames
    params, acts = 2 * c * f, c * t * f  # Normalize's buffers; the normalized input
    for c_in, c_out, p in zip([c, *chans[:-1]], chans, pools, strict=True):
        params += c_in * c_out * 9 + c_out + 4 * c_out + 2  # conv, BatchNorm (+ int64 count)
        acts += 2 * c_out * t * f + 2 * c_out * t * (f // p)  # conv, norm; pooled, dropout
        f //= p
    d_in = chans[-1] * f
    layers = a["gru_layers"]  # bidirectional: two directions of 3 gates; layers after
    params += 2 * (3 * h * d_in + 3 * h * h + 6 * h)  # the first take 2 * h inputs
    params += (layers - 1) * 2 * (3 * h * 2 * h + 3 * h * h + 6 * h)
    acts += layers * 2 * t * h * 4  # each direction's output and its 3 gates
    if name == "accdoa":
        if not (_is_int(a["tracks"]) and _is_int(a["n_classes"])):
            return None
        out = a["tracks"] * a["n_classes"] * 3
    else:
        if not _is_int(a["K"]):
            return None
        out = a["K"] * (3 if a["output"] == "unit" else 2) + (a["K"] if a["confidence"] else 0)
    params += 2 * h * out + out
    acts += 3 * t * out
    return 4 * params, 4 * acts


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_model_memory(
    name: str, kwargs: dict[str, Any], copies: int = 1, frames: int = CHUNK_FRAMES
) -> None:
    """Refuse a model whose weights (times ``copies``: 4 for training with AdamW, for
    weights, gradients and two moments) and the activations of one chunk of ``frames``
    frames (built-in models) exceed the available memory. Nothing is allocated.

    Raises:
        ConfigError: naming K and the layer sizes.
    """
    from ..core.memory import check_fits

    sizes = builtin_sizes(name, kwargs, frames)
    if sizes is not None:
        n = sizes[0] * copies + sizes[1]
    else:
        n = model_bytes(name, kwargs)
        n = None if n is None else n * copies
    if n is not None:
        sizes = ", ".join(f"{k}={kwargs[k]}" for k in _SIZE_ARGS if k in kwargs)
        check_fits(n, f"the {name} model ({sizes or _short(kwargs)})",
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
    "merge_deg": readers.number(0.0, 180.0),
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
