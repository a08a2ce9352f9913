"""Exact spatial augmentation: symmetries of the array as channel operations on features.

A rotation or reflection ``Q`` of the scene (every source direction ``u`` becomes ``Q u``)
that maps the array onto itself changes the audio only by channel operations, so the
STORED features of the rotated scene follow from the original's, exactly, and the labels
follow by ``Q``:

- FOA (ACN W, Y, Z, X, SN3D, ideal encoding): a signed permutation ``Q`` of the axes maps
  the dipoles onto each other with signs (``Y' = s (Q u)_y``): log-mel channels permute (W
  fixed), the intensity vector maps by ``Q``, STFT magnitudes permute and the phase of a
  sign-flipped channel gains pi (wrapped to (-pi, pi]).
- MIC (free-field or rigid-sphere capsules): a ``Q`` that maps capsule ``j`` onto the
  position of capsule ``i`` makes capsule ``i`` of the rotated scene hear what capsule
  ``j`` heard (its delay ``-p_i . Q u / c = -p_j . u / c``): log-mel, log-power and STFT
  channels permute, the GCC-PHAT of a pair whose order flips is mirrored in lag, and its
  SALSA-Lite phase difference changes sign (exact but at the wrap, ``+-c / 2f``, where the
  negated value lands on the other end of the interval: a set of measure zero).

The symmetries are found from the array itself (:func:`array_symmetries`): for FOA the 48
signed permutations; for a MIC array the signed permutations of the axes and the rotations
about z by multiples of ``2 pi / n`` that map its capsules onto themselves within
:data:`SYMMETRY_TOLERANCE_M`, closed under composition. Mode ``z`` keeps those that map z
to +-z (the elevation distribution is kept: 16 for FOA, 8 for the tetrahedral array, as
the channel swaps of the DCASE 2021 winning system), ``full`` keeps them all, ``none``
only the identity.

One exception to exactness: with an even number ``L`` of GCC-PHAT lags (``-L/2 .. L/2-1``)
the lag ``-L/2`` has no mirror among the stored lags; a mirrored pair keeps its own value
there (the lag is far beyond the delays of any array the toolkit accepts at the usual rates).

:class:`SpatialAugment` applies a transform drawn per chunk to a batch on the training
device, vectorised over the batch (one gather of channel indices, then signs, phase
offsets and lag mirrors as tensors), optionally with a SpecAugment-style frequency mask.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .spec import TYPES, ArraySpec, FeatureSpec

#: ``--augment`` modes: the symmetries that map z to +-z (default), all of them, or none.
MODES = ("z", "full", "none")
#: Largest capsule displacement (metres) of a symmetry: a delay error of 1.5 us, a 0.05
#: rad phase error at 5 kHz. The DCASE tetrahedral array (capsules at +-35 deg, not the
#: regular tetrahedron's 35.26 deg) has its 16 axis-swapping symmetries 0.34 mm off.
SYMMETRY_TOLERANCE_M = 5e-4
#: FOA audio channel of each axis (ACN: W=0, Y=1, Z=2, X=3).
FOA_AXIS_CHANNEL = (3, 1, 2)


@dataclass(frozen=True)
class Symmetry:
    """One symmetry of an array.

    Attributes:
        matrix: ``Q`` ``[3, 3]`` (orthogonal): the scene's directions become ``Q u``.
        source: ``[M]``: audio channel ``i`` of the transformed scene is ``sign[i]`` times
            channel ``source[i]`` of the original.
        sign: ``[M]`` +-1 (FOA dipoles; all 1 for MIC).
        error_m: the largest capsule displacement (0 for FOA).
    """

    matrix: np.ndarray
    source: np.ndarray
    sign: np.ndarray
    error_m: float = 0.0

    @property
    def keeps_z(self) -> bool:
        return abs(abs(self.matrix[2, 2]) - 1) < 1e-9


def signed_permutations() -> list[np.ndarray]:
    """The 48 signed permutation matrices of the axes, the identity first."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            q = np.zeros((3, 3))
            q[np.arange(3), perm] = signs
            out.append(q)
    return out


