"""Classical baselines on MIC audio built in code: white noise with exact fractional delays.

Also: the MIC twin of synthesized FOA scenes (same seed and options, ``format = "mic"``)
has the same clips and labels, and ``run_baseline`` refuses scenes whose labels differ
from the features'.
"""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ssl_toolkit.artifacts import build_artifact
from ssl_toolkit.baselines import BaselineConfig, estimate_n_sources, run_baseline, stft
from ssl_toolkit.config import ConfigError, resolve
from ssl_toolkit.data_prep.features import FeatureConfig, compute_features
from ssl_toolkit.data_prep.synth import SynthConfig, preset_config, synthesize
from ssl_toolkit.errors import UserError
from ssl_toolkit.featureset import FeatureWriter
from ssl_toolkit.geometry import deg, rad, sph_to_unit, unit_to_sph

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


def label_table(dirs):
    """Each direction sounds from 0.05 s to 0.85 s: label frames 1..8 (hop 0.1 s) of 10."""
    az, el = unit_to_sph(np.array(dirs))
    return pd.DataFrame(
        {"sound_event_recording": "noise", "start_time": 0.05, "end_time": 0.85,
         "ele": deg(el), "azi": deg(az), "dist": 2.0}
    )  # fmt: skip


def make_scenes(path, clips, rng, labels=None):
    """A MIC scenes artifact of far-field noise; ``labels``: directions written in the
    label CSVs (default: those of the audio)."""
    with build_artifact(path, "scenes", {"test": str(path)}) as b:
        (b.dir / "wav").mkdir()
        (b.dir / "labels").mkdir()
        rows = []
        for i, (cid, dirs) in enumerate(clips):
            sf.write(b.dir / "wav" / f"{cid}.wav", far_field(dirs, 1.0, rng).T, FS)
            label_dirs = dirs if labels is None else labels[i][1]
            label_table(label_dirs).to_csv(b.dir / "labels" / f"{cid}.csv", index=False)
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
    return path


def make_scenes_and_features(tmp, clips, rng):
    """clips: list of (clip_id, [unit vectors]); one 1 s chunk per clip, all in split test."""
    make_scenes(tmp / "scenes", clips, rng)
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


CLIPS = [
    ("one", [sph_to_unit(rad(60.0), rad(20.0))]),
    ("two", [sph_to_unit(rad(-100.0), rad(-10.0)), sph_to_unit(rad(20.0), rad(30.0))]),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_scenes_and_features(tmp_path_factory.mktemp("bl"), CLIPS, np.random.default_rng(0))


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


@pytest.mark.parametrize(
    "labels, why",
    [
        ([CLIPS[0], ("two", [CLIPS[1][1][0], sph_to_unit(rad(25.0), rad(30.0))])], "differ at"),
        ([CLIPS[0], ("two", CLIPS[1][1] + [sph_to_unit(rad(90.0), rad(0.0))])], "overlap more"),
    ],
)
def test_baseline_refuses_scenes_with_other_labels(tmp_path, data, labels, why):
    _, feats = data
    scenes = make_scenes(tmp_path / "other", CLIPS, np.random.default_rng(0), labels=labels)
    with pytest.raises(UserError, match=why) as e:
        run_baseline(scenes, feats, tmp_path / "x", method="srp", grid_deg=20.0)
    msg = str(e.value)
    assert "\n" not in msg and "clip 'two'" in msg and "two.csv" in msg
    assert str(scenes) in msg and str(feats) in msg and "MIC twin" in msg
    assert not (tmp_path / "x").exists()  # refused before anything is written


def tiny_synth(preset, **options):
    layers = [preset_config(preset), {"fs": 8000, "n_clips": 3, "clip_seconds": 2.0}, options]
    return resolve(SynthConfig, *layers)


@pytest.mark.parametrize("preset", ["resyn", "ansyn"])
def test_mic_twin_has_the_same_clips_and_labels(tmp_path, preset):
    """The event plan (times, directions, rooms) does not depend on the format."""
    foa = synthesize(tmp_path / "foa", tiny_synth(preset))
    mic = synthesize(tmp_path / "mic", tiny_synth(preset, format="mic"))
    assert (foa.extra["format"], mic.extra["format"]) == ("foa", "mic")
    assert foa.file("clips.csv").read_text() == mic.file("clips.csv").read_text()
    clips = pd.read_csv(foa.file("clips.csv"))
    assert len(clips) == 3
    for rel in clips["labels"]:
        assert len(pd.read_csv(foa.path / rel)) > 0
        assert (foa.path / rel).read_bytes() == (mic.path / rel).read_bytes()


def test_baseline_on_the_mic_twin_of_foa_features(tmp_path):
    """FOA features (what the models learn from), the MIC twin's audio; another seed refused."""
    synthesize(tmp_path / "foa", tiny_synth("ansyn"))
    synthesize(tmp_path / "mic", tiny_synth("ansyn", format="mic"))
    synthesize(tmp_path / "other", tiny_synth("ansyn", format="mic", seed=1))
    feats = compute_features(tmp_path / "foa", tmp_path / "feats", FeatureConfig(type="logmel"))
    man = run_baseline(tmp_path / "mic", feats.path, tmp_path / "srp", split="train", grid_deg=20)
    doc = json.loads((man.path / "metrics.json").read_text())
    assert doc["overall"]["oracle_deg"] < 45  # localizes (chance for 1..3 sources: ~60)
    with pytest.raises(UserError, match=r"clip 'clip0000_ov1'.*MIC twin"):
        run_baseline(tmp_path / "other", feats.path, tmp_path / "x", split="train")
    synthesize(tmp_path / "fewer", tiny_synth("ansyn", format="mic", n_clips=2))
    with pytest.raises(UserError, match=r"clip 'clip0002_ov3' of .*feats is not in .*fewer"):
        run_baseline(tmp_path / "fewer", feats.path, tmp_path / "x", split="train")
