"""Multi-ACCDOA (``ssl train --method accdoa``): the unify rule, the model, and train ->
eval -> export end to end (the export localizes like its run)."""

import itertools
import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ssl_toolkit.cli import app
from ssl_toolkit.core.geometry import rad, sph_to_unit
from ssl_toolkit.models import build_model, load_model, save_model
from ssl_toolkit.models.crnn import accdoa_from_raw, unify_tracks
from ssl_toolkit.models.localize import checked, is_scored, load_localizer
from ssl_toolkit.testing import make_features_artifact

runner = CliRunner()
SMALL = {"n_channels": 4, "n_bins": 32, "channels": (8, 8), "pools": (4, 4), "gru_layers": 1,
         "gru_units": 16}  # fmt: skip
TOML = "[train]\nchannels = [8, 8]\npools = [4, 4]\ngru_layers = 1\ngru_units = 16\n"


def unit(az_deg, el_deg=0.0):
    return sph_to_unit(torch.tensor(rad(az_deg)), torch.tensor(rad(el_deg))).float()


# ---------------------------------------------------------------- unify rule


def test_unify_merges_duplicated_tracks_as_the_official_rule():
    a, b = unit(0), unit(10)  # 10 deg apart: one source; unit(90) is another
    cases = {  # tracks -> (kept slots, their direction, their confidence)
        "no pair": ((0.9 * a, 0.8 * unit(90), 0.7 * unit(200)), [0, 1, 2]),
        "pair 0-1": ((0.9 * a, 0.6 * b, 0.7 * unit(90)), [0, 2]),
        "pair 1-2": ((0.7 * unit(90), 0.9 * a, 0.6 * b), [0, 1]),
        "pair 2-0": ((0.9 * a, 0.7 * unit(90), 0.6 * b), [0, 1]),
        "chain 0-1-2": ((0.9 * unit(0), 0.8 * unit(12), 0.5 * unit(24)), [0]),  # 0-2: 24 deg
    }
    for name, (tracks, kept) in cases.items():
        y = torch.stack(tracks)
        hyps, conf = unify_tracks(y)
        assert (conf > 0).nonzero().flatten().tolist() == kept, name
        empty = [i for i in range(3) if i not in kept]
        assert (hyps[empty] == 0).all() and (conf[empty] == 0).all(), name
    hyps, conf = unify_tracks(torch.stack(cases["pair 0-1"][0]))
    mean = (0.9 * a + 0.6 * b) / 2  # the raw vectors averaged, as the official code
    torch.testing.assert_close(hyps[0], mean / mean.norm())
    assert conf.tolist() == pytest.approx([0.9, 0.0, 0.7])  # the group keeps its largest norm
    hyps, conf = unify_tracks(torch.stack(cases["chain 0-1-2"][0]))
    m3 = 0.9 * unit(0) + 0.8 * unit(12) + 0.5 * unit(24)
    torch.testing.assert_close(hyps[0], m3 / m3.norm())


def test_unify_clips_confidence_and_leaves_zero_tracks_alone():
    y = torch.stack([unit(40) * 1.5, torch.zeros(3), unit(40.5) * 1e-3])
    hyps, conf = unify_tracks(y)
    assert conf.tolist() == pytest.approx([1.0, 0.0, 0.0])  # clipped; track 2 merged into 0
    assert (hyps[1] == 0).all()  # a zero track has no direction: empty
    loc = checked(hyps[None], conf[None])
    assert loc.valid.tolist() == [[True, False, False]]  # empty slots are invalid


def official_unify(tracks, thresh_deg=15.0):
    """The DCASE 2022 baseline's 3-track rule (train_seldnet.test_epoch) with every track
    counted active: ``[(slot, direction, conf)]`` in the slots this toolkit uses."""
    t = [np.asarray(v, np.float64) for v in tracks]
    norms = [np.linalg.norm(v) for v in t]

    def similar(i, j):
        if norms[i] == 0 or norms[j] == 0:
            return False
        c = np.dot(t[i], t[j]) / (norms[i] * norms[j])
        return math.degrees(math.acos(np.clip(c, -1, 1))) < thresh_deg

    flags = {(0, 1): similar(0, 1), (1, 2): similar(1, 2), (2, 0): similar(2, 0)}
    n = sum(flags.values())
    if n == 0:
        return [(i, t[i], norms[i]) for i in range(3)]
    if n >= 2:
        return [(0, (t[0] + t[1] + t[2]) / 3, max(norms))]
    (i, j) = next(p for p, f in flags.items() if f)
    other = 3 - i - j
    pair = (min(i, j), (t[i] + t[j]) / 2, max(norms[i], norms[j]))
    return sorted([(other, t[other], norms[other]), pair], key=lambda r: r[0])


