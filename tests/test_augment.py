"""Exact spatial augmentation (``ssl train --augment``): physics, the training path, the CLI.

The physics test is the acceptance criterion: for every symmetry g of every array kind,
the features (as stored: float16) of audio rendered with the scene rotated by g equal the
augmented features of the original scene, for STFT and log-mel, and the labels agree.
The audio is built here: broadband noise plane waves from two known directions, FOA by its
SN3D gains (W, Y, Z, X) = s (1, u_y, u_z, u_x), MIC by frequency-domain fractional delays
of circular signals (exact for any delay: the rotated scene's capsule i then carries the
very samples of the capsule it was mapped from, up to the rounding of ``p . u``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ssl_toolkit.cli import app
from ssl_toolkit.data_prep.arrays import SPEED_OF_SOUND_M_S, tetra_positions_m
from ssl_toolkit.data_prep.featurize import FeatureConfig, _to_float16, make_spec
from ssl_toolkit.features.augment import (
    SpatialAugment,
    array_symmetries,
    channel_maps,
    plan,
)
from ssl_toolkit.features.extract import extract
from ssl_toolkit.features.spec import ArraySpec

runner = CliRunner()
FS = 16000
N = FS  # 1 s, circular
DIRS = np.array([[0.6, -0.5, 0.3], [-0.2, 0.7, -0.6]])
DIRS = DIRS / np.linalg.norm(DIRS, axis=1, keepdims=True)

REGULAR_TETRA = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) * 0.042 / 3**0.5
HEXAGON = [[0.05 * math.cos(k * math.pi / 3), 0.05 * math.sin(k * math.pi / 3), 0.0]
           for k in range(6)]  # fmt: skip
ARRAYS = {
    "foa": ArraySpec.foa(),
    "tetra": ArraySpec.mic(tetra_positions_m()),  # the toolkit's (DCASE) MIC array
    "regular-tetra": ArraySpec.mic(REGULAR_TETRA),  # user arrays
    "hexagon": ArraySpec.mic(HEXAGON),
}


def _signals() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(len(DIRS), N))


def render(array: ArraySpec, dirs: np.ndarray) -> np.ndarray:
    """``[M, N]`` float32 audio of the noise plane waves arriving from ``dirs``."""
    s = _signals()
    if array.format == "foa":
        gains = np.stack([np.ones(len(dirs)), dirs[:, 1], dirs[:, 2], dirs[:, 0]], 1)  # (S, 4)
        return (0.1 * gains.T @ s).astype(np.float32)
    pos = np.asarray(array.positions_m)
    tau = -(pos @ dirs.T) / SPEED_OF_SOUND_M_S  # (M, S): earlier at capsules facing the source
    f = np.fft.rfftfreq(N, 1 / FS)
    spec = np.fft.rfft(s, axis=-1)  # (S, F)
    out = np.fft.irfft((spec[None] * np.exp(-2j * np.pi * f * tau[..., None])).sum(1), N)
    return (0.1 * out).astype(np.float32)


def stored(audio: np.ndarray, spec) -> np.ndarray:
    """The features as ``ssl prep features`` stores them (float16)."""
    return _to_float16(extract(audio, FS, spec))


def assert_float16_equal(got: np.ndarray, want: np.ndarray, phase: np.ndarray, what: str):
    """Equal to float16 precision: within 2 float16 spacings of the value; phases on the
    circle, within one spacing at pi (0.002 rad): a phase shifted by pi keeps the rounding
    of its stored value, up to half a spacing at pi, where it may now be near 0."""
    a, b = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(a - b)
    diff[phase] = np.abs((diff[phase] + np.pi) % (2 * np.pi) - np.pi)
    tol = 2 * np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float16)).astype(np.float64)
    tol[phase] = float(np.spacing(np.float16(np.pi)))
    bad = diff > tol + 1e-6
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} values differ, worst {diff.max():.3g} at "
        f"{np.unravel_index(np.argmax(diff - tol), diff.shape)}"
    )


def _cases():
    for name in ARRAYS:
        for kind in ("stft", "logmel"):
            yield pytest.param(name, kind, id=f"{name}-{kind}")


@pytest.mark.parametrize(("name", "kind"), _cases())
def test_features_of_the_rotated_scene_are_the_augmented_features(name, kind):
    array = ARRAYS[name]
    m = 4 if array.format == "foa" else len(array.positions_m)
    spec = make_spec(FeatureConfig(type=kind, n_mels=32), FS, array.format, m, array)
    syms = array_symmetries(array, "full")
    if name == "tetra":  # 0.34 mm off for axis swaps: checked below, exact for the z group
        syms = array_symmetries(array, "z")
    expected = {"foa": 48, "tetra": 8, "regular-tetra": 24, "hexagon": 24}[name]
    assert len(syms) == expected
    maps = channel_maps(spec, syms)
    x = stored(render(array, DIRS), spec)
    aug = SpatialAugment(maps)  # the training path, vectorised over symmetries
    xs = torch.from_numpy(x).float()[None].repeat(len(syms), 1, 1, 1)
    ds = torch.from_numpy(DIRS).float()[None, None].repeat(len(syms), 1, 1, 1)  # (G, 1, S, 3)
    ys, dys = aug.transform(xs, ds, torch.arange(len(syms)))
    phase = np.broadcast_to(maps.phase[:, None, None], x.shape)
    edge = np.zeros(x.shape, bool)
    for g, s in enumerate(syms):
        q = s.matrix
        rotated = stored(render(array, DIRS @ q.T), spec)
        want = ys[g].numpy()
        # the one lag without a mirror among the stored ones (an even number of lags)
        edge[:] = False
        if spec.bins % 2 == 0:
            edge[maps.mirror[g], :, 0] = True
        assert_float16_equal(rotated[~edge], want[~edge], phase[~edge], f"{name} {kind} g={g}")
        np.testing.assert_allclose(maps.apply(x, g), want, atol=1e-6)  # numpy == torch
        np.testing.assert_allclose(dys[g, 0].numpy(), DIRS @ q.T, atol=1e-6)  # labels by Q


def test_toolkit_tetrahedron_full_group_is_within_its_tolerance():
    """The DCASE capsules (elevations +-35 deg, not 35.26) map onto each other under the
    axis swaps only within 0.34 mm: the full group has 24, the z group's 8 are exact."""
    array = ARRAYS["tetra"]
    full, z = array_symmetries(array, "full"), array_symmetries(array, "z")
    assert len(full) == 24 and len(z) == 8
    assert max(s.error_m for s in z) < 1e-12
    assert 2e-4 < max(s.error_m for s in full) < 5e-4
    _, note = plan(make_spec(FeatureConfig(), FS, "mic", 4, array), "full")
    assert "24 symmetries" in note and "within 0.34 mm" in note


