"""The CRNN of rMCL (Letzelter et al., NeurIPS 2023) with multi-hypothesis heads.

Conv blocks (3x3 filters, BatchNorm, ReLU, max-pooling over frequency only) turn
``[B, C, T, F]`` features into ``[B, T, channels * F']``; a bidirectional GRU
and per-frame linear heads give K hypotheses and K confidences per frame.
Defaults are the paper's: 3 blocks of 64 filters pooled 8, 8, 2 in frequency,
4 GRU layers of 128 units each way, K = 5. :func:`default_pools` fits the pooling
to inputs with fewer bins (64 mel bands: 4, 4, 2, as the DCASE SELD baseline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

OUTPUTS = ("unit", "sph")


def pooled_bins(n_bins: int, pools: Sequence[int]) -> int:
    """Frequency bins left after max-pooling by each of ``pools`` (floor division)."""
    for p in pools:
        n_bins //= p
    return n_bins


#: The paper's total frequency pooling (8 * 8 * 2) for its 513 STFT bins, as powers of two.
PAPER_POOL_LOG2 = 7


def default_pools(n_bins: int, n_blocks: int = 3) -> tuple[int, ...]:
    """Frequency pools of ``n_blocks`` conv blocks that fit ``n_bins`` input bins.

    The rule: the paper's total pooling 128 is given to the blocks in order, at
    most 8 each (3 blocks: 8, 8, 2); then, while fewer than 2 bins would be left,
    the largest pool (the later one of equal pools) is halved. With 3 blocks:
    256 bins or more (the paper's 513) get ``(8, 8, 2)``, 128-255 ``(8, 4, 2)``, 64-127
    ``(4, 4, 2)``, 32-63 ``(4, 2, 2)``. The pools are powers of two, so their product
    divides a power-of-two ``n_bins``.

    Args:
        n_bins: F, frequency bins of the input.
        n_blocks: number of conv blocks.

    Returns:
        One pool per block (1 = no pooling).
    """
    logs = np.minimum(3, np.maximum(0, PAPER_POOL_LOG2 - 3 * np.arange(n_blocks)))  # (n_blocks,)
    while logs.sum() > 0 and n_bins >> int(logs.sum()) < 2:
        i = n_blocks - 1 - int(np.argmax(logs[::-1]))  # the later one of the largest
        logs[i] -= 1
    return tuple(int(2**v) for v in logs)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel and bin, with the statistics as buffers."""

    def __init__(self, n_channels: int, n_bins: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_channels, n_bins))
        self.register_buffer("std", torch.ones(n_channels, n_bins))

    def set_stats(self, mean, std) -> None:
        """Copy the features' ``mean`` and ``std`` ``[C, F]`` into the buffers."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean[:, None, :]) / self.std[:, None, :]  # (B, C, T, F)


def conv_block(c_in: int, c_out: int, pool: int, dropout: float) -> nn.Sequential:
    """3x3 conv, BatchNorm, ReLU, max-pool over frequency, dropout."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d((1, pool)),
        nn.Dropout(dropout),
    )


class DirectionHead(nn.Module):
    """K directions per frame as unit vectors, from 3-D outputs or (azimuth, elevation).

    ``unit``: a 3-D output per hypothesis, normalized to unit length.
    ``sph``: azimuth (unbounded; wrap-around is implicit in cos/sin) and elevation
    ``pi/2 * tanh(.)``, mapped to unit vectors in the DCASE frame.
    """

    def __init__(self, d_in: int, k: int, output: str = "unit"):
        super().__init__()
        self.k, self.output = k, output
        self.linear = nn.Linear(d_in, k * (3 if output == "unit" else 2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.linear(h).unflatten(-1, (self.k, -1))  # (B, T, K, 3 or 2)
        if self.output == "unit":
            return nn.functional.normalize(y.float(), dim=-1, eps=1e-6)
        az, el = y[..., 0].float(), (math.pi / 2) * torch.tanh(y[..., 1].float())
        cos_el = torch.cos(el)
        return torch.stack((torch.cos(az) * cos_el, torch.sin(az) * cos_el, torch.sin(el)), -1)


class CRNN(nn.Module):
    """Multi-hypothesis CRNN: ``x [B, C, T, F] -> (hyps [B, T, K, 3], conf [B, T, K])``.

    Args:
        n_channels: C, feature maps of the input.
        n_bins: F, frequency bins of the input.
        K: hypotheses per frame (PIT: the number of slots).
        channels: filters of each conv block.
        pools: frequency max-pooling of each conv block.
        gru_layers: bidirectional GRU layers.
        gru_units: GRU units per direction.
        dropout: after each conv block and between GRU layers.
        output: ``unit`` (normalized 3-D, default) or ``sph`` (azimuth/elevation).
        confidence: False for methods without scores (plain WTA variants): the model
            has no score layer (no parameter without a gradient, as DDP requires) and
            ``conf`` is 1 for every hypothesis.
    """

    def __init__(
        self,
        n_channels: int,
        n_bins: int,
        K: int = 5,
        channels: Sequence[int] = (64, 64, 64),
        pools: Sequence[int] = (8, 8, 2),
        gru_layers: int = 4,
        gru_units: int = 128,
        dropout: float = 0.0,
        output: str = "unit",
        confidence: bool = True,
    ):
        super().__init__()
        if len(channels) != len(pools):
            raise ValueError(f"channels {list(channels)} and pools {list(pools)} differ in length")
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; known: {OUTPUTS}")
        f_out = pooled_bins(n_bins, pools)
        if f_out < 1:
            raise ValueError(f"{n_bins} frequency bins cannot be pooled by {list(pools)}")
        self.K, self.confidence = K, confidence
        self.norm = Normalize(n_channels, n_bins)
        c_in = [n_channels, *channels[:-1]]
        self.convs = nn.Sequential(
            *(conv_block(a, b, p, dropout) for a, b, p in zip(c_in, channels, pools, strict=True))
        )
        self.gru = nn.GRU(
            channels[-1] * f_out,
            gru_units,
            num_layers=gru_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if gru_layers > 1 else 0.0,
        )
        self.directions = DirectionHead(2 * gru_units, K, output)
        self.scores = nn.Linear(2 * gru_units, K) if confidence else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hypotheses and confidences of each frame.

        Args:
            x: raw features ``[B, C, T, F]``.

        Returns:
            ``hyps [B, T, K, 3]`` unit vectors and ``conf [B, T, K]`` in (0, 1).
        """
        z = self.convs(self.norm(x))  # (B, channels, T, F')
        z = z.transpose(1, 2).flatten(2)  # (B, T, channels * F')
        h, _ = self.gru(z)  # (B, T, 2 * units)
        hyps = self.directions(h)  # (B, T, K, 3)
        if self.scores is not None:
            conf = torch.sigmoid(self.scores(h).float())  # (B, T, K)
        else:  # computed from the data, so traced graphs keep dynamic batch and time axes
            conf = hyps[..., 0] * 0.0 + 1.0
        return hyps, conf
