"""Label and DCASE result files as users and other systems really write them (issue 20).

Rules checked here, for every label or result reader:
- a file is read row by row (as the official DCASE reader): blank lines anywhere, CRLF or
  CR, a byte-order mark, a trailing comma, a header line, a distance in some rows only and
  the 4-field result rows are read; identical duplicate rows are kept once with a warning;
  anything else is one line naming the file, the line and what is wrong;
- an import checks its labels before anything is written: an empty label file is a warning
  naming it (every file empty is refused), a class index a later reader refuses is refused
  naming the CSV and line, radians are refused with a hint;
- ``ssl eval --dcase-csv`` scores sparse, empty and one-row files (EMD leaves out the frames
  without an estimate and ``metrics.json`` counts them), and refuses with a hint frames in
  20 ms units, radians, or a frame holding more rows than the memory bound.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ssl_toolkit.analysis import metrics as M
from ssl_toolkit.cli import app
from ssl_toolkit.core.errors import DataError
from ssl_toolkit.core.labels import read_labels, read_metadata

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(res, *patterns):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1, res.output
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert "Traceback" not in res.output
    for p in patterns:
        assert re.search(p, lines[0]), lines[0]


# ----------------------------------------------------------------------------- the readers

GOOD = [(0, 1, 0, 10.0, 20.0), (1, 1, 0, 11.0, 20.0), (1, 2, 0, -30.0, 5.0)]


def _rows(meta: pd.DataFrame) -> list[tuple]:
    cols = ["frame", "class", "source", "azimuth_deg", "elevation_deg"]
    return [tuple(r) for r in meta[cols].itertuples(index=False)]


@pytest.mark.parametrize(
    "text",
    [
        "\n0,1,0,10,20\n1,1,0,11,20\n1,2,0,-30,5\n",  # the tester's blank first line
        "0,1,0,10,20\n\n   \n1,1,0,11,20\n\n1,2,0,-30,5\n\n\n",  # blank lines anywhere
        "0,1,0,10,20\r\n1,1,0,11,20\r\n1,2,0,-30,5\r\n",  # CRLF
        "0,1,0,10,20\r1,1,0,11,20\r1,2,0,-30,5",  # CR, no final newline
        "\ufeff0,1,0,10,20\n1,1,0,11,20\n1,2,0,-30,5\n",  # byte-order mark
        "0,1,0,10,20,\n1,1,0,11,20,\n1,2,0,-30,5,\n",  # trailing commas
        "frame,class,source,azimuth,elevation\n0,1,0,10,20\n1,1,0,11,20\n1,2,0,-30,5\n",
        "0, 1, 0, 10.0, 20.0\n1 ,1 ,0 ,11 ,20\n1,2,0,-30,5\n",  # spaces around fields
        "1,2,0,-30,5\n0,1,0,10,20\n1,1,0,11,20\n",  # any row order
        "0,1,0,10,20,150\n1,1,0,11,20\n1,2,0,-30,5,\n",  # distance in some rows only
        "0,1,10,20\n1,1,11,20\n1,2,-30,5\n",  # 4 fields: frame,class,azimuth,elevation
    ],
)
def test_metadata_written_every_usual_way_reads_the_same(tmp_path, text):
    p = tmp_path / "m.csv"
    p.write_bytes(text.encode())
    assert _rows(read_metadata(p)) == sorted(GOOD)


def test_distance_per_row_and_duplicates(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("0,1,0,10,20,150\n1,1,0,11,20\n2,1,0,12,20,\n")
    assert read_metadata(p)["distance_m"].tolist()[0] == 1.5
    assert read_metadata(p)["distance_m"].isna().tolist() == [False, True, True]
    # identical rows: kept once, one warning naming the file and the first repeat
    p.write_text("0,1,0,10,20\n0,1,0,10,20\n1,1,0,11,20\n0,1,0,10,20\n")
    said = []
    m = read_metadata(p, warn=said.append)
    assert len(m) == 2 and len(said) == 1
    assert "m.csv" in said[0] and "2 identical duplicate" in said[0] and "line 2" in said[0]
    # two sources of one class in one frame, 4-field rows: sources 0 and 1
    p.write_text("0,1,10,20\n0,1,50,20\n")
    assert read_metadata(p)["source"].tolist() == [0, 1]
    # one (frame, class, source) with other values: refused, naming the line
    p.write_text("0,1,0,10,20\n0,1,0,12,20\n")
    with pytest.raises(DataError, match=r"m\.csv, line 2: frame 0 lists class 1 source 0"):
        read_metadata(p)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,1,0,10,20\n1,1,0,nan,20\n", r"line 2: .*'1,1,0,nan,20' \(azimuth 'nan' is not a"),
        ("0,1,0,10,inf\n", r"line 1: .*elevation 'inf' is not a finite number"),
        ("-1,1,0,10,20\n", r"line 1: .* must be >= 0"),
        ("0,1.5,0,10,20\n", r"line 1: .* must be integers"),
        ("0,speech,0,10,20\n", r"line 1: .*class 'speech' is not a finite number"),
        ("0,99999,0,10,20\n", r"line 1: .*class index must be at most 32766"),
        ("0,1,0,10,20\n1,1,0,10,20,-5\n", r"line 2: .*distance must be >= 0"),
        ("0,1,0,10,20\n\n1,1,0,200,20\n", r"line 3: .*azimuth must lie in \[-180, 180\]"),
        ("0,1,0,10,20,1,2\n", r"line 1: row '0,1,0,10,20,1,2' has 7 field"),
        ("0;1;0;10;20\n", r"line 1: .*separated by ';'\? DCASE rows are comma-separated"),
        ("0\t1\t0\t10\t20\n", r"separated by '\\t'\?"),
        ("0,1,0,10,20\nframe,class,source,azimuth,elevation\n", r"line 2: .*'frame' is not a"),
        ("0,1,0,10,20\n1,1,0,10\n", r"line 2: row '1,1,0,10' has 4 fields, line 1 5 or more"),
        ("0,1,0\n", r"line 1: row '0,1,0' has 3 field"),
    ],
)
def test_malformed_metadata_names_file_line_and_field(tmp_path, text, message):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=r"bad\.csv") as e:
        read_metadata(p)
    assert re.search(message, str(e.value)), str(e.value)


def test_binary_and_non_utf8_files_are_refused_by_name(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes(b"0,1,0,10,20\x00\n")
    with pytest.raises(DataError, match=r"m\.csv is binary"):
        read_metadata(p)
    p.write_bytes(b"\xff\xfe0,1,0,10,20\n")
    with pytest.raises(DataError, match=r"m\.csv is not UTF-8"):
        read_metadata(p)


def test_tut2018_labels_every_usual_way(tmp_path):
    p = tmp_path / "t.csv"
    head = "sound_event_recording,start_time,end_time,ele,azi,dist"
    rows = ["speech,0.5,1.0,10,20,2", "dog,1.0,2.0,-10,350,3"]
    for text in (
        "\n" + head + "\n" + "\n".join(rows) + "\n",
        "\ufeff" + head + "\r\n" + "\r\n\r\n".join(rows) + "\r\n",
        head + "\n" + ",\n".join(rows) + ",\n",  # a trailing comma on the rows only
    ):
        p.write_text(text)
        ev = read_labels(p)
        assert ev["sound_event_recording"].tolist() == ["speech", "dog"]
        assert ev["azi"].tolist() == [20, 350] and ev["end_time"].tolist() == [1.0, 2.0]
    p.write_text(head + "\n")
    assert len(read_labels(p)) == 0  # header only: no event (the importer warns)
    p.write_text(head + "\nspeech,0.5,1.0,10\n")
    with pytest.raises(DataError, match=r"t\.csv, line 2: row .* has 4 fields, the header 6"):
        read_labels(p)
    p.write_text(head + "\nspeech,0.5,nan,10,20,2\n")
    with pytest.raises(DataError, match=r"t\.csv, line 2: malformed event"):
        read_labels(p)


# ----------------------------------------------------------------------------- import


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from ssl_toolkit.testing import write_dcase_dataset

    return write_dcase_dataset(tmp_path_factory.mktemp("ds") / "tau", family="tau2021",
                               clip_seconds=1.0)  # fmt: skip


def _imported(root, out, *args):
    return invoke("prep", "import", root, out, "--layout", "dcase", *args)


def _csvs(root: Path) -> list[Path]:
    return sorted((root / "metadata_dev").rglob("*.csv"))


def _copy(dataset, tmp_path) -> Path:
    return shutil.copytree(dataset, tmp_path / "tau")


def test_a_blank_first_line_imports_every_event(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    csv = _csvs(root)[0]
    csv.write_text("\n" + csv.read_text().replace("\n", "\r\n"))
    res = _imported(root, tmp_path / "s")
    assert res.exit_code == 0, res.output
    ref = _imported(dataset, tmp_path / "r")
    assert ref.exit_code == 0, ref.output
    name = f"labels/{csv.stem}.csv"
    got, want = read_metadata(tmp_path / "s" / name), read_metadata(tmp_path / "r" / name)
    assert len(want) > 0
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("0,99999,0,10,20\n", r"fold\d_room\d_mix\d+\.csv, line \d+: .*class index"),
        ("0,1,0,10,20\n0,1,0,11,20\n", r"\.csv, line 2: frame 0 lists class 1 source 0"),
        ("0,1,0\n", r"\.csv, line 1: row '0,1,0' has 3 field"),
    ],
)
def test_bad_labels_are_refused_before_anything_is_written(dataset, tmp_path, damage, message):
    root = _copy(dataset, tmp_path)
    csv = _csvs(root)[1]
    csv.write_text(damage)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = _imported(root, tmp_path / "s")
    one_line_error(res, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing published
    res = _imported(root, tmp_path / "s", "--force")  # --force: the same line, nothing kept
    one_line_error(res, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_empty_label_files_warn_and_all_empty_is_refused(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    csvs = _csvs(root)
    csvs[0].write_text("")
    csvs[1].write_text("\n\n")
    res = _imported(root, tmp_path / "s")
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "2 label file(s) hold no event" in warn[0]
    assert csvs[0].name in warn[0] and csvs[1].name in warn[0]
    for c in csvs:
        c.write_text("")
    one_line_error(_imported(root, tmp_path / "t"), r"no label file holds an event")
    assert not (tmp_path / "t").exists()


def test_radians_and_classes_beyond_the_edition(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    for c in _csvs(root):
        m = read_metadata(c)
        m["azimuth_deg"] = np.radians(m["azimuth_deg"])
        m["elevation_deg"] = np.radians(m["elevation_deg"])
        from ssl_toolkit.core.labels import write_metadata

        write_metadata(c, m)
    one_line_error(_imported(root, tmp_path / "s"), r"radians\? Label files are in degrees")
    assert not (tmp_path / "s").exists()
    # a class beyond the 12 of TAU-NIGENS 2021: imported, with one warning naming it
    root = shutil.copytree(dataset, tmp_path / "tau2")
    c = _csvs(root)[0]
    c.write_text(c.read_text().replace(",1,", ",20,", 1))
    res = _imported(root, tmp_path / "s2")
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warn) == 1 and c.name in warn[0] and "class 20 is beyond the 12" in warn[0]
    man = json.loads((tmp_path / "s2" / "manifest.json").read_text())
    assert man["extra"]["n_classes"] == 21


# ----------------------------------------------------------------------------- ssl eval


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Tiny features and their reference labels as result files (the perfect system)."""
    from test_dcase_csv import reference_csvs

    from ssl_toolkit.testing import make_features_artifact

    base = tmp_path_factory.mktemp("eval")
    feats = make_features_artifact(base / "features", n_chunks=30, bins=32)
    reference_csvs(feats, base / "ref")
    return base, feats


