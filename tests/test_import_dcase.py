"""``ssl prep import --layout dcase`` (DCASE 2020-2024), DCASE metadata and frame labels,
classes and distances in the features artifact; datasets written by
:func:`ssl_toolkit.testing.write_dcase_dataset`."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ssl_toolkit.cli import app
from ssl_toolkit.core.errors import DataError
from ssl_toolkit.core.geometry import great_circle, rad, sph_to_unit, unit_to_sph
from ssl_toolkit.core.labels import metadata_frame_labels, read_metadata
from ssl_toolkit.data_prep.featurize import FeatureConfig, compute_features
from ssl_toolkit.data_prep.import_dcase import import_dcase
from ssl_toolkit.features.store import open_features
from ssl_toolkit.testing import write_dcase_dataset

runner = CliRunner()
FS = 24000


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """One small dataset per family (written once; tests that damage one copy it)."""
    base = tmp_path_factory.mktemp("dcase")
    return {
        "starss": write_dcase_dataset(base / "starss", family="starss", distance=True),
        "tau2020": write_dcase_dataset(base / "tau2020", family="tau2020", clip_seconds=1.0),
        "tau2021": write_dcase_dataset(base / "tau2021", family="tau2021", clip_seconds=1.0),
    }


def _copy(datasets, family, tmp_path):
    return shutil.copytree(datasets[family], tmp_path / family, symlinks=True)


def _import(root, out, *args):
    return runner.invoke(app, ["prep", "import", str(root), str(out), "--layout", "dcase", *args])


def _angle_deg(u, v) -> np.ndarray:
    """Angles between directions in degrees, accurate near 0 (arccos of a dot product of
    float32 unit vectors is not: 0.01° of noise)."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(u, v), axis=-1), np.sum(u * v, -1)))


def _splits(out) -> dict[int, set[str]]:
    clips = pd.read_csv(out / "clips.csv")
    return clips.groupby("fold")["split"].agg(lambda s: set(s)).to_dict()


# ----------------------------------------------------------------------------- import


def test_starss_official_split_and_classes_and_distances_reach_the_features(datasets, tmp_path):
    root = datasets["starss"]
    man = import_dcase(root, tmp_path / "scenes")
    clips = pd.read_csv(man.file("clips.csv"))
    folder = clips["audio"].str.split("/").str[1]
    assert clips.groupby([folder, "split"]).size().to_dict() == {
        ("dev-test-sony", "test"): 2,
        ("dev-test-tau", "test"): 2,
        ("dev-train-sony", "train"): 4,
        ("dev-train-sony", "val"): 1,  # every fifth training clip of each folder
        ("dev-train-tau", "train"): 4,
        ("dev-train-tau", "val"): 1,
    }
    assert set(clips.loc[clips["split"] == "test", "fold"]) == {4}
    ex = man.extra
    assert ex["label_format"] == "dcase" and ex["edition"] == "starss"
    assert ex["n_classes"] == 13 and ex["has_distance"] is True  # the STARSS class count
    assert ex["fs"] == FS and ex["format"] == "foa" and ex["audio_root"] == str(root.resolve())
    assert not (man.path / "wav").exists()  # the audio stays where it is
    for row in clips.itertuples():  # metadata copied; subset = the clip's largest overlap
        orig = read_metadata(root / "metadata_dev" / row.audio.split("/")[1] / f"{row.clip_id}.csv")
        copied = read_metadata(man.file(row.labels))
        pd.testing.assert_frame_equal(orig, copied)
        assert row.subset == f"ov{orig.groupby('frame').size().max()}" == f"ov{row.n_sources_max}"
    assert ex["max_sources"] == clips["n_sources_max"].max()

    feats = open_features(compute_features(man.path, tmp_path / "feats", FeatureConfig()).path)
    assert feats.n_classes == 13 and feats.manifest.extra["has_distance"] is True
    cls, dist, act = np.asarray(feats.classes), np.asarray(feats.distance), feats.activity
    assert cls.shape == act.shape and cls.dtype == np.int16 and dist.dtype == np.float32
    assert ((cls >= 0) == act).all() and (np.isfinite(dist) == act).all()
    assert dist[act].min() >= 1.0 and dist[act].max() <= 3.0  # the fixture's 1-3 m
    # the classes of one clip's frames are those its metadata lists at that time
    clip = clips.iloc[0]
    rows = feats.rows()[feats.index["clip_id"].to_numpy() == clip.clip_id]
    meta = read_metadata(man.file(clip.labels))
    t = 37  # feature frame 37 (0.74 s) lies in label frame 7
    got = sorted(cls[rows].reshape(-1, cls.shape[-1])[t][act[rows].reshape(-1, cls.shape[-1])[t]])
    assert got == sorted(meta.loc[meta["frame"] == 7, "class"])


