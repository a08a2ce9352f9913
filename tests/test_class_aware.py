"""Class-aware scoring: localizers with classes (class-aware multi-ACCDOA, DCASE result files)
on features with classes get the official class-dependent DCASE metrics (``*_cls``) next to the
class-agnostic ones; class-agnostic methods' metrics are unchanged."""

import json

import dcase_reference as R
import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ssl_toolkit.analysis import metrics as M
from ssl_toolkit.analysis.dcase_csv import DcaseCsvLocalizer, result_tables, write_results
from ssl_toolkit.analysis.frames import Frames, label_frames
from ssl_toolkit.cli import app
from ssl_toolkit.core.geometry import rad, sph_to_unit
from ssl_toolkit.core.labels import read_metadata
from ssl_toolkit.evaluation.evaluate import score_predictions
from ssl_toolkit.features.store import open_features
from ssl_toolkit.models.localize import Localization, checked, load_localizer
from ssl_toolkit.testing import make_features_artifact, random_directions

HOP = 0.02  # make_features_artifact: 320 samples at 16 kHz
SEG = 50  # feature frames per 1 s DCASE segment
DCASE_KEYS = ("ER20", "F20", "LE_CD_deg", "LR_CD", "SELD")
CLS_KEYS = tuple(k + "_cls" for k in DCASE_KEYS)
TRACKS, N_CLASSES = 2, 2
ACCDOA = {"n_channels": 8, "n_bins": 32, "tracks": TRACKS, "n_classes": N_CLASSES,
          "channels": [8, 8], "pools": [4, 4], "gru_layers": 1, "gru_units": 16}  # fmt: skip
runner = CliRunner()


def unit(az_deg, el_deg=0.0):
    return sph_to_unit(rad(np.asarray(az_deg, float)), rad(np.asarray(el_deg, float)))


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def metrics_json(path):
    return json.loads((path / "metrics.json").read_text())


# ----------------------------------------------------------------------------- the metric


@pytest.mark.parametrize("n_classes", [2, 3])
def test_right_direction_wrong_class_is_perfect_only_class_agnostically(n_classes):
    """One segment of 10 frames: references of class 0 at 0 deg and class 1 at 90 deg; two
    detections exactly there, both of class 0. Class-agnostic: perfect. Class-aware, by hand:
    class 0 has 1 reference and 2 predictions: its track matched at 0 deg (TP 1, LE 0), one
    extra prediction (FP 1); class 1 is referenced, never predicted (FN 1); a third class
    (n_classes = 3) never occurs: F = LR = 0, LE = 180, as the official macro average counts it.
    ER: the segment's loc_FP = loc_FN = 1 -> S = 1 over N_ref = 2."""
    n = 10
    targets = np.broadcast_to(np.stack([unit(0), unit(90)]), (n, 2, 3))
    active = np.ones((n, 2), bool)
    seg = np.zeros(n, int)
    agnostic = M.dcase_seld(targets, active, targets, active, seg)
    assert agnostic["F20"] == pytest.approx(1.0) and agnostic["ER20"] == pytest.approx(0.0)
    assert agnostic["LE_CD_deg"] == pytest.approx(0.0) and agnostic["LR_CD"] == pytest.approx(1)

    got = M.class_aware_seld(targets, active, targets, active, seg,
                             pred_class=np.zeros((n, 2), int),
                             target_class=np.tile([0, 1], (n, 1)), n_classes=n_classes)  # fmt: skip
    er = 0.5
    f_c = [2 / 3, 0.0] + [0.0] * (n_classes - 2)  # F_0 = 1 / (1 + (1 + 0) / 2)
    le_c = [0.0, 180.0] + [180.0] * (n_classes - 2)
    lr_c = [1.0, 0.0] + [0.0] * (n_classes - 2)
    terms = zip(f_c, le_c, lr_c, strict=True)
    seld_c = [(er + 1 - f + le / 180 + 1 - lr) / 4 for f, le, lr in terms]
    want = {"ER20_cls": er, "F20_cls": np.mean(f_c), "LE_CD_deg_cls": np.mean(le_c),
            "LR_CD_cls": np.mean(lr_c), "SELD_cls": np.mean(seld_c)}  # fmt: skip
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k
    if n_classes == 2:
        assert got["F20_cls"] == pytest.approx(1 / 3) and got["SELD_cls"] == pytest.approx(13 / 24)
    with pytest.raises(ValueError, match="n_classes"):  # a detection of a class out of range
        M.class_aware_seld(targets, active, targets, active, seg, np.full((n, 2), 2),
                           np.tile([0, 1], (n, 1)), n_classes=2)  # fmt: skip


