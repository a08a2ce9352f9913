"""Classical baselines on MIC audio built in code: white noise with exact fractional delays.

Also: the search grid holds the label grid and peaks are refined below it (off-grid
directions within a degree at 44.1 kHz), the spectra are pyroomacoustics', the
estimated source count is right on one- and two-source scenes, invalid slots are never
scored, the MIC twin of synthesized FOA scenes (same seed and options, ``format = "mic"``)
has the same clips and labels, and ``run_baseline`` refuses scenes whose labels differ
from the features'.
"""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ssl_toolkit.core.artifacts import build_artifact
from ssl_toolkit.core.config import ConfigError, resolve
from ssl_toolkit.core.errors import UserError
from ssl_toolkit.core.geometry import deg, great_circle, rad, sph_to_unit, unit_to_sph
from ssl_toolkit.data_prep.featurize import FeatureConfig, compute_features
from ssl_toolkit.data_prep.synth import SynthConfig, preset_config, synthesize
from ssl_toolkit.evaluation.baselines import (
    BaselineConfig,
    ClassicalLocalizer,
    SphereGrid,
    estimate_n_sources,
    run_baseline,
    stft,
)
from ssl_toolkit.evaluation.evaluate import Frames, score_predictions
from ssl_toolkit.features.store import FeatureWriter

FS, T, C = 16000, 10, 343.0  # 0.1 s label frames, 10 frames per chunk
# DCASE tetrahedral array: radius 4.2 cm at (az, el) = (45, 35), (-45, -35), (135, -35), (-135, 35)
MICS = 0.042 * sph_to_unit(
    rad(np.array([45.0, -45, 135, -135])), rad(np.array([35.0, -35, -35, 35]))
)


def far_field(directions, seconds, rng, fs=FS, snr_db=None):
    """White noise from each unit vector, delayed exactly (in frequency) at each mic, [4, n].

    Sensor noise: ``snr_db`` below the mean power of the sources at a mic, or (None)
    0.01 after a 0.5 peak normalization (about 23 dB SNR).
    """
    n = int(seconds * fs)
    f = np.fft.rfftfreq(n, 1 / fs)
    out = np.zeros((4, n))
    for u in directions:
        s = np.fft.rfft(rng.normal(size=n))
        delay = -(MICS @ u) / C  # (4,) a mic nearer the source hears it earlier
        out += np.fft.irfft(s[None] * np.exp(-2j * np.pi * f[None] * delay[:, None]), n)
    out = out / np.abs(out).max() * 0.5
    sigma = 0.01 if snr_db is None else np.sqrt(np.mean(out**2) * 10 ** (-snr_db / 10))
    return out + sigma * rng.normal(size=out.shape)


def label_table(dirs):
    """Each direction sounds from 0.05 s to 0.85 s: label frames 1..8 (hop 0.1 s) of 10."""
    az, el = unit_to_sph(np.array(dirs))
    return pd.DataFrame(
        {"sound_event_recording": "noise", "start_time": 0.05, "end_time": 0.85,
         "ele": deg(el), "azi": deg(az), "dist": 2.0}
    )  # fmt: skip


def make_scenes(path, clips, rng, labels=None, fs=FS, snr_db=None):
    """A MIC scenes artifact of far-field noise; ``labels``: directions written in the
    label CSVs (default: those of the audio)."""
    with build_artifact(path, "scenes", {"test": str(path)}) as b:
        (b.dir / "wav").mkdir()
        (b.dir / "labels").mkdir()
        rows = []
        for i, (cid, dirs) in enumerate(clips):
            audio = far_field(dirs, 1.0, rng, fs, snr_db)
            sf.write(b.dir / "wav" / f"{cid}.wav", audio.T, fs, subtype="FLOAT")
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
                "fs": fs,
                "format": "mic",
                "n_channels": 4,
                "mic_positions_m": MICS.tolist(),
                "max_sources": 2,
                "audio_root": ".",
            }
        )
    return path


def make_scenes_and_features(tmp, clips, rng, fs=FS, snr_db=None, k=2):
    """clips: list of (clip_id, [unit vectors]); one 1 s chunk per clip, all in split test;
    ``k`` source slots (the K of a baseline)."""
    make_scenes(tmp / "scenes", clips, rng, fs=fs, snr_db=snr_db)
    with build_artifact(tmp / "features", "features", {"test": 1}) as b:
        w = FeatureWriter(b.dir, len(clips), (1, T, 4), k)
        for i, (cid, dirs) in enumerate(clips):
            act = np.zeros((T, k), bool)
            act[1:-1, : len(dirs)] = True  # edges silent in the labels
            d = np.zeros((T, k, 3), np.float32)
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
                "feature_params": {
                    "type": "logmel",
                    "fs": fs,
                    "n_fft": fs // 5,
                    "win_length": fs // 5,
                    "hop_length": fs // 10,
                    "n_mels": 4,
                    "n_channels": 4,
                    "format": "mic",
                    "chunk_frames": T,
                },
                "shape": [1, T, 4],
                "max_sources": k,
                "n_chunks": len(clips),
            }
        )
    return tmp / "scenes", tmp / "features"


