"""Synthesis: reproducibility, label invariants, layouts, bad options and bad user clips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ssl_toolkit.core.config import ConfigError, resolve
from ssl_toolkit.core.errors import DataError
from ssl_toolkit.core.labels import assign_slots
from ssl_toolkit.data_prep.sources import PROCEDURAL, EventLibrary
from ssl_toolkit.data_prep.synth import SynthConfig, preset_config, synthesize

TINY = {"fs": 8000, "n_clips": 6, "clip_seconds": 3.0, "subsets": ["ov1", "ov2", "ov3"]}


def _cfg(preset="ansyn", **kw):
    return resolve(SynthConfig, preset_config(preset), TINY, kw)


def _read_all(man):
    clips = pd.read_csv(man.file("clips.csv"))
    audio = {c.clip_id: sf.read(man.file(c.audio))[0] for c in clips.itertuples()}
    labels = {c.clip_id: pd.read_csv(man.file(c.labels)) for c in clips.itertuples()}
    return clips, audio, labels


def test_clips_do_not_depend_on_jobs(tmp_path):
    cfg = _cfg("resyn", format="mic")
    c1, a1, l1 = _read_all(synthesize(tmp_path / "j1", cfg, jobs=1))
    c2, a2, l2 = _read_all(synthesize(tmp_path / "j2", cfg, jobs=2))
    pd.testing.assert_frame_equal(c1, c2)
    for k in a1:
        np.testing.assert_array_equal(a1[k], a2[k])
        pd.testing.assert_frame_equal(l1[k], l2[k])


@pytest.mark.parametrize("array", [None, [[0.04, 0, 0], [-0.04, 0, 0], [0, 0.04, 0]]])
def test_foa_and_mic_renderings_share_events_and_signals(monkeypatch, array):
    """The MIC twin of a clip (any array) plays the same signals from the same places."""
    from ssl_toolkit.data_prep import synth

    played = {}

    def spy(fmt):
        def spatialize(sig, rir):
            played.setdefault(fmt, []).append(sig.copy())
            return synth_spatialize(sig, rir)

        return spatialize

    synth_spatialize = synth.spatialize
    library = EventLibrary(8000)
    labels = {}
    for fmt in ("foa", "mic"):
        extra = {"mic_positions_m": array} if fmt == "mic" and array else {}
        monkeypatch.setattr(synth, "spatialize", spy(fmt))
        _, labels[fmt], _ = synth.render_clip(_cfg("resyn", format=fmt, **extra), 4, "ov3", library)
    pd.testing.assert_frame_equal(labels["foa"], labels["mic"])
    assert len(played["foa"]) == len(played["mic"]) >= 3
    for a, b in zip(played["foa"], played["mic"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_labels_respect_subset_grid_and_clip(tmp_path):
    man = synthesize(tmp_path / "s", _cfg(n_clips=9))
    clips, audio, labels = _read_all(man)
    assert man.extra["max_sources"] == 3 and man.extra["fs"] == 8000
    assert set(clips["split"]) == {"train", "val", "test"}
    for c in clips.itertuples():
        ev = labels[c.clip_id]
        assert audio[c.clip_id].shape == (3 * 8000, 4)
        assert list(ev.columns) == [
            "sound_event_recording",
            "start_time",
            "end_time",
            "ele",
            "azi",
            "dist",
        ]
        assert (ev["end_time"] <= 3.0 + 1e-6).all() and (ev["start_time"] >= 0).all()
        assert np.all(np.mod(ev["azi"], 10) == 0) and ev["azi"].between(-180, 170).all()
        assert np.all(np.mod(ev["ele"], 10) == 0) and ev["ele"].between(-60, 50).all()
        slots = assign_slots(ev["start_time"].to_numpy(), ev["end_time"].to_numpy())
        assert slots.max() + 1 == c.n_sources_max <= int(c.subset[2:])
        s, e = ev["start_time"].to_numpy(), ev["end_time"].to_numpy()
        overlap = (s[:, None] < e[None]) & (s[None] < e[:, None]) & ~np.eye(len(ev), dtype=bool)
        same = (ev["azi"].to_numpy()[:, None] == ev["azi"].to_numpy()[None]) & (
            ev["ele"].to_numpy()[:, None] == ev["ele"].to_numpy()[None]
        )
        assert not (overlap & same).any(), "overlapping events share a direction"


def test_procedural_library_has_distinct_classes():
    lib = EventLibrary(16000)
    assert len(lib.classes) >= 10
    rng = np.random.default_rng(0)
    centroids = []
    for k in range(len(lib.classes)):
        x = lib.draw(rng, k, 16000)
        assert x.shape == (16000,) and np.isfinite(x).all()
        assert np.sqrt(np.mean(x**2)) == pytest.approx(0.1, rel=0.3)
        spec = np.abs(np.fft.rfft(x)) ** 2
        centroids.append(np.sum(np.fft.rfftfreq(16000, 1 / 16000) * spec) / spec.sum())
    assert len(PROCEDURAL) == len(lib.classes)
    assert np.ptp(centroids) > 2000  # from rumble to hiss


def test_tut2018_output_layout(tmp_path):
    man = synthesize(tmp_path / "t", _cfg(layout="tut2018", n_clips=3))
    clips = pd.read_csv(man.file("clips.csv"))
    for c in clips.itertuples():
        assert c.audio.startswith(f"wav_{c.subset}_split1_30db/")
        assert c.labels.startswith(f"desc_{c.subset}_split1/")
        assert c.clip_id.split("_")[0] == ("test" if c.split == "test" else "train")
        assert man.file(c.audio).is_file() and man.file(c.labels).is_file()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"preset": "resyn", "rt60_range_s": [0.05, 0.1]}, "rt60_range_s"),
        (
            {"grid_deg": 10.0, "azimuth_range_deg": [0.0, 0.0], "elevation_range_deg": [0.0, 10.0]},
            "grid_deg",
        ),
        ({"event_seconds": [-1.0, 2.0]}, "event_seconds"),
        ({"clip_seconds": -3.0}, "clip_seconds"),
        ({"subsets": ["ov4"]}, "subsets"),
        ({"split_fractions": [0.5, 0.2, 0.2]}, "split_fractions"),
        ({"format": "foa", "mic_positions_m": [[0.05, 0, 0], [0, 0.05, 0]]}, "mic_positions_m"),
        ({"format": "mic", "mic_positions_m": [[0.05, 0, 0]]}, "mic_positions_m"),
        ({"format": "mic", "mic_positions_m": [[1.0, 0, 0], [0, 0.05, 0]]}, "mic_positions_m"),
        ({"format": "mic", "mic_positions_m": [[0.05, 0], [0, 0.05]]}, "mic_positions_m"),
    ],
)
def test_bad_options_are_named(options, named):
    preset = options.pop("preset", "ansyn")
    with pytest.raises(ConfigError, match=named):
        _cfg(preset, **options)


def _bad_clip(path, kind):
    if kind == "unreadable":
        path.write_bytes(b"RIFF not really a wav file")
    elif kind == "empty":
        sf.write(path, np.zeros(0), 16000)
    elif kind == "silent":
        sf.write(path, np.zeros(16000), 16000)
    elif kind == "short":
        sf.write(path, np.ones(100) * 0.1, 16000)


@pytest.mark.parametrize("kind", ["unreadable", "empty", "silent", "short"])
def test_bad_user_clips_are_named_and_nothing_is_left(tmp_path, kind):
    folder = tmp_path / "clips"
    (folder / "dog").mkdir(parents=True)
    sf.write(folder / "dog" / "good.wav", np.random.default_rng(0).normal(size=16000) * 0.1, 16000)
    _bad_clip(folder / "dog" / "bad.wav", kind)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"bad\.wav"):
        synthesize(out, _cfg(sources_dir=str(folder)))
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["clips"]


def test_user_folder_classes_are_subfolders(tmp_path):
    folder = tmp_path / "clips"
    rng = np.random.default_rng(0)
    for cls in ("dog", "bell"):
        (folder / cls).mkdir(parents=True)
        sf.write(folder / cls / "a.flac", rng.normal(size=22050) * 0.1, 22050)
    man = synthesize(tmp_path / "out", _cfg(sources_dir=str(folder), n_clips=3))
    _, _, labels = _read_all(man)
    assert man.extra["classes"] == ["bell", "dog"]
    assert set(pd.concat(labels.values())["sound_event_recording"]) <= {"bell", "dog"}
