"""ssl eval end to end on a tiny features artifact with a constant model of our own."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ssl_toolkit.analysis import metrics
from ssl_toolkit.core.artifacts import ArtifactError
from ssl_toolkit.core.config import ConfigError
from ssl_toolkit.core.errors import UserError
from ssl_toolkit.evaluation.evaluate import EvalConfig, evaluate_run
from ssl_toolkit.features.store import open_features
from ssl_toolkit.models import register, save_model

DIRS = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
CONF = [0.9, 0.6, 0.1]


@register("_eval_test_const")
class ConstModel(torch.nn.Module):
    """Predicts the same K directions and confidences in every frame."""

    def __init__(self, dirs, conf):
        super().__init__()
        self.dirs = torch.nn.Parameter(torch.tensor(dirs))
        self.conf = torch.nn.Parameter(torch.tensor(conf))

    def forward(self, x):
        b, _, t, _ = x.shape
        k = self.dirs.shape[0]
        return self.dirs.expand(b, t, k, 3), self.conf.expand(b, t, k)


def make_run(path, feats, **extra):
    path.mkdir()
    model = ConstModel(DIRS, CONF)
    params = open_features(feats.path).spec.to_dict()
    save_model(
        path,
        model,
        "_eval_test_const",
        {"dirs": DIRS, "conf": CONF},
        method=extra.pop("method", "rmcl"),
        K=3,
        threshold=0.5,
        feature_params=params,
        **extra,
    )
    (path / "manifest.json").write_text(
        json.dumps({"kind": "run", "schema": 1, "config": {}, "fingerprint": "test", "extra": {}})
    )
    return path


@pytest.fixture
def evaluated(tmp_path, tiny_features):
    run = make_run(tmp_path / "run", tiny_features)
    man = evaluate_run(run, tiny_features.path, tmp_path / "eval", EvalConfig("test", plots=True))
    return tmp_path, run, man, tiny_features


def test_eval_artifact_matches_metrics_on_the_split(evaluated):
    tmp, _, man, feats = evaluated
    fs = open_features(feats.path)
    rows = fs.rows("test")
    t = fs.shape[1]
    with np.load(man.path / "predictions.npz", allow_pickle=False) as z:
        assert z["hyps"].shape == (len(rows) * t, 3, 3)
        np.testing.assert_array_equal(
            z["detected"], np.array(CONF)[None].repeat(len(rows) * t, 0) >= 0.5
        )
        np.testing.assert_array_equal(z["active"], fs.activity[rows].reshape(-1, 3))
        assert z["clip_id"].dtype.kind == "U"
        np.testing.assert_array_equal(z["frame"][:t], fs.index.start_frame[rows[0]] + np.arange(t))
    targets = fs.directions[rows].reshape(-1, 3, 3)
    active = fs.activity[rows].reshape(-1, 3)
    hyps = np.broadcast_to(np.array(DIRS), (len(active), 3, 3))
    doc = json.loads((man.path / "metrics.json").read_text())
    assert doc["method"] == "rmcl" and doc["scored"] and doc["K"] == 3 and doc["threshold"] == 0.5
    expect = metrics.oracle_error(hyps, targets, active)
    assert doc["overall"]["oracle_deg"] == pytest.approx(expect, rel=1e-5)
    conf = np.broadcast_to(np.array(CONF), (len(active), 3))
    assert doc["overall"]["emd_deg"] == pytest.approx(
        metrics.emd(hyps, conf, targets, active), rel=1e-5
    )
    # D2 = the ov2 chunks of the split
    ov2 = (fs.index.subset.iloc[rows] == "ov2").to_numpy()
    assert doc["D2"]["frames"] == ov2.sum() * t
    assert doc["D2"]["oracle_deg"] == pytest.approx(
        metrics.oracle_error(
            hyps[np.repeat(ov2, t)], targets[np.repeat(ov2, t)], active[np.repeat(ov2, t)]
        ),
        rel=1e-5,
    )
    # two detected hypotheses every frame: frame recall = share of frames with 2 sources
    assert doc["overall"]["frame_recall"] == pytest.approx((active.sum(1) == 2).mean())
    csv = (man.path / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("method,K,subset") and len(csv) == 1 + 4
    assert any(p.suffix == ".png" for p in (man.path / "plots").iterdir())
    assert "kappa_vmf" in doc and np.isfinite(doc["overall"]["nll_vmf"])
    # calibration: ECE of the constant confidences against the winners, a val temperature
    from ssl_toolkit.analysis.calibration import reliability, winner_labels

    win = winner_labels(hyps, targets, active)
    assert doc["overall"]["ece"] == pytest.approx(reliability(conf, win)["ece"], rel=1e-5)
    assert doc["calibration_val"]["temperature"] > 0 and "emd_deg_calibrated" in doc["overall"]
    assert (man.path / "plots" / "reliability.png").stat().st_size > 10_000
    assert set(doc["thresholds_val"]) == {"fixed", "grid", "sgl"}


def test_eval_reuses_and_refuses_to_overwrite(evaluated):
    tmp, run, man, feats = evaluated
    again = evaluate_run(run, feats.path, tmp / "eval", EvalConfig("test", plots=True))
    assert again.fingerprint == man.fingerprint
    with pytest.raises(ArtifactError, match="--force"):
        evaluate_run(run, feats.path, tmp / "eval", EvalConfig("test", 0.3))
    m = evaluate_run(run, feats.path, tmp / "eval", EvalConfig("test", 0.3), force=True)
    assert json.loads((m.path / "metrics.json").read_text())["threshold"] == 0.3


def test_eval_bad_options(tmp_path, tiny_features):
    run = make_run(tmp_path / "run", tiny_features)
    with pytest.raises(ConfigError, match="--split"):
        evaluate_run(run, tiny_features.path, tmp_path / "e1", EvalConfig("dev"))
    with pytest.raises(ArtifactError, match="ssl train"):
        evaluate_run(tmp_path, tiny_features.path, tmp_path / "e2")
    bad = make_run(tmp_path / "run2", tiny_features)
    meta = json.loads((bad / "model.json").read_text())
    meta["feature_params"]["fs"] = 48000
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="fs="):
        evaluate_run(bad, tiny_features.path, tmp_path / "e3")
    assert not (tmp_path / "e3").exists()


def test_eval_cli_prints_table(tmp_path, tiny_features):
    from ssl_toolkit.cli import app

    run = make_run(tmp_path / "run", tiny_features)
    res = CliRunner().invoke(
        app,
        [
            "eval",
            str(run),
            str(tmp_path / "ev"),
            "--data",
            str(tiny_features.path),
            "--learn-threshold",
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert "oracle" in res.output and f"{doc['overall']['oracle_deg']:.2f}" in res.output
    assert doc["threshold"] == pytest.approx(doc["thresholds_val"]["sgl"]["threshold"])
    res = CliRunner().invoke(
        app,
        [
            "eval",
            str(run),
            str(tmp_path / "ev2"),
            "--data",
            str(tiny_features.path),
            "--threshold",
            "2",
        ],
    )
    assert res.exit_code == 1 and "--threshold" in res.output


def test_an_export_scores_like_its_run(evaluated):
    """One localizer path: `ssl eval` on the TorchScript export of a run gives the run's
    metrics (and a method without scores gets no frame recall and no thresholds)."""
    from ssl_toolkit.inference.export import export_run

    tmp, run, man, feats = evaluated
    shape = list(open_features(feats.path).shape)
    run = make_run(tmp / "run_shaped", feats, input_shape=shape)
    exp = export_run(run, tmp / "export")
    m = evaluate_run(exp.path, feats.path, tmp / "eval_export", EvalConfig("test"))
    a = json.loads((man.path / "metrics.json").read_text())
    b = json.loads((m.path / "metrics.json").read_text())
    for key in ("oracle_deg", "emd_deg", "F20", "frame_recall"):
        assert b["overall"][key] == pytest.approx(a["overall"][key], rel=1e-6)
    unscored = make_run(tmp / "wta", feats, method="wta")
    doc = json.loads(
        (evaluate_run(unscored, feats.path, tmp / "e_wta").path / "metrics.json").read_text()
    )
    assert not doc["scored"] and doc["overall"]["frame_recall"] is None
    assert "thresholds_val" not in doc and doc["overall"]["F20"] is not None