@pytest.mark.parametrize(
    ("family", "test", "val", "n_classes"),
    [("tau2020", 1, 2, 14), ("tau2021", 6, 5, 12)],
)
def test_tau_nigens_official_folds(datasets, tmp_path, family, test, val, n_classes):
    """The DCASE baselines' development splits: 2020 test 1 / val 2, 2021 test 6 / val 5."""
    res = _import(datasets[family], tmp_path / "s")
    assert res.exit_code == 0, res.output
    want = {f: {"test" if f == test else "val" if f == val else "train"} for f in range(1, 7)}
    assert _splits(tmp_path / "s") == want
    extra = json.loads((tmp_path / "s" / "manifest.json").read_text())["extra"]
    assert extra["edition"] == f"tau-nigens-{family[3:]}" and extra["n_classes"] == n_classes
    assert extra["has_distance"] is False
    assert (extra["test_folds"], extra["val_folds"]) == ([test], [val])
    names = pd.read_csv(tmp_path / "s" / "clips.csv")["clip_id"]
    assert names.str.contains(r"_ov\d$").all() == (family == "tau2020")
    feats = open_features(compute_features(tmp_path / "s", tmp_path / "f", FeatureConfig()).path)
    assert np.isnan(np.asarray(feats.distance)).all() and feats.n_classes == n_classes


def test_fold_options_override_the_official_split(datasets, tmp_path):
    res = _import(datasets["tau2021"], tmp_path / "a", "--test-folds", "1", "--val-folds", "2,3")
    assert res.exit_code == 0, res.output
    assert _splits(tmp_path / "a") == {1: {"test"}, 2: {"val"}, 3: {"val"},
                                       4: {"train"}, 5: {"train"}, 6: {"train"}}  # fmt: skip
    res = _import(datasets["tau2021"], tmp_path / "b", "--test-folds", "5")  # val 5 -> test
    assert res.exit_code == 1 and "no 'val' clip: give --val-folds (folds here: 1, 2" in res.output
    assert "--val-fraction" not in res.output  # TAU-NIGENS val comes from folds only
    res = _import(datasets["starss"], tmp_path / "c", "--val-folds", "4")  # STARSS: by fold too
    assert res.exit_code == 0, res.output
    assert _splits(tmp_path / "c") == {3: {"train", "val"}, 4: {"val"}}
    res = _import(datasets["starss"], tmp_path / "d", "--val-fraction", "0")
    assert res.exit_code == 1 and "no 'val' clip: raise --val-fraction (now 0.0)" in res.output
    res = _import(datasets["starss"], tmp_path / "e", "--test-folds", "3")  # every clip test
    assert res.exit_code == 0 and "evaluation-only import" in res.output, res.output
    assert _splits(tmp_path / "e") == {3: {"test"}, 4: {"test"}}
    assert not any((tmp_path / d).exists() for d in "bd")


def test_mic_format_copy_and_a_24k_clip_reach_the_features(tmp_path):
    root = write_dcase_dataset(tmp_path / "mic", family="tau2021", fmt="mic", clip_seconds=1.0)
    res = _import(root, tmp_path / "foa")  # the default --format foa: told to use mic
    assert res.exit_code == 1 and "has mic_dev/ but no foa_dev/: use --format mic" in res.output
    man = import_dcase(root, tmp_path / "s", fmt="mic", copy=True)
    assert man.extra["n_channels"] == 4 and len(man.extra["mic_positions_m"]) == 4
    assert man.extra["audio_root"] == "."
    clips = pd.read_csv(man.file("clips.csv"))
    assert all(man.file(a).is_file() and a.startswith("wav/") for a in clips["audio"])
    feats = open_features(compute_features(man.path, tmp_path / "f", FeatureConfig()).path)
    assert feats.spec.fs == FS and feats.spec.hop_length == 480  # 20 ms at 24 kHz


# ----------------------------------------------------------------------------- moving sources


