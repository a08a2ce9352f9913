"""Issue 21, item 4: the chance level beside the oracle error in ``ssl eval`` / ``ssl baseline``
/ ``ssl report``; no confidence metric for a method without scores (count-only baselines);
label directions stored in float64 so that exact predictions score LE_CD = 0 as the official
DCASE code does."""

from __future__ import annotations

import json
import shutil

import dcase_reference as R
import numpy as np
import pandas as pd
import pytest
from test_baselines import CLIPS, make_scenes_and_features
from test_report import fake_eval
from typer.testing import CliRunner

from ssl_toolkit.analysis import metrics as M
from ssl_toolkit.analysis.frames import label_frames
from ssl_toolkit.cli import app
from ssl_toolkit.core.artifacts import ArtifactError
from ssl_toolkit.evaluation.evaluate import (
    CONFIDENCE_KEYS,
    Frames,
    score_predictions,
    write_eval,
)
from ssl_toolkit.features.store import open_features
from ssl_toolkit.testing import random_directions

runner = CliRunner()
FS = 16000
SYNTH = ["--n-clips", "3", "--clip-seconds", "1", "--fs", str(FS), "--subsets", "ov1,ov2"]


def ssl(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"ssl {' '.join(map(str, args))} failed:\n{res.output}"
    return res


@pytest.fixture(scope="module")
def mic(tmp_path_factory):
    """Two 1 s MIC scenes (one and two sources), features with K = 2 slots, and two
    baselines through the CLI: SRP-PHAT told the count, MUSIC estimating it."""
    tmp = tmp_path_factory.mktemp("extras")
    scenes, feats = make_scenes_and_features(tmp, CLIPS, np.random.default_rng(0))
    known = ssl("baseline", scenes, tmp / "known", "--data", feats, "--method", "srp")
    est = ssl("baseline", scenes, tmp / "est", "--data", feats, "--method", "music",
              "--n-sources", "estimate")  # fmt: skip
    return {"tmp": tmp, "scenes": scenes, "feats": feats, "known": tmp / "known",
            "est": tmp / "est", "known_out": known.output, "est_out": est.output}  # fmt: skip


def _doc(path):
    return json.loads((path / "metrics.json").read_text())


# ----------------------------------------------------------------------------- chance level


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 20])
def test_chance_level_is_the_exact_expectation(k):
    """E[min angle of k uniform directions] = integral_0^pi ((1 + cos x) / 2)^k dx, and the
    seeded Monte Carlo of the same frames (chance_oracle_error) scatters around it."""
    x = np.linspace(0, np.pi, 400001)
    want = np.degrees(np.trapezoid(((1 + np.cos(x)) / 2) ** k, x))
    assert M.chance_oracle_deg(k) == pytest.approx(want, abs=1e-6)
    rng = np.random.default_rng(k)
    t = random_directions(rng, (40000, 2))
    active = rng.random((40000, 2)) < 0.7
    assert M.chance_oracle_error(t, active, k, seed=1) == pytest.approx(want, abs=0.5)
    assert np.isnan(M.chance_oracle_deg(k, np.zeros((3, 2), bool)))  # no source: no level
    with pytest.raises(ValueError):
        M.chance_oracle_deg(0)


def test_score_predictions_puts_the_chance_level_beside_the_oracle_error():
    """Every subset with sources, for the method's K, whatever the frames; right after
    ``oracle_deg`` (the column order of metrics.csv); NaN where the oracle error is NaN."""
    rng = np.random.default_rng(0)
    n, k = 30, 4
    targets = random_directions(rng, (n, 2))
    active = np.zeros((n, 2), bool)
    active[:20, 0] = True  # frames 20..29 of clip "b" (ov2) are silent
    fr = Frames(random_directions(rng, (n, k)), np.ones((n, k)), np.ones((n, k), bool), targets,
                active, np.repeat(["a", "b"], [10, 20]), np.arange(n),
                np.repeat(["ov1", "ov2"], [10, 20]))  # fmt: skip
    scores = score_predictions(fr, 0.5, 10, scored=False)
    for s in ("D1", "D2", "overall"):
        keys = list(scores[s])
        assert keys[keys.index("oracle_deg") + 1] == "chance_oracle_deg"
        assert (
            scores[s]["chance_oracle_deg"]
            == M.chance_oracle_deg(k)
            == pytest.approx(49.22, abs=0.01)  # 180 * 70 / 256
        )
    fr.active[:] = False
    assert np.isnan(score_predictions(fr, 0.5, 10, scored=False)["overall"]["chance_oracle_deg"])


