"""Batches streamed from a features artifact's memory maps into reused buffers.

A batch is read in one go: its chunks in increasing row order (sequential on disk), each
copied straight to its place in the batch, nothing else loaded. Features stay float16 (as
stored) until they reach the training device, where they become float32.

The buffers are a ring of batch slots allocated once per loader and reused. Fresh memory
costs a page fault every 4 KiB, which alone holds a loader to about 1,000 chunks/s of the
paper's input ``[8, 25, 1024]`` on a 2-core machine, whether the batch is a new array or
a new shared-memory segment sent by a worker process (``benchmarks/bench_loader.py``).
With worker processes the ring lives in shared memory and a worker sends back only the
number of the slot it filled; for a CUDA device the ring is also page-locked (registered
with CUDA, as ``torch.distributed`` does for its shared staging buffers), so a batch goes
to the GPU by an asynchronous copy with no staging copy. A slot is refilled only once its
batch has reached the device.

The batch order depends only on the seed and the epoch (a :class:`DistributedSampler`,
in the main process), never on the number of workers.
"""

from __future__ import annotations

import collections
import os
import warnings
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from ..core.cpu import available_cores
from ..features.store import FeatureSet, nonfinite_chunk

#: Worker processes chosen at most for an accelerator: one reads about 16,000 chunks/s
#: of the paper's input from the page cache (2-core machine, busy); more only hold more
#: batches in memory.
MAX_AUTO_WORKERS = 4


@dataclass(frozen=True)
class LoaderOptions:
    """How batches are read.

    Attributes:
        num_workers: worker processes (0: the training process reads each batch when
            it needs it). Workers persist across epochs.
        pin_memory: page-locked buffers (CUDA only), for asynchronous copies to the GPU.
        prefetch_factor: batches each worker reads ahead.
    """

    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int = 2

    @property
    def ahead(self) -> int:
        """Batches read ahead of the one in use (in flight in the workers)."""
        return self.num_workers * self.prefetch_factor

    def describe(self) -> str:
        """``0 data-loader workers`` or ``2 data-loader workers (2 batches ahead each, pinned)``."""
        n = self.num_workers
        text = f"{n} data-loader worker{'' if n == 1 else 's'}"
        if n:
            text += f" ({self.prefetch_factor} batches ahead each"
            text += ", pinned)" if self.pin_memory else ")"
        return text

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "prefetch_factor": self.prefetch_factor,
        }


