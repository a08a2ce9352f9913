"""Frozen dataclass configs with defaults in code, TOML files and CLI overrides.

Each stage module defines its own frozen dataclass (``SynthConfig``,
``FeatureConfig``, ``TrainConfig``, ...). This module resolves one from, in
increasing priority: the dataclass defaults, a preset, a TOML file, and the
options given on the command line. The resolved config is a plain dict stored
in every artifact's manifest.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """An option or config file value is invalid; the message names it."""


def load_toml(path: str | os.PathLike, section: str | None = None) -> dict[str, Any]:
    """Read a TOML file (optionally one table of it).

    A UTF-8 byte-order mark at the start (as Windows editors write) is skipped:
    ``tomllib`` refuses it, but it is no part of the text.

    Raises:
        ConfigError: naming the file when it is missing, a directory, unreadable,
            not UTF-8 or not valid TOML.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if not p.is_file():
        raise ConfigError(f"config file {p} is not a file (a directory?); give a TOML file")
    try:
        data = tomllib.loads(p.read_bytes().decode("utf-8").removeprefix("\ufeff"))
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.start})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from e
    if section is not None and section in data and isinstance(data[section], dict):
        return dict(data[section])
    return data


#: Field metadata that lets a float option be infinite or NaN (all others must be finite).
NONFINITE_OK = "nonfinite_ok"


def _coerce(name: str, tp: Any, value: Any, nonfinite_ok: bool = False) -> Any:
    """Coerce a TOML/CLI value to a dataclass field type where that is unambiguous.

    Floats must be finite (``inf`` and ``nan`` refused) unless ``nonfinite_ok``.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(name, args[0], value, nonfinite_ok)
        _check_finite(name, value, nonfinite_ok)
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"option {name!r} expects a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        out = [_coerce(name, inner, v, nonfinite_ok) for v in value]
        return tuple(out) if origin is tuple else out
    if tp in (int, float) and isinstance(value, bool):  # bool is an int in Python, not here
        raise ConfigError(f"option {name!r} expects {tp.__name__}, got {str(value).lower()}")
    if tp is float and isinstance(value, int):
        value = float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"option {name!r} expects {tp.__name__}, got {value!r}")
    _check_finite(name, value, nonfinite_ok)
    return value


def _check_finite(name: str, value: Any, nonfinite_ok: bool) -> None:
    if isinstance(value, float) and not nonfinite_ok and not math.isfinite(value):
        raise ConfigError(f"option {name!r} must be a finite number, got {value}")


def check_finite(cfg: Any) -> None:
    """Refuse a config dataclass holding an infinite or NaN float, also inside lists
    (fields whose metadata has :data:`NONFINITE_OK` aside). ``resolve`` refuses them as
    it reads them; a stage's ``validate`` calls this for configs built in code.

    Raises:
        ConfigError: naming the option.
    """
    for f in dataclasses.fields(cfg):
        if f.metadata.get(NONFINITE_OK, False):
            continue
        v = getattr(cfg, f.name)
        for x in v if isinstance(v, (list, tuple)) else (v,):
            for y in x if isinstance(x, (list, tuple)) else (x,):
                _check_finite(f.name, y, False)


def choose(name: str, value: Any, allowed: Iterable[str]) -> str:
    """The value of ``allowed`` that ``value`` names: itself, or the one it names up to
    case (``RMCL`` is ``rmcl``). Every option with a fixed set of values is checked here, so
    that all refusals read alike and suggest the closest name.

    Raises:
        ConfigError: ``option --method: 'rmc' is not one of pit, rmcl, ...; did you mean
            'rmcl'?``.
    """
    allowed = tuple(allowed)
    if value in allowed:
        return value
    if isinstance(value, str):
        same = [a for a in allowed if a.lower() == value.strip().lower()]
        if len(same) == 1:
            return same[0]
    refuse_choice(name, value, allowed)


def refuse_choice(name: str, value: Any, allowed: Iterable[str]) -> NoReturn:
    """Raise the one refusal of a value not among ``allowed`` (see :func:`choose`)."""
    allowed = tuple(allowed)
    hint = ""
    if isinstance(value, str):
        import difflib

        lower = {a.lower(): a for a in allowed}
        close = difflib.get_close_matches(value.strip().lower(), list(lower), n=1, cutoff=0.6)
        hint = f"; did you mean {lower[close[0]]!r}?" if close else ""
    flag = "--" + name.replace("_", "-")  # as typed on the command line (the TOML key: name)
    raise ConfigError(f"option {flag}: {value!r} is not one of {', '.join(allowed)}{hint}")


def check_choices(cfg: Any) -> None:
    """Check every option of ``cfg`` named in its class's ``CHOICES`` (name -> allowed
    values): exactly one of them (``resolve`` maps other spellings to it with
    :func:`choose`; a config built in code must spell it exactly)."""
    for name, allowed in getattr(type(cfg), "CHOICES", {}).items():
        if getattr(cfg, name) not in allowed:
            refuse_choice(name, getattr(cfg, name), allowed)


def resolve(cls: type[T], *layers: dict[str, Any] | None) -> T:
    """Build ``cls`` from its defaults updated by each layer in turn.

    ``None`` values in a layer mean "not given" and are skipped, so CLI options
    defaulting to None do not override a TOML file.

    Options named in ``cls.CHOICES`` are matched to their values with :func:`choose`.

    Raises:
        ConfigError: on an unknown key (with the known ones listed), a value of the wrong
            type or not among its choices, or a float that is infinite or NaN (unless the
            field's metadata has ``NONFINITE_OK``).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    choices = getattr(cls, "CHOICES", {})  # option -> its values, matched up to case
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            k = key.replace("-", "_")
            if k not in names:
                raise ConfigError(
                    f"unknown option {key!r} for {cls.__name__}; known: {', '.join(sorted(names))}"
                )
            if value is None:
                continue
            values[k] = _coerce(k, hints[k], value, fields[k].metadata.get(NONFINITE_OK, False))
            if k in choices:
                values[k] = choose(k, values[k], choices[k])
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if callable(check):
        check()
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict (tuples become lists)."""

    def conv(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items()}