def test_baseline_and_report_show_the_chance_level(mic, tmp_path):
    """metrics.json and metrics.csv hold it per subset, ssl baseline's table shows it, ssl
    report's table (terminal, report.md, report.csv) puts it next to the oracle error."""
    for name in ("known", "est"):
        doc = _doc(mic[name])
        assert doc["K"] == 2
        for s in ("D1", "D2", "overall"):
            assert doc[s]["chance_oracle_deg"] == pytest.approx(67.5)  # pi * C(4, 2) / 16
            assert doc[s]["oracle_deg"] < 30  # far below chance
        csv = pd.read_csv(mic[name] / "metrics.csv")
        cols = list(csv.columns)
        assert cols[cols.index("oracle_deg") + 1] == "chance_oracle_deg"
        assert "chance°" in mic[f"{name}_out"] and "67.50" in mic[f"{name}_out"]
    res = ssl("report", mic["known"], mic["est"], "--out", tmp_path / "rep")
    assert "chance°" in res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    head = [c.strip() for c in md.splitlines()[2].strip("|").split("|")]
    assert head[head.index("oracle (deg)") + 1] == "chance oracle (deg)"
    assert "chance oracle" in md.split("Definitions:")[1]  # and its definition under the table
    table = pd.read_csv(tmp_path / "rep" / "report.csv")
    assert np.allclose(table["chance oracle (deg)"], 67.5)


def test_demo_uses_the_same_chance_level():
    """The demo's table reads ssl eval's value; an eval made before it was written gets the
    same number filled in (NaN where there is no oracle error)."""
    from ssl_toolkit.experiments.demo import TABLE, add_chance_level

    doc = {"K": 5, "D1": {"oracle_deg": 12.0}, "D3": {"oracle_deg": float("nan")},
           "overall": {"oracle_deg": 12.0, "chance_oracle_deg": 44.0}}  # fmt: skip
    add_chance_level(doc)
    assert doc["D1"]["chance_oracle_deg"] == M.chance_oracle_deg(5)
    assert np.isnan(doc["D3"]["chance_oracle_deg"])
    assert doc["overall"]["chance_oracle_deg"] == 44.0  # written by ssl eval: kept
    assert "chance_oracle_deg" in TABLE


# ----------------------------------------------------------------------------- no scores


def test_count_only_baseline_reports_no_confidence_metric(mic, tmp_path):
    """ssl baseline --n-sources estimate: a count, no confidences: no ECE (or any confidence
    metric) in metrics.json or metrics.csv, and a dash in ssl report beside a scored method's
    number; its frame recall (a count estimate) is still there."""
    doc = _doc(mic["est"])
    assert doc["scored"] is False and doc["n_sources"] == "estimate"
    for s in ("D1", "D2", "overall"):
        assert not set(CONFIDENCE_KEYS) & set(doc[s]), doc[s].keys()
        assert 0 <= doc[s]["frame_recall"] <= 1  # counts: recall reported
    assert "thresholds_val" not in doc and "calibration_val" not in doc
    assert not set(CONFIDENCE_KEYS) & set(pd.read_csv(mic["est"] / "metrics.csv").columns)
    known = _doc(mic["known"])
    assert known["scored"] is False and "ece" not in known["overall"]
    assert known["overall"]["frame_recall"] is None  # count given: no recall (NaN -> null)
    # beside a scored method (which has an ECE), the baseline's cell is a dash
    scored = fake_eval(tmp_path / "rmcl", "rmcl", 5, 0, 0.05)
    ssl("report", mic["est"], scored, "--out", tmp_path / "rep", "--allow-mixed")
    table = pd.read_csv(tmp_path / "rep" / "report.csv")
    ece = table.set_index(["method", "subset"])["ECE"]
    assert np.isnan(ece[("music", "overall")]) and np.isfinite(ece[("rmcl", "overall")])
    md = (tmp_path / "rep" / "report.md").read_text().splitlines()
    head = [c.strip() for c in md[2].strip("|").split("|")]
    row = next(r for r in md if "| music |" in r and "| overall |" in r)
    assert [c.strip() for c in row.strip("|").split("|")][head.index("ECE")] == "-"


def test_write_eval_drops_confidence_metrics_of_a_method_without_scores(tmp_path):
    """The rule holds in the common path, whoever computed the numbers: an unscored method's
    eval never carries ECE, a calibrated EMD or a threshold comparison."""
    rng = np.random.default_rng(3)
    n, k = 12, 3
    fr = Frames(random_directions(rng, (n, k)), np.ones((n, k)), np.ones((n, k), bool),
                random_directions(rng, (n, 1)), np.ones((n, 1), bool), np.repeat("c", n),
                np.arange(n), np.repeat("ov1", n))  # fmt: skip
    scores = score_predictions(fr, 0.5, 10, scored=True)  # as if it had scores
    assert "ece" in scores["overall"]
    doc = write_eval(tmp_path, fr, "wta", 0.5, scores, False, split="test",
                     thresholds_val={"fixed": {"threshold": 0.5}},
                     calibration_val={"temperature": 1.0})  # fmt: skip
    assert "ece" not in doc["overall"] and "thresholds_val" not in doc
    assert "calibration_val" not in doc and doc["split"] == "test"
    assert "ece" not in _doc(tmp_path)["overall"]
    assert "ece" not in pd.read_csv(tmp_path / "metrics.csv").columns