def random_dirs(rng, n):
    """``n`` directions drawn uniformly on the sphere between -70 and 70 degrees elevation."""
    az = rng.uniform(-np.pi, np.pi, n)
    el = np.arcsin(rng.uniform(-np.sin(rad(70.0)), np.sin(rad(70.0)), n))
    return list(sph_to_unit(az, el))


def frame_errors_deg(man):
    """Error of each one-source frame's first valid hypothesis, degrees (NaN: none valid)."""
    with np.load(man.path / "predictions.npz", allow_pickle=False) as z:
        one = z["active"].sum(1) == 1
        hyps, valid, targets = z["hyps"][one], z["valid"][one], z["targets"][one, 0]
    err = deg(great_circle(hyps[:, 0].astype(np.float64), targets.astype(np.float64)))
    return np.where(valid[:, 0], err, np.nan)


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
    man = run_baseline(scenes, feats, tmp_path / method, BaselineConfig(method=method))
    doc = json.loads((man.path / "metrics.json").read_text())
    assert doc["method"] == method and doc["K"] == 2 and doc["scored"] is False
    assert doc["D1"]["oracle_deg"] < 1.0  # on the grid, and refined
    assert doc["D1"]["frame_recall"] is None  # NaN (written null): the count came from labels
    if method != "srp":  # SRP's peaks of two sources on a 4-mic array are blurred
        assert doc["D2"]["oracle_deg"] < 3.0
        assert doc["overall"]["F20"] > 0.9
    with np.load(man.path / "predictions.npz", allow_pickle=False) as z:
        assert z["hyps"].shape == (2 * T, 2, 3)
        np.testing.assert_array_equal(z["valid"].sum(1), z["active"].sum(1))  # known count
        np.testing.assert_array_equal(z["detected"], z["valid"])


@pytest.fixture(scope="module")
def off_grid(tmp_path_factory):
    """One anechoic source per clip at 44.1 kHz from random (off-grid) directions, 30 dB."""
    rng = np.random.default_rng(3)
    clips = [(f"c{i}", [u]) for i, u in enumerate(random_dirs(rng, 8))]
    tmp = tmp_path_factory.mktemp("offgrid")
    return make_scenes_and_features(tmp, clips, rng, fs=44100, snr_db=30.0)


@pytest.mark.parametrize("method", ["srp", "music"])
def test_off_grid_directions_within_a_degree(tmp_path, off_grid, method):
    """The grid sets no error floor: peaks are refined far below its 5-degree step
    (before the refinement, the median was 1.9 degrees)."""
    scenes, feats = off_grid
    man = run_baseline(scenes, feats, tmp_path / method, BaselineConfig(method=method))
    err = frame_errors_deg(man)
    assert len(err) == 8 * 8 and not np.isnan(err).any()
    assert np.median(err) <= 1.0, np.round(np.sort(err), 2)


def test_search_grid_holds_the_label_grid():
    grid = SphereGrid(5.0)
    assert grid.step_rad == pytest.approx(rad(5.0))
    assert len(grid) == 72 * 35 + 2  # each pole once
    assert np.sum(np.abs(grid.dirs[:, 2]) > 1 - 1e-12) == 2
    az, el = np.meshgrid(rad(np.arange(-180.0, 180.0, 10.0)), rad(np.arange(-90.0, 91.0, 10.0)))
    labels = sph_to_unit(az.ravel(), el.ravel()).astype(np.float64)  # (36 * 19, 3)
    nearest = np.max(grid.dirs @ labels.T, axis=0)
    assert np.all(nearest > np.cos(1e-9) - 1e-12)  # every label direction is a grid point
    assert SphereGrid(7.0).step_rad == pytest.approx(rad(90.0 / 13))  # divides 90
    # local maxima: one bump, at a grid point near a pole (its neighbours: the whole ring)
    for u in (sph_to_unit(rad(33.0), rad(41.0)), np.array([0.0, 0.0, 1.0])):
        peaks = grid.peaks(grid.dirs @ u)
        assert len(peaks) == 1 and great_circle(grid.dirs[peaks[0]], u) < rad(5.0)
    two = np.maximum(grid.dirs @ CLIPS[1][1][0], grid.dirs @ CLIPS[1][1][1])
    assert len(grid.peaks(two)) == 2


