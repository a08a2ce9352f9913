"""Import of the TUT2018 layout (ANSYN/RESYN/REAL) from a fixture written here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ssl_toolkit.core.errors import DataError
from ssl_toolkit.data_prep.featurize import FeatureConfig, compute_features
from ssl_toolkit.data_prep.importers import ImportSplit, import_tut2018
from ssl_toolkit.features.store import open_features

FS = 8000
HEADER = "sound_event_recording,start_time,end_time,ele,azi,dist\n"


def _write_dataset(root, channels=4):
    """ov1 and ov2 of split 1: 6 train + 2 test clips each, 2 s long."""
    rng = np.random.default_rng(0)
    for ov in (1, 2):
        wav_dir, desc_dir = root / f"wav_ov{ov}_split1_30db", root / f"desc_ov{ov}_split1"
        wav_dir.mkdir(parents=True)
        desc_dir.mkdir(parents=True)
        names = [f"train_{i}_desc_30_100" for i in range(6)] + ["test_0_desc_30_100", "test_1_x"]
        for name in names:
            sf.write(wav_dir / f"{name}.wav", 0.1 * rng.normal(size=(2 * FS, channels)), FS)
            rows = ["speech,0.10,0.90,10,-40,10"]
            if ov == 2:
                rows.append("phone,0.5,1.5,-20,170,10")
            (desc_dir / f"{name}.csv").write_text(HEADER + "\n".join(rows) + "\n")
    return root


def test_import_reads_layout_and_feeds_features(tmp_path):
    root = _write_dataset(tmp_path / "ANSYN")
    man = import_tut2018(root, tmp_path / "scenes")
    clips = pd.read_csv(man.file("clips.csv"))
    assert len(clips) == 16
    assert man.extra["audio_root"] == str(root.resolve()) and man.extra["fs"] == FS
    assert man.extra["max_sources"] == 2
    assert (clips.groupby(["subset", "split"]).size().to_dict()) == {
        ("ov1", "test"): 2,
        ("ov1", "train"): 5,
        ("ov1", "val"): 1,
        ("ov2", "test"): 2,
        ("ov2", "train"): 5,
        ("ov2", "val"): 1,
    }
    assert not (tmp_path / "scenes" / "wav").exists()  # audio stays where it is
    ov2 = clips[clips["subset"] == "ov2"].iloc[0]
    assert ov2.n_sources_max == 2 and ov2.fold == 1
    feats = open_features(compute_features(man.path, tmp_path / "feats", FeatureConfig()).path)
    assert feats.activity[feats.rows(subsets=["ov2"])].sum(axis=-1).max() == 2


def test_import_copy_keeps_audio_inside(tmp_path):
    root = _write_dataset(tmp_path / "RESYN")
    man = import_tut2018(root, tmp_path / "scenes", copy=True)
    clips = pd.read_csv(man.file("clips.csv"))
    assert man.extra["audio_root"] == "."
    assert all(man.file(a).is_file() and a.startswith("wav/") for a in clips["audio"])


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("bad_row", r"desc_ov1_split1/train_2_desc_30_100\.csv, line 3"),
        ("no_labels", r"train_2_desc_30_100\.wav has no label file"),
        ("no_audio", r"train_2_desc_30_100\.csv has no audio"),
        ("channels", r"train_2_desc_30_100\.wav has 2 channels"),
    ],
)
def test_import_errors_name_the_file(tmp_path, damage, named):
    root = _write_dataset(tmp_path / "ds")
    wav = root / "wav_ov1_split1_30db" / "train_2_desc_30_100.wav"
    csv = root / "desc_ov1_split1" / "train_2_desc_30_100.csv"
    if damage == "bad_row":
        csv.write_text(HEADER + "speech,0.1,0.9,10,-40,10\nspeech,0.5,abc,10,-40,10\n")
    elif damage == "no_labels":
        csv.unlink()
    elif damage == "no_audio":
        wav.unlink()
    else:
        sf.write(wav, np.zeros((FS, 2)), FS)
    with pytest.raises(DataError, match=named):
        import_tut2018(root, tmp_path / "scenes")
    assert not (tmp_path / "scenes").exists()


def test_synth_tut2018_output_imports_back(tmp_path):
    from ssl_toolkit.core.config import resolve
    from ssl_toolkit.data_prep.synth import SynthConfig, preset_config, synthesize

    cfg = resolve(
        SynthConfig,
        preset_config("ansyn"),
        {
            "fs": FS,
            "n_clips": 10,
            "clip_seconds": 1.0,
            "layout": "tut2018",
            "subsets": ["ov1", "ov2"],
        },
    )
    syn = synthesize(tmp_path / "syn", cfg)
    man = import_tut2018(syn.path, tmp_path / "imp", split=ImportSplit(val_fraction=0.5))
    a = pd.read_csv(syn.file("clips.csv")).sort_values("audio").reset_index(drop=True)
    b = pd.read_csv(man.file("clips.csv")).sort_values("audio").reset_index(drop=True)
    assert list(a["audio"]) == list(b["audio"])
    for ra, rb in zip(a.itertuples(), b.itertuples(), strict=True):
        la, lb = pd.read_csv(syn.file(ra.labels)), pd.read_csv(man.file(rb.labels))
        np.testing.assert_allclose(
            la.iloc[:, 1:].to_numpy(float), lb.iloc[:, 1:].to_numpy(float), rtol=1e-5
        )


def test_import_of_a_user_array_records_its_geometry(tmp_path):
    from typer.testing import CliRunner

    from ssl_toolkit.cli import app

    root = _write_dataset(tmp_path / "mine", channels=3)
    (tmp_path / "array.toml").write_text(
        "mic_positions_m = [[0.05, 0.0, 0.0], [-0.05, 0.0, 0.0], [0.0, 0.05, 0.0]]\n"
    )
    args = ["prep", "import", str(root), str(tmp_path / "s"), "--format", "mic"]
    res = CliRunner().invoke(app, [*args, "--array", str(tmp_path / "array.toml")])
    assert res.exit_code == 0, res.output
    extra = json.loads((tmp_path / "s" / "manifest.json").read_text())["extra"]
    assert extra["format"] == "mic" and extra["n_channels"] == 3
    assert extra["mic_positions_m"][1] == [-0.05, 0.0, 0.0]
    res = CliRunner().invoke(app, [*args[:3], str(tmp_path / "t"), "--format", "mic"])
    assert res.exit_code == 1 and "has 3 channels, expected 4" in res.output  # tetrahedral: 4


def test_import_checks_the_array_like_synth(tmp_path):
    from ssl_toolkit.core.config import ConfigError

    root = _write_dataset(tmp_path / "mine", channels=3)
    far = [[0.05, 0.0, 0.0], [-0.05, 0.0, 0.0], [0.0, 0.5, 0.0]]
    with pytest.raises(ConfigError, match="mic_positions_m.*0.50 m"):
        import_tut2018(root, tmp_path / "s", fmt="mic", mic_positions_m=far)
    assert not (tmp_path / "s").exists()


def test_slots_match_a_brute_force_greedy_and_are_n_log_n(rng):
    """assign_slots = lowest slot free at each onset (the quadratic reference below);
    max_overlap agrees; 8k overlapping rows import in well under a second (6.8 s before)."""
    import time

    from ssl_toolkit.core.labels import assign_slots, max_overlap

    def brute(start, end):
        busy, slots = [], np.zeros(len(start), int)
        for e in np.argsort(start, kind="stable"):
            free = [s for s, t in enumerate(busy) if t <= start[e]]
            if free:
                busy[free[0]] = end[e]
            else:
                busy.append(end[e])
            slots[e] = free[0] if free else len(busy) - 1
        return slots

    for _ in range(200):
        n = int(rng.integers(1, 15))
        start = np.round(rng.uniform(0, 3, n), 1)  # ties and touching events
        end = start + np.round(rng.uniform(0.1, 1.5, n), 1)
        slots = assign_slots(start, end)
        assert (slots == brute(start, end)).all()
        ev = pd.DataFrame({"start_time": start, "end_time": end})
        assert max_overlap(ev) == slots.max() + 1
    n = 8000
    ev = pd.DataFrame({"start_time": np.linspace(0, 1, n), "end_time": np.full(n, 2.0)})
    t0 = time.perf_counter()
    assert (
        max_overlap(ev) == n
        and assign_slots(ev.start_time.values, ev.end_time.values).max() == n - 1
    )
    assert time.perf_counter() - t0 < 1.0


def test_import_refuses_links_out_of_the_dataset_and_nan_audio(tmp_path):
    root = _write_dataset(tmp_path / "ANSYN")
    wav = sorted(root.rglob("*.wav"))[0]
    outside = tmp_path / "elsewhere.wav"
    wav.rename(outside)
    wav.symlink_to(outside)
    for copy in (False, True):
        with pytest.raises(DataError, match="leads outside the dataset"):
            import_tut2018(root, tmp_path / "scenes", copy=copy)
    wav.unlink()
    x = 0.1 * np.ones((FS, 4), np.float32)
    x[100, 2] = np.nan
    sf.write(wav, x, FS, subtype="FLOAT")
    with pytest.raises(DataError, match=f"{wav.name} holds NaN"):
        import_tut2018(root, tmp_path / "scenes")
    assert not (tmp_path / "scenes").exists()


def test_split_options_and_a_split_without_val_is_refused_naming_the_option(tmp_path):
    """Default: the file names' train/test and every fifth training clip as val; or a
    share of val, or whole folds held out; an empty train or val split is refused."""
    from typer.testing import CliRunner

    from ssl_toolkit.cli import app

    root = _write_dataset(tmp_path / "ANSYN")  # per subset: 6 train_ + 2 test_ clips, fold 1
    splits = lambda m: pd.read_csv(m.file("clips.csv"))["split"].value_counts().to_dict()  # noqa: E731
    assert splits(import_tut2018(root, tmp_path / "a")) == {"train": 10, "test": 4, "val": 2}
    half = import_tut2018(root, tmp_path / "b", split=ImportSplit(val_fraction=0.5))
    assert splits(half) == {"train": 6, "val": 6, "test": 4}
    with pytest.raises(DataError, match="no 'val' clip: raise --val-fraction"):
        import_tut2018(root, tmp_path / "c", split=ImportSplit(val_fraction=0.0))
    res = CliRunner().invoke(app, ["prep", "import", str(root), str(tmp_path / "d"),
                                   "--val-folds", "1"])  # fmt: skip
    assert res.exit_code == 1 and "no 'train' clip" in res.output and "--val-folds" in res.output
    res = CliRunner().invoke(app, ["prep", "import", str(root), str(tmp_path / "e"),
                                   "--val-fraction", "0.5", "--test-folds", "x"])  # fmt: skip
    assert res.exit_code == 1 and "--test-folds takes fold numbers" in res.output
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