def _variant(scored, tmp_path, edit) -> Path:
    base, _ = scored
    d = shutil.copytree(base / "ref", tmp_path / "res")
    for f in sorted(d.iterdir()):
        edit(f)
    return d


def _eval(scored, folder, out):
    return invoke("eval", "--dcase-csv", folder, out, "--data", scored[1].path)


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _every_third(f):
    f.write_text("".join(ln for i, ln in enumerate(f.read_text().splitlines(True)) if i % 3 == 0))


@pytest.mark.parametrize(
    ("edit", "excluded"),
    [
        (_every_third, True),  # sparse: frames with references and no detection
        (lambda f: f.write_text(f.read_text().splitlines(True)[0]), True),  # one row
        (lambda f: f.write_text(""), True),  # nothing detected
        (lambda f: f.write_text("\n" + f.read_text()), False),  # blank first line
        (lambda f: f.write_text(f.read_text().replace("\n", "\r\n")), False),
        (lambda f: f.write_text(f.read_text() + f.read_text()), False),  # every row twice
    ],
    ids=["sparse", "one-row", "empty", "blank-first-line", "crlf", "duplicated"],
)
def test_real_system_output_is_scored(scored, tmp_path, edit, excluded):
    folder = _variant(scored, tmp_path, edit)
    res = _eval(scored, folder, tmp_path / "ev")
    assert res.exit_code == 0, res.output
    doc = _metrics(tmp_path / "ev")["overall"]
    assert doc["oracle_deg"] is not None
    if excluded:  # frames without an estimate: left out of EMD and counted
        assert doc["emd_excluded_frames"] > 0
        assert doc["emd_deg"] is None or doc["emd_deg"] >= 0
    else:  # read exactly as the reference files: a perfect score
        assert doc["emd_excluded_frames"] == 0 and doc["F20"] == pytest.approx(1.0)
        assert doc["oracle_deg"] < 0.01 and doc["emd_deg"] < 0.01