def test_unify_equals_the_official_rule_on_random_tracks(rng):
    """Tracks drawn around two anchors (often within 15 deg of each other): every
    configuration of the official rule occurs, and the slots agree with it."""
    seen = set()
    for _ in range(300):
        anchors = rng.normal(size=(2, 3))
        tracks = anchors[rng.integers(0, 2, 3)] + rng.normal(scale=0.15, size=(3, 3))
        tracks *= rng.uniform(0.05, 1.0, size=(3, 1)) / np.linalg.norm(tracks, axis=1)[:, None]
        hyps, conf = unify_tracks(torch.tensor(tracks, dtype=torch.float32))
        want = official_unify(tracks)
        seen.add(len(want))
        assert (conf > 0).nonzero().flatten().tolist() == [s for s, _, _ in want]
        for s, v, c in want:
            np.testing.assert_allclose(hyps[s].numpy(), v / np.linalg.norm(v), atol=1e-5)
            assert conf[s].item() == pytest.approx(min(c, 1.0), rel=1e-5)
    assert seen == {1, 2, 3}


# ---------------------------------------------------------------- the model


def test_accdoa_model_slots_raw_output_and_classes():
    torch.manual_seed(0)
    m = build_model("accdoa", tracks=3, n_classes=2, **SMALL).eval()
    x = torch.randn(2, 4, 9, 32)
    y = m.accdoa(x)  # (B, T, N, C, 3)
    assert y.shape == (2, 9, 3, 2, 3) and y.abs().max() < 1  # tanh
    hyps, conf = m(x, raw=True)
    assert hyps.shape == (2, 9, 6, 3) and conf.shape == (2, 9, 6)
    torch.testing.assert_close(accdoa_from_raw(hyps, conf, 3), y)
    torch.testing.assert_close(
        hyps[:, :, 4], y[:, :, 1, 1] / y[:, :, 1, 1].norm(dim=-1, keepdim=True)
    )
    h, c = m(x)  # slot k = track k % 3 of class k // 3, after unification per class
    for cls in range(2):
        hu, cu = unify_tracks(y[:, :, :, cls])
        torch.testing.assert_close(h[:, :, 3 * cls : 3 * cls + 3], hu)
        torch.testing.assert_close(c[:, :, 3 * cls : 3 * cls + 3], cu)
    assert m.K == 6 and ((c >= 0) & (c <= 1)).all()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_accdoa_model_traces_and_round_trips(tmp_path):
    torch.manual_seed(0)
    kw = dict(tracks=3, n_classes=1, **SMALL)
    m = build_model("accdoa", **kw).eval()
    _duplicate_track(m, 1, 0)  # track 1 = track 0: always unified
    traced = torch.jit.trace(m, torch.randn(2, 4, 25, 32))
    x = torch.randn(3, 4, 40, 32)
    for a, b in zip(traced(x), m(x), strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)
    assert (m(x)[1][:, :, 1] == 0).all()
    kw_json = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
    save_model(tmp_path, m, "accdoa", kw_json, method="accdoa", K=3)
    m2, meta = load_model(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(m(x), m2(x), strict=True))
    assert is_scored(meta["method"])


