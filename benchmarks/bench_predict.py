"""Real-time factor of `ssl predict` with the paper-size CRNN on this CPU.

RTF = wall time of predict_files (features + model + CSV) / audio duration; target <= 0.1.
Run: .venv/bin/python benchmarks/bench_predict.py [--seconds 60] [--fs 16000] [--n-fft 1024]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from ssl_toolkit.artifacts import build_artifact
from ssl_toolkit.models import build_model, save_model
from ssl_toolkit.predict import predict_files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fs", type=int, default=16000)
    ap.add_argument("--n-fft", type=int, default=1024)
    ap.add_argument("--K", type=int, default=5)
    a = ap.parse_args()
    params = {
        "type": "stft",
        "fs": a.fs,
        "n_fft": a.n_fft,
        "win_length": 2 * a.fs // 50,
        "hop_length": a.fs // 50,
        "n_channels": 4,
        "format": "mic",
        "chunk_frames": 25,
    }
    kwargs = {"n_channels": 8, "n_bins": a.n_fft // 2, "K": a.K}  # paper sizes by default
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with build_artifact(d / "run", "run", {"bench": kwargs}) as b:
            save_model(
                b.dir,
                build_model("crnn", **kwargs),
                "crnn",
                kwargs,
                method="rmcl",
                threshold=0.5,
                K=a.K,
                feature_params=params,
            )
        audio = np.random.default_rng(0).normal(scale=0.1, size=(int(a.seconds * a.fs), 4))
        sf.write(str(d / "rec.wav"), audio.astype(np.float32), a.fs)
        t0 = time.perf_counter()
        predict_files(d / "run", [d / "rec.wav"], d / "out")
        wall = time.perf_counter() - t0
    print(f"audio {a.seconds:.0f} s, wall {wall:.2f} s, real-time factor {wall / a.seconds:.3f}")


if __name__ == "__main__":
    main()
