"""``FeatureSpec``: the typed, frozen description of a features artifact.

Written once by ``ssl prep features`` into the manifest (``extra.feature_params``, the
artifact contract's key and field names), carried by ``model.json`` (runs) and ``io.json``
(exports), and read back by training, eval, baselines, export and predict. Nothing else
looks feature parameters up by string key.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..core import readers

#: Feature kinds: ``stft`` (magnitude + phase), ``logmel`` (log-mel + intensity / GCC-PHAT).
TYPES = ("stft", "logmel")


@dataclass(frozen=True)
class FeatureSpec:
    """How features were computed from audio, and what one chunk of them looks like.

    Attributes:
        type: ``stft`` or ``logmel``.
        fs: sample rate the audio is resampled to (Hz).
        n_fft: FFT size (samples).
        win_length: Hann window length (samples), at most ``n_fft``.
        hop_length: hop between frames (samples); frame t is centred at ``t * hop_length``.
        n_mels: mel bands of ``logmel`` (also the GCC-PHAT lags kept).
        n_channels: audio channels (4 for FOA and the tetrahedral array).
        format: ``foa`` (ambisonics) or ``mic`` (microphone array).
        chunk_frames: frames per chunk (25 = 0.5 s at a 20 ms hop).
    """

    type: str
    fs: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    n_channels: int
    format: str
    chunk_frames: int

    @property
    def hop_s(self) -> float:
        """Seconds between consecutive frames."""
        return self.hop_length / self.fs

    @property
    def channels(self) -> int:
        """Feature channels ``C`` of :meth:`extract`'s output."""
        m = self.n_channels
        if self.type == "stft":
            return 2 * m
        return m + (3 if self.format == "foa" else m * (m - 1) // 2)

    @property
    def bins(self) -> int:
        """Feature bins ``F`` (frequency bins, mel bands or GCC-PHAT lags)."""
        return self.n_fft // 2 if self.type == "stft" else self.n_mels

    @property
    def chunk_shape(self) -> tuple[int, int, int]:
        """``(C, T, F)`` of one chunk: the model's input without the batch axis."""
        return self.channels, self.chunk_frames, self.bins

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT of ``n_samples`` (at ``fs``)."""
        return 1 + n_samples // self.hop_length

    def segment_frames(self, segment_s: float) -> int:
        """Frames per scoring segment of ``segment_s`` seconds (at least one)."""
        return max(1, int(round(segment_s / self.hop_s)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under ``feature_params`` in manifests, model.json and io.json."""
        return asdict(self)

    @classmethod
    def from_dict(
        cls,
        params: Any,
        path: str | os.PathLike,
        rebuild: str | None,
        where: str = "feature_params.",
    ) -> FeatureSpec:
        """The spec stored at ``path``, checked field by field.

        Raises:
            ArtifactError: a field is missing or of the wrong type, naming the file, the
                field and the command that rebuilds it.
        """
        names = tuple(f.name for f in fields(cls))
        p = readers.check_feature_params(params, path, rebuild, required=names, where=where)
        return cls(**{k: p[k] for k in names})
