"""The ``ssl`` command line. Each command module registers itself on :data:`app`.

The modules are imported in pipeline order, the order ``ssl --help`` lists them in.
"""

from __future__ import annotations

import importlib

from ._common import app

for _module in ("prep", "train", "evaluate", "export", "toy", "demo"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app"]