def loader_options(
    device: torch.device | str,
    num_workers: int | None = None,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
    world: int = 1,
) -> LoaderOptions:
    """The loader options for training on ``device``; each None is chosen here.

    - CPU: no worker. The training process reads a batch of 128 chunks of the paper's
      input in about 8 ms (page-cached), while a CPU training step takes seconds:
      workers would only take cores from the model.
    - CUDA, MPS: workers read ahead while the device computes: one per core this
      process may use (its share of :func:`ssl_toolkit.core.cpu.available_cores` under DDP)
      less one for the training process itself, at least 1 and at most
      :data:`MAX_AUTO_WORKERS`; each 2 batches ahead; page-locked buffers on CUDA.

    A ``num_workers`` above those cores is lowered to them, with a note (2000 workers
    for 2 cores would only fight over them). ``pin_memory`` is ignored on a device other
    than CUDA, and ``prefetch_factor`` without workers.
    """
    device = torch.device(device)
    accel = device.type != "cpu"
    cores = max(1, available_cores() // max(world, 1))
    if num_workers is None:
        num_workers = min(max(cores - 1, 1), MAX_AUTO_WORKERS) if accel else 0
    elif num_workers > cores:  # as --jobs: never more workers than cores to run them
        from ..core.console import err

        err.print(f"note: num_workers {num_workers}: {cores} data-loader workers (the cores "
                  "this process may use)", highlight=False, soft_wrap=True)  # fmt: skip
        num_workers = cores
    pin = (device.type == "cuda") if pin_memory is None else bool(pin_memory)
    return LoaderOptions(
        num_workers=int(num_workers),
        pin_memory=pin and device.type == "cuda",
        prefetch_factor=int(prefetch_factor or 2),
    )


def batch_arrays(fs: FeatureSet, classes: bool = False) -> tuple[np.ndarray, ...]:
    """The arrays a batch is read from: features, directions, activity (and classes).

    Raises:
        ValueError: ``classes`` on features without per-frame classes.
    """
    arrays = (fs.features, fs.directions, fs.activity)
    if not classes:
        return arrays
    if fs.classes is None:
        raise ValueError(f"{fs.manifest.path} has no per-frame classes")
    return (*arrays, fs.classes)


class BatchRing:
    """``slots`` reusable batch buffers: features ``[slots, B, C, T, F]`` as stored (float16,
    or float32 for features beyond float16's range),
    directions float32 ``[slots, B, T, S, 3]``, activity bool ``[slots, B, T, S]`` (and,
    with ``classes``, classes int16 ``[slots, B, T, S]``).

    Args:
        fs: the features whose chunks the slots hold.
        batch_size: chunks per slot.
        slots: number of slots.
        shared: in shared memory (filled by worker processes).
        pin: page-locked for CUDA; on failure the ring stays pageable (with a warning).
        classes: also hold the features' per-frame classes.
    """

    def __init__(
        self,
        fs: FeatureSet,
        batch_size: int,
        slots: int,
        *,
        shared: bool,
        pin: bool,
        classes: bool = False,
    ):
        arrays = batch_arrays(fs, classes)
        feats = torch.from_numpy(np.empty(0, arrays[0].dtype)).dtype  # as stored: fp16 or fp32
        dtypes = (feats, torch.float32, torch.bool, torch.int16)[: len(arrays)]
        self.slots = slots
        self.pinned = False
        #: the features' chunk (row) held at each place of each slot: names a damaged chunk
        self.chunks = torch.full((slots, batch_size), -1, dtype=torch.int64)
        if shared:
            self.chunks.share_memory_()
        if pin and not shared:
            try:
                self.buffers = [
                    torch.empty((slots, batch_size, *a.shape[1:]), dtype=t, pin_memory=True)
                    for a, t in zip(arrays, dtypes, strict=True)
                ]
                self.pinned = True
                return
            except RuntimeError as e:
                _pin_failed(e)
        self.buffers = [
            torch.empty((slots, batch_size, *a.shape[1:]), dtype=t)
            for a, t in zip(arrays, dtypes, strict=True)
        ]
        if shared:
            for b in self.buffers:
                b.share_memory_()
            if pin:
                self.pinned = _register_pinned(self.buffers, self)

    def slot(self, i: int, n: int | None = None) -> tuple[torch.Tensor, ...]:
        """Views of slot ``i`` (its first ``n`` chunks): ``(x, d, a)`` (and classes)."""
        return tuple(b[i, :n] for b in self.buffers)


def _register_pinned(buffers: list[torch.Tensor], owner: object) -> bool:
    """Page-lock shared buffers in place (``cudaHostRegister``); undone when ``owner`` dies."""
    from torch.cuda import _pin_memory_utils

    done = []
    try:
        for b in buffers:
            _pin_memory_utils.pin_memory(b.data_ptr(), b.numel() * b.element_size())
            done.append(b.data_ptr())
    except RuntimeError as e:
        for ptr in done:
            _pin_memory_utils.unpin_memory(ptr)
        _pin_failed(e)
        return False
    for ptr in done:
        weakref.finalize(owner, _unpin, ptr, os.getpid())
    return True


def _unpin(ptr: int, pid: int) -> None:
    """Undo :func:`_register_pinned` in the process that did it (not in forked workers)."""
    if os.getpid() == pid:
        from torch.cuda import _pin_memory_utils

        _pin_memory_utils.unpin_memory(ptr)


def _pin_failed(e: Exception) -> None:
    warnings.warn(
        f"data loader: page-locking its buffers failed ({e}); copies to the GPU will "
        "not overlap computation (set pin_memory = false to silence this)",
        stacklevel=3,
    )


class ChunkBatches(Dataset):
    """Chunks of one split; ``ds[(slot, positions)]`` reads a batch into a ring slot.

    Returns ``(slot, n)`` only: the batch is in ``ring.slot(slot, n)``. Pickled (for
    worker processes started by spawn or forkserver), it carries the paths of its memory
    maps and a handle on the shared ring, never the data.
    """

    def __init__(self, fs: FeatureSet, rows: np.ndarray, ring: BatchRing, classes: bool = False):
        self.rows = np.asarray(rows)
        self.ring = ring
        arrays = batch_arrays(fs, classes)
        self._maps = [_map_of(a) for a in arrays]
        self._arrays = [np.asarray(a).view(np.ndarray) for a in arrays]  # no memmap overhead

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: tuple[int, np.ndarray]) -> tuple[int, int]:
        """Read the chunks at ``positions`` (in this split) into slot ``slot``, in order."""
        slot, positions = item
        rows = self.rows[np.asarray(positions)]
        for src, dst in zip(self._arrays, self.ring.slot(slot), strict=True):
            _gather(src, rows, dst.numpy())
        self.ring.chunks[slot, : len(rows)] = torch.from_numpy(rows.astype(np.int64))
        return slot, len(rows)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = [
            None if m is not None else a for m, a in zip(self._maps, self._arrays, strict=True)
        ]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._arrays = [
            a if m is None else np.memmap(m[0], m[2], "r", m[1], m[3]).view(np.ndarray)
            for m, a in zip(self._maps, self._arrays, strict=True)
        ]


