"""DCASE result files: decimation to 100 ms label frames, the round trip, scoring them with
`ssl eval --dcase-csv` like a model, `ssl eval --dcase-out` / `ssl predict --dcase`, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ssl_toolkit.analysis.dcase_csv import (
    DcaseCsvLocalizer,
    StreamDecimator,
    read_results,
    representatives,
    result_tables,
    write_results,
)
from ssl_toolkit.analysis.frames import Frames, label_frames
from ssl_toolkit.cli import app
from ssl_toolkit.core.errors import DataError, UserError
from ssl_toolkit.core.geometry import sph_to_unit
from ssl_toolkit.core.labels import read_metadata
from ssl_toolkit.evaluation.evaluate import score_predictions
from ssl_toolkit.features.store import open_features

HOP = 0.02  # the features' hop (make_features_artifact: 320 samples at 16 kHz)
runner = CliRunner()


def reference_representative(frames, hop_s):
    """label frame -> its representative frame among ``frames`` (one clip), by a plain loop:
    the frame nearest the label frame's centre, the earlier on a tie."""
    best = {}
    for t in sorted(frames):
        lf = int(np.floor(t * hop_s / 0.1 + 1e-9))
        off = abs(t * hop_s - (lf + 0.5) * 0.1)
        if lf not in best or off < best[lf][1] - 1e-9:
            best[lf] = (t, off)
    return {lf: t for lf, (t, _) in best.items()}


def held(clip_id, frame, hyps, detected, hop_s):
    """The detections of each label frame's representative frame, packed into the first slots
    and held over the label frame's frames (loops: independent of the library)."""
    n = len(frame)
    out = [[] for _ in range(n)]
    for clip in np.unique(clip_id):
        idx = np.flatnonzero(clip_id == clip)
        reps = reference_representative(frame[idx].tolist(), hop_s)
        row_of = {int(frame[i]): i for i in idx}
        for i in idx:
            r = row_of[reps[int(np.floor(frame[i] * hop_s / 0.1 + 1e-9))]]
            out[i] = [hyps[r, k] for k in np.flatnonzero(detected[r])]
    k = max(1, max(len(o) for o in out))
    h = np.zeros((n, k, 3), np.float32)
    h[..., 0] = 1
    v = np.zeros((n, k), bool)
    for i, o in enumerate(out):
        if o:
            h[i, : len(o)], v[i, : len(o)] = o, True
    return h, v


def angle_deg(a, b):
    """Great-circle angle in degrees, well conditioned near 0 (arccos of a float32 dot
    product is not: its rounding alone reads as 0.02 degree)."""
    chord = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)
    return np.degrees(2 * np.arcsin(np.clip(chord / 2, 0, 1)))


def test_decimation_picks_the_frame_nearest_each_label_frame_centre():
    t = np.arange(23)
    assert np.flatnonzero(representatives(np.zeros(23), t, 0.02)).tolist() == [2, 7, 12, 17, 22]
    # 25 ms hop: frame 4l + 2 is exactly at the centre; 40 ms: 2 or 3 frames per label frame
    assert np.flatnonzero(representatives(np.zeros(23), t, 0.025)).tolist()[:3] == [2, 6, 10]
    assert np.flatnonzero(representatives(np.zeros(10), np.arange(10), 0.04)).tolist() == [
        1, 4, 6, 9
    ]  # fmt: skip
    # frames of a split need not start at 0 nor be contiguous; clips are independent
    frames = np.r_[25:50, 0:4, 60:63]
    clips = np.r_[["b"] * 25, ["a"] * 7]
    got = frames[representatives(clips, frames, 0.02)]
    want = [reference_representative(frames[clips == c].tolist(), 0.02) for c in ("b", "a")]
    assert sorted(got.tolist()) == sorted(v for w in want for v in w.values())
    assert {2, 27, 47, 62} <= set(got.tolist()) and 3 not in got  # 0..3: frame 2 is nearest