def test_unit_mistakes_and_row_floods_are_refused_with_a_hint(scored, tmp_path):
    def frames_times_5(f):
        m = read_metadata(f)
        m["frame"] *= 5
        from ssl_toolkit.core.labels import write_metadata

        write_metadata(f, m)

    def radians(f):
        m = read_metadata(f)
        m["azimuth_deg"] = np.radians(m["azimuth_deg"])
        m["elevation_deg"] = np.radians(m["elevation_deg"])
        from ssl_toolkit.core.labels import write_metadata

        write_metadata(f, m)

    folder = _variant(scored, tmp_path, frames_times_5)
    one_line_error(_eval(scored, folder, tmp_path / "a"), r"\.csv lists frame \d+", "20 ms")
    shutil.rmtree(folder)
    folder = _variant(scored, tmp_path, radians)
    one_line_error(_eval(scored, folder, tmp_path / "b"), r"radians\? DCASE result files are in")
    shutil.rmtree(folder)
    flood = "".join(f"3,7,{s},10,20\n" for s in range(20000))  # the tester: 209 GiB
    folder = _variant(scored, tmp_path, lambda f: f.write_text(f.read_text() + flood))
    one_line_error(
        _eval(scored, folder, tmp_path / "c"), r"\.csv, frame 3: \d+ rows in one label frame"
    )
    assert not [p for p in tmp_path.iterdir() if p.name in "abc" or p.name.startswith(".")]


