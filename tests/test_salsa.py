"""SALSA-Lite features (``ssl prep features --type salsa``): physics, augmentation, spec, CLI.

The audio is built here, as in tests/test_augment.py: broadband noise plane waves, FOA by
their SN3D gains (W, Y, Z, X) = s (1, u_y, u_z, u_x), MIC by frequency-domain fractional
delays ``-p . u / c`` of circular signals. What SALSA-Lite must give for them is worked out
by hand:

- the log power of each channel is ``log(|X|^2 + 1e-8)`` of its STFT, bins ``1 .. K`` with
  ``K = int(max_hz n_fft / fs)`` (at most the Nyquist bin ``n_fft / 2``);
- FOA: ``Re(conj(W) V) / (|W|^2 + |V|^2 / 3)`` with ``V = u W`` is ``3/4 u`` in every bin
  and frame (the STFT is linear: no approximation at all);
- MIC: capsule j hears capsule i's signal delayed by ``(p_i - p_j) . u / c``, so
  ``arg(conj(X_i) X_j) = -2 pi f (p_i - p_j) . u / c`` and the feature,
  ``-c / (2 pi f)`` times it, is ``-(p_j - p_i) . u`` metres, as long as the phase does not
  wrap (``f < c / (2 |(p_j - p_i) . u|)``); above, it equals it modulo ``c / f``.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_augment import ARRAYS, DIRS, render, stored
from typer.testing import CliRunner

from ssl_toolkit.cli import app
from ssl_toolkit.core.errors import ArtifactError
from ssl_toolkit.data_prep.arrays import SPEED_OF_SOUND_M_S as C
from ssl_toolkit.data_prep.arrays import tetra_positions_m
from ssl_toolkit.data_prep.featurize import FeatureConfig, make_spec
from ssl_toolkit.features.augment import SpatialAugment, array_symmetries, channel_maps
from ssl_toolkit.features.extract import LOG_EPS, extract
from ssl_toolkit.features.spec import SPEED_OF_SOUND_M_S as C_FEATURES
from ssl_toolkit.features.spec import ArraySpec, FeatureSpec, band_edges_hz

runner = CliRunner()
FS = 16000
N = FS  # 1 s, circular
U = np.array([0.6, -0.5, 0.3]) / np.linalg.norm([0.6, -0.5, 0.3])
TETRA = tetra_positions_m()
PAIRS = list(itertools.combinations(range(4), 2))


def plane_wave(u: np.ndarray, fmt: str, pos: np.ndarray = TETRA) -> np.ndarray:
    """``[4, N]`` float32 audio of one noise plane wave from unit vector ``u``."""
    s = np.random.default_rng(7).normal(size=N)
    if fmt == "foa":
        return (0.1 * np.stack([s, u[1] * s, u[2] * s, u[0] * s])).astype(np.float32)
    tau = -(pos @ u) / C  # (M,): earlier at the capsules facing the source
    f = np.fft.rfftfreq(N, 1 / FS)
    out = np.fft.irfft(np.fft.rfft(s)[None] * np.exp(-2j * np.pi * f * tau[:, None]), N)
    return (0.1 * out).astype(np.float32)


def salsa_spec(fmt: str, max_hz: float = 4000.0, array: ArraySpec | None = None, fs=FS):
    if array is None:
        array = ArraySpec.foa() if fmt == "foa" else ArraySpec.mic(TETRA)
    return make_spec(FeatureConfig(type="salsa", max_hz=max_hz), fs, fmt, 4, array)


def bin_hz(spec: FeatureSpec) -> np.ndarray:
    """Frequency of each salsa bin (bins ``1 .. K``: the DC bin is not kept)."""
    return np.arange(1, spec.bins + 1) * spec.fs / spec.n_fft


# ----------------------------------------------------------------------------- extraction


def test_the_renderer_and_the_features_use_one_speed_of_sound():
    assert C == C_FEATURES == 343.0


@pytest.mark.parametrize(
    ("fmt", "max_hz", "fs", "k"),
    [
        ("mic", 4000, 16000, 256),  # 4000 * 1024 / 16000
        ("mic", 3010, 16000, 192),  # 192.64: rounded down
        ("foa", 9000, 16000, 512),  # above Nyquist: capped at the Nyquist bin n_fft / 2
        ("mic", 9000, 24000, 384),  # the default at 24 kHz (n_fft 1024)
        ("foa", 9000, 8000, 256),  # the tiny CLI scenes (n_fft 512)
    ],
)
def test_shape(fmt, max_hz, fs, k):
    spec = salsa_spec(fmt, max_hz, fs=fs)
    audio = plane_wave(U, fmt)[:, : fs // 2]
    x = extract(audio, fs, spec)
    c = 4 + (3 if fmt == "foa" else 6)
    assert spec.bins == k == min(int(max_hz * spec.n_fft / fs), spec.n_fft // 2)
    assert x.shape == (c, 1 + (fs // 2) // spec.hop_length, k) == (c, x.shape[1], k)
    assert spec.chunk_shape == (c, 25, k) and x.dtype == np.float32
    assert spec.band_hz == (fs / spec.n_fft, k * fs / spec.n_fft)


@pytest.mark.parametrize("fmt", ["foa", "mic"])
def test_log_power_is_that_of_a_direct_stft(fmt):
    spec = salsa_spec(fmt, 5000)
    audio = plane_wave(U, fmt)
    x = extract(audio, FS, spec)
    pad = (spec.n_fft - spec.win_length) // 2
    window = torch.nn.functional.pad(torch.hann_window(spec.win_length),
                                     (pad, spec.n_fft - spec.win_length - pad))  # fmt: skip
    z = torch.stft(torch.from_numpy(audio), spec.n_fft, spec.hop_length, window=window,
                   center=True, pad_mode="constant", return_complex=True)  # fmt: skip
    want = np.log(z.abs().numpy() ** 2 + LOG_EPS)[:, 1 : spec.bins + 1].transpose(0, 2, 1)
    assert x.shape[1] == want.shape[1]
    # float32 STFTs by two FFT paths: |X|^2 within ~1e-6 relative, its log within ~1e-5
    np.testing.assert_allclose(x[:4], want, atol=2e-4, rtol=0)


def test_foa_intensity_is_three_quarters_of_the_direction():
    """``Re(conj(W) u W) / (|W|^2 (1 + 1/3)) = 3/4 u`` exactly, wherever ``|W|^2`` dwarfs
    the 1e-8 floor (relative error ``1e-8 / |W|^2``: 1e-4 where ``|W|^2 > 1e-4``)."""
    spec = salsa_spec("foa", 9000)
    x = extract(plane_wave(U, "foa"), FS, spec)
    w2 = np.exp(x[0])  # |W|^2 + 1e-8
    loud = w2 > 1e-4
    assert loud.mean() > 0.95
    for a in range(3):  # x, y, z
        np.testing.assert_allclose(x[4 + a][loud], 0.75 * U[a], atol=1e-4)


def test_mic_phase_difference_is_the_path_difference_in_metres():
    """Below spatial aliasing, the median over frames of each pair's channel is
    ``-(p_j - p_i) . u`` within 2 mm, bin by bin from 250 Hz up (3 % of the largest path
    difference, 64 mm; what a 1.7 deg turn changes on a 6.9 cm baseline). One frame of
    noise scatters: the delay leaks through the window, and bins of small magnitude take a
    phase error of ``delay / window`` over their relative magnitude (up to 0.5 rad at
    1-2 kHz); its median over the 47 interior frames stays within 1.3 mm from 250 Hz
    (a constant ~0.01 rad, so about ``1 / f`` in metres). Above aliasing, the channel stays
    within ``+-c / 2f`` and equals the path difference modulo ``c / f``: the circular mean
    of its phase is that of the path difference within 0.05 rad at every bin up to the
    window's main lobe (``2 n_fft / win``, 3.2 bins) below Nyquist, where the mirror image
    of a real signal leaks in (the Nyquist bin itself is real: phase 0 or pi, no
    direction)."""
    spec = salsa_spec("mic", 9000)  # capped at 8 kHz: 512 bins, the top 2/3 above aliasing
    x = extract(plane_wave(U, "mic"), FS, spec)[:, 2:-2]  # interior frames
    f = bin_hz(spec)
    assert x.shape == (10, 47, 512)
    period = C / f
    top = FS / 2 - 2 * FS / spec.win_length  # the main lobe below Nyquist
    wrapped = False
    for n, (i, j) in enumerate(PAIRS):
        want = -(TETRA[j] - TETRA[i]) @ U
        got = x[4 + n]
        assert np.all(np.abs(got) <= period / 2 * (1 + 1e-6)), (i, j)
        alias = C / (2 * abs(want))
        below = (f >= 250) & (f < 0.9 * alias) & (f < top)
        np.testing.assert_allclose(np.median(got[:, below], axis=0), want, atol=2e-3,
                                   err_msg=f"pair {i}{j}")  # fmt: skip
        phase = np.angle(np.exp(2j * np.pi * f * (got - want) / C).mean(axis=0))
        assert np.abs(phase[(f >= 250) & (f < top)]).max() < 0.05, (i, j)
        wrapped |= bool((f > alias).any())
    assert wrapped  # some pairs are checked above their aliasing frequency too


# ----------------------------------------------------------------------------- augmentation


def assert_salsa_equal(got, want, spec: FeatureSpec, what: str):
    """Equal to float16 precision (2 spacings of the value, as test_augment), the MIC
    phase-difference channels modulo their per-bin period ``c / f`` (a value at
    ``+c / 2f`` negated lands at ``-c / 2f``: the same point of the circle)."""
    a, b = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(a - b)
    if spec.format == "mic":
        m, period = spec.n_channels, C / bin_hz(spec)
        d = diff[m:]
        diff[m:] = np.abs((d + period / 2) % period - period / 2)
    tol = 2 * np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float64)
    bad = diff > tol + 1e-6
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} values differ, worst {diff.max():.3g} at "
        f"{np.unravel_index(np.argmax(diff - tol), diff.shape)}"
    )


@pytest.mark.parametrize("name", list(ARRAYS))
def test_features_of_the_rotated_scene_are_the_augmented_features(name):
    """For every symmetry g of every array of test_augment: the stored (float16) salsa
    features of the scene rotated by g equal the augmented features of the original (a
    pair whose order flips changes sign: mirroring it, as GCC-PHAT is, fails here)."""
    array = ARRAYS[name]
    m = 4 if array.format == "foa" else len(array.positions_m)
    spec = make_spec(FeatureConfig(type="salsa"), FS, array.format, m, array)
    assert spec.bins == 512  # 9 kHz capped at Nyquist: the wrapped bins are compared too
    syms = array_symmetries(array, "z" if name == "tetra" else "full")  # as test_augment
    assert len(syms) == {"foa": 48, "tetra": 8, "regular-tetra": 24, "hexagon": 24}[name]
    maps = channel_maps(spec, syms)
    assert not maps.mirror.any() and not maps.phase.any()
    if array.format == "mic":  # some pair flips order under some symmetry
        assert (maps.scale[:, m:] == -1).any()
    x = stored(render(array, DIRS), spec)
    xs = torch.from_numpy(x).float()[None].repeat(len(syms), 1, 1, 1)
    ds = torch.from_numpy(DIRS).float()[None, None].repeat(len(syms), 1, 1, 1)
    ys, dys = SpatialAugment(maps).transform(xs, ds, torch.arange(len(syms)))
    for g, s in enumerate(syms):
        rotated = stored(render(array, DIRS @ s.matrix.T), spec)
        want = ys[g].numpy()
        assert_salsa_equal(rotated, want, spec, f"{name} g={g}")
        np.testing.assert_allclose(maps.apply(x, g), want, atol=1e-6)  # numpy == torch
        np.testing.assert_allclose(dys[g, 0].numpy(), DIRS @ s.matrix.T, atol=1e-6)


# ----------------------------------------------------------------------------- spec


def test_spec_round_trip_keeps_max_hz():
    spec = salsa_spec("mic", 3000.0)
    d = spec.to_dict()
    assert d["max_hz"] == 3000.0 and d["band_hz"] == [15.625, 3000.0]
    back = FeatureSpec.from_dict(json.loads(json.dumps(d)), "m.json", None)
    assert back == spec and back.bins == 192
    other = make_spec(FeatureConfig(type="logmel"), FS, "mic", 4, ArraySpec.mic(TETRA))
    assert "max_hz" not in other.to_dict()  # the other types' specs are what they were
    assert FeatureSpec.from_dict(other.to_dict(), "m.json", None) == other


def test_a_salsa_spec_without_max_hz_is_refused_naming_the_field():
    d = salsa_spec("foa").to_dict()
    del d["max_hz"]
    with pytest.raises(ArtifactError, match=r"m\.json: lacks the field 'feature_params\.max_hz'"):
        FeatureSpec.from_dict(d, "m.json", "ssl prep features")
    d["max_hz"] = "high"
    with pytest.raises(ArtifactError, match=r"field 'feature_params\.max_hz'"):
        FeatureSpec.from_dict(d, "m.json", None)


def test_level_bands_are_the_salsa_bins():
    """The input checks' bands (levels_db) tile the salsa bins ``1 .. K``: from half a bin
    below bin 1 to half a bin above bin K."""
    spec = salsa_spec("mic", 4000.0)
    edges = band_edges_hz(spec)
    step = FS / spec.n_fft
    assert edges[0][0] == pytest.approx(step / 2)
    assert edges[-1][1] == pytest.approx(4000 + step / 2)
    assert all(a[1] == pytest.approx(b[0]) for a, b in itertools.pairwise(edges))


# ----------------------------------------------------------------------------- CLI

TOML = "[train]\nchannels = [8, 8]\npools = [4, 4]\ngru_layers = 1\ngru_units = 16\n"
TRAIN = ["--epochs", "1", "--max-steps", "2", "--batch-size", "2", "-K", "2", "--device", "cpu"]
SYNTH = ["--n-clips", "3", "--clip-seconds", "1", "--fs", "8000", "--subsets", "ov1"]
#: Options a features artifact of type stft/logmel recorded before salsa existed.
OLD_KEYS = {"type", "win_s", "hop_s", "n_fft", "n_mels", "chunk_frames"}


def ssl(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    res = ssl(*args)
    assert res.exit_code == 0, f"ssl {' '.join(map(str, args))}:\n{res.output}"
    return res


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Tiny FOA and MIC scenes (8 kHz: n_fft 512, Nyquist bin 256) and their salsa features:
    FOA at the default 9 kHz (capped: 256 bins), MIC at 2 kHz (128 bins)."""
    b = tmp_path_factory.mktemp("salsa")
    (b / "tiny.toml").write_text(TOML)
    (b / "mic2k.toml").write_text('[features]\ntype = "salsa"\nmax_hz = 2000\n')
    ok("prep", "synth", b / "foa", *SYNTH, "--seed", 1)
    ok("prep", "synth", b / "mic", *SYNTH, "--seed", 1, "--format", "mic")
    ok("prep", "features", b / "foa", b / "f-foa", "--type", "salsa")
    ok("prep", "features", b / "mic", b / "f-mic", "--config", b / "mic2k.toml")
    return b