@pytest.mark.parametrize("block", [3, 7, 25])
def test_streamed_decimation_equals_whole_recording(rng, block):
    n, k = 103, 3
    hyps = sph_to_unit(rng.uniform(-np.pi, np.pi, (n, k)), rng.uniform(-1.5, 1.5, (n, k)))
    det = rng.random((n, k)) < 0.5
    whole = result_tables(np.zeros(n, "U1"), np.arange(n), hyps, det, HOP)[""]
    s = StreamDecimator(HOP)
    for t0 in range(0, n, block):
        s.add(np.arange(t0, min(n, t0 + block)), hyps[t0 : t0 + block], det[t0 : t0 + block])
    pd.testing.assert_frame_equal(s.table(), whole)
    assert whole["frame"].max() == 20  # (103 frames = 20.6 label frames: the last one cut short)


def test_round_trip_gives_the_label_frame_directions_back(tmp_path, rng):
    """Per-frame predictions of two clips -> CSVs -> the localizer over the same frames: each
    frame holds its label frame's representative detections, within 0.01 degree."""
    frame = np.r_[0:23, 25:75]
    clip = np.r_[["c1"] * 23, ["c2"] * 50]
    n, k = len(frame), 4
    az = rng.uniform(-np.pi, np.pi, (n, k))
    el = rng.uniform(-np.pi / 2, np.pi / 2, (n, k))
    az[:5, 0], el[:5, 1], el[5:10, 2] = np.pi, np.pi / 2, -np.pi / 2  # wrap and poles
    az[10:15, 3] = -np.pi + 1e-6
    hyps = sph_to_unit(az, el).astype(np.float32)
    det = rng.random((n, k)) < 0.6
    det[30:40] = False  # label frames with nothing detected
    paths = write_results(tmp_path / "csv", result_tables(clip, frame, hyps, det, HOP))
    assert [p.name for p in paths] == ["c1.csv", "c2.csv"]
    tables = read_results(tmp_path / "csv", clip)
    loc = DcaseCsvLocalizer(tables, HOP, "rt")
    got = loc.localize((clip, frame))
    want_h, want_v = held(clip, frame, hyps, det, HOP)
    assert loc.K == want_v.sum(1).max()
    np.testing.assert_array_equal(got.valid, want_v)
    assert angle_deg(got.hyps[want_v], want_h[want_v]).max() < 0.01
    assert (got.conf[got.valid] == 1).all() and (got.conf[~got.valid] == 0).all()
    rows = tables["c2"]
    assert set(rows["source"]) <= set(range(k)) and (rows["class"] == 0).all()


def test_classes_hook_and_clip_names(tmp_path):
    hyps = np.tile(np.array([1.0, 0, 0], np.float32), (5, 2, 1))
    det = np.ones((5, 2), bool)
    t = result_tables(["x"] * 5, np.arange(5), hyps, det, HOP, classes=np.full((5, 2), 7))
    assert t["x"]["class"].tolist() == [7, 7] and t["x"]["source"].tolist() == [0, 1]
    with pytest.raises(DataError, match="cannot name"):
        write_results(tmp_path, {"../up": t["x"]})
    with pytest.raises(UserError, match="coarser"):
        result_tables(["x"] * 5, np.arange(5), hyps, det, 0.2)


# ----------------------------------------------------------------------------- scoring