def _map_of(a: np.ndarray) -> tuple | None:
    """``(filename, offset, dtype, shape)`` of a C-ordered whole-file memmap, else None."""
    if isinstance(a, np.memmap) and a.filename is not None and a.flags.c_contiguous:
        return (str(a.filename), int(a.offset), a.dtype.str, tuple(a.shape))
    return None


def _gather(src: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = src[rows[i]]``, read in increasing row order (sequential on disk)."""
    for i in np.argsort(rows, kind="stable"):
        out[i] = src[rows[i]]


class SlotBatches:
    """A batch sampler yielding ``(slot, positions)``: slots in turn, across epochs."""

    def __init__(self, batches: BatchSampler, slots: int):
        self.batches, self.slots, self._next = batches, slots, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for positions in self.batches:
            slot = self._next
            self._next = (slot + 1) % self.slots
            yield slot, positions


class Batches:
    """The training loader: ``(x, d, a)`` on the device, in the sampler's order.

    ``x [b, C, T, F]`` float32 (converted on the device), ``d [b, T, S, 3]`` float32,
    ``a [b, T, S]`` bool; a loader made with ``classes`` adds ``classes [b, T, S]`` int64
    (-1 where inactive). Each batch is a new tensor of its own (a copy out of the ring).
    With ``augment`` (a :class:`~ssl_toolkit.features.augment.SpatialAugment`), each batch
    is transformed by it on the device, after its check for finite values.

    Attributes:
        loader: the underlying :class:`DataLoader` (it yields slot numbers).
        ring: its buffers.
        device: where batches are delivered.
        options: the :class:`LoaderOptions` in force.
    """

    def __init__(
        self,
        loader: DataLoader,
        ring: BatchRing,
        device,
        options: LoaderOptions,
        fs: FeatureSet | None = None,
        augment=None,
    ):
        self.loader, self.ring, self.options = loader, ring, options
        self.augment = augment
        self.fs = fs  # names a chunk whose features are not finite
        self.device = torch.device(device)
        self._in_flight: collections.deque = collections.deque()  # events of async copies

    def __len__(self) -> int:
        return len(self.loader)

    def raw(self):
        """The batches as float16 views of the ring: each stays valid only until the
        batch after the next one is taken (for benchmarks and custom transfers)."""
        for slot, n in self.loader:
            yield self.ring.slot(slot, n)

    def __iter__(self):
        it = iter(self.loader)
        while True:
            # Taking batch m has the loader refill slot m-2 (m+ahead mod ahead+2): its
            # asynchronous copy to the device must be done by then.
            while len(self._in_flight) >= 2:
                self._in_flight.popleft().synchronize()
            try:
                slot, n = next(it)
            except StopIteration:
                return
            batch = self._deliver(self.ring.slot(slot, n))
            self._check_finite(batch[:2], slot)
            yield batch if self.augment is None else self.augment(batch)

    def _check_finite(self, xd: tuple[torch.Tensor, torch.Tensor], slot: int) -> None:
        """Refuse a batch whose features or directions hold NaN or infinite values, naming
        the first such chunk (one pass over the batch on its device: cheap beside a
        forward pass).

        Raises:
            ArtifactError: ``.../features.npy: chunk N (clip ..., frames a-b) holds NaN or
                infinite values``, and the command that rebuilds them.
        """
        ok = [torch.isfinite(t).flatten(1).all(1) for t in xd]  # (b,) each
        if bool((ok[0] & ok[1]).all()):
            return
        for okay, name in zip(ok, ("features.npy", "directions.npy"), strict=True):
            if not bool(okay.all()):
                i = int((~okay).nonzero()[0, 0])
                raise nonfinite_chunk(self.fs, int(self.ring.chunks[slot, i]), name)

    def _deliver(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x, d, a, *rest = batch  # rest: classes (b, T, S) int16, when read
        if self.device.type == "cpu":
            return (_float32(x), d.clone(), a.clone(), *(c.long() for c in rest))
        nb = self.ring.pinned
        x, d, a, *rest = (t.to(self.device, non_blocking=nb) for t in (x, d, a, *rest))
        if nb:
            event = torch.cuda.Event()
            event.record()
            self._in_flight.append(event)
        # (b, C, T, F) float16 -> float32 on the device; classes int16 -> int64
        return (x.float(), d, a, *(c.long() for c in rest))


def _float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a new float32 tensor, in memory from numpy: numpy asks Linux for huge pages,
    so a 100 MB batch costs 50 page faults instead of 25,000 (3x faster than ``x.float()``
    on a 2-core machine)."""
    return torch.from_numpy(np.empty(tuple(x.shape), np.float32)).copy_(x)


def make_loader(
    fs: FeatureSet,
    rows: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world: int = 1,
    device: torch.device | str = "cpu",
    options: LoaderOptions | None = None,
    context: str | None = None,
    classes: bool = False,
    augment=None,
) -> tuple[Batches, DistributedSampler]:
    """A loader over ``rows`` whose order depends only on ``seed`` and the epoch.

    A :class:`DistributedSampler` is used even in one process, so a run on N
    processes with per-process batch ``batch_size / N`` sees, at every step, the
    same chunks as one process with ``batch_size``. Call ``sampler.set_epoch(e)``.

    Args:
        fs: the features.
        rows: chunk indices of the split.
        batch_size: chunks per batch (of this process).
        shuffle: reshuffle every epoch.
        seed: seed of the order.
        rank, world: this process's rank and the number of processes.
        device: where batches are delivered (features converted to float32 there).
        options: workers, pinning, prefetching (default: no worker).
        context: multiprocessing start method of the workers (default: the platform's).
        classes: also deliver the features' per-frame classes (class-aware accdoa);
            off, batches are ``(x, d, a)`` as ever.
        augment: a :class:`~ssl_toolkit.features.augment.SpatialAugment` applied to each
            batch on the device (training only), or None.
    """
    opts = options or LoaderOptions()
    ring = BatchRing(
        fs,
        batch_size,
        opts.ahead + 2,  # the batches in flight, the one in use and the one before
        shared=opts.num_workers > 0,
        pin=opts.pin_memory,
        classes=classes,
    )
    ds = ChunkBatches(fs, rows, ring, classes)
    sampler = DistributedSampler(
        ds, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
    )
    batches = SlotBatches(BatchSampler(sampler, batch_size, drop_last=False), ring.slots)
    workers = {}
    if opts.num_workers:
        workers = {
            "persistent_workers": True,
            "prefetch_factor": opts.prefetch_factor,
            "multiprocessing_context": context,
        }
    loader = DataLoader(
        ds,
        sampler=batches,
        batch_size=None,
        num_workers=opts.num_workers,
        generator=torch.Generator().manual_seed(seed),  # not the global RNG: see below
        **workers,
    )
    # The DataLoader draws a seed for its workers at every new iterator (every epoch
    # without persistent workers, once with them); from its own generator, the global
    # RNG (dropout, drawn negatives) is the same whatever the number of workers.
    return Batches(loader, ring, device, opts, fs, augment), sampler
