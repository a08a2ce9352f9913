"""Batches streamed from a features artifact's memory maps."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from ..featureset import FeatureSet


class ChunkBatches(Dataset):
    """Chunks of one split; indexed by a *list* of positions, returns a whole batch.

    Reading a sorted batch of rows in one fancy-indexing call keeps the memmap
    access sequential; nothing but the batch is loaded.
    """

    def __init__(self, fs: FeatureSet, rows: np.ndarray):
        self.fs, self.rows = fs, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features ``[b, C, T, F]`` float32, directions ``[b, T, S, 3]``, activity ``[b, T, S]``.

        Args:
            positions: positions (in this split) of the batch's chunks.
        """
        rows = self.rows[np.asarray(positions)]
        order = np.argsort(rows, kind="stable")
        back = np.argsort(order, kind="stable")
        sorted_rows = rows[order]
        x = np.asarray(self.fs.features[sorted_rows], dtype=np.float32)[back]
        d = np.asarray(self.fs.directions[sorted_rows], dtype=np.float32)[back]
        a = np.asarray(self.fs.activity[sorted_rows], dtype=bool)[back]
        return torch.from_numpy(x), torch.from_numpy(d), torch.from_numpy(a)


def make_loader(
    fs: FeatureSet,
    rows: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world: int = 1,
    num_workers: int = 0,
) -> tuple[DataLoader, DistributedSampler]:
    """A loader over ``rows`` whose order depends only on ``seed`` and the epoch.

    A :class:`DistributedSampler` is used even in one process, so a run on N
    processes with per-process batch ``batch_size / N`` sees, at every step, the
    same chunks as one process with ``batch_size``. Call ``sampler.set_epoch(e)``.
    """
    ds = ChunkBatches(fs, rows)
    sampler = DistributedSampler(
        ds, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
    )
    batches = BatchSampler(sampler, batch_size, drop_last=False)
    loader = DataLoader(ds, sampler=batches, batch_size=None, num_workers=num_workers)
    return loader, sampler