def _duplicate_track(model, dst: int, src: int) -> None:
    """Make track ``dst`` of every class output exactly what track ``src`` does."""
    w, b = model.head.weight.data, model.head.bias.data  # rows: (class, track, xyz)
    rows = w.view(model.n_classes, model.tracks, 3, -1)
    rows[:, dst] = rows[:, src]
    bias = b.view(model.n_classes, model.tracks, 3)
    bias[:, dst] = bias[:, src]


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Features and a run of `ssl train --method accdoa` (K unset: 3 tracks), 4 steps."""
    tmp = tmp_path_factory.mktemp("accdoa")
    feats = make_features_artifact(tmp / "features", n_chunks=30, bins=32)
    (tmp / "tiny.toml").write_text(TOML)
    toml = str(tmp / "tiny.toml")
    args = ["train", str(feats.path), str(tmp / "run"), "--method", "accdoa", "--epochs", "2",
            "--batch-size", "6", "--max-steps", "4", "--config", toml]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return tmp, feats


def test_train_accdoa_defaults_to_three_tracks_with_a_learned_threshold(trained):
    tmp, _ = trained
    model, meta = load_model(tmp / "run")
    assert meta["name"] == "accdoa" and meta["method"] == "accdoa" and meta["K"] == 3
    assert meta["kwargs"]["tracks"] == 3 and meta["kwargs"]["n_classes"] == 1
    assert 0 < meta["threshold"] < 1 and "val" in meta["threshold_source"]
    man = json.loads((tmp / "run" / "manifest.json").read_text())
    assert man["config"]["K"] == 3 and man["extra"]["K"] == 3
    assert "classes" not in man["config"]  # off: the config (fingerprint) of older runs
    import pandas as pd

    hist = pd.read_csv(tmp / "run" / "history.csv")
    assert np.isfinite(hist["val_loss"]).all() and hist["val_loss"].max() < 1.0


def test_eval_scores_accdoa_as_a_scored_method(trained):
    tmp, feats = trained
    res = runner.invoke(app, ["eval", str(tmp / "run"), str(tmp / "ev"), "--data", str(feats.path)])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp / "ev" / "metrics.json").read_text())
    assert doc["method"] == "accdoa" and doc["scored"] and doc["K"] == 3
    for key in ("oracle_deg", "emd_deg", "F20", "ER20", "LE_CD_deg", "SELD", "frame_recall"):
        assert doc["overall"][key] is not None and np.isfinite(doc["overall"][key]), key
    assert "thresholds_val" in doc
    with np.load(tmp / "ev" / "predictions.npz", allow_pickle=False) as z:
        assert z["hyps"].shape[1:] == (3, 3) and z["valid"].shape[1] == 3
        c = z["conf"]
        assert ((c >= 0) & (c <= 1)).all() and (c[~z["valid"]] == 0).all()


def test_export_localizes_like_the_run_with_unified_tracks(trained):
    """TorchScript and ONNX exports of a run whose track 1 duplicates track 0: the
    same hyps, conf and valid as the run on the same chunks, slot 1 always invalid."""
    from ssl_toolkit.features.store import open_features
    from ssl_toolkit.inference.export import onnx_available

    tmp, feats = trained
    dup = tmp / "run_dup"
    if not dup.exists():
        shutil.copytree(tmp / "run", dup)
        model, _ = load_model(dup)
        _duplicate_track(model, 1, 0)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        assert set(state) == set(load_file(str(dup / "model.safetensors")))
        save_file(state, str(dup / "model.safetensors"))
    formats = ["torchscript"] + (["onnx"] if onnx_available() is None else [])
    args = ["export", str(dup), str(tmp / "exp")] + [a for f in formats for a in ("-f", f)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    io = json.loads((tmp / "exp" / "io.json").read_text())
    assert io["method"] == "accdoa" and io["scored"] and io["K"] == 3
    assert io["multi_accdoa"]["tracks"] == 3 and "class-major" in io["multi_accdoa"]["slot_order"]
    fs = open_features(feats.path)
    x = np.asarray(fs.features[fs.rows("test")[:2]], np.float32)  # (2, C, T, F)
    want = load_localizer(dup).localize(x)
    assert not want.valid[:, 1].any() and want.valid[:, 0].all()
    for backend in formats:
        got = load_localizer(tmp / "exp", backend).localize(x)
        np.testing.assert_array_equal(got.valid, want.valid)
        np.testing.assert_allclose(got.hyps, want.hyps, atol=1e-5)
        np.testing.assert_allclose(got.conf, want.conf, atol=1e-5)


def test_options_are_checked_before_anything_runs(trained, tmp_path):
    tmp, feats = trained
    base = ["train", str(feats.path), str(tmp_path / "run"), "--config", str(tmp / "tiny.toml")]
    for extra, needle in (
        (["--method", "accdoa", "-K", "7"], "-K"),
        (["--method", "rmcl", "--classes"], "--classes"),
        (["--method", "accdoa", "--classes"], "--classes"),  # features without classes
    ):
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 1 and needle in res.output, (extra, res.output)
        assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- class-aware


N_CLASSES = 2


def with_classes(fs):
    """Features as the store gives them with per-frame classes: slot s has class s % 2
    (-1 where inactive), ``n_classes`` in the manifest's extras."""
    s = np.arange(fs.activity.shape[-1]) % N_CLASSES
    fs.classes = np.where(fs.activity, s, -1).astype(np.int16)
    fs.manifest.extra["n_classes"] = N_CLASSES
    return fs


