"""Predict: streamed features equal whole-file ones, CSVs localize a known source, clean errors."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from export_fixtures import FS, HOP, N_FFT, PARAMS, make_run
from scipy.signal import resample_poly
from typer.testing import CliRunner

from ssl_toolkit.core.errors import DataError, UserError
from ssl_toolkit.features.spec import FeatureSpec
from ssl_toolkit.inference.export import export_run
from ssl_toolkit.inference.predict import AudioReader, predict_files, stream_features

SPEC = FeatureSpec(**PARAMS)


def reference_stft(audio, fs, spec):
    """Magnitudes then phases of a centred STFT, DC dropped: [2M, T, n_fft // 2]."""
    spec = torch.stft(
        torch.from_numpy(audio),
        spec.n_fft,
        spec.hop_length,
        spec.win_length,
        torch.hann_window(spec.win_length, dtype=torch.float64),
        center=True,
        return_complex=True,
    )[:, 1:].transpose(1, 2)  # (M, T, F)
    return torch.cat([spec.abs(), spec.angle()]).numpy().astype(np.float32)


def real_extract():
    features = pytest.importorskip("ssl_toolkit.data_prep.featurize")
    return features.extract


@pytest.fixture
def toolkit_extract():
    """predict computes features with the toolkit's extract (skip until it exists)."""
    return real_extract()


def write_wav(path, audio, fs):
    sf.write(str(path), audio.T, fs, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def loud_second_half(tmp_path_factory):
    """4-channel, 2 s: near-silence then white noise (a source switching on at 1 s)."""
    rng = np.random.default_rng(0)
    audio = rng.normal(scale=1e-4, size=(4, 2 * FS))
    audio[:, FS:] += rng.normal(scale=0.3, size=(4, FS))
    return write_wav(tmp_path_factory.mktemp("audio") / "rec.wav", audio, FS)


@pytest.mark.parametrize("which", ["reference", "toolkit"])
@pytest.mark.parametrize("block_frames", [7, 25, 300])
def test_streamed_features_equal_whole_file_features(tmp_path, which, block_frames):
    extract = reference_stft if which == "reference" else real_extract()
    audio = np.random.default_rng(1).normal(size=(4, FS + 123)).astype(np.float32)
    path = write_wav(tmp_path / "a.wav", audio, FS)
    whole = extract(audio, FS, SPEC)  # (C, T, F)
    reader = AudioReader(path, FS, 4)
    blocks = list(stream_features(reader, SPEC, block_frames, extract))
    streamed = np.concatenate([b for _, b in blocks], axis=1)
    assert [t0 for t0, _ in blocks] == list(range(0, whole.shape[1], block_frames))
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


@pytest.mark.parametrize("fs_in", [44100, 48000, 8000])
def test_blockwise_resampling_equals_whole_file_resampling(tmp_path, fs_in):
    audio = np.random.default_rng(2).normal(size=(4, fs_in)).astype(np.float32)
    reader = AudioReader(write_wav(tmp_path / "a.wav", audio, fs_in), FS, 4)
    from fractions import Fraction

    r = Fraction(FS, fs_in)
    whole = resample_poly(audio, r.numerator, r.denominator, axis=1)
    assert reader.n == whole.shape[1]
    for start, stop in [(0, 1000), (1000, 5321), (7000, FS + 50)]:
        np.testing.assert_allclose(reader.read(start, stop), whole[:, start:stop], atol=1e-5)


def test_predict_localizes_a_source_where_it_sounds(tmp_path, loud_second_half, toolkit_extract):
    run, _ = make_run(tmp_path / "run", name="test_energy", kwargs={}, K=2)
    (src_csv,) = predict_files(run.path, [loud_second_half], tmp_path / "out", block_seconds=0.3)
    hyps = pd.read_csv(tmp_path / "out" / "rec_hypotheses.csv")
    src = pd.read_csv(src_csv)
    n_frames = 1 + 2 * FS // HOP
    assert list(src.columns) == ["frame", "time_s", "azimuth_deg", "elevation_deg", "confidence"]
    assert len(hyps) == 2 * n_frames and sorted(hyps.frame.unique()) == list(range(n_frames))
    # the energy model: one direction (az 0.5 rad, el 0.2 rad) detected while the noise plays
    np.testing.assert_allclose(src.azimuth_deg, np.degrees(0.5), atol=1e-2)
    np.testing.assert_allclose(src.elevation_deg, np.degrees(0.2), atol=1e-2)
    half_window_frames = N_FFT / 2 / HOP
    assert src.frame.min() >= n_frames // 2 - half_window_frames - 1
    assert src.frame.nunique() >= n_frames // 2 - 1 and len(src) == src.frame.nunique()
    np.testing.assert_allclose(src.time_s, src.frame * HOP / FS)
    assert (src.confidence >= 0.5).all()
    assert ((hyps.confidence >= 0.5) == (hyps.detected == 1)).all()


def test_threshold_and_block_size_change_detections_only(
    tmp_path, loud_second_half, toolkit_extract
):
    run, _ = make_run(tmp_path / "run", name="test_energy", kwargs={}, K=2)
    a = predict_files(run.path, [loud_second_half], tmp_path / "a", block_seconds=0.5)[0]
    b = predict_files(run.path, [loud_second_half], tmp_path / "b", threshold=0.05)[0]
    da, db = pd.read_csv(a), pd.read_csv(b)
    assert set(da.frame) <= set(db.frame) and len(db) > len(da)  # lower threshold: more
    ha = pd.read_csv(tmp_path / "a" / "rec_hypotheses.csv")
    hb = pd.read_csv(tmp_path / "b" / "rec_hypotheses.csv")
    pd.testing.assert_frame_equal(ha.drop(columns="detected"), hb.drop(columns="detected"))


def test_export_and_run_give_the_same_csv(tmp_path, loud_second_half, toolkit_extract):
    kw = {"channels": 8, "bins": N_FFT // 2}
    run, _ = make_run(tmp_path / "run", kwargs=kw)
    exp = export_run(run.path, tmp_path / "exp")
    predict_files(run.path, [loud_second_half], tmp_path / "r")
    predict_files(exp.path, [loud_second_half], tmp_path / "e")
    r = pd.read_csv(tmp_path / "r" / "rec_hypotheses.csv")
    e = pd.read_csv(tmp_path / "e" / "rec_hypotheses.csv")
    assert len(r) == len(e) == 3 * (1 + 2 * FS // HOP)
    # angles are compared as directions (azimuth wraps at +-180)
    for df in (r, e):
        az, el = np.radians(df.azimuth_deg), np.radians(df.elevation_deg)
        df["x"], df["y"], df["z"] = np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)
    np.testing.assert_allclose(e[["x", "y", "z"]], r[["x", "y", "z"]], atol=1e-3)
    np.testing.assert_allclose(e.confidence, r.confidence, atol=1e-4)


def test_resampled_input_gives_the_model_rate_frames(tmp_path, loud_second_half, toolkit_extract):
    audio, _ = sf.read(str(loud_second_half), always_2d=True)
    wav48 = write_wav(tmp_path / "rec48.wav", resample_poly(audio.T, 3, 1, axis=1), 3 * FS)
    run, _ = make_run(tmp_path / "run", name="test_energy", kwargs={}, K=2)
    src = pd.read_csv(predict_files(run.path, [wav48], tmp_path / "out")[0])
    assert abs(src.frame.min() - (1 + 2 * FS // HOP) // 2) <= 3


def test_clear_errors(tmp_path, loud_second_half, toolkit_extract):
    run, _ = make_run(tmp_path / "run", name="test_energy", kwargs={}, K=2)
    stereo = write_wav(tmp_path / "stereo.wav", np.zeros((2, FS), np.float32), FS)
    with pytest.raises(DataError, match="stereo.wav has 2 channels, the model expects 4"):
        predict_files(run.path, [stereo], tmp_path / "o1")
    with pytest.raises(DataError, match="missing.wav does not exist"):
        predict_files(run.path, [tmp_path / "missing.wav"], tmp_path / "o2")
    predict_files(run.path, [loud_second_half], tmp_path / "o3")
    with pytest.raises(UserError, match="--force"):
        predict_files(run.path, [loud_second_half], tmp_path / "o3")
    predict_files(run.path, [loud_second_half], tmp_path / "o3", force=True)
    assert sorted(p.name for p in (tmp_path / "o3").iterdir()) == ["rec.csv", "rec_hypotheses.csv"]


def test_cli_predict_writes_csv_and_plot(tmp_path, loud_second_half, toolkit_extract):
    from ssl_toolkit.cli import app

    run, _ = make_run(tmp_path / "run", name="test_energy", kwargs={}, K=2)
    args = ["predict", str(run.path), str(loud_second_half), "--out", str(tmp_path / "o"), "--plot"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "rec.png").stat().st_size > 1000
    res = CliRunner().invoke(app, ["predict", str(run.path), str(tmp_path / "nope.wav"), "-o", "x"])
    assert res.exit_code == 1 and "nope.wav does not exist" in res.output
