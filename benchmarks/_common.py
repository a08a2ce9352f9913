"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import resource


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