def test_prep_features_makes_salsa_chunks(base):
    foa, mic = manifest(base / "f-foa"), manifest(base / "f-mic")
    assert foa["extra"]["shape"] == [7, 25, 256] and mic["extra"]["shape"] == [10, 25, 128]
    assert foa["config"]["max_hz"] == 9000.0 and mic["config"]["max_hz"] == 2000.0
    fp = mic["extra"]["feature_params"]
    assert fp["type"] == "salsa" and fp["max_hz"] == 2000.0 and fp["band_hz"] == [15.625, 2000.0]
    assert foa["extra"]["feature_params"]["band_hz"] == [15.625, 4000.0]  # capped at Nyquist
    assert set(foa["extra"]["float16_rel_rms_error"]) == {"log_power", "intensity"}
    assert set(mic["extra"]["float16_rel_rms_error"]) == {"log_power", "phase_difference"}
    x = np.load(base / "f-mic" / "features.npy", mmap_mode="r")
    assert x.shape[1:] == (10, 25, 128) and np.isfinite(x).all()
    period = C / (np.arange(1, 129) * 8000 / 512)  # the pair channels within +-c / 2f
    assert (np.abs(x[:, 4:].astype(np.float64)) <= period / 2 * 1.001 + 1e-3).all()


def test_train_eval_export_predict_on_salsa(base, tmp_path):
    toml = base / "tiny.toml"
    res = ok("train", base / "f-mic", tmp_path / "run", *TRAIN, "--config", toml)
    assert "spatial augmentation: 8 symmetries" in res.output  # the tetrahedron's z group
    ok("train", base / "f-foa", tmp_path / "run-foa", *TRAIN, "--config", toml, "--augment",
       "full")  # fmt: skip
    ok("eval", tmp_path / "run", tmp_path / "ev", "--data", base / "f-mic")
    ok("eval", tmp_path / "run-foa", tmp_path / "ev-foa", "--data", base / "f-foa")
    ok("export", tmp_path / "run", tmp_path / "exp")
    io = json.loads((tmp_path / "exp" / "io.json").read_text())
    assert io["feature_params"]["max_hz"] == 2000.0
    wav = base / "mic" / "wav" / "clip0000_ov1.wav"
    res = ok("predict", tmp_path / "exp", wav, "-o", tmp_path / "pred")
    assert "salsa features of 0.016-2 kHz" in res.output
    assert (tmp_path / "pred" / "clip0000_ov1.csv").stat().st_size > 0