def _z_rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _foa_symmetry(q: np.ndarray) -> Symmetry:
    source, sign = np.arange(4), np.ones(4)
    for a in range(3):
        k = int(np.argmax(np.abs(q[a])))
        source[FOA_AXIS_CHANNEL[a]] = FOA_AXIS_CHANNEL[k]
        sign[FOA_AXIS_CHANNEL[a]] = q[a, k]
    return Symmetry(q, source, sign)


def _mic_symmetry(q: np.ndarray, pos: np.ndarray, tol: float) -> Symmetry | None:
    """The capsule permutation of ``q`` (``Q p_j`` lands on ``p_i``: ``source[i] = j``)."""
    moved = pos @ q.T  # (M, 3): Q p_j
    dist = np.linalg.norm(moved[:, None] - pos[None], axis=-1)  # (j, i)
    i_of_j = dist.argmin(axis=1)
    err = float(dist[np.arange(len(pos)), i_of_j].max())
    if err > tol or len(set(i_of_j.tolist())) < len(pos):
        return None
    source = np.empty(len(pos), np.int64)
    source[i_of_j] = np.arange(len(pos))
    return Symmetry(q, source, np.ones(len(pos)), err)


def array_symmetries(
    array: ArraySpec, mode: str = "full", tol: float = SYMMETRY_TOLERANCE_M
) -> list[Symmetry]:
    """The symmetries of ``array`` kept by ``mode`` (:data:`MODES`), the identity first.

    FOA: the signed permutations (48; 16 keep z). MIC: the signed permutations of the axes
    and the rotations about z by ``2 pi k / n`` (n up to the number of capsules) that map
    the capsule set onto itself within ``tol`` metres, closed under composition; measured
    responses are not assumed symmetric (identity only).
    """
    if mode == "none":
        cands = [np.eye(3)]
    elif array.format == "foa":
        cands = signed_permutations()
    elif array.acoustic_model == "measured":
        cands = [np.eye(3)]
    else:
        m = len(array.positions_m)
        cands = signed_permutations() + [
            _z_rotation(2 * math.pi * k / n) for n in range(3, max(m, 3) + 1) for k in range(1, n)
        ]
    if array.format == "foa":
        found = [_foa_symmetry(q) for q in cands]
    else:
        pos = np.asarray(array.positions_m, np.float64).reshape(-1, 3)
        found = _closure([s for q in cands if (s := _mic_symmetry(q, pos, tol)) is not None],
                         pos, tol)  # fmt: skip
    if mode == "z":
        found = [s for s in found if s.keeps_z]
    found.sort(key=lambda s: not np.allclose(s.matrix, np.eye(3)))  # identity first
    return found


def _closure(syms: list[Symmetry], pos: np.ndarray, tol: float) -> list[Symmetry]:
    """``syms`` with every product of two of them, until no new one appears; duplicates
    (the same matrix) dropped."""

    def key(q):
        return tuple(np.round(q, 6).ravel())

    out = {key(s.matrix): s for s in syms}
    grew = True
    while grew:
        grew = False
        for a, b in itertools.product(list(out.values()), repeat=2):
            q = a.matrix @ b.matrix
            if key(q) not in out and (s := _mic_symmetry(q, pos, tol)) is not None:
                out[key(q)] = s
                grew = True
    return list(out.values())


# ----------------------------------------------------------------------------- features


@dataclass(frozen=True)
class ChannelMaps:
    """Each symmetry as channel operations on ``[C, T, F]`` features: output channel ``c``
    of symmetry ``g`` is ``scale[g, c] * x[source[g, c]] + offset[g, c]`` (the phase
    channels wrapped back to (-pi, pi]), its bins reversed by ``bins`` where ``mirror[g, c]``.

    Attributes:
        matrices: ``[G, 3, 3]``; source ``[G, C]`` int64; scale, offset ``[G, C]`` float32;
        mirror ``[G, C]`` bool; bins ``[F]`` int64 (the lag ``-n`` of each lag ``n``);
        phase: ``[C]`` bool, the channels that hold phases (wrapped after an offset).
    """

    matrices: np.ndarray
    source: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    mirror: np.ndarray
    bins: np.ndarray
    phase: np.ndarray

    def __len__(self) -> int:
        return len(self.matrices)

    def apply(self, x: np.ndarray, g: int) -> np.ndarray:
        """``[C, T, F]`` features of the scene transformed by symmetry ``g`` (numpy; for
        tests and one-off use: training uses :class:`SpatialAugment`)."""
        y = x[self.source[g]].astype(np.float32) * self.scale[g][:, None, None]
        y[self.phase] += self.offset[g][self.phase, None, None]
        y[self.phase] = np.where(y[self.phase] > math.pi, y[self.phase] - 2 * math.pi,
                                 y[self.phase])  # fmt: skip
        mirror = self.mirror[g]
        y[mirror] = y[mirror][..., self.bins]
        return y


