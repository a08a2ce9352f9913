"""Tiny models and run artifacts for the export / predict tests (no training needed)."""

from __future__ import annotations

import torch
from torch import nn

from ssl_toolkit.core.artifacts import build_artifact
from ssl_toolkit.models import REGISTRY, build_model, register, save_model

FS, HOP, N_FFT = 16000, 320, 256  # 20 ms frames, F = 128 bins for stft features
PARAMS = {
    "type": "stft",
    "fs": FS,
    "n_fft": N_FFT,
    "win_length": N_FFT,
    "hop_length": HOP,
    "n_channels": 4,
    "format": "mic",
    "chunk_frames": 25,
    "n_mels": 64,
}


class TinyGRU(nn.Module):
    """Normalization buffers, a per-frame projection, a bidirectional GRU and K heads."""

    def __init__(self, channels: int = 8, bins: int = 16, K: int = 3, hidden: int = 12):
        super().__init__()
        self.register_buffer("mean", torch.randn(channels, bins) * 0.1)
        self.register_buffer("std", 1 + torch.rand(channels, bins))
        self.proj = nn.Linear(channels * bins, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True, bidirectional=True)
        self.dirs = nn.Linear(2 * hidden, K * 3)
        self.conf = nn.Linear(2 * hidden, K)
        self.K = K

    def forward(self, x):  # x: (B, C, T, F)
        x = (x - self.mean[:, None]) / self.std[:, None]
        x = x.permute(0, 2, 1, 3).flatten(2)  # (B, T, C*F)
        y, _ = self.gru(torch.tanh(self.proj(x)))  # (B, T, 2H)
        hyps = nn.functional.normalize(self.dirs(y).unflatten(-1, (self.K, 3)), dim=-1)
        return hyps, torch.sigmoid(self.conf(y))  # (B, T, K, 3), (B, T, K)


class FrozenLength(TinyGRU):
    """Not traceable with variable T: a Python int reshape freezes the length."""

    def forward(self, x):
        hyps, conf = super().forward(x)
        b, t = int(x.shape[0]), int(x.shape[2])
        return hyps.reshape(b * t, self.K, 3).reshape(2, -1, self.K, 3)[:, :t], conf


class EnergyDetector(nn.Module):
    """A physics-made 'model': one fixed direction, confidence rising with frame energy.

    conf = sigmoid(gain * (mean log-magnitude of the frame - level)): high where the
    audio is loud, low in silence. Its outputs are known without training.
    """

    def __init__(self, channels=8, bins=128, azimuth_rad=0.5, elevation_rad=0.2, level=-3.0):
        super().__init__()
        import math

        u = [
            math.cos(azimuth_rad) * math.cos(elevation_rad),
            math.sin(azimuth_rad) * math.cos(elevation_rad),
            math.sin(elevation_rad),
        ]
        self.register_buffer("direction", torch.tensor([u, [-u[0], -u[1], u[2]]]))
        self.register_buffer("mean", torch.zeros(channels, bins))
        self.level = level
        self.n_mag = channels // 2

    def forward(self, x):  # x: (B, C, T, F), magnitudes in the first C/2 channels
        energy = torch.log(x[:, : self.n_mag].abs() + 1e-6).mean(dim=(1, 3))  # (B, T)
        c = torch.sigmoid(4.0 * (energy - self.level))
        conf = torch.stack((c, 0.1 * c), -1)  # (B, T, 2)
        hyps = self.direction.expand(x.shape[0], x.shape[2], 2, 3)  # (B, T, 2, 3)
        return hyps, conf


for _name, _cls in (
    ("test_tiny_gru", TinyGRU),
    ("test_frozen_length", FrozenLength),
    ("test_energy", EnergyDetector),
):
    if _name not in REGISTRY:
        register(_name)(_cls)


def make_run(path, name="test_tiny_gru", kwargs=None, inputs=(), feature_params=None, **extra):
    """A run artifact holding a freshly initialized registered model."""
    kwargs = kwargs or {}
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    meta = {"method": "rmcl", "threshold": 0.5, "K": getattr(model, "K", 2)}
    mean = next(b for n, b in model.named_buffers() if n.split(".")[-1] == "mean")
    c, f = mean.shape  # the chunks it was "trained" on, as `ssl train` records them
    meta["input_shape"] = [c, PARAMS["chunk_frames"], f]
    meta.update(extra)
    with build_artifact(path, "run", {"test": name, **kwargs}, list(inputs)) as b:
        save_model(b.dir, model, name, kwargs, feature_params=feature_params or PARAMS, **meta)
    return b.manifest, model