def test_loader_yields_classes_only_when_asked(tiny_features):
    from ssl_toolkit.features.store import open_features
    from ssl_toolkit.training.data import make_loader

    fs = with_classes(open_features(tiny_features.path))
    rows = fs.rows("train")[:5]
    plain, _ = make_loader(fs, rows, 5, shuffle=False, seed=0)
    assert len(next(iter(plain))) == 3
    loader, _ = make_loader(fs, rows, 5, shuffle=False, seed=0, classes=True)
    x, d, a, c = next(iter(loader))
    assert c.dtype == torch.int64 and torch.equal(c, torch.from_numpy(fs.classes[rows]).long())
    torch.testing.assert_close(d, torch.from_numpy(fs.directions[rows]).float())  # float32 batches


def test_class_aware_training_has_tracks_per_class(tmp_path, monkeypatch, tiny_features):
    from ssl_toolkit.training import run as run_module

    real = run_module.open_features
    monkeypatch.setattr(run_module, "open_features", lambda p: with_classes(real(p)))
    (tmp_path / "tiny.toml").write_text(TOML)
    args = ["train", str(tiny_features.path), str(tmp_path / "run"), "--method", "accdoa",
            "--classes", "-K", "2", "--epochs", "1", "--batch-size", "6", "--max-steps", "2",
            "--config", str(tmp_path / "tiny.toml")]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    model, meta = load_model(tmp_path / "run")
    assert meta["K"] == 4 and meta["kwargs"]["n_classes"] == 2 and meta["kwargs"]["tracks"] == 2
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["config"]["classes"]
    hyps, conf = model(torch.randn(1, 8, 25, 32))
    assert hyps.shape == (1, 25, 4, 3) and conf.shape == (1, 25, 4)


def test_class_aware_training_refuses_classes_out_of_range(tmp_path, monkeypatch, tiny_features):
    from ssl_toolkit.training import run as run_module

    real = run_module.open_features

    def bad(p):
        fs = with_classes(real(p))
        fs.manifest.extra["n_classes"] = 1  # slot 1 has class 1
        return fs

    monkeypatch.setattr(run_module, "open_features", bad)
    res = runner.invoke(app, ["train", str(tiny_features.path), str(tmp_path / "run"),
                              "--method", "accdoa", "--classes"])  # fmt: skip
    assert res.exit_code == 1 and "class 1, outside 0..0" in res.output
    assert not (tmp_path / "run").exists()


def test_adpit_candidates_of_the_model_cover_every_event_count():
    """The raw tracks of the model feed ADPIT: a loss, a gradient on every parameter."""
    from ssl_toolkit.losses import adpit_loss

    torch.manual_seed(0)
    m = build_model("accdoa", tracks=3, n_classes=1, **SMALL)
    x = torch.randn(2, 4, 6, 32)
    d = torch.nn.functional.normalize(torch.randn(2, 6, 3, 3), dim=-1)
    for n_active in itertools.product([0, 1], repeat=3):
        a = torch.tensor(n_active, dtype=torch.bool).expand(2, 6, 3)
        hyps, conf = m(x, raw=True)
        loss = adpit_loss(accdoa_from_raw(hyps, conf, 3), d, a)
        m.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_accdoa_defaults_to_three_tracks_under_toml_and_cli(tmp_path, tiny_features):
    from ssl_toolkit.training.options import config_dict
    from ssl_toolkit.training.resume import train_config

    def k(*layers):
        return train_config(tmp_path / "run", tiny_features.path, False, *layers)[0].K

    assert k(None, {"method": "accdoa"}) == 3
    assert k({"method": "accdoa"}, {"method": None}) == 3  # from the TOML
    assert k({"K": 4}, {"method": "accdoa"}) == 4  # the TOML's K wins over the method's
    assert k(None, {"method": "accdoa", "K": 1}) == 1
    assert k(None, {"method": "rmcl"}) == 5 and k(None, {}) == 5
    cfg = train_config(tmp_path / "run", tiny_features.path, False, None, {"method": "accdoa"})[0]
    assert "classes" not in config_dict(cfg)
    assert config_dict(type(cfg)(method="accdoa", classes=True))["classes"] is True