def channel_maps(spec: FeatureSpec, syms: list[Symmetry]) -> ChannelMaps:
    """The :class:`ChannelMaps` of ``syms`` on features of ``spec`` (any of :data:`TYPES`)."""
    m, c, f = spec.n_channels, spec.channels, spec.bins
    g = len(syms)
    source = np.tile(np.arange(c), (g, 1))
    scale, offset = np.ones((g, c), np.float32), np.zeros((g, c), np.float32)
    mirror = np.zeros((g, c), bool)
    phase = np.zeros(c, bool)
    centre = f // 2  # index of lag 0 (GCC-PHAT lags -f//2 .. f - f//2 - 1)
    lag_of_minus = 2 * centre - np.arange(f)
    bins = np.where(lag_of_minus < f, lag_of_minus, np.arange(f))  # lag -f/2: no mirror
    for k, s in enumerate(syms):
        src, sign = s.source, s.sign
        if spec.type == "stft":  # magnitudes, then phases
            source[k, :m], source[k, m:] = src, m + src
            offset[k, m:] = np.where(sign < 0, math.pi, 0.0)
            phase[m:] = True
        elif spec.format == "foa":  # log-mel/power W, Y, Z, X, then intensity x, y, z
            source[k, :m] = src
            for a in range(3):
                j = int(np.argmax(np.abs(s.matrix[a])))
                source[k, m + a], scale[k, m + a] = m + j, s.matrix[a, j]
        else:  # log-mel/power of each capsule, then GCC-PHAT / phase difference of each pair
            source[k, :m] = src
            pairs = list(itertools.combinations(range(m), 2))
            index = {p: n for n, p in enumerate(pairs)}
            for n, (i, j) in enumerate(pairs):
                a, b = int(src[i]), int(src[j])
                source[k, m + n] = m + index[(min(a, b), max(a, b))]
                if spec.type == "salsa":  # the pair (j, i): the phase difference negated
                    scale[k, m + n] = -1.0 if a > b else 1.0
                else:  # the pair (j, i): the cross-correlation mirrored in lag
                    mirror[k, m + n] = a > b
    return ChannelMaps(np.stack([s.matrix for s in syms]).astype(np.float32), source, scale,
                       offset, mirror, bins.astype(np.int64), phase)  # fmt: skip


def plan(spec: FeatureSpec, mode: str) -> tuple[ChannelMaps | None, str]:
    """The channel maps of ``--augment mode`` on features of ``spec``, and a line saying
    what they are (or why there are none: None then)."""
    if mode == "none":
        return None, "no spatial augmentation (--augment none)"
    if spec.type not in TYPES:
        return None, f"no spatial augmentation ({spec.type!r} features: not a known layout)"
    array = spec.array
    if array is None and spec.format == "foa":
        array = ArraySpec.foa()
    if array is None:
        return None, "no spatial augmentation: the features record no array (rebuild them)"
    syms = array_symmetries(array, mode)
    if len(syms) < 2:
        why = ("its measured responses are not assumed symmetric"
               if array.acoustic_model == "measured" else "it has no symmetry")  # fmt: skip
        return None, f"no spatial augmentation: {array.describe()}: {why}"
    err = max(s.error_m for s in syms)
    within = f", capsules mapped within {err * 1000:.2f} mm" if err > 1e-6 else ""
    kept = "z kept" if mode == "z" else "full group"
    return channel_maps(spec, syms), (
        f"spatial augmentation: {len(syms)} symmetries of the {array.describe()} ({kept}{within})"
    )


