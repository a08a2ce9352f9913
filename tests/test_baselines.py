"""Classical baselines on MIC audio built in code: white noise with exact fractional delays."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ssl_toolkit.artifacts import build_artifact
from ssl_toolkit.baselines import BaselineConfig, estimate_n_sources, run_baseline, stft
from ssl_toolkit.config import ConfigError
from ssl_toolkit.featureset import FeatureWriter
from ssl_toolkit.geometry import rad, sph_to_unit

FS, HOP, T, C = 16000, 1600, 10, 343.0  # 0.1 s label frames, 10 frames per chunk
# DCASE tetrahedral array: radius 4.2 cm at (az, el) = (45, 35), (-45, -35), (135, -35), (-135, 35)
MICS = 0.042 * sph_to_unit(
    rad(np.array([45.0, -45, 135, -135])), rad(np.array([35.0, -35, -35, 35]))
)


def far_field(directions, seconds, rng):
    """White noise from each unit vector, delayed exactly (in frequency) at each mic, [4, n]."""
    n = int(seconds * FS)
    f = np.fft.rfftfreq(n, 1 / FS)
    out = np.zeros((4, n))
    for u in directions:
        s = np.fft.rfft(rng.normal(size=n))
        delay = -(MICS @ u) / C  # (4,) a mic nearer the source hears it earlier
        out += np.fft.irfft(s[None] * np.exp(-2j * np.pi * f[None] * delay[:, None]), n)
    out = out / np.abs(out).max() * 0.5
    return out + 0.01 * rng.normal(size=out.shape)  # sensor noise, about 23 dB SNR


def make_scenes_and_features(tmp, clips, rng):
    """clips: list of (clip_id, [unit vectors]); one 1 s chunk per clip, all in split test."""
    with build_artifact(tmp / "scenes", "scenes", {"test": 1}) as b:
        (b.dir / "wav").mkdir()
        (b.dir / "labels").mkdir()
        rows = []
        for cid, dirs in clips:
            sf.write(b.dir / "wav" / f"{cid}.wav", far_field(dirs, 1.0, rng).T, FS)
            pd.DataFrame(
                columns=["sound_event_recording", "start_time", "end_time", "ele", "azi", "dist"]
            ).to_csv(b.dir / "labels" / f"{cid}.csv", index=False)
            rows.append(
                {
                    "clip_id": cid,
                    "audio": f"wav/{cid}.wav",
                    "labels": f"labels/{cid}.csv",
                    "fold": 1,
                    "split": "test",
                    "subset": f"ov{len(dirs)}",
                    "duration_s": 1.0,
                    "n_sources_max": len(dirs),
                }
            )
        pd.DataFrame(rows).to_csv(b.dir / "clips.csv", index=False)
        b.extra.update(
            {
                "fs": FS,
                "format": "mic",
                "n_channels": 4,
                "mic_positions_m": MICS.tolist(),
                "max_sources": 2,
                "audio_root": ".",
            }
        )
    with build_artifact(tmp / "features", "features", {"test": 1}) as b:
        w = FeatureWriter(b.dir, len(clips), (1, T, 4), 2)
        for i, (cid, dirs) in enumerate(clips):
            act = np.zeros((T, 2), bool)
            act[1:-1, : len(dirs)] = True  # edges silent in the labels
            d = np.zeros((T, 2, 3), np.float32)
            d[:, : len(dirs)] = np.array(dirs)[None]
            w.put(
                i,
                np.zeros((1, T, 4), np.float16),
                act,
                d,
                clip_id=cid,
                fold=1,
                split="test",
                subset=f"ov{len(dirs)}",
                start_frame=0,
            )
        w.finish()
        b.extra.update(
            {
                "feature_params": {"fs": FS, "hop_length": HOP, "format": "mic"},
                "shape": [1, T, 4],
                "max_sources": 2,
                "n_chunks": len(clips),
            }
        )
    return tmp / "scenes", tmp / "features"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    clips = [
        ("one", [sph_to_unit(rad(60.0), rad(20.0))]),
        ("two", [sph_to_unit(rad(-100.0), rad(-10.0)), sph_to_unit(rad(20.0), rad(30.0))]),
    ]
    return make_scenes_and_features(tmp_path_factory.mktemp("bl"), clips, rng)


@pytest.mark.parametrize("method", ["srp", "music", "normmusic"])
def test_baseline_finds_the_directions(tmp_path, data, method):
    scenes, feats = data
    man = run_baseline(scenes, feats, tmp_path / method, method=method, grid_deg=5.0)
    doc = json.loads((man.path / "metrics.json").read_text())
    assert doc["method"] == method and doc["K"] == 2
    assert doc["D1"]["oracle_deg"] < 4.0  # one source: within the grid (5 deg, diagonal 3.5)
    if method != "srp":  # SRP's peaks of two sources on a 4-mic array are blurred
        assert doc["D2"]["oracle_deg"] < 6.0
        assert doc["overall"]["F20"] > 0.9
    with np.load(man.path / "predictions.npz", allow_pickle=False) as z:
        assert z["hyps"].shape == (2 * T, 2, 3)
        np.testing.assert_array_equal(z["detected"].sum(1), z["active"].sum(1))  # known count


def test_estimated_count_and_mdl(tmp_path, data):
    scenes, feats = data
    man = run_baseline(
        scenes, feats, tmp_path / "est", method="music", n_sources="estimate", grid_deg=6.0
    )
    doc = json.loads((man.path / "metrics.json").read_text())
    # labels are silent at the edges while the audio is not: count right on 8 of 10 frames
    assert doc["D1"]["frame_recall"] >= 0.8 - 1e-9
    rng = np.random.default_rng(1)
    x, _ = stft(rng.normal(size=(4, 8000)), 512)
    assert estimate_n_sources(x, np.arange(10, 100), 3) == 0  # independent noise: no source


def test_baseline_bad_options(tmp_path, data):
    scenes, feats = data
    with pytest.raises(ConfigError, match="--method"):
        BaselineConfig(method="beamformer").validate()
    with pytest.raises(ConfigError, match="--n-sources"):
        run_baseline(scenes, feats, tmp_path / "x", n_sources="guess")