def reference_csvs(feats, directory, split="test"):
    """Result files holding the features' reference labels (decimated) of a split."""
    fs = open_features(feats.path)
    lab = label_frames(fs, fs.rows(split))
    tables = result_tables(lab["clip_id"], lab["frame"], lab["targets"], lab["active"], HOP)
    write_results(directory, tables)
    return fs, lab


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_reference_labels_as_result_files_score_perfectly(tmp_path, tiny_features):
    fs, lab = reference_csvs(tiny_features, tmp_path / "ref")
    res = invoke("eval", "--dcase-csv", tmp_path / "ref", tmp_path / "ev", "--data",
                 tiny_features.path, "--name", "reference")  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert doc["label"] == "reference" and doc["method"] == "dcase_csv" and not doc["scored"]
    assert doc["K"] == fs.max_sources and doc["split"] == "test"
    subsets = [s for s in ("D1", "D2", "D3") if s in doc]
    assert len(subsets) == 3
    for s in [*subsets, "overall"]:
        m = doc[s]
        assert m["oracle_deg"] < 0.01 and m["hungarian_deg"] < 0.01 and m["LE_CD_deg"] < 0.01
        assert m["F20"] == pytest.approx(1.0) and m["ER20"] == pytest.approx(0.0, abs=1e-12)
        assert m["LR_CD"] == pytest.approx(1.0) and m["frame_recall"] is not None
        assert "ece" not in m  # no scores: no calibration
    assert doc["overall"]["frames"] == len(lab["frame"])
    with np.load(tmp_path / "ev" / "predictions.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["detected"], z["valid"])
    # the report tabulates it with the models, named NAME
    rep = invoke("report", tmp_path / "ev", "--out", tmp_path / "rep")
    assert rep.exit_code == 0, rep.output
    table = pd.read_csv(tmp_path / "rep" / "report.csv")
    assert set(table["method"]) == {"reference"}


def test_model_eval_written_and_scored_back_gives_its_decimated_detections(tmp_path, tiny_features):
    """The check: E1 = `ssl eval RUN --dcase-out`; E2 = `ssl eval --dcase-csv E1/dcase`.
    E2's predictions are E1's detections decimated and held (computed here by loops from
    E1's predictions.npz): the same detections exactly, directions within 0.01 degree;
    and scored by the same function, every count-based metric (F20, ER20, LR_CD, frame
    recall) is equal and every angle (oracle, EMD, Hungarian, LE_CD) within 0.01 degree."""
    from export_fixtures import make_run

    fs = open_features(tiny_features.path)
    run, _ = make_run(tmp_path / "run", kwargs={"channels": 8, "bins": fs.shape[2], "K": 3},
                      feature_params=fs.spec.to_dict())  # fmt: skip
    e1, e2 = tmp_path / "e1", tmp_path / "e2"
    toml = tmp_path / "eval.toml"
    toml.write_text("[eval]\ncalibrate = false\n")  # no val pass: a faster test
    res = invoke("eval", run.path, e1, "--data", tiny_features.path, "--dcase-out",
                 "--config", toml)  # fmt: skip
    assert res.exit_code == 0, res.output
    clips = sorted(set(fs.index.clip_id.iloc[fs.rows("test")]))
    assert sorted(p.stem for p in (e1 / "dcase").iterdir()) == clips
    res = invoke("eval", "--dcase-csv", e1 / "dcase", e2, "--data", tiny_features.path)
    assert res.exit_code == 0, res.output

    with np.load(e1 / "predictions.npz", allow_pickle=False) as z:
        p1 = {k: z[k] for k in z.files}
    assert 0.05 < p1["detected"].mean() < 0.95  # detections vary from frame to frame
    h, v = held(p1["clip_id"], p1["frame"], p1["hyps"], p1["detected"], HOP)
    with np.load(e2 / "predictions.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["valid"], v)
        assert angle_deg(z["hyps"][v], h[v]).max() < 0.01
    keys = ("targets", "active", "clip_id", "frame", "subset")
    direct = Frames(hyps=h, conf=v.astype(np.float32), valid=v, **{k: p1[k] for k in keys})
    want = score_predictions(direct, 0.5, fs.spec.segment_frames(1.0), False, counts=True)
    doc = json.loads((e2 / "metrics.json").read_text())
    assert doc["label"] == "dcase" and doc["K"] == v.shape[1]  # the folder's name by default
    for s, m in want.items():
        for key in ("F20", "ER20", "LR_CD", "frame_recall"):
            assert doc[s][key] == pytest.approx(m[key], abs=1e-12), (s, key)
        for key in ("oracle_deg", "emd_deg", "hungarian_deg", "LE_CD_deg"):
            assert doc[s][key] == pytest.approx(m[key], abs=0.01), (s, key)


# ----------------------------------------------------------------------------- bad input


def one_line_error(res, *needles):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1, res.output
    assert len(lines) == 1, res.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_result_folders_fail_with_one_line_and_leave_nothing(tmp_path, tiny_features):
    reference_csvs(tiny_features, tmp_path / "ref")
    files = sorted((tmp_path / "ref").iterdir())
    out = tmp_path / "ev"
    args = ("eval", "--dcase-csv", tmp_path / "ref", out, "--data", tiny_features.path)

    def leaves_nothing():
        assert not [p for p in tmp_path.iterdir() if out.name in p.name]

    good = files[1].read_text()
    files[1].write_text("0,0,0,10.0,20.0\n1,0,0,abc,20.0\n")  # malformed, line 2
    one_line_error(invoke(*args), files[1].name, "line 2")
    leaves_nothing()
    files[1].write_text("0,0,0,10.0,20.0\n1,0,0,-200.0,20.0\n3,0,0,0,0\n")  # out of range
    one_line_error(invoke(*args), files[1].name, "line 2", "azimuth")
    leaves_nothing()
    files[1].write_text(good)
    files[0].unlink()
    one_line_error(invoke(*args), f"{files[0].name} is missing")
    leaves_nothing()
    one_line_error(invoke(*args, "--threshold", "0.3"), "--threshold")
    one_line_error(invoke(*args, tmp_path / "more"), "one argument")
    one_line_error(invoke("eval", "--dcase-csv", tmp_path / "nope", out, "--data",
                          tiny_features.path), "not a directory")  # fmt: skip
    leaves_nothing()


def test_existing_output_needs_force_and_extra_files_warn_once(tmp_path, tiny_features):
    reference_csvs(tiny_features, tmp_path / "ref")
    out = tmp_path / "ev"
    args = ("eval", "--dcase-csv", tmp_path / "ref", out, "--data", tiny_features.path)
    assert invoke(*args, "--name", "a").exit_code == 0
    before = (out / "manifest.json").read_text()
    one_line_error(invoke(*args, "--name", "b"), "--force")
    assert (out / "manifest.json").read_text() == before
    assert invoke(*args, "--name", "a").exit_code == 0  # same inputs and options: reused
    assert (out / "manifest.json").read_text() == before
    res = invoke(*args, "--name", "b", "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["label"] == "b"
    # the folder read is an input: never written over or into, even with --force
    res = invoke("eval", "--dcase-csv", tmp_path / "ref", tmp_path / "ref" / "x", "--data",
                 tiny_features.path, "--force")  # fmt: skip
    one_line_error(res, "overlaps")
    # other files of the folder: one warning line naming them, then the scores
    (tmp_path / "ref" / "clip999.csv").write_text("0,0,0,0,0\n")
    (tmp_path / "ref" / "notes.txt").write_text("hello")
    res = invoke(*args, "--name", "b", "--force")
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "clip999.csv" in warn[0] and "notes.txt" in warn[0]


# ----------------------------------------------------------------------------- predict


def test_predict_writes_the_decimated_detections_as_a_result_file(tmp_path):
    """`ssl predict --dcase`, blocks of 14 frames (chunks of 7: label frames straddle them):
    each row is a detected hypothesis of its label frame's middle frame in <stem>_hypotheses.csv."""
    pytest.importorskip("ssl_toolkit.data_prep.featurize")
    import soundfile as sf
    from export_fixtures import FS, PARAMS, make_run

    rng = np.random.default_rng(0)
    audio = rng.normal(scale=1e-4, size=(4, 2 * FS))
    audio[:, FS:] += rng.normal(scale=0.3, size=(4, FS))
    wav = tmp_path / "rec.wav"
    sf.write(str(wav), audio.T, FS, subtype="FLOAT")
    run, _ = make_run(tmp_path / "run", name="test_energy", kwargs={}, K=2,
                      feature_params={**PARAMS, "chunk_frames": 7})  # fmt: skip
    out = tmp_path / "o"
    res = invoke("predict", run.path, wav, "--out", out, "--dcase", "--block-seconds", "0.3")
    assert res.exit_code == 0, res.output
    assert str(out / "dcase" / "rec.csv") in res.output
    rows = read_metadata(out / "dcase" / "rec.csv")
    hyp = pd.read_csv(out / "rec_hypotheses.csv")
    n_frames = hyp.frame.max() + 1
    reps = reference_representative(range(n_frames), HOP)
    det = hyp[(hyp.detected == 1) & hyp.frame.isin(list(reps.values()))]
    assert len(rows) == len(det) > 10
    lf = np.floor(det.frame.to_numpy() * HOP / 0.1 + 1e-9).astype(int)
    np.testing.assert_array_equal(rows["frame"], lf)
    np.testing.assert_array_equal(rows["source"], det.hypothesis)
    np.testing.assert_allclose(rows["azimuth_deg"], det.azimuth_deg, atol=0.006)
    np.testing.assert_allclose(rows["elevation_deg"], det.elevation_deg, atol=0.006)
    (out / "rec.csv").unlink()
    one_line_error(
        invoke("predict", run.path, wav, "--out", out, "--dcase"), "dcase/rec.csv", "--force"
    )
