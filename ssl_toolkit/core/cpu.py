"""CPU runtime: threads sized to the cores, and given back when other processes need them.

Machines are shared (laptops, workstations, cluster nodes). OpenMP worker threads spin
while they wait for work; as soon as another process competes for the cores, torch's
throughput collapses (demo training steps: 31 ms quiet, 4.8 s beside two busy processes on
2 cores). A passive wait policy avoids the collapse but makes every parallel region pay a
wake-up: twice slower on a quiet machine. So the toolkit keeps OpenMP's default (fast when
quiet) and adapts the thread count instead:

- the CLI, before anything imports torch, sizes the intra-op pool from the cores this
  process may actually use (``os.sched_getaffinity``: a container's or a job scheduler's CPU
  set), not the machine's;
- the long loops (training steps, prediction batches) call :func:`tick`: about once a second
  it reads how much CPU the *other* processes use (``/proc/stat`` minus this process's own
  time) and sets torch's threads to the cores left free (at least one, at most the
  configured count). One thread never spins, so a busy machine costs this process its share
  of the cores, not a collapse.

Whatever the user set wins and is left alone: ``--threads N`` (or ``SSL_THREADS``), else
``OMP_NUM_THREADS``; an ``OMP_WAIT_POLICY`` in the environment is kept. Worker processes
(``--jobs``) split the same cores with :func:`worker_threads`.

Worker processes: every stage with ``--jobs`` runs its items through :func:`parallel_map`
with :func:`worker_count` workers: never more than the items nor the cores this process
may use (a note says so when ``--jobs`` asked for more). Workers are spawned with SIGINT
and SIGTERM blocked until they have set their own dispositions (SIGINT ignored: Ctrl-C
reaches the whole process group and the parent handles it; SIGTERM deadly; they die with
the parent too). When the parent stops early (Ctrl-C, SIGTERM, an item's error) the
workers are terminated, not waited for, before the exception leaves
:func:`parallel_map`, so the atomic build can remove the partial output at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

__all__ = [
    "Governor",
    "available_cores",
    "configure",
    "others_cores",
    "parallel_map",
    "threads_in_use",
    "tick",
    "worker_count",
    "worker_threads",
]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _positive_int(name: str, text: str) -> int:
    from .config import ConfigError

    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{name} must be a positive integer, got {text!r}")
    return n


def configure(threads: int | None = None) -> int:
    """Set the thread count and wait policy for this process and its children.

    Args:
        threads: intra-op threads (``--threads``); None: ``SSL_THREADS``, else
            ``OMP_NUM_THREADS``, else :func:`available_cores`.

    Returns:
        The thread count in force.
    """
    if threads is None and os.environ.get("SSL_THREADS"):
        threads = _positive_int("SSL_THREADS", os.environ["SSL_THREADS"])
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        threads = _positive_int("OMP_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    n = int(threads) if threads is not None else available_cores()
    if n < 1:
        return configure(_positive_int("--threads", str(threads)))
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    GOVERNOR.reset(n, adaptive=threads is None)  # a count the user chose is left alone
    if "torch" in sys.modules:  # imported already (tests, notebooks): size its pool too
        sys.modules["torch"].set_num_threads(n)
    return n


def threads_in_use() -> int:
    """The intra-op threads this process runs with (torch's pool when torch is loaded)."""
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    return int(os.environ.get("OMP_NUM_THREADS", available_cores()))


def worker_threads(jobs: int) -> int:
    """Threads per worker when ``jobs`` processes share this process's cores."""
    return max(1, threads_in_use() // max(1, jobs))


def _proc_times() -> tuple[float, float, float] | None:
    """``(machine busy, machine total, this process)`` CPU seconds so far (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            cpu = [float(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0.0)  # idle + iowait
    total = sum(cpu[:8])
    mine = float(own[11]) + float(own[12])  # utime + stime of all its threads
    return (total - idle) / hz, total / hz, mine / hz


def others_cores(before, after) -> float:
    """Cores used by other processes between two :func:`_proc_times` samples."""
    n_cpu = os.cpu_count() or 1
    wall = (after[1] - before[1]) / n_cpu  # seconds of wall time the sample spans
    if wall <= 0:
        return 0.0
    return max(0.0, ((after[0] - before[0]) - (after[2] - before[2])) / wall)


class Governor:
    """Threads of torch adapted to the cores the other processes leave free.

    :meth:`tick` is cheap (a clock read); every ``period_s`` it samples the CPU use of the
    other processes and sets ``torch.set_num_threads`` (from the calling thread, the one
    that runs torch's parallel regions).
    """

    def __init__(self, period_s: float = 1.0):
        self.period_s = period_s
        self.max_threads = available_cores()
        self.adaptive = True
        self._last: tuple | None = None
        self._t = 0.0

    def reset(self, max_threads: int, adaptive: bool) -> None:
        self.max_threads, self.adaptive, self._last = int(max_threads), adaptive, None

    def target(self, others: float) -> int:
        """Threads for this process when others use ``others`` cores (hysteresis-free)."""
        free = min(available_cores(), os.cpu_count() or 1) - others
        return max(1, min(self.max_threads, int(free + 0.5)))

    def tick(self) -> None:
        if not self.adaptive or "torch" not in sys.modules:
            return
        now = time.monotonic()
        if now - self._t < self.period_s:
            return
        self._t = now
        sample = _proc_times()
        if sample is None:
            self.adaptive = False  # not Linux: keep the configured count
            return
        if self._last is not None:
            torch = sys.modules["torch"]
            want = self.target(others_cores(self._last, sample))
            if want != torch.get_num_threads():
                torch.set_num_threads(want)
        self._last = sample


GOVERNOR = Governor()


def tick() -> None:
    """Adapt torch's threads to the machine's load (see :class:`Governor`); call it from
    loops of work (a training step, a batch of predictions)."""
    GOVERNOR.tick()


# ----------------------------------------------------------------------------- workers


def worker_count(jobs: int, n_items: int, items: str = "items", option: str = "--jobs") -> int:
    """Worker processes for ``n_items`` items when the user asked for ``jobs``: at most the
    items and the cores this process may use (:func:`available_cores`), at least 1; a note
    on stderr when ``jobs`` is capped.

    Raises:
        ConfigError: ``jobs`` below 1.
    """
    from .config import ConfigError

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"option '{option}' must be a positive integer, got {jobs!r}")
    cores = available_cores()
    n = max(1, min(jobs, n_items, cores))
    if n < jobs and n_items > 1:
        from .console import err

        err.print(
            f"note: {option} {jobs}: {n} worker process{'es' if n > 1 else ''} "
            f"({n_items} {items}, {cores} core{'s' if cores > 1 else ''} available "
            "to this process)",
            highlight=False,
            soft_wrap=True,
        )
    return n


#: Signals a worker must not act on before it has set its own dispositions.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _MaskedProcess(SpawnProcess):
    """A spawned process that starts with SIGINT and SIGTERM blocked (the mask is
    inherited through fork and exec), so a signal that arrives while a worker starts
    neither kills it with a traceback nor is lost: it stays pending until
    :func:`_init_worker` has set the dispositions."""

    def start(self) -> None:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _MaskedContext(SpawnContext):
    """The ``spawn`` context with :class:`_MaskedProcess` workers."""

    Process = _MaskedProcess


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _init_worker(parent: int, threads: int, initializer: Callable | None, initargs: tuple):
    """Worker start: Ctrl-C ignored (the parent stops the workers), SIGTERM deadly (no
    inherited handler that turns it into an exception the worker loop would survive),
    death with the parent, ``threads`` intra-op threads, then the stage's initializer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if os.getppid() != parent:  # the parent died while this worker started
        os._exit(1)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if initializer is not None:
        initializer(*initargs)


def _stop_workers(pool, timeout_s: float = 3.0) -> None:
    """Kill a pool's workers and wait until they are gone, before the pool's queues are
    released: no worker outlives the parent's cleanup, and none still starting (its signals
    masked) finds the queues' semaphores gone and prints a traceback. SIGKILL, not SIGTERM:
    a worker holds nothing to clean up (the partial output is the parent's to remove)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.kill()
        except (OSError, ValueError, AttributeError):
            pass
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.join(max(0.0, deadline - time.monotonic()))
        except (OSError, ValueError, AttributeError, AssertionError):
            pass
    pool.shutdown(wait=False, cancel_futures=True)


def parallel_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    workers: int,
    *,
    initializer: Callable | None = None,
    initargs: tuple = (),
) -> Iterator[Any]:
    """``fn(item)`` for every item, in order, in ``workers`` spawned processes (in this
    process when ``workers <= 1``; size ``workers`` with :func:`worker_count`).

    At most ``2 * workers`` items are in flight (a million items are not a million
    futures). Each worker runs with its share of this process's threads
    (:func:`worker_threads`), then ``initializer(*initargs)``. Use it as
    ``with contextlib.closing(parallel_map(...)) as results: for r in results: ...``: when
    the loop stops early (an exception, Ctrl-C, SIGTERM raised as KeyboardInterrupt) the
    workers are terminated and gone before the ``with`` block is left.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_MaskedContext(),
        initializer=_init_worker,
        initargs=(os.getpid(), worker_threads(workers), initializer, initargs),
    )
    finished = False
    try:
        pending: deque = deque()
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                break
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool:
                from .errors import UserError

                raise UserError(
                    f"a worker process died while running (killed, or out of memory with "
                    f"{workers} workers?); nothing was kept: rerun, with fewer --jobs"
                ) from None
            for item in it:  # keep the window full
                pending.append(pool.submit(fn, item))
                break
            yield result
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            _stop_workers(pool)