@pytest.mark.parametrize("method", ["srp", "music", "normmusic", "tops"])
def test_spectra_are_those_of_pyroomacoustics(method):
    """Our vectorized spectra equal pyroomacoustics' grid values (two sources, 2 for MUSIC)."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(5)
    audio = far_field([CLIPS[1][1][0], CLIPS[1][1][1]], 0.2, rng)
    x, _ = stft(audio, 256)
    cfg = BaselineConfig(method=method, nfft=256)
    loc = ClassicalLocalizer(cfg, MICS, FS, 2)
    az, colat = rad(np.arange(-180.0, 180.0, 30.0)), rad(np.arange(15.0, 180.0, 30.0))
    doa = pra.doa.algorithms[{"srp": "SRP", "music": "MUSIC", "normmusic": "NormMUSIC",
                              "tops": "TOPS"}[method]](
        L=MICS.T, fs=FS, nfft=256, c=C, num_src=2, dim=3, azimuth=az, colatitude=colat
    )  # fmt: skip
    doa.locate_sources(x, num_src=2, freq_bins=loc.bins)
    ours = loc.spectrum(x, 2).on_grid(doa.grid.cartesian.T.copy())
    np.testing.assert_allclose(ours, doa.grid.values, rtol=1e-6)


@pytest.fixture(scope="module")
def counted(tmp_path_factory):
    """Broadband one- and two-source clips at 44.1 kHz, 30 dB, K = 3."""
    rng = np.random.default_rng(11)
    clips = [(f"one{i}", random_dirs(rng, 1)) for i in range(3)]
    for i in range(3):
        while True:  # two sources at least 30 degrees apart
            pair = random_dirs(rng, 2)
            if great_circle(pair[0], pair[1]) > rad(30.0):
                break
        clips.append((f"two{i}", pair))
    tmp = tmp_path_factory.mktemp("count")
    return make_scenes_and_features(tmp, clips, rng, fs=44100, snr_db=30.0, k=3)


def test_estimated_count_of_one_and_two_sources(tmp_path, counted):
    scenes, feats = counted
    cfg = BaselineConfig(method="music", n_sources="estimate")
    man = run_baseline(scenes, feats, tmp_path / "est", cfg)
    doc = json.loads((man.path / "metrics.json").read_text())
    assert doc["scored"] is False and "ece" not in doc["overall"]  # a count, no confidences
    with np.load(man.path / "predictions.npz", allow_pickle=False) as z:
        n_true, n_found = z["active"].sum(1), z["valid"].sum(1)
        np.testing.assert_array_equal(z["detected"], z["valid"])
    for n in (1, 2):
        frames = n_true == n
        assert frames.sum() == 3 * 8
        assert np.mean(n_found[frames] == n) >= 0.9, n_found[frames]
    # frame recall counts the edge frames too, silent in the labels but not in the audio
    assert doc["D1"]["frame_recall"] >= 0.8 - 1e-9 and doc["D2"]["frame_recall"] >= 0.8 - 1e-9
    assert doc["D1"]["oracle_deg"] < 1.0


def test_estimated_count_with_silent_edges_and_noise(tmp_path, data):
    scenes, feats = data
    cfg = BaselineConfig(method="music", n_sources="estimate", grid_deg=6.0)
    man = run_baseline(scenes, feats, tmp_path / "est", cfg)
    doc = json.loads((man.path / "metrics.json").read_text())
    # labels are silent at the edges while the audio is not: count right on 8 of 10 frames
    assert doc["D1"]["frame_recall"] >= 0.8 - 1e-9
    rng = np.random.default_rng(1)
    x, _ = stft(rng.normal(size=(4, 8000)), 512)
    assert estimate_n_sources(x, np.arange(10, 100), 3) == 0  # independent noise: no source
    assert estimate_n_sources(x[:, :, :4], np.arange(10, 100), 3) == 0  # too few snapshots


def test_invalid_slots_are_never_scored():
    """One valid slot of three: the oracle error is that slot's, even when the invalid
    slots' placeholder points at the target; a frame with none is a miss (180 degrees)."""
    rng = np.random.default_rng(2)
    audio = far_field([sph_to_unit(rad(90.0), rad(0.0))], 0.6, rng)
    loc = ClassicalLocalizer(BaselineConfig(method="srp"), MICS, FS, 3)
    assert not loc.scored and loc.K == 3
    out = loc.localize((audio, np.array([0.3 * FS]), np.array([1])))
    np.testing.assert_array_equal(out.valid, [[True, False, False]])
    np.testing.assert_array_equal(out.conf, [[1.0, 0.0, 0.0]])
    noise = loc.localize((rng.normal(size=(4, 9600)), np.array([0.3 * FS]), None))
    assert not noise.valid.any()  # estimate (None): no source in noise, no valid slot
    target = np.array([[[1.0, 0.0, 0.0]]], np.float32)  # where placeholders point
    for loc_out, expected in ((out, deg(great_circle(out.hyps[0, 0], target[0, 0]))), (noise, 180)):
        fr = Frames(hyps=loc_out.hyps, conf=loc_out.conf, valid=loc_out.valid, targets=target,
                    active=np.array([[True]]), clip_id=np.array(["c"]), frame=np.array([3]),
                    subset=np.array(["ov1"]))  # fmt: skip
        scores = score_predictions(fr, 0.5, 10, scored=False)
        assert scores["D1"]["oracle_deg"] == pytest.approx(expected, abs=1e-3)
    assert 85.0 < deg(great_circle(out.hyps[0, 0], target[0, 0])) < 95.0