def test_predict_judges_the_rate_by_the_band_salsa_uses(base, tmp_path):
    """A 2 kHz salsa model at 8 kHz uses nothing above 2 kHz: a 6 kHz file (content up to
    3 kHz) is resampled with a note, a 3 kHz file (up to 1.5 kHz) is warned about, naming
    the 2 kHz the model was trained up to."""
    import soundfile as sf
    from scipy.signal import resample_poly

    ok("train", base / "f-mic", tmp_path / "run", *TRAIN, "--config", base / "tiny.toml")
    x, fs = sf.read(base / "mic" / "wav" / "clip0000_ov1.wav")
    sf.write(tmp_path / "r6k.wav", resample_poly(x, 3, 4, axis=0), 6000)
    sf.write(tmp_path / "r3k.wav", resample_poly(x, 3, 8, axis=0), 3000)
    res = ok("predict", tmp_path / "run", tmp_path / "r6k.wav", "-o", tmp_path / "p6")
    assert "warning" not in res.output and "resampled to the model's 8000 Hz" in res.output
    res = ok("predict", tmp_path / "run", tmp_path / "r3k.wav", "-o", tmp_path / "p3")
    assert "warning: " in res.output and "trained on content up to 2 kHz" in res.output
    assert "record at 4000 Hz or more" in res.output