@pytest.mark.parametrize(
    ("array", "z", "full"),
    [
        (ArraySpec.foa(), 16, 48),
        (ArraySpec.mic(tetra_positions_m()), 8, 24),
        (ArraySpec.mic(HEXAGON), 24, 24),  # D6 x mirror in z
        (ArraySpec.mic([[0.03, 0, 0], [0, 0.03, 0], [-0.03, 0, 0], [0, -0.03, 0]]), 16, 16),
        (ArraySpec.mic([[0.05, 0, 0], [-0.05, 0, 0]]), 8, 16),  # a line along x
    ],
)
def test_symmetry_counts(array, z, full):
    assert len(array_symmetries(array, "z")) == z
    assert len(array_symmetries(array, "full")) == full
    for s in array_symmetries(array, "full"):  # orthogonal, a permutation of the channels
        np.testing.assert_allclose(s.matrix @ s.matrix.T, np.eye(3), atol=1e-12)
        assert sorted(s.source) == list(range(len(s.source)))


def test_an_array_without_symmetry_is_not_augmented_with_a_note():
    pos = np.random.default_rng(3).normal(size=(4, 3)) * 0.03
    array = ArraySpec.mic(pos)
    spec = make_spec(FeatureConfig(type="logmel"), FS, "mic", 4, array)
    maps, note = plan(spec, "z")
    assert maps is None and note.startswith("no spatial augmentation") and "no symmetry" in note
    maps, note = plan(make_spec(FeatureConfig(), FS, "mic", 4, None), "z")
    assert maps is None and "record no array" in note
    measured = ArraySpec.mic(tetra_positions_m(), "measured")
    assert plan(make_spec(FeatureConfig(), FS, "mic", 4, measured), "full")[0] is None
    assert plan(make_spec(FeatureConfig(), FS, "foa", 4, ArraySpec.foa()), "none")[0] is None


def test_frequency_mask_sets_a_band_to_the_mean():
    torch.manual_seed(0)
    c, f = 3, 40
    mean = np.arange(c * f, dtype=np.float32).reshape(c, f) + 1000
    aug = SpatialAugment(None, freq_mask=8, mean=mean)
    x = torch.zeros(64, c, 5, f)
    y, _, _ = aug((x, torch.zeros(64, 5, 1, 3), None))
    hit = y != 0  # (B, C, T, F)
    band = hit[:, 0, 0]  # (B, F)
    assert (hit == band[:, None, None, :]).all()  # the same bins in every channel and frame
    widths = band.sum(1)
    assert widths.max() <= 8 and widths.max() >= 5 and (widths == 0).any()
    for b in range(64):  # contiguous, set to the mean
        idx = band[b].nonzero().flatten()
        if len(idx):
            assert idx[-1] - idx[0] + 1 == len(idx)
            assert torch.equal(y[b, :, 0, idx], torch.from_numpy(mean)[:, idx])