def test_a_single_source_near_the_front_is_not_taken_for_radians(scored, tmp_path):
    """One source at 1-2 degrees for a whole clip: degrees, scored (no refusal)."""

    def front(f):
        n = len(f.read_text().splitlines())
        f.write_text("".join(f"{i},0,0,{1 + (i % 2)},1\n" for i in range(max(n // 2, 1))))

    folder = _variant(scored, tmp_path, front)
    res = _eval(scored, folder, tmp_path / "ev")
    assert res.exit_code == 0, res.output


def test_emd_with_four_sources_and_no_estimate_is_left_out_not_a_crash():
    """S >= 4 goes through POT, which refused a frame without mass (the tester's crash)."""
    rng = np.random.default_rng(0)
    t = rng.standard_normal((3, 4, 3))
    t /= np.linalg.norm(t, axis=-1, keepdims=True)
    active = np.ones((3, 4), bool)
    hyps = t.copy()  # every target estimated exactly...
    valid = np.ones((3, 4), bool)
    valid[1] = False  # ...except in frame 1: no estimate
    conf = np.ones((3, 4))
    e = M.emd_per_frame(hyps, conf, t, active, valid)
    assert np.isnan(e[1]) and e[0] < 1e-6 and e[2] < 1e-6
    assert M.emd_excluded(active, valid) == 1
    res = M.all_metrics(hyps, conf, t, active, valid, np.zeros(3, int), valid=valid)
    assert res["emd_excluded_frames"] == 1 and res["emd_deg"] < 1e-6
    assert res["oracle_deg"] == pytest.approx(180 / 3)  # the oracle counts the miss
