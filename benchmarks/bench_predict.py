"""Real-time factor of `ssl predict` with the paper-size CRNN on this CPU.

RTF = wall time of ``predict_files`` (audio reading, STFT features, model, CSV writing)
divided by the audio duration; target <= 0.1 (10x faster than real time). The paper's
input: 4-channel audio at 44.1 kHz, STFT magnitude + phase (n_fft 2048, 40 ms window,
20 ms hop: [8, T, 1024]) and the default CRNN (64 filters, pooling 8-8-2, 4 x 128 BiGRU,
K = 5). Prints the median over ``--repeats`` runs, and the share spent in the features.

Run: .venv/bin/python benchmarks/bench_predict.py [--seconds 60] [--fs 44100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ssl_toolkit.core.artifacts import build_artifact
from ssl_toolkit.features.extract import extract
from ssl_toolkit.inference.predict import predict_files
from ssl_toolkit.models import build_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fs", type=int, default=44100)
    ap.add_argument("--K", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    win = round(0.04 * a.fs)
    n_fft = 1 << (win - 1).bit_length()
    params = {
        "type": "stft",
        "fs": a.fs,
        "n_fft": n_fft,
        "win_length": win,
        "hop_length": round(0.02 * a.fs),
        "n_mels": 64,
        "n_channels": 4,
        "format": "foa",
        "chunk_frames": 25,
    }
    kwargs = {"n_channels": 8, "n_bins": n_fft // 2, "K": a.K}  # paper sizes by default
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with build_artifact(d / "run", "run", {"bench": kwargs}) as b:
            model = build_model("crnn", **kwargs)
            meta = {"method": "rmcl", "threshold": 0.5, "K": a.K, "feature_params": params}
            save_model(b.dir, model, "crnn", kwargs, **meta)
        audio = np.random.default_rng(0).normal(scale=0.1, size=(int(a.seconds * a.fs), 4))
        sf.write(str(d / "rec.wav"), audio.astype(np.float32), a.fs)
        walls, feats = [], []
        for i in range(a.repeats):
            t0 = time.perf_counter()
            predict_files(d / "run", [d / "rec.wav"], d / f"out{i}")
            walls.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            extract(audio.T, a.fs, params)
            feats.append(time.perf_counter() - t0)
    wall, feat = statistics.median(walls), statistics.median(feats)
    print(
        f"paper CRNN, {a.fs} Hz, {a.seconds:.0f} s of 4-channel audio, "
        f"{torch.get_num_threads()} threads: median wall {wall:.2f} s over {a.repeats} runs "
        f"(features {feat:.2f} s), real-time factor {wall / a.seconds:.3f}"
    )


if __name__ == "__main__":
    main()