def test_baseline_bad_options(tmp_path, data):
    scenes, feats = data
    with pytest.raises(ConfigError, match="--method"):
        BaselineConfig(method="beamformer").validate()
    with pytest.raises(ConfigError, match="--n-sources"):
        run_baseline(scenes, feats, tmp_path / "x", BaselineConfig(n_sources="guess"))
    with pytest.raises(ConfigError, match="snapshots per frame"):
        ClassicalLocalizer(BaselineConfig(n_sources="estimate", window_s=0.05), MICS, FS, 2)
    with pytest.raises(TypeError):
        run_baseline(scenes, feats, tmp_path / "x", method="srp")  # options live in the cfg
    assert not (tmp_path / "x").exists()


def test_baseline_cli_takes_a_config_file(tmp_path, data):
    from typer.testing import CliRunner

    from ssl_toolkit.cli import app

    scenes, feats = data
    toml = tmp_path / "bl.toml"
    toml.write_text('[baseline]\nmethod = "music"\nrefine_deg = 0.2\n')
    out = tmp_path / "ev"
    args = ["baseline", str(scenes), str(out), "--data", str(feats), "--config", str(toml)]
    res = CliRunner().invoke(app, [*args, "--n-sources", "estimate"])
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "manifest.json").read_text())["config"]
    assert (cfg["method"], cfg["n_sources"], cfg["refine_deg"]) == ("music", "estimate", 0.2)
    assert json.loads((out / "metrics.json").read_text())["scored"] is False  # no scores
    res = CliRunner().invoke(app, [*args, "--n-sources", "guess", "--force"])
    assert res.exit_code == 1 and "--n-sources" in res.output


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
        run_baseline(scenes, feats, tmp_path / "x", BaselineConfig(grid_deg=20.0))
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
    cfg = BaselineConfig(split="train", grid_deg=20.0)
    man = run_baseline(tmp_path / "mic", feats.path, tmp_path / "srp", cfg)
    doc = json.loads((man.path / "metrics.json").read_text())
    assert doc["overall"]["oracle_deg"] < 45  # localizes (chance for 1..3 sources: ~60)
    with pytest.raises(UserError, match=r"clip 'clip0000_ov1'.*MIC twin"):
        run_baseline(tmp_path / "other", feats.path, tmp_path / "x", cfg)
    synthesize(tmp_path / "fewer", tiny_synth("ansyn", format="mic", n_clips=2))
    with pytest.raises(UserError, match=r"clip 'clip0002_ov3' of .*feats is not in .*fewer"):
        run_baseline(tmp_path / "fewer", feats.path, tmp_path / "x", cfg)


def test_baseline_on_the_mic_twin_of_moving_sources(tmp_path):
    """--motion scenes (DCASE metadata labels): the MIC twin's labels match the FOA
    features' frame by frame along the arcs, SRP-PHAT follows the moving sources, and the
    static twin of the same seed is refused (its labels do not move)."""
    moving = {"motion": True, "subsets": ("ov1",)}
    synthesize(tmp_path / "foa", tiny_synth("ansyn", **moving))
    synthesize(tmp_path / "mic", tiny_synth("ansyn", format="mic", **moving))
    synthesize(tmp_path / "static", tiny_synth("ansyn", format="mic", subsets=("ov1",)))
    feats = compute_features(tmp_path / "foa", tmp_path / "feats", FeatureConfig(type="logmel"))
    cfg = BaselineConfig(split="train", grid_deg=10.0)
    man = run_baseline(tmp_path / "mic", feats.path, tmp_path / "srp", cfg)
    doc = json.loads((man.path / "metrics.json").read_text())
    assert doc["overall"]["oracle_deg"] < 15  # one source, free field: a few degrees
    with pytest.raises(UserError, match=r"MIC twin"):
        run_baseline(tmp_path / "static", feats.path, tmp_path / "x", cfg)