def test_moving_source_labels_follow_the_great_circle_across_the_wrap(datasets, tmp_path):
    """A source moving 10°/s along the horizon from 170° crosses ±180° at 1 s: the feature
    labels stay within 0.01° of the true arc; linear interpolation of the azimuth rows
    (180 -> -179) would swing through 0° and miss it by almost 180°."""
    root = _copy(datasets, "tau2021", tmp_path)
    wav = root / "foa_dev" / "fold1_room1_mix001.wav"
    sf.write(wav, 0.01 * np.random.default_rng(0).normal(size=(3 * FS, 4)), FS)
    az_rows = 170.0 + np.arange(30)  # label frames 0..29: the direction at each frame's start
    wrapped = (az_rows + 180) % 360 - 180
    (root / "metadata_dev" / "fold1_room1_mix001.csv").write_text(
        "".join(f"{i},2,0,{a:g},0\n" for i, a in enumerate(wrapped))
    )
    man = import_dcase(root, tmp_path / "s")
    feats = open_features(compute_features(man.path, tmp_path / "f", FeatureConfig()).path)
    rows = feats.rows()[feats.index["clip_id"].to_numpy() == "fold1_room1_mix001"]
    act = feats.activity[rows].reshape(-1, feats.max_sources)
    dirs = np.asarray(feats.directions[rows]).reshape(-1, feats.max_sources, 3)
    t = np.arange(len(act)) * feats.hop_s  # 150 frames, 0 .. 2.98 s
    assert act[:, 0].all() and not act[:, 1:].any()
    assert (np.asarray(feats.classes[rows]).reshape(act.shape)[:, 0] == 2).all()
    truth = sph_to_unit(rad(170.0 + 10.0 * t), 0.0)
    assert _angle_deg(dirs[:, 0], truth).max() < 0.01
    naive = np.interp(t, np.arange(30) * 0.1, wrapped)  # linear in azimuth, no wrap
    assert np.degrees(great_circle(sph_to_unit(rad(naive), 0.0), truth)).max() > 90


