"""The ``ssl`` command line. Each command module registers itself on :data:`app`."""

from __future__ import annotations

import importlib

from ._common import app

for _mod in ("prep", "train", "evaluate", "export", "toy", "demo"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _e:  # command module not written yet
        if _e.name != f"{__name__}.{_mod}":
            raise

__all__ = ["app"]