def _random_scene(rng, n_classes):
    """Frames of 3 clips, S = 3 target slots, K = 4 predictions near the targets (some far:
    spatial false positives), classes right 80 % of the time, class 3 never used."""
    parts = []
    for clip in range(3):
        f = int(rng.integers(40, 90))
        ta = rng.random((f, 3)) < 0.6
        t = random_directions(rng, (1, 3)).repeat(f, 0).astype(np.float64)
        tc = np.broadcast_to(rng.integers(0, n_classes - 1, 3), (f, 3))
        src = np.array([0, 1, 2, 0])
        p = t[:, src] + rng.choice([0.05, 0.2, 0.8], 4)[None, :, None] * rng.normal(size=(f, 4, 3))
        p /= np.linalg.norm(p, axis=-1, keepdims=True)
        pa = (ta[:, src] & (rng.random((f, 4)) < 0.9)) | (rng.random((f, 4)) < 0.05)
        wrong = rng.integers(0, n_classes - 1, (f, 4))
        pc = np.where(rng.random((f, 4)) < 0.8, tc[:, src], wrong)
        parts.append((np.full(f, clip), np.arange(f), p, pa, t, ta, tc, pc))
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))


def test_macro_average_equals_the_per_class_computation_by_hand(rng):
    """F, LE, LR and SELD: the mean over classes of each class scored on its own (the
    class-agnostic metric on the slots of that class); ER: one number over all classes, equal
    to the official loop-by-loop accumulator's."""
    n_classes = 4
    clip, frame, p, pa, t, ta, tc, pc = _random_scene(rng, n_classes)
    seg = M.segment_ids(clip, frame, 10)
    got = M.class_aware_seld(p, pa, t, ta, seg, pc, tc, n_classes)

    per_class = [M.dcase_seld(p, pa & (pc == c), t, ta & (tc == c), seg) for c in range(n_classes)]
    clips = [(R.frame_dict(t[clip == c], ta[clip == c], tc[clip == c]),
              R.frame_dict(p[clip == c], pa[clip == c], pc[clip == c]), int((clip == c).sum()))
             for c in range(3)]  # fmt: skip
    er = R.scores(R.official_metrics(clips, 10, n_classes))["ER20"]
    f = np.array([r["F20"] for r in per_class])
    le = np.array([r["LE_CD_deg"] for r in per_class])
    lr = np.array([r["LR_CD"] for r in per_class])
    assert 0 < f[:3].min() and f[:3].max() < 1 and f[3] == 0 and le[3] == 180  # non-trivial
    assert got["ER20_cls"] == pytest.approx(er, abs=1e-12)
    assert got["F20_cls"] == pytest.approx(f.mean(), abs=1e-12)
    assert got["LE_CD_deg_cls"] == pytest.approx(le.mean(), abs=1e-9)
    assert got["LR_CD_cls"] == pytest.approx(lr.mean(), abs=1e-12)
    seld = np.mean((er + (1 - f) + le / 180 + (1 - lr)) / 4)
    assert got["SELD_cls"] == pytest.approx(seld, abs=1e-12)
    # and different from the class-agnostic numbers (the classes matter)
    assert abs(M.dcase_seld(p, pa, t, ta, seg)["F20"] - got["F20_cls"]) > 0.05


def test_localizations_carry_classes_slot_or_frame_wise():
    hyps = np.tile(unit([0, 90, 180]), (2, 1, 1)).astype(np.float32)  # (2, 3, 3)
    hyps[1, 2] = 0.0  # an emptied slot: invalid, class -1
    loc = checked(hyps, np.full((2, 3), 0.9), classes=np.array([0, 0, 1]))
    np.testing.assert_array_equal(loc.classes, [[0, 0, 1], [0, 0, -1]])
    assert checked(hyps, np.full((2, 3), 0.9)).classes is None  # class-agnostic: None
    both = Localization.concat([checked(hyps, np.ones((2, 3))), loc], 3)
    np.testing.assert_array_equal(both.classes[:2], -1)  # a part without classes: unknown
    assert Localization.concat([checked(hyps, np.ones((2, 3)))] * 2, 3).classes is None
    with pytest.raises(ValueError, match="classes"):
        Localization(loc.hyps, loc.conf, loc.valid, np.zeros((2, 2), np.int64))