def test_stft_and_logmel_artifacts_keep_their_fingerprints(base, tmp_path):
    """max_hz is recorded for salsa only: an stft/logmel artifact's config holds the keys
    it held before salsa existed, and a max_hz in the TOML changes nothing (reused)."""
    (tmp_path / "lm.toml").write_text('[features]\ntype = "logmel"\nmax_hz = 4000\n')
    for kind in ("stft", "logmel"):
        ok("prep", "features", base / "mic", tmp_path / kind, "--type", kind)
        man = manifest(tmp_path / kind)
        assert set(man["config"]) == OLD_KEYS, kind
        assert "max_hz" not in man["extra"]["feature_params"]
    before = (tmp_path / "logmel" / "manifest.json").read_bytes()
    stamp = (tmp_path / "logmel" / "features.npy").stat().st_mtime_ns
    ok("prep", "features", base / "mic", tmp_path / "logmel", "--config", tmp_path / "lm.toml")
    assert (tmp_path / "logmel" / "manifest.json").read_bytes() == before
    assert (tmp_path / "logmel" / "features.npy").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("max_hz = 50", "option 'max_hz' must be at least 100 Hz, got 50"),
        ('max_hz = "high"', "max_hz"),
        ('type = "salsa-lite"', "salsa"),
    ],
)
def test_bad_salsa_options_are_one_line(base, tmp_path, toml, needle):
    (tmp_path / "bad.toml").write_text(
        f'[features]\ntype = "salsa"\n{toml}\n' if "type" not in toml else f"[features]\n{toml}\n"
    )
    res = ssl("prep", "features", base / "mic", tmp_path / "out", "--config", tmp_path / "bad.toml")
    lines = res.output.strip().splitlines()
    assert res.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert needle in lines[0] and not (tmp_path / "out").exists()


def test_a_salsa_manifest_without_max_hz_is_one_line(base, tmp_path):
    shutil.copytree(base / "f-mic", tmp_path / "feats")
    path = tmp_path / "feats" / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["extra"]["feature_params"]["max_hz"]
    path.write_text(json.dumps(doc))
    res = ssl("train", tmp_path / "feats", tmp_path / "run", *TRAIN)
    lines = res.output.strip().splitlines()
    assert res.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "lacks the field 'extra.feature_params.max_hz'" in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "run").exists()