class SpatialAugment:
    """Draws a symmetry per chunk and applies it to a batch on its device.

    Args:
        maps: the symmetries' channel maps (None: no spatial transform).
        freq_mask: SpecAugment-style mask of up to this many consecutive bins per chunk
            (0: off), the same bins in every channel, set to the features' mean
            (0 after the model's normalization).
        mean: the features' mean ``[C, F]`` (needed with ``freq_mask``).
        device: where the batches are.
        rank, world: this process's share of the draws (DDP).

    The draws come from torch's global CPU generator (seeded with the run, saved in its
    checkpoints), ``world`` batches' worth at once, so every process advances it alike.
    """

    def __init__(self, maps: ChannelMaps | None, freq_mask: int = 0, mean=None, device="cpu",
                 rank: int = 0, world: int = 1):  # fmt: skip
        import torch

        self.device = torch.device(device)
        self.rank, self.world = rank, world
        self.freq_mask = int(freq_mask)
        self.maps = maps
        if maps is not None:
            dev = self.device
            self.matrices = torch.from_numpy(maps.matrices).to(dev)
            self.source = torch.from_numpy(maps.source).to(dev)
            self.scale = torch.from_numpy(maps.scale).to(dev)
            self.offset = torch.from_numpy(maps.offset).to(dev)
            self.mirror = torch.from_numpy(maps.mirror).to(dev)
            self.bins = torch.from_numpy(maps.bins).to(dev)
            self.signs = bool((maps.scale != 1).any())
            self.phases = torch.from_numpy(np.flatnonzero(maps.phase)).to(dev)
            self.mirrors = bool(maps.mirror.any())
        if self.freq_mask:
            self.mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32).to(self.device)

    @property
    def active(self) -> bool:
        return self.maps is not None or self.freq_mask > 0

    def _draw(self, high: int, n: int):
        import torch

        draws = torch.randint(high, (self.world * n,))[self.rank * n : (self.rank + 1) * n]
        return draws.to(self.device, non_blocking=True)

    def __call__(self, batch: tuple) -> tuple:
        """``(x [B, C, T, F], d [B, T, S, 3], a, ...)`` with ``x`` and ``d`` transformed."""
        x, d, *rest = batch
        if self.maps is not None:
            g = self._draw(len(self.maps), len(x))
            x, d = self.transform(x, d, g)
        if self.freq_mask:
            x = self.mask(x)
        return (x, d, *rest)

    def transform(self, x, d, g):
        """Symmetry ``g [B]`` applied to features ``x`` and directions ``d``."""
        import torch

        b = torch.arange(len(x), device=x.device)[:, None]
        y = x[b, self.source[g]]  # (B, C, T, F): one gather
        if self.signs:
            y.mul_(self.scale[g][:, :, None, None])
        if len(self.phases):
            ph = y[:, self.phases]  # (B, P, T, F)
            ph.add_(self.offset[g][:, self.phases, None, None])
            y[:, self.phases] = torch.where(ph > math.pi, ph - 2 * math.pi, ph)
        if self.mirrors:
            y = torch.where(self.mirror[g][:, :, None, None], y[..., self.bins], y)
        q = self.matrices[g]  # (B, 3, 3)
        d = torch.bmm(d.reshape(len(d), -1, 3), q.transpose(1, 2)).reshape(d.shape)
        return y, d

    def mask(self, x):
        """Up to ``freq_mask`` consecutive bins of each chunk set to the features' mean."""
        import torch

        n, f = len(x), x.shape[-1]
        width = self._draw(self.freq_mask + 1, n)
        start = (torch.rand(self.world * n)[self.rank * n : (self.rank + 1) * n]
                 .to(x.device) * (f - width + 1)).long()  # fmt: skip
        k = torch.arange(f, device=x.device)
        hit = (k >= start[:, None]) & (k < (start + width)[:, None])  # (B, F)
        return torch.where(hit[:, None, None, :], self.mean[:, None, :], x)