# ----------------------------------------------------------------------------- ssl eval


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Features with 2 classes, the same without classes (identical other arrays), one
    source per frame with 3 classes, and a class-aware multi-ACCDOA run (2 tracks x 2 classes,
    untrained, threshold 0.1: about half of its slots detected)."""
    from export_fixtures import make_run

    tmp = tmp_path_factory.mktemp("class_aware")
    feats = make_features_artifact(tmp / "feats", n_chunks=30, bins=32, n_classes=N_CLASSES)
    plain = make_features_artifact(tmp / "plain", n_chunks=30, bins=32)
    single = make_features_artifact(tmp / "single", n_chunks=30, bins=32, max_sources=1,
                                    n_classes=3)  # fmt: skip
    spec = open_features(feats.path).spec.to_dict()
    run, _ = make_run(tmp / "run", name="accdoa", kwargs=ACCDOA, feature_params=spec,
                      method="accdoa", K=TRACKS * N_CLASSES, threshold=0.1)  # fmt: skip
    (tmp / "eval.toml").write_text("[eval]\ncalibrate = false\n")  # no val pass: faster
    return {"tmp": tmp, "feats": feats.path, "plain": plain.path, "single": single.path,
            "run": run.path, "toml": tmp / "eval.toml"}  # fmt: skip


def test_wrong_classes_in_result_files_are_perfect_only_class_agnostically(data, tmp_path):
    """The references of a 3-class, one-source split as DCASE result files: with their own
    classes every DCASE metric is perfect for the classes present (an absent class counts
    F = LR = 0, LE = 180 in the macro average); with every class shifted by one (right
    direction, wrong class) the class-agnostic metrics stay perfect and the class-aware ones
    find no true positive: F20 = LR = 0, LE = 180."""
    fs = open_features(data["single"])
    lab = label_frames(fs, fs.rows("test"))
    present = len(np.unique(lab["target_classes"][lab["active"]]))
    for shift in (0, 1):
        cls = np.where(lab["active"], (lab["target_classes"] + shift) % 3, 0)
        tables = result_tables(lab["clip_id"], lab["frame"], lab["targets"], lab["active"], HOP,
                               cls)  # fmt: skip
        write_results(tmp_path / f"csv{shift}", tables)
        out = tmp_path / f"ev{shift}"
        invoke("eval", "--dcase-csv", tmp_path / f"csv{shift}", out, "--data", data["single"])
        doc = metrics_json(out)
        m = doc["overall"]
        assert doc["n_classes"] == 3 and set(CLS_KEYS) <= set(m)
        assert m["F20"] == pytest.approx(1.0) and m["ER20"] == pytest.approx(0, abs=1e-12)
        assert m["LE_CD_deg"] < 0.01 and m["LR_CD"] == pytest.approx(1.0)
        if shift == 0:
            assert m["F20_cls"] == pytest.approx(present / 3)
            assert m["LR_CD_cls"] == pytest.approx(present / 3)
            assert m["LE_CD_deg_cls"] == pytest.approx(180 * (3 - present) / 3, abs=0.01)
            assert m["ER20_cls"] == pytest.approx(0, abs=1e-12)
        else:
            assert m["F20_cls"] == 0 and m["LR_CD_cls"] == 0
            assert m["LE_CD_deg_cls"] == pytest.approx(180.0)
            assert m["SELD_cls"] > m["SELD"] + 0.4
        with np.load(out / "predictions.npz", allow_pickle=False) as z:
            both = z["valid"][:, 0] & z["active"][:, 0]  # one source: slot 0 <-> slot 0
            np.testing.assert_array_equal(
                z["classes"][both, 0], (z["target_classes"][both, 0] + shift) % 3
            )
            assert (z["classes"][~z["valid"]] == -1).all() and both.sum() > 100
    assert present >= 2


def held_with_classes(clip_id, frame, hyps, detected, slot_classes, hop_s=HOP):
    """Loops: each frame holds the detections of its label frame's representative frame (the
    frame nearest the label frame's centre, the earlier on a tie), in (class, slot) order,
    with their classes."""
    n = len(frame)
    out = [[] for _ in range(n)]
    for clip in np.unique(clip_id):
        idx = np.flatnonzero(clip_id == clip)
        best = {}
        for i in sorted(idx, key=lambda i: frame[i]):
            lf = int(np.floor(frame[i] * hop_s / 0.1 + 1e-9))
            off = abs(frame[i] * hop_s - (lf + 0.5) * 0.1)
            if lf not in best or off < best[lf][1] - 1e-9:
                best[lf] = (i, off)
        for i in idx:
            r = best[int(np.floor(frame[i] * hop_s / 0.1 + 1e-9))][0]
            ks = sorted(np.flatnonzero(detected[r]), key=lambda k: (slot_classes[k], k))
            out[i] = [(hyps[r, k], slot_classes[k]) for k in ks]
    k = max(1, max(len(o) for o in out))
    h, v, c = np.zeros((n, k, 3), np.float32), np.zeros((n, k), bool), np.full((n, k), -1)
    h[..., 0] = 1
    for i, o in enumerate(out):
        for j, (u, cls) in enumerate(o):
            h[i, j], v[i, j], c[i, j] = u, True, cls
    return h, v, c


def test_class_aware_model_written_and_read_back_keeps_its_classes(data, tmp_path):
    """E1 = `ssl eval RUN --dcase-out` of a class-aware multi-ACCDOA run: its metrics have the
    class-aware keys and its result files the slot classes (slot k: class k // tracks). E2 =
    `ssl eval --dcase-csv E1/dcase`: its predictions are E1's detections decimated and held
    (by loops here) with their classes, and its class-aware metrics those of these detections
    (count-based exactly, LE_CD within 0.01 degree)."""
    feats, run = data["feats"], data["run"]
    assert load_localizer(run).slot_classes.tolist() == [0, 0, 1, 1]
    e1, e2 = tmp_path / "e1", tmp_path / "e2"
    invoke("eval", run, e1, "--data", feats, "--dcase-out", "--config", data["toml"])
    doc1 = metrics_json(e1)
    assert doc1["n_classes"] == N_CLASSES
    for s in ("D1", "D2", "D3", "overall"):
        assert set(CLS_KEYS) <= set(doc1[s]) and set(DCASE_KEYS) <= set(doc1[s])
    for path in sorted((e1 / "dcase").iterdir()):
        rows = read_metadata(path)
        np.testing.assert_array_equal(rows["class"], rows["source"] // TRACKS)
    invoke("eval", "--dcase-csv", e1 / "dcase", e2, "--data", feats)

    with np.load(e1 / "predictions.npz", allow_pickle=False) as z:
        p1 = {k: z[k] for k in z.files}
    assert 0.1 < p1["detected"].mean() < 0.9 and set(p1["classes"][p1["valid"]]) == {0, 1}
    h, v, c = held_with_classes(p1["clip_id"], p1["frame"], p1["hyps"], p1["detected"],
                                np.arange(TRACKS * N_CLASSES) // TRACKS)  # fmt: skip
    with np.load(e2 / "predictions.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["valid"], v)
        np.testing.assert_array_equal(z["classes"], c)
    keys = ("targets", "active", "clip_id", "frame", "subset", "target_classes")
    direct = Frames(hyps=h, conf=v.astype(np.float32), valid=v, classes=c,
                    **{k: p1[k] for k in keys})  # fmt: skip
    want = score_predictions(direct, 0.5, SEG, False, counts=True, n_classes=N_CLASSES)
    doc2 = metrics_json(e2)
    for s, m in want.items():
        for key in ("ER20_cls", "F20_cls", "LR_CD_cls", "SELD_cls"):
            assert doc2[s][key] == pytest.approx(m[key], abs=1e-4 if key == "SELD_cls" else 1e-12)
        assert doc2[s]["LE_CD_deg_cls"] == pytest.approx(m["LE_CD_deg_cls"], abs=0.01)


def test_a_model_constant_over_time_scores_the_same_from_its_result_files(data, tmp_path):
    """A class-aware run whose output is its head's bias (the same tracks in every frame):
    decimating loses nothing, so `--dcase-out` read back with `--dcase-csv` gives exactly the
    run's DCASE metrics, class-aware and class-agnostic. Class 0 and class 1 both have a track
    at (30, 0) deg (not unified: another class), with other tracks below the threshold or
    elsewhere. Also through `ssl export`: the export's io.json gives the same slot classes."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(data["run"], run)
    state = load_file(str(run / "model.safetensors"))
    vec = np.array(
        [
            unit(30) * 0.8,
            unit(-100) * 0.05,  # class 0: detected, not detected
            unit(30) * 0.9,
            unit(150, 20) * 0.7,
        ]
    )  # class 1: both detected
    bias = np.arctanh(vec)  # (C * N, 3) class-major, as AccdoaCRNN.accdoa unflattens
    state["head.weight"] = state["head.weight"] * 0
    state["head.bias"] = state["head.bias"].new_tensor(bias.reshape(-1))
    save_file(state, str(run / "model.safetensors"))
    e1, e2 = tmp_path / "e1", tmp_path / "e2"
    invoke("eval", run, e1, "--data", data["feats"], "--dcase-out", "--config", data["toml"])
    invoke("eval", "--dcase-csv", e1 / "dcase", e2, "--data", data["feats"])
    d1, d2 = metrics_json(e1), metrics_json(e2)
    with np.load(e1 / "predictions.npz", allow_pickle=False) as z:
        assert (z["detected"] == [True, False, True, True]).all()
    for s in ("D1", "D2", "D3", "overall"):
        for key in DCASE_KEYS + CLS_KEYS:
            tol = 0.01 if key.startswith("LE") else 1e-4 if key.startswith("SELD") else 1e-12
            assert d2[s][key] == pytest.approx(d1[s][key], abs=tol), (s, key)
    invoke("export", run, tmp_path / "exp")
    assert load_localizer(tmp_path / "exp").slot_classes.tolist() == [0, 0, 1, 1]
    io_path = tmp_path / "exp" / "io.json"  # a damaged layout: one line naming the file
    io = json.loads(io_path.read_text())
    io["multi_accdoa"]["n_classes"] = 3
    io_path.write_text(json.dumps(io))
    res = runner.invoke(app, ["eval", str(tmp_path / "exp"), str(tmp_path / "e3"), "--data",
                              str(data["feats"])])  # fmt: skip
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert "io.json" in lines[0] and "2 tracks x 3 classes" in lines[0]


def test_class_agnostic_methods_metrics_are_unchanged(data, tmp_path):
    """A class-agnostic run scored on features with classes: metrics.json equal to the same
    run's on the same features without classes, and no class-aware key; `ssl report` shows the
    class-aware columns only when an eval has them. A class-aware run on features of another
    number of classes: one warning line, class-agnostic metrics only."""
    from export_fixtures import make_run

    spec = open_features(data["feats"]).spec.to_dict()
    run, _ = make_run(tmp_path / "run", kwargs={"channels": 8, "bins": 32, "K": 3},
                      feature_params=spec)  # fmt: skip
    docs = {}
    for name in ("feats", "plain"):
        invoke("eval", run.path, tmp_path / name, "--data", data[name], "--config", data["toml"])
        docs[name] = metrics_json(tmp_path / name)
    for s in ("D1", "D2", "D3", "overall"):
        assert docs["feats"][s] == docs["plain"][s]
        assert not [k for k in docs["feats"][s] if k.endswith("_cls")]
    assert "n_classes" not in docs["feats"]
    with np.load(tmp_path / "feats" / "predictions.npz", allow_pickle=False) as z:
        assert "classes" not in z.files and "target_classes" in z.files

    rep = tmp_path / "rep"
    invoke("report", tmp_path / "feats", tmp_path / "plain", "--out", rep, "--allow-mixed")
    assert not [c for c in pd.read_csv(rep / "report.csv").columns if "class-aware" in c]
    invoke("eval", data["run"], tmp_path / "aware", "--data", data["feats"], "--config",
           data["toml"])  # fmt: skip
    invoke("report", tmp_path / "feats", tmp_path / "aware", "--out", tmp_path / "rep2")
    table = pd.read_csv(tmp_path / "rep2" / "report.csv")
    assert table.loc[table["eval"] == "aware", "F20 (class-aware)"].notna().all()
    assert table.loc[table["eval"] == "feats", "F20 (class-aware)"].isna().all()
    assert table["F20"].notna().all()  # every row keeps the class-agnostic metrics

    other = make_features_artifact(tmp_path / "three", n_chunks=30, bins=32, n_classes=3)
    res = invoke("eval", data["run"], tmp_path / "mismatch", "--data", other.path, "--config",
                 data["toml"])  # fmt: skip
    warn = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "2 classes" in warn[0] and "3" in warn[0]
    doc = metrics_json(tmp_path / "mismatch")
    assert "F20" in doc["overall"] and not [k for k in doc["overall"] if k.endswith("_cls")]


def test_result_files_localizer_orders_slots_by_class_then_source():
    table = pd.DataFrame({"frame": [0, 0, 0], "class": [2, 0, 0], "source": [0, 1, 0],
                          "azimuth_deg": [10.0, 20.0, 30.0], "elevation_deg": [0.0] * 3,
                          "distance_m": [np.nan] * 3})  # fmt: skip
    loc = DcaseCsvLocalizer({"c": table}, HOP, "x").localize((np.array(["c", "c"]), np.arange(2)))
    np.testing.assert_array_equal(loc.classes, [[0, 0, 2]] * 2)
    az = np.degrees(np.arctan2(loc.hyps[..., 1], loc.hyps[..., 0]))
    np.testing.assert_allclose(az, [[30, 20, 10]] * 2, atol=1e-4)
