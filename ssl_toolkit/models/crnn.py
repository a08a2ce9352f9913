"""The CRNN of rMCL (Letzelter et al., NeurIPS 2023) with multi-hypothesis heads.

Conv blocks (3x3 filters, BatchNorm, ReLU, max-pooling over frequency only) turn
``[B, C, T, F]`` features into ``[B, T, channels * F']``; a bidirectional GRU
and per-frame linear heads give K hypotheses and K confidences per frame.
Defaults are the paper's: 3 blocks of 64 filters pooled 8, 8, 2 in frequency,
4 GRU layers of 128 units each way, K = 5. :func:`default_pools` fits the pooling
to inputs with fewer bins (64 mel bands: 4, 4, 2, as the DCASE SELD baseline).

:class:`AccdoaCRNN` puts the multi-ACCDOA output of the DCASE 2022-2024 SELD baselines
on the same trunk (:class:`ConvRecurrent`): N tracks x C classes of Cartesian vectors whose
norms are activities, trained with ADPIT (:mod:`ssl_toolkit.losses.adpit`); its
:func:`unify_tracks` turns them into hypotheses and confidences.
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


class ConvRecurrent(nn.Module):
    """The trunk shared by the heads: ``x [B, C, T, F] -> h [B, T, 2 * gru_units]``.

    Normalization (buffers from the features' ``norm.npz``), conv blocks pooling
    frequency only, a bidirectional GRU. Arguments as :class:`CRNN`'s.
    """

    def __init__(
        self,
        n_channels: int,
        n_bins: int,
        channels: Sequence[int],
        pools: Sequence[int],
        gru_layers: int,
        gru_units: int,
        dropout: float,
    ):
        super().__init__()
        if len(channels) != len(pools):
            raise ValueError(f"channels {list(channels)} and pools {list(pools)} differ in length")
        f_out = pooled_bins(n_bins, pools)
        if f_out < 1:
            raise ValueError(f"{n_bins} frequency bins cannot be pooled by {list(pools)}")
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

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings ``[B, T, 2 * gru_units]`` of raw features ``x [B, C, T, F]``."""
        z = self.convs(self.norm(x))  # (B, channels, T, F')
        z = z.transpose(1, 2).flatten(2)  # (B, T, channels * F')
        h, _ = self.gru(z)  # (B, T, 2 * units)
        return h


class CRNN(ConvRecurrent):
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
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; known: {OUTPUTS}")
        super().__init__(n_channels, n_bins, channels, pools, gru_layers, gru_units, dropout)
        self.K, self.confidence = K, confidence
        self.directions = DirectionHead(2 * gru_units, K, output)
        self.scores = nn.Linear(2 * gru_units, K) if confidence else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hypotheses and confidences of each frame.

        Args:
            x: raw features ``[B, C, T, F]``.

        Returns:
            ``hyps [B, T, K, 3]`` unit vectors and ``conf [B, T, K]`` in (0, 1).
        """
        h = self.embed(x)  # (B, T, 2 * units)
        hyps = self.directions(h)  # (B, T, K, 3)
        if self.scores is not None:
            conf = torch.sigmoid(self.scores(h).float())  # (B, T, K)
        else:  # computed from the data, so traced graphs keep dynamic batch and time axes
            conf = hyps[..., 0] * 0.0 + 1.0
        return hyps, conf


#: Tracks of one class closer than this are one source (the DCASE baselines' ``thresh_unify``).
UNIFY_DEG = 15.0
#: Norms below this are zero: such a vector has no direction.
_TINY = 1e-12


def _closure_steps(n: int) -> int:
    """Squarings of an ``n x n`` adjacency that reach every path (``2**steps >= n - 1``)."""
    return max(0, math.ceil(math.log2(n - 1))) if n > 1 else 0


def unify_tracks(
    tracks: torch.Tensor, max_angle_rad: float = math.radians(UNIFY_DEG)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the duplicated tracks of multi-ACCDOA outputs, one class at a time.

    Two tracks of a class are linked when their directions are closer than
    ``max_angle_rad``; each group of linked tracks (transitively) becomes one estimate,
    in the slot of its first track: the direction of the mean of the group's vectors
    (so norm-weighted, as the official post-processing averages the raw vectors) and
    the largest norm of the group as confidence, clipped to [0, 1]. The other slots of
    the group are emptied: zero vector and zero confidence (the localizer marks them
    invalid). A zero track has no direction and links to nothing.

    With 3 tracks this is the official rule of the DCASE 2022-2024 baselines (no similar
    pair: three estimates; one: that pair averaged; two or more: all three averaged),
    except that it does not depend on the detection threshold (hypotheses come before
    detection here, and the threshold is learned afterwards): the official code compares
    only tracks whose norm exceeds 0.5. Here a close pair is merged whatever its norms
    and keeps the larger one, so at any threshold its slot is detected exactly when at
    least one of the two tracks is, as one source there too; the direction then moves
    toward the weaker track by at most its share of the 15 degrees.

    Made of element-wise products and sums (no matmul: under autocast those would run
    in half precision), traceable and exportable to ONNX with dynamic batch and time.

    Args:
        tracks: ``[..., N, 3]`` ACCDOA vectors of the N tracks of one class.
        max_angle_rad: the unify threshold (15 degrees).

    Returns:
        ``(hyps [..., N, 3], conf [..., N])``: unit vectors (zero in emptied slots) and
        confidences in [0, 1].
    """
    y = tracks.float()
    n = y.shape[-2]
    norm = torch.linalg.vector_norm(y, dim=-1)  # (..., N)
    u = y / norm.clamp_min(_TINY).unsqueeze(-1)
    cos = (u.unsqueeze(-2) * u.unsqueeze(-3)).sum(-1)  # (..., N, N)
    eye = torch.eye(n, dtype=y.dtype, device=y.device)
    link = torch.maximum((cos > math.cos(max_angle_rad)).to(y.dtype), eye)
    for _ in range(_closure_steps(n)):  # transitive closure by repeated squaring
        link = ((link.unsqueeze(-1) * link.unsqueeze(-3)).sum(-2) > 0).to(y.dtype)
    earlier = torch.ones(n, n, dtype=y.dtype, device=y.device).tril(-1)  # [i, j]: j < i
    first = (link * earlier).sum(-1) == 0  # (..., N): no earlier track in its group
    merged = (link.unsqueeze(-1) * y.unsqueeze(-3)).sum(-2) / link.sum(-1, keepdim=True)
    m_norm = torch.linalg.vector_norm(merged, dim=-1, keepdim=True)
    hyps = torch.where(first.unsqueeze(-1), merged / m_norm.clamp_min(_TINY), 0.0)
    conf = (link * norm.unsqueeze(-2)).amax(-1).clamp(0.0, 1.0)  # largest norm of the group
    return hyps, torch.where(first, conf, 0.0)


class AccdoaCRNN(ConvRecurrent):
    """Multi-ACCDOA CRNN (the DCASE 2022-2024 SELD baseline's output), trained with ADPIT.

    The trunk of :class:`CRNN` and a linear layer with ``tanh`` (as the baseline) give,
    per frame, N tracks x C classes x a Cartesian vector whose norm is the activity.
    As a localizer (``forward(x)``, what runs, evaluations and exports see) it gives
    ``K = C * N`` slots, class-major (slot ``k`` is track ``k % N`` of class ``k // N``):
    ``hyps`` the normalized tracks and ``conf`` their norms clipped to [0, 1], after
    :func:`unify_tracks` (duplicated tracks of a class merged; emptied slots are zero
    vectors with zero confidence, which the localizer marks invalid).

    Args:
        n_channels, n_bins, channels, pools, gru_layers, gru_units, dropout: as :class:`CRNN`.
        tracks: N, tracks per class (3 in the baseline).
        n_classes: C (1: class-agnostic).
        unify_deg: tracks of a class closer than this are merged (15 degrees).
    """

    def __init__(
        self,
        n_channels: int,
        n_bins: int,
        tracks: int = 3,
        n_classes: int = 1,
        channels: Sequence[int] = (64, 64, 64),
        pools: Sequence[int] = (8, 8, 2),
        gru_layers: int = 4,
        gru_units: int = 128,
        dropout: float = 0.0,
        unify_deg: float = UNIFY_DEG,
    ):
        if tracks < 1 or n_classes < 1:
            raise ValueError(f"tracks ({tracks}) and n_classes ({n_classes}) must be >= 1")
        if not 0.0 <= unify_deg <= 180.0:
            raise ValueError(f"unify_deg must be in [0, 180], got {unify_deg}")
        super().__init__(n_channels, n_bins, channels, pools, gru_layers, gru_units, dropout)
        self.tracks, self.n_classes, self.unify_deg = tracks, n_classes, float(unify_deg)
        self.K = tracks * n_classes
        self.head = nn.Linear(2 * gru_units, n_classes * tracks * 3)

    def accdoa(self, x: torch.Tensor) -> torch.Tensor:
        """The multi-ACCDOA output ``[B, T, N, C, 3]`` (each coordinate in (-1, 1))."""
        y = torch.tanh(self.head(self.embed(x)).float())  # (B, T, C * N * 3)
        return y.unflatten(-1, (self.n_classes, self.tracks, 3)).transpose(2, 3)

    def forward(self, x: torch.Tensor, raw: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The localizer's view of each frame, or the raw tracks for training.

        Args:
            x: raw features ``[B, C, T, F]``.
            raw: False (default, what is traced and exported): unified tracks.
                True (training, validation loss): every track in polar form, not
                unified, norms not clipped, so that ``hyps * conf[..., None]`` is the
                ACCDOA output (:meth:`accdoa`, class-major) and the loss sees it all.

        Returns:
            ``hyps [B, T, K, 3]`` and ``conf [B, T, K]``, ``K = C * N`` class-major.
        """
        y = self.accdoa(x).transpose(2, 3)  # (B, T, C, N, 3)
        if raw:
            norm = torch.linalg.vector_norm(y, dim=-1)  # (B, T, C, N)
            hyps = y / norm.clamp_min(_TINY).unsqueeze(-1)
            return hyps.flatten(2, 3), norm.flatten(2, 3)
        hyps, conf = unify_tracks(y, math.radians(self.unify_deg))
        return hyps.flatten(2, 3), conf.flatten(2, 3)


def accdoa_from_raw(hyps: torch.Tensor, conf: torch.Tensor, tracks: int) -> torch.Tensor:
    """The multi-ACCDOA output ``[B, T, N, C, 3]`` from ``AccdoaCRNN.forward(x, raw=True)``.

    Args:
        hyps: ``[B, T, C * N, 3]`` unit directions, class-major.
        conf: ``[B, T, C * N]`` norms.
        tracks: N.
    """
    y = hyps * conf.unsqueeze(-1)  # (B, T, C * N, 3)
    return y.unflatten(2, (-1, tracks)).transpose(2, 3)
