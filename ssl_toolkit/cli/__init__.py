"""The ``ssl`` command line. Each command module registers itself on :data:`app`.

The modules are imported in pipeline order, the order ``ssl --help`` lists them in.
The CPU runtime (threads, OpenMP wait policy) is set up first, before any command body
imports torch (see :mod:`ssl_toolkit.core.cpu`).
"""

from __future__ import annotations

import importlib
import sys

from ..core.cpu import configure
from ..core.errors import UserError

try:
    configure()
except UserError as _e:  # SSL_THREADS / OMP_NUM_THREADS not a positive integer
    print(f"error: {_e}", file=sys.stderr)
    raise SystemExit(2) from None

from ._common import app  # noqa: E402

for _module in ("prep", "train", "evaluate", "export", "toy", "demo"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app"]