def test_batches_draw_one_symmetry_per_chunk():
    torch.manual_seed(1)
    spec = make_spec(FeatureConfig(type="logmel", n_mels=16), FS, "foa", 4, ArraySpec.foa())
    maps, _ = plan(spec, "z")
    aug = SpatialAugment(maps)
    x = torch.randn(256, 7, 2, 16)
    d = torch.nn.functional.normalize(torch.randn(256, 2, 3, 3), dim=-1)
    a = torch.ones(256, 2, 3, dtype=torch.bool)
    y, dy, a2 = aug((x, d, a))
    assert a2 is a and y.shape == x.shape and dy.shape == d.shape
    # every chunk is one of the 16 transforms of itself, and they are not all the same
    found = set()
    for b in range(256):
        for g in range(len(maps)):
            if np.allclose(maps.apply(x[b].numpy(), g), y[b].numpy()):
                found.add(g)
                np.testing.assert_allclose(dy[b].numpy(), d[b].numpy() @ maps.matrices[g].T,
                                           atol=1e-6)  # fmt: skip
                break
        else:
            raise AssertionError(f"chunk {b} is no transform of itself")
    assert len(found) == 16
    assert (dy[..., 2].abs() - d[..., 2].abs()).abs().max() < 1e-6  # z kept: elevations kept


# ----------------------------------------------------------------------------- CLI

TOML = "[train]\nchannels = [8, 8]\npools = [4, 4]\ngru_layers = 1\ngru_units = 16\n"
TRAIN = ["--epochs", "1", "--max-steps", "2", "--batch-size", "2", "-K", "2", "--device", "cpu"]


def ssl(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def feats(tmp_path_factory) -> Path:
    b = tmp_path_factory.mktemp("aug")
    (b / "tiny.toml").write_text(TOML)
    synth = ["--n-clips", "3", "--clip-seconds", "1", "--fs", "8000", "--subsets", "ov1"]
    assert ssl("prep", "synth", b / "scenes", *synth, "--seed", 1).exit_code == 0
    res = ssl("prep", "features", b / "scenes", b / "feats", "--type", "logmel")
    assert res.exit_code == 0, res.output
    return b / "feats"


def _config(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())["config"]


def test_train_records_augment_default_and_full(feats, tmp_path):
    toml = feats.parent / "tiny.toml"
    res = ssl("train", feats, tmp_path / "z", *TRAIN, "--config", toml)
    assert res.exit_code == 0, res.output
    assert _config(tmp_path / "z")["augment"] == "z"
    assert "augment: spatial augmentation: 16 symmetries of the first-order Ambisonics" in (
        res.output
    )
    res = ssl("train", feats, tmp_path / "full", *TRAIN, "--config", toml, "--augment", "FULL",
              "--freq-mask", "4")  # fmt: skip
    assert res.exit_code == 0, res.output
    cfg = _config(tmp_path / "full")
    assert cfg["augment"] == "full" and cfg["freq_mask"] == 4
    assert "48 symmetries" in res.output and "frequency mask of up to 4 bins" in res.output


def test_augment_none_is_what_older_runs_were(feats, tmp_path):
    """--augment none records nothing (an older run's config: still up to date and
    resumable); resuming it with augmentation is refused, naming the option."""
    toml = feats.parent / "tiny.toml"
    run = tmp_path / "none"
    res = ssl("train", feats, run, *TRAIN, "--config", toml, "--augment", "none")
    assert res.exit_code == 0, res.output
    assert "augment" not in _config(run) and "no spatial augmentation" in res.output
    again = ssl("train", run, "--resume")  # reused: the stored config reads as none
    assert again.exit_code == 0, again.output
    refused = ssl("train", run, "--resume", "--augment", "z")
    assert refused.exit_code == 1
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "option 'augment' is 'z' here but 'none' there" in lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--augment", "sideways"], "--augment"),
        (["--freq-mask", "-1"], "freq_mask"),
    ],
)
def test_bad_augment_options_are_one_line(feats, tmp_path, args, needle):
    res = ssl("train", feats, tmp_path / "bad", *TRAIN, *args)
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.output
    assert not (tmp_path / "bad").exists()


def test_validation_is_never_augmented(feats):
    from ssl_toolkit.features.store import open_features
    from ssl_toolkit.training.options import TrainConfig
    from ssl_toolkit.training.run import _loaders
    from ssl_toolkit.training.runtime import Runtime

    fs = open_features(feats)
    rows = {s: fs.rows(s) for s in ("train", "val")}
    train, _, val, _ = _loaders(fs, rows, TrainConfig(batch_size=2), Runtime(torch.device("cpu")))
    assert train.augment is not None and train.augment.maps is not None
    assert val.augment is None
