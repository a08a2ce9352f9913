"""ssl report: one table across eval artifacts, Markdown and CSV."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ssl_toolkit.core.artifacts import ArtifactError, build_artifact
from ssl_toolkit.evaluation.evaluate import Frames, score_predictions, write_eval
from ssl_toolkit.evaluation.report import make_report
from ssl_toolkit.testing import random_directions


def fake_eval(path, method, k, seed, spread, scored=True, features=None, run=None, **extra):
    """An eval artifact of predictions = targets plus noise (larger spread = worse).

    ``scored=False``: every confidence 1, as a WTA model without scores."""
    rng = np.random.default_rng(seed)
    n = 60
    targets = random_directions(rng, (n, 3))
    active = np.zeros((n, 3), bool)
    nsrc = np.repeat([1, 2, 3], n // 3)
    active[np.arange(3)[None] < nsrc[:, None]] = True
    hyps = random_directions(rng, (n, k))
    hyps[:, :3] = targets + spread * rng.normal(size=targets.shape)
    hyps /= np.linalg.norm(hyps, axis=-1, keepdims=True)
    conf = np.zeros((n, k), np.float32)
    conf[:, :3] = active
    if not scored:
        conf[:] = 1.0
    fr = Frames(
        hyps,
        conf,
        np.ones(conf.shape, bool),
        targets,
        active,
        np.repeat(["c1", "c2", "c3"], n // 3),
        np.tile(np.arange(n // 3), 3),
        np.repeat(["ov1", "ov2", "ov3"], n // 3),
    )
    inputs = [m for m in (features, run) if m is not None]
    with build_artifact(path, "eval", {"method": method}, inputs) as b:
        scores = score_predictions(fr, 0.5, 10, scored)
        write_eval(
            b.dir,
            fr,
            method,
            0.5,
            scores,
            scored,
            thresholds_val={"fixed": {"threshold": 0.5, "F20": 0.4}},
            split="test",
            **extra,
        )
    return path


def test_report_table_compares_methods(tmp_path):
    a = fake_eval(tmp_path / "good", "rmcl", 5, 0, 0.01)
    b = fake_eval(tmp_path / "bad", "srp", 3, 1, 0.5)
    table = make_report([a, b], tmp_path / "rep")
    assert list(table["subset"]) == ["D1", "D2", "D3", "overall"] * 2
    assert list(table["K"]) == [5] * 4 + [3] * 4
    ov = table[table.subset == "overall"].set_index("method")
    assert ov.loc["rmcl", "oracle (deg)"] < ov.loc["srp", "oracle (deg)"]
    csv = pd.read_csv(tmp_path / "rep" / "report.csv")
    assert {
        "oracle (deg)",
        "EMD (deg)",
        "Hungarian (deg)",
        "frame recall",
        "F20",
        "LE_CD (deg)",
    } <= set(csv.columns)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.count("| good | rmcl | 5 |") == 4 and "## Detection thresholds" in md
    with pytest.raises(ArtifactError, match="--force"):
        make_report([a], tmp_path / "rep")
    assert len(make_report([a], tmp_path / "rep", force=True)) == 4


def test_report_rejects_non_eval(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ArtifactError, match="ssl eval"):
        make_report([tmp_path / "x"], tmp_path / "rep")


def test_report_cli(tmp_path):
    from ssl_toolkit.cli import app

    a = fake_eval(tmp_path / "good", "rmcl", 5, 0, 0.01)
    res = CliRunner().invoke(app, ["report", str(a), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "rmcl" in res.output and (tmp_path / "r" / "report.md").is_file()


def test_unscored_methods_have_no_frame_recall(tmp_path):
    """All K hypotheses of a WTA model count as detected: no source count, no frame recall
    (a dash in the report, null in metrics.json), but Hungarian error and F20 are scored."""
    import json

    a = fake_eval(tmp_path / "wta", "wta", 5, 0, 0.01, scored=False)
    doc = json.loads((a / "metrics.json").read_text())
    assert doc["overall"]["frame_recall"] is None and doc["overall"]["frame_recall_sum"] is None
    assert doc["overall"]["hungarian_deg"] is not None
    b = fake_eval(tmp_path / "rmcl", "rmcl", 5, 0, 0.01)
    table = make_report([a, b], tmp_path / "rep").set_index(["method", "subset"])
    assert np.isnan(table.loc[("wta", "overall"), "frame recall"])
    assert table.loc[("rmcl", "overall"), "frame recall"] == 1.0
    md = (tmp_path / "rep" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| wta | wta | 5 | - | overall"))
    head = [c.strip() for c in md.splitlines()[2].split("|")]
    assert row.split("|")[head.index("frame recall")].strip() == "-"


def test_report_labels_rows_uniquely_and_names_the_data(tmp_path):
    """Two evals both called `ev` get `a/ev` and `b/ev`; rMCL* is shown as such; the data
    column names the features and split; the report is an artifact with a manifest."""
    import json

    from ssl_toolkit.testing import make_features_artifact

    feats = make_features_artifact(tmp_path / "feats", n_chunks=6, bins=8)
    a = fake_eval(tmp_path / "a" / "ev", "rmcl", 5, 0, 0.01, features=feats, label="rmcl*")
    b = fake_eval(tmp_path / "b" / "ev", "pit", 3, 1, 0.1, features=feats)
    c = fake_eval(tmp_path / "c", "srp", 3, 1, 0.1, features=feats)
    table = make_report([a, b, c], tmp_path / "rep")
    ov = table[table.subset == "overall"]
    assert list(ov["eval"]) == ["a/ev", "b/ev", "c"]
    assert list(ov["method"]) == ["rmcl*", "pit", "srp"]
    assert set(ov["data"]) == {"feats:test"}
    man = json.loads((tmp_path / "rep" / "manifest.json").read_text())
    assert man["kind"] == "report" and len(man["inputs"]) == 3
    assert "| a/ev | rmcl* | 5 | feats:test | D1 |" in (tmp_path / "rep" / "report.md").read_text()


def test_report_refuses_to_mix_data_unless_asked(tmp_path):
    from ssl_toolkit.testing import make_features_artifact

    f1 = make_features_artifact(tmp_path / "f1", n_chunks=6, bins=8, seed=1)
    f2 = make_features_artifact(tmp_path / "f2", n_chunks=6, bins=8, seed=2)
    a = fake_eval(tmp_path / "a", "rmcl", 5, 0, 0.01, features=f1)
    b = fake_eval(tmp_path / "b", "pit", 3, 1, 0.1, features=f2)
    c = fake_eval(tmp_path / "c", "srp", 3, 2, 0.1, features=f2)
    with pytest.raises(ArtifactError, match=r"different data.*a \(f1:test\).*--allow-mixed") as e:
        make_report([a, b, c], tmp_path / "rep")
    # how to make them comparable: score on the features most of them used (f2)
    assert f"--data {tmp_path / 'f2'} --split test" in str(e.value)
    assert "ssl baseline SCENES OUT" in str(e.value)
    assert not (tmp_path / "rep").exists()
    table = make_report([a, b], tmp_path / "rep", allow_mixed=True)
    assert set(table["data"]) == {"f1:test", "f2:test"}


def test_report_names_a_damaged_metrics_file(tmp_path):
    a = fake_eval(tmp_path / "a", "rmcl", 5, 0, 0.01)
    (a / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match=r"a/metrics.json: not an eval's metrics"):
        make_report([a], tmp_path / "rep")
    (a / "metrics.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(ArtifactError, match=r"a/metrics.json: unreadable"):
        make_report([a], tmp_path / "rep")


def test_report_aggregates_seeds_of_the_same_method_and_data(tmp_path):
    """Three rMCL runs that differ only in their seed: one row of mean ± std (ddof 1) and
    the seed count; a run with another option is not pooled with them."""
    from ssl_toolkit.core.artifacts import read_manifest
    from ssl_toolkit.testing import make_features_artifact

    feats = make_features_artifact(tmp_path / "feats", n_chunks=6, bins=8)

    def run(name, **cfg):
        with build_artifact(tmp_path / "runs" / name, "run", {"method": "rmcl", **cfg}):
            pass
        return read_manifest(tmp_path / "runs" / name, "run")

    evals = [
        fake_eval(
            tmp_path / f"rmcl_s{s}",
            "rmcl",
            5,
            s,
            0.05 * (s + 1),
            features=feats,
            run=run(f"s{s}", seed=s, lr=1e-3),
        )  # fmt: skip
        for s in range(3)
    ]
    other = fake_eval(tmp_path / "rmcl_lr", "rmcl", 5, 0, 0.1, features=feats,
                      run=run("lr", seed=0, lr=1e-2))  # fmt: skip
    table = make_report(evals + [other], tmp_path / "rep")
    seeds = pd.read_csv(tmp_path / "rep" / "seeds.csv")
    ov = seeds[seeds.subset == "overall"]
    assert len(ov) == 1 and ov["seeds"].iloc[0] == 3 and "rmcl_lr" not in ov["evals"].iloc[0]
    per_seed = table[(table.subset == "overall") & table["eval"].str.startswith("rmcl_s")]
    col = "oracle (deg)"
    want = f"{per_seed[col].mean():.2f} ± {per_seed[col].std(ddof=1):.2f}"
    assert ov[col].iloc[0] == want
    assert "## Mean ± standard deviation over seeds" in (tmp_path / "rep" / "report.md").read_text()