# ----------------------------------------------------------------------------- float64 labels


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Tiny synthesized FOA scenes (1 and 2 sources) and their features."""
    tmp = tmp_path_factory.mktemp("f64")
    ssl("prep", "synth", tmp / "scenes", *SYNTH, "--seed", 3)
    ssl("prep", "features", tmp / "scenes", tmp / "feats")
    return tmp


def _exact_le(t, a, clip_id, frame, seg_frames):
    """LE_CD of hyps = the references ``t`` (float64 arrays), by dcase_seld and by the
    official code's transcription (tests/dcase_reference.py, Cartesian distance)."""
    seg = M.segment_ids(clip_id, frame, seg_frames)
    ours = M.dcase_seld(t, a, t, a, seg)["LE_CD_deg"]
    clips = []
    for c in dict.fromkeys(np.asarray(clip_id).tolist()):
        sel = np.flatnonzero(clip_id == c)
        sel = sel[np.argsort(frame[sel])]
        assert np.array_equal(frame[sel], np.arange(len(sel)))
        d = R.frame_dict(t[sel], a[sel], np.zeros(a[sel].shape, int))
        clips.append((d, d, len(sel)))
    official = R.scores(R.official_metrics(clips, seg_frames, 1))["LE_CD_deg"]
    return ours, official


def test_features_store_label_directions_in_float64(synth):
    fs = open_features(synth / "feats")
    assert fs.directions.dtype == np.float64
    lab = label_frames(fs, fs.rows())
    assert lab["targets"].dtype == np.float64
    u = lab["targets"][lab["active"]]
    assert len(u) and np.abs(np.linalg.norm(u, axis=-1) - 1).max() < 1e-15


def test_exact_predictions_score_zero_localization_error(synth):
    """hyps = the stored references of ssl prep features: LE_CD is 0 to 1e-9, as the
    official code's transcription says (to 1e-9)."""
    fs = open_features(synth / "feats")
    lab = label_frames(fs, fs.rows())
    args = (lab["targets"], lab["active"], lab["clip_id"], lab["frame"])
    ours, official = _exact_le(*args, fs.spec.segment_frames(1.0))
    assert lab["active"].sum() > 50
    assert ours == pytest.approx(official, abs=1e-9)
    assert ours == pytest.approx(0.0, abs=1e-9)


def test_float32_references_were_what_cost_le_cd():
    """Arbitrary directions (interpolated moving sources, imported labels): in float64 an
    exact prediction scores LE_CD below 2e-6 degrees (arccos of a dot product one ulp below
    1), the official code's value to 1e-9; rounded to float32, as stored before, the same
    predictions scored about 0.006 degrees (up to 0.03 per match)."""
    rng = np.random.default_rng(5)
    n = 400
    t = random_directions(rng, (n, 2)).astype(np.float64)
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    a = rng.random((n, 2)) < 0.8
    clip, frame = np.repeat(["a", "b"], n // 2), np.tile(np.arange(n // 2), 2)
    ours, official = _exact_le(t, a, clip, frame, 50)
    assert ours == pytest.approx(official, abs=1e-9) and ours < 2e-6
    t32 = t.astype(np.float32).astype(np.float64)
    old, official32 = _exact_le(t32, a, clip, frame, 50)
    assert old == pytest.approx(official32, abs=1e-9) and old > 1e-3


def test_old_features_with_float32_directions_are_still_read(synth, mic, tmp_path):
    """No schema change: an artifact written before (float32 directions.npy) opens, scores
    and baselines as before; any other dtype is damage, named in one line."""
    old = tmp_path / "old"
    shutil.copytree(synth / "feats", old)
    d = np.load(old / "directions.npy")
    np.save(old / "directions.npy", d.astype(np.float32))
    fs = open_features(old)
    assert fs.directions.dtype == np.float32
    assert label_frames(fs, fs.rows())["targets"].dtype == np.float64
    np.save(old / "directions.npy", d.astype(np.float16))
    with pytest.raises(ArtifactError, match=r"directions\.npy: holds float16 .* expected float64 "
                       r"or float32"):  # fmt: skip
        open_features(old)
    # a baseline on features with float32 directions (as written before)
    feats32 = tmp_path / "feats32"
    shutil.copytree(mic["feats"], feats32)
    np.save(feats32 / "directions.npy", np.load(feats32 / "directions.npy").astype(np.float32))
    ssl("baseline", mic["scenes"], tmp_path / "bl32", "--data", feats32, "--method", "srp")
    assert _doc(tmp_path / "bl32")["overall"]["oracle_deg"] == pytest.approx(
        _doc(mic["known"])["overall"]["oracle_deg"], abs=1e-3
    )