def test_metadata_frame_labels_on_a_tilted_great_circle_are_exact():
    """Constant speed on a great circle tilted 30° (rows at each 100 ms): every feature frame,
    including the extrapolated last label frame, lies on the true arc."""
    axis = np.array([np.sin(rad(30.0)), 0.0, np.cos(rad(30.0))])  # circle normal
    a = np.cross(axis, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(axis, a)
    speed = rad(25.0)  # per second

    def where(t):
        return np.cos(speed * t)[:, None] * a + np.sin(speed * t)[:, None] * b

    frames = np.arange(3, 21)
    az, el = unit_to_sph(where(frames * 0.1))
    meta = _meta(frames, 4, 1, np.degrees(az), np.degrees(el))
    act, dirs, cls, dist = metadata_frame_labels(meta, 120, 0.02, 2)
    on = np.flatnonzero(act[:, 0])
    assert on[0] == 15 and on[-1] == 104 and len(on) == 90  # label frames 3..20 (0.3-2.1 s)
    assert _angle_deg(dirs[on, 0], where(on * 0.02)).max() < 1e-4
    assert (cls[on, 0] == 4).all() and (cls[~act] == -1).all() and np.isnan(dist).all()


# ----------------------------------------------------------------------------- metadata edge cases


def _meta(frames, cls, src, az, el, dist_m=np.nan):
    return pd.DataFrame({"frame": frames, "class": cls, "source": src, "azimuth_deg": az,
                         "elevation_deg": el, "distance_m": dist_m})  # fmt: skip


def test_read_metadata_header_blank_lines_and_columns(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("frame,class,source,azimuth,elevation\n0,1,0,10,20\n\n1,1,0,11,20\n")
    m = read_metadata(p)  # a header line is tolerated, a blank line skipped
    assert list(m["frame"]) == [0, 1] and m["distance_m"].isna().all()
    p.write_text("0,1,0,10,20,150\n1,1,0,11,20,\n")  # DCASE 2024: distance in cm
    m = read_metadata(p)
    assert m["distance_m"].iloc[0] == 1.5 and np.isnan(m["distance_m"].iloc[1])
    p.write_text("0,1,0,10,20,1,2\n")
    with pytest.raises(DataError, match="line 1: row .* has 7 field"):
        read_metadata(p)
    p.write_text("0,1,0,10,20\n\n1,1,0,200,20\n")  # line numbers count the blank line
    with pytest.raises(DataError, match=r"m\.csv, line 3: malformed row '1,1,0,200,20'"):
        read_metadata(p)
    p.write_text("0,1,0,10,20\n0,1,0,12,20\n")
    with pytest.raises(DataError, match="line 2: frame 0 lists class 1 source 0 twice"):
        read_metadata(p)
    p.write_text("")
    assert len(read_metadata(p)) == 0


def test_one_frame_event_and_a_gap_between_two_events_of_one_source():
    """An event of one label frame holds its direction for that frame only; a (class,
    source) seen again after a gap is a new event: its first event's last frame is
    extrapolated from its own rows, never drawn toward the second event."""
    meta = pd.concat([
        _meta([0, 1, 2], 3, 0, [10.0, 10.0, 10.0], 0.0, 2.0),
        _meta([5, 6, 7], 3, 0, [90.0, 90.0, 90.0], 0.0, 2.0),
        _meta([4], 1, 0, [-45.0], 30.0),
    ], ignore_index=True)  # fmt: skip
    act, dirs, cls, dist = metadata_frame_labels(meta, 45, 0.02, 2)
    t = np.arange(45)
    first, second, gap = t < 15, (t >= 25) & (t < 40), (t >= 15) & (t < 20)
    assert act[first, 0].all() and act[second, 0].all() and not act[gap].any()
    az, _ = unit_to_sph(dirs[first | second, 0].astype(np.float64))
    want = np.where(t[first | second] < 15, 10.0, 90.0)
    np.testing.assert_allclose(np.degrees(az), want, atol=1e-4)
    assert (cls[first | second, 0] == 3).all() and (dist[first | second, 0] == 2.0).all()
    one = (t >= 20) & (t < 25)  # the one-frame event (label frame 4), alone: slot 0
    assert act[one, 0].all() and (cls[one, 0] == 1).all() and np.isnan(dist[one, 0]).all()
    np.testing.assert_allclose(dirs[one, 0], np.repeat(sph_to_unit(rad(-45.0), rad(30.0))[None],
                                                         5, axis=0), atol=1e-6)  # fmt: skip
    assert not act[~(first | second | one)].any() and not act[:, 1].any()


def test_old_features_have_no_classes_and_missing_class_files_are_refused(tiny_features, tmp_path):
    from ssl_toolkit.core.artifacts import EXTRA_FIELDS, ArtifactError
    from ssl_toolkit.core.labels import LABEL_FORMATS

    old = open_features(tiny_features.path)
    assert old.classes is None and old.distance is None and old.n_classes is None
    check = EXTRA_FIELDS["scenes"]["label_format"]
    assert all(check(f) is None for f in LABEL_FORMATS) and check("other") is not None
    root = write_dcase_dataset(tmp_path / "ds", family="tau2021", clip_seconds=1.0)
    man = import_dcase(root, tmp_path / "s")
    feats = compute_features(man.path, tmp_path / "f", FeatureConfig())
    (feats.path / "classes.npy").unlink()
    with pytest.raises(ArtifactError, match="classes.npy"):
        open_features(feats.path)


# ----------------------------------------------------------------------------- bad input


def _damage(root, how):
    audio, meta = root / "foa_dev" / "dev-train-sony", root / "metadata_dev" / "dev-train-sony"
    wav, csv = audio / "fold3_room21_mix002.wav", meta / "fold3_room21_mix002.csv"
    if how == "no csv":
        csv.unlink()
    elif how == "no wav":
        wav.unlink()
    elif how == "bad angle":
        csv.write_text("0,1,0,10,20,150\n1,1,0,10,20,150\n2,1,0,10,95,150\n")
    elif how == "link out":
        outside = root.parent / "elsewhere.wav"
        wav.rename(outside)
        wav.symlink_to(outside)
    elif how == "rates":
        sf.write(wav, np.zeros((16000 * 3, 4)), 16000)
    elif how == "channels":
        sf.write(wav, np.zeros((FS * 3, 2)), FS)
    elif how == "after end":
        csv.write_text(csv.read_text() + "35,1,0,10,20,150\n")
    elif how == "outside folders":
        shutil.copy(wav, root / "foa_dev" / "fold3_room9_mix001.wav")
        shutil.copy(csv, root / "metadata_dev" / "fold3_room9_mix001.csv")
    elif how == "no fold":
        wav.rename(audio / "room21_mix002.wav")
        csv.rename(meta / "room21_mix002.csv")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no csv", r"fold3_room21_mix002\.wav has no metadata file .*/fold3_room21_mix002\.csv"),
        ("no wav", r"metadata file .*fold3_room21_mix002\.csv has no audio"),
        ("bad angle", r"fold3_room21_mix002\.csv, line 3: malformed row '2,1,0,10,95,150'"),
        ("link out", r"fold3_room21_mix002\.wav leads outside the dataset"),
        ("rates", r"mixes sample rates: 16000 Hz \(.*fold3_room21_mix002\.wav\), 24000 Hz"),
        ("channels", r"fold3_room21_mix002\.wav has 2 channels, expected 4"),
        ("after end", r"fold3_room21_mix002\.csv labels frame 35 .* after the end of fold3_room"),
        ("outside folders", r"fold3_room9_mix001\.wav lies outside the dev-train-\*/"),
        ("no fold", r"room21_mix002\.wav: DCASE file names start with foldN_"),
    ],
)
def test_bad_input_exits_1_naming_the_file_and_leaves_nothing(datasets, tmp_path, how, message):
    root = _copy(datasets, "starss", tmp_path)
    _damage(root, how)
    res = _import(root, tmp_path / "s")
    assert res.exit_code == 1, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output  # one line: error: ...
    assert re.search(message, res.output), res.output
    assert "Traceback" not in res.output and not (tmp_path / "s").exists()


