"""Features: hand-checked STFT/log-mel/GCC values, frame labels, the stored artifact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from ssl_toolkit.core.config import ConfigError, resolve
from ssl_toolkit.core.geometry import rad, sph_to_unit
from ssl_toolkit.core.labels import frame_labels
from ssl_toolkit.data_prep.featurize import FeatureConfig, compute_features, make_spec
from ssl_toolkit.data_prep.synth import SynthConfig, preset_config, synthesize
from ssl_toolkit.features.extract import extract
from ssl_toolkit.features.store import open_features


def test_params_scale_with_sample_rate():
    p44 = make_spec(FeatureConfig(), 44100, "foa")
    assert (p44.n_fft, p44.win_length, p44.hop_length) == (2048, 1764, 882)
    p16 = make_spec(FeatureConfig(), 16000, "mic")
    assert (p16.n_fft, p16.win_length, p16.hop_length) == (1024, 640, 320)
    assert p16.chunk_shape == (8, 25, 512) and p16.hop_s == 0.02


def test_stft_features_of_a_sinusoid():
    fs, n = 16000, 16000
    p = make_spec(FeatureConfig(), fs, "mic")
    k = 64  # exactly on bin 64 -> index 63 once DC is dropped
    t = np.arange(n) / fs
    audio = np.stack([np.sin(2 * np.pi * k * fs / p.n_fft * t + ph) for ph in (0, 1, 2, 3)])
    x = extract(audio, fs, p)
    assert x.shape == (8, 1 + n // 320, 512) and x.dtype == np.float32
    mid = x[:, 10:-10]
    assert np.all(np.argmax(mid[:4], axis=-1) == k - 1)
    # magnitude of a unit sinusoid with a Hann window: sum(window) / 2
    np.testing.assert_allclose(mid[:4, :, k - 1], np.hanning(642)[1:-1].sum() / 2, rtol=0.01)
    # phase differences between channels equal the sinusoids' phase offsets
    dphi = np.angle(np.exp(1j * (mid[5, :, k - 1] - mid[4, :, k - 1])))
    np.testing.assert_allclose(dphi, 1.0, atol=1e-3)


def test_logmel_gcc_phat_peaks_at_the_delay():
    fs, d = 16000, 3
    p = make_spec(FeatureConfig(type="logmel"), fs, "mic")
    s = np.random.default_rng(0).normal(size=fs + 10)
    audio = np.stack([s[10:], s[10 - d : -d], s[10:], s[10:]])  # channel 1 is 3 samples late
    x = extract(audio, fs, p)
    assert x.shape == (10, 51, 64)
    gcc01 = x[4, 5:-5].mean(axis=0)  # pair (0, 1)
    assert np.argmax(gcc01) - 32 == -d  # x0 leads x1 by d samples


def test_logmel_intensity_of_a_plane_wave_points_to_it():
    fs = 16000
    p = make_spec(FeatureConfig(type="logmel"), fs, "foa")
    u = sph_to_unit(rad(-120.0), rad(30.0))
    s = np.random.default_rng(1).normal(size=fs)
    audio = np.stack([s, u[1] * s, u[2] * s, u[0] * s])  # ACN W, Y, Z, X
    iv = extract(audio, fs, p)[4:7, 5:-5]  # (3, T, n_mels)
    v = iv.sum(axis=(1, 2))
    np.testing.assert_allclose(v / np.linalg.norm(v), u, atol=1e-3)


def test_frame_labels_hand_computed():
    ev = pd.DataFrame(
        {
            "sound_event_recording": ["a", "b"],
            "start_time": [0.1, 0.2],
            "end_time": [0.3, 0.5],
            "ele": [0.0, 90.0],
            "azi": [90.0, 0.0],
            "dist": [1.0, 1.0],
        }
    )
    act, dirs = frame_labels(ev, 30, 0.02, 2)
    assert act.shape == (30, 2) and dirs.shape == (30, 2, 3)
    np.testing.assert_array_equal(np.flatnonzero(act[:, 0]), np.arange(5, 15))
    np.testing.assert_array_equal(np.flatnonzero(act[:, 1]), np.arange(10, 25))
    np.testing.assert_allclose(dirs[7, 0], [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(dirs[20, 1], [0, 0, 1], atol=1e-6)
    assert not dirs[~act].any()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    cfg = resolve(
        SynthConfig,
        preset_config("resyn"),
        {"fs": 8000, "n_clips": 6, "clip_seconds": 2.0, "subsets": ["ov1", "ov2"]},
    )
    return synthesize(tmp_path_factory.mktemp("sc") / "scenes", cfg)


def test_compute_features_artifact(scenes, tmp_path):
    man = compute_features(scenes.path, tmp_path / "f", FeatureConfig())
    fs = open_features(man.path)
    assert isinstance(fs.features, np.memmap) and fs.features.dtype == np.float16
    assert fs.shape == (8, 25, 256) and fs.max_sources == 2  # n_fft 512 at 8 kHz
    assert len(fs.index) == 6 * 4 and set(fs.index["subset"]) == {"ov1", "ov2"}
    # float16 storage loses a negligible part of the signal
    assert max(man.extra["float16_rel_rms_error"].values()) < 1e-3
    # stored chunks equal extract() on the raw audio (what `ssl predict` computes)
    clips = pd.read_csv(scenes.file("clips.csv"))
    row = fs.index.iloc[5]
    clip = clips.set_index("clip_id").loc[row.clip_id]
    audio, sr = sf.read(scenes.file(clip.audio), always_2d=True)
    x = extract(audio.T, sr, fs.spec)[:, row.start_frame : row.start_frame + 25]
    np.testing.assert_allclose(fs.features[5].astype(np.float32), x, rtol=2e-3, atol=2e-3)
    # frame labels follow the label CSV
    ev = pd.read_csv(scenes.file(clip.labels))
    act, dirs = frame_labels(ev, row.start_frame + 25, 0.02, 2)
    np.testing.assert_array_equal(fs.activity[5], act[row.start_frame :])
    np.testing.assert_allclose(fs.directions[5], dirs[row.start_frame :])
    # normalization statistics come from the train split only
    train = fs.rows("train")
    x_train = np.asarray(fs.features[train], dtype=np.float64)
    np.testing.assert_allclose(fs.mean, x_train.mean(axis=(0, 2)), rtol=1e-3, atol=1e-4)
    std = np.where(x_train.std(axis=(0, 2)) < 1e-5, 1.0, x_train.std(axis=(0, 2)))
    np.testing.assert_allclose(fs.std, std, rtol=1e-3, atol=1e-4)
    assert not np.allclose(fs.mean, np.asarray(fs.features, np.float64).mean(axis=(0, 2)))


def test_bad_feature_options_are_named():
    with pytest.raises(ConfigError, match="type"):
        resolve(FeatureConfig, {"type": "mfcc"})
    with pytest.raises(ConfigError, match="n_fft"):
        resolve(FeatureConfig, {"n_fft": 1000})


def test_features_do_not_depend_on_jobs(scenes, tmp_path):
    a = open_features(compute_features(scenes.path, tmp_path / "a", FeatureConfig(), jobs=1).path)
    b = open_features(compute_features(scenes.path, tmp_path / "b", FeatureConfig(), jobs=2).path)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.activity, b.activity)
    np.testing.assert_array_equal(a.directions, b.directions)
    pd.testing.assert_frame_equal(a.index, b.index)
    np.testing.assert_array_equal(a.mean, b.mean)


def test_pooled_frame_stats_equal_the_whole():
    """Per-clip stats pooled with Chan's formula give the mean and std of all frames,
    also far from zero mean (log-mel-like values)."""
    from ssl_toolkit.features.store import frame_stats, normalization, pool_stats

    rng = np.random.default_rng(0)
    clips = [(-20 + 3 * rng.standard_normal((2, t, 5))).astype(np.float32) for t in (7, 40, 13)]
    pooled = None
    for x in clips:
        pooled = pool_stats(pooled, frame_stats(x))
    whole = np.concatenate(clips, axis=1).astype(np.float64)
    mean, std = normalization(pooled, 2, 5)
    np.testing.assert_allclose(mean, whole.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, whole.std(axis=1), rtol=1e-5)


def test_gcc_phat_equals_the_whitened_cross_correlation():
    """The lag-basis GCC-PHAT equals irfft(X_i X_j* / |X_i X_j*|) at the kept lags, and a
    pure delay of d samples peaks at lag d."""
    from itertools import combinations

    from ssl_toolkit.features.extract import _gcc_phat

    rng = np.random.default_rng(0)
    n_fft, lags = 512, 64
    spec = (rng.normal(size=(4, 30, n_fft // 2 + 1))
            + 1j * rng.normal(size=(4, 30, n_fft // 2 + 1))).astype(np.complex64)  # fmt: skip
    got = _gcc_phat(torch.from_numpy(spec.copy()), n_fft, lags).numpy()  # whitens its input
    for p, (i, j) in enumerate(combinations(range(4), 2)):
        cross = spec[i].astype(np.complex128) * np.conj(spec[j])
        cc = np.fft.irfft(cross / np.abs(cross), n=n_fft, axis=-1)
        want = np.concatenate((cc[:, -lags // 2 :], cc[:, : lags // 2]), axis=-1)
        np.testing.assert_allclose(got[p], want, atol=2e-6)
    k = np.arange(n_fft // 2 + 1)
    delayed = np.stack([np.ones_like(k), np.exp(-2j * np.pi * k * 5 / n_fft)])[
        :, None
    ]  # x1 = x0(t-5)
    g = _gcc_phat(torch.from_numpy(delayed.astype(np.complex64)), n_fft, lags).numpy()
    assert int(g[0, 0].argmax()) - lags // 2 == -5  # pair (0, 1): X0 X1* peaks at lag -5