def test_a_label_frame_just_past_the_end_is_dropped(datasets, tmp_path):
    root = _copy(datasets, "starss", tmp_path)
    csv = root / "metadata_dev" / "dev-train-sony" / "fold3_room21_mix002.csv"
    csv.write_text(csv.read_text() + "30,1,0,10,20,150\n")  # 3 s of audio: frames 0..29
    man = import_dcase(root, tmp_path / "s")
    assert read_metadata(man.file("labels/fold3_room21_mix002.csv"))["frame"].max() < 30


def test_a_wrong_layout_names_the_right_one(datasets, tmp_path):
    res = runner.invoke(app, ["prep", "import", str(datasets["starss"]), str(tmp_path / "a")])
    assert res.exit_code == 1 and "use --layout dcase" in res.output  # default tut2018
    tut = tmp_path / "ANSYN" / "wav_ov1_split1_30db"
    tut.mkdir(parents=True)
    res = _import(tmp_path / "ANSYN", tmp_path / "b")
    assert res.exit_code == 1 and "use --layout tut2018" in res.output
    res = _import(tmp_path / "ANSYN", tmp_path / "c", "--layout", "starss")
    assert res.exit_code == 1 and "unknown layout 'starss' (known: tut2018, dcase)" in res.output
    assert not any((tmp_path / d).exists() for d in "abc")


# ----------------------------------------------------------------------------- the fixture


def test_fixture_entry_point_and_its_audio_encodes_the_labelled_directions(tmp_path):
    """``python -m ssl_toolkit.testing dcase-fixture`` writes the layout; the FOA audio is a
    plane-wave rendering: the intensity vector of frames with one source points to it."""
    from ssl_toolkit.core.labels import metadata_frame_labels
    from ssl_toolkit.testing import _main

    assert _main(["dcase-fixture", str(tmp_path / "fx"), "--family", "starss", "--clips", "1",
                  "1", "--seconds", "2"]) == 0  # fmt: skip
    wavs = sorted((tmp_path / "fx" / "foa_dev").rglob("*.wav"))
    assert [w.parent.name for w in wavs] == ["dev-test-sony", "dev-test-tau", "dev-train-sony",
                                             "dev-train-tau"]  # fmt: skip
    errors = []
    for wav in wavs:
        x, fs = sf.read(wav)
        assert fs == FS and x.shape == (2 * FS, 4)
        rel = wav.relative_to(tmp_path / "fx" / "foa_dev").with_suffix(".csv")
        meta = read_metadata(tmp_path / "fx" / "metadata_dev" / rel)
        assert meta["class"].nunique() >= 2
        act, dirs, _, _ = metadata_frame_labels(meta, 20, 0.1, 4)
        for i in np.flatnonzero(act.sum(axis=1) == 1):
            w, y, z, xx = x[int((i * 0.1 + 0.02) * fs) : int((i * 0.1 + 0.08) * fs)].T
            iv = np.array([np.mean(w * xx), np.mean(w * y), np.mean(w * z)])
            errors.append(np.degrees(great_circle(iv / np.linalg.norm(iv), dirs[i][act[i]][0])))
    assert len(errors) > 5 and np.median(errors) < 3
