"""Moving sources (`ssl prep synth --motion`): the rendered physics follows the labels.

(a) MIC, anechoic: per 100 ms block, the GCC-PHAT delays of the capsule pairs follow the
    delays predicted from the labelled trajectory (read back through
    ``metadata_frame_labels``); static or time-reversed labels are refused by the same test.
(b) FOA, anechoic: per block, the active intensity points along the labelled trajectory.
(c) Rooms: the crossfade windows sum to one, a source that does not move renders as the
    plain convolution, a moving tone in a room has no block-boundary clicks (a hard switch
    between blocks has), and the labels are the planned arcs.
(d) Options: static artifacts are unchanged, bad combinations are named.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from physics_reference import gcc_phat_delay
from typer.testing import CliRunner

from ssl_toolkit.core.config import ConfigError, resolve
from ssl_toolkit.core.geometry import deg, great_circle, rad, sph_to_unit
from ssl_toolkit.core.labels import (
    METADATA_HOP_S,
    metadata_events,
    metadata_frame_labels,
    read_metadata,
)
from ssl_toolkit.data_prep.arrays import SPEED_OF_SOUND_M_S, tetra_positions_m
from ssl_toolkit.data_prep.render import (
    block_count,
    crossfade_window,
    impulse_response,
    spatialize,
    spatialize_moving,
)
from ssl_toolkit.data_prep.rooms import image_paths, sample_room
from ssl_toolkit.data_prep.synth import (
    MOTION_OPTIONS,
    SynthConfig,
    arc_directions,
    arc_fits,
    config_dict,
    event_directions,
    motion_metadata,
    plan_events,
    plan_motion,
    preset_config,
    quantize_events,
    synthesize,
    tangent_directions,
)

FS = 24000
HOP_S = 0.05  # feature frames at which the labels are read back; blocks of 2 hops


@pytest.fixture(scope="module")
def noise_folder(tmp_path_factory):
    """A user folder of broadband white-noise clips (GCC-PHAT needs a flat spectrum)."""
    root = tmp_path_factory.mktemp("noise_clips")
    (root / "white").mkdir()
    rng = np.random.default_rng(5)
    sf.write(root / "white" / "n.wav", 0.3 * rng.standard_normal(5 * FS), FS)
    return root


def _moving_cfg(noise_folder, fmt, **kw):
    """One clip, one source moving 40 deg/s for 3-3.5 s (a 120-140 deg arc), anechoic."""
    opts = {
        "format": fmt,
        "fs": FS,
        "n_clips": 1,
        "clip_seconds": 4.0,
        "subsets": ["ov1"],
        "grid_deg": 0.0,
        "snr_db": 60.0,
        "event_seconds": [3.0, 3.5],
        "gap_seconds": [0.1, 0.8],
        "elevation_range_deg": [-45.0, 45.0],
        "sources_dir": str(noise_folder),
        "motion": True,
        "angular_speeds_deg_s": [40.0],
        "seed": 1,  # onset at 0.4 s, 3.5 s long
        **kw,
    }
    return resolve(SynthConfig, preset_config("ansyn"), opts)


@pytest.fixture(scope="module")
def twins(tmp_path_factory, noise_folder):
    """The FOA and MIC renderings of one moving-source clip: audio ``[M, n]`` and labels."""
    out = {}
    for fmt in ("foa", "mic"):
        man = synthesize(tmp_path_factory.mktemp(fmt) / "s", _moving_cfg(noise_folder, fmt))
        clip = pd.read_csv(man.file("clips.csv")).iloc[0]
        audio, fs = sf.read(man.file(clip.audio), always_2d=True)
        out[fmt] = (man, audio.T, read_metadata(man.file(clip.labels)))
    return out


def _label_track(meta, n_samples):
    """Labelled direction ``[T, 3]`` at feature frames t * HOP_S and which frames are
    usable block centres (the event is active one frame before and after)."""
    n_frames = n_samples * 20 // FS
    active, dirs, _, _ = metadata_frame_labels(meta, n_frames, HOP_S, 1)
    a = active[:, 0]
    inner = a.copy()
    inner[1:-1] &= a[:-2] & a[2:]
    inner[[0, -1]] = False
    return dirs[:, 0].astype(np.float64), np.flatnonzero(inner)


def _block(audio, t):
    """The 100 ms of audio centred at feature frame t."""
    c, h = round(t * HOP_S * FS), round(HOP_S * FS)
    return audio[:, c - h : c + h]


def _delay_errors(audio, dirs, frames, mic):
    """|measured - predicted| pair delays (samples) ``[frames, pairs]`` for label tracks."""
    pairs = list(itertools.combinations(range(len(mic)), 2))
    measured = np.array(
        [
            [gcc_phat_delay(_block(audio, t)[i], _block(audio, t)[j]) for i, j in pairs]
            for t in frames
        ]
    )
    arrival = -(dirs[frames] @ mic.T) / SPEED_OF_SOUND_M_S * FS  # (F, M) plane wave, samples
    predicted = np.stack([arrival[:, i] - arrival[:, j] for i, j in pairs], axis=1)
    return np.abs(measured - predicted)


# Tolerance of the per-block delay, in samples at 24 kHz: 0.1 sample = 4.2 us, 1.4 mm of
# path difference, about 1.2 deg of direction across a 6.9 cm capsule pair. GCC-PHAT
# (upsampled 32x) on 100 ms of white noise resolves ~0.02 sample; a source moving 4 deg per
# block smears the peak symmetrically around the delay at the block's centre (measured:
# median 0.02, 95th percentile 0.05 sample). Labels one 100 ms frame late (4 deg) are off
# by a median 0.18 sample: the test sees that too.
DELAY_TOL_SAMPLES = 0.1


def test_mic_delays_follow_the_labelled_trajectory(twins):
    man, audio, meta = twins["mic"]
    mic = np.asarray(man.extra["mic_positions_m"])
    np.testing.assert_allclose(mic, tetra_positions_m())
    dirs, frames = _label_track(meta, audio.shape[1])
    assert len(frames) >= 50  # >= 2.5 s of blocks, a >= 100 deg arc
    travelled = deg(great_circle(dirs[frames[0]], dirs[frames[-1]]))
    assert travelled > 60
    err = _delay_errors(audio, dirs, frames, mic)  # (F, 6 pairs)
    assert (np.median(err, axis=0) < DELAY_TOL_SAMPLES / 2).all(), np.median(err, axis=0)
    assert np.quantile(err, 0.95) < DELAY_TOL_SAMPLES  # every pair, nearly every block

    # the same test refuses labels that do not move, move the other way, or lag a frame
    static = np.broadcast_to(dirs[frames[0]], dirs.shape)
    reverse = dirs.copy()
    reverse[frames] = dirs[frames[::-1]]
    late = dirs.copy()
    late[frames] = dirs[frames - 2]  # 2 feature frames = one 100 ms label frame
    for wrong, factor in ((static, 10), (reverse, 10), (late, 1)):
        assert np.median(_delay_errors(audio, wrong, frames, mic)) > factor * DELAY_TOL_SAMPLES


def _intensity_direction(foa: np.ndarray) -> np.ndarray:
    """Direction of the time-averaged active intensity of ACN/SN3D signals ``[4, n]``."""
    w, y, z, x = foa
    i = np.array([np.sum(w * x), np.sum(w * y), np.sum(w * z)])
    return i / np.linalg.norm(i)


def test_foa_intensity_follows_the_labelled_trajectory(twins):
    _, audio, meta = twins["foa"]
    pd.testing.assert_frame_equal(meta, twins["mic"][2])  # the MIC twin moves the same way
    dirs, frames = _label_track(meta, audio.shape[1])
    measured = np.stack([_intensity_direction(_block(audio, t)) for t in frames])
    err = deg(great_circle(measured, dirs[frames]))
    assert np.median(err) < 0.5 and err.max() < 2.0, (np.median(err), err.max())
    held = deg(great_circle(measured, dirs[frames[0]]))  # a static label is far off
    assert np.median(held) > 20


def test_onsets_fall_on_the_label_frames(twins):
    """The direct sound reaches the array at the first labelled frame's start."""
    _, audio, meta = twins["foa"]
    onset = round(meta["frame"].min() * METADATA_HOP_S * FS)
    w = audio[0] ** 2
    ms = FS // 1000
    level = w[onset : onset + 100 * ms].mean()
    assert onset >= 6 * ms and w[onset - 5 * ms : onset - ms].mean() < 1e-4 * level
    assert w[onset + ms : onset + 10 * ms].mean() > 0.05 * level  # 10 ms fade-in


def test_metadata_is_exact_for_the_arc():
    """Feature-frame labels read from the metadata are the rendered arc, at any hop."""
    cfg = resolve(SynthConfig, {"motion": True, "clip_seconds": 6.0, "grid_deg": 0.0})
    rng = np.random.default_rng([cfg.seed, 2])
    ev = quantize_events(plan_events(rng, cfg, 2, 12), cfg.clip_seconds)
    ev = plan_motion(np.random.default_rng(9), cfg, ev)
    assert (ev["speed_deg_s"] > 0).all()
    meta = motion_metadata(ev)
    hop = 0.02
    active, dirs, classes, dist = metadata_frame_labels(meta, 300, hop, 2)
    t = np.arange(300) * hop
    checked = 0
    for e in range(len(ev)):
        inside = (t >= ev.at[e, "start_time"] - 1e-9) & (t < ev.at[e, "end_time"] - 1e-9)
        truth = event_directions(ev, e, t[inside] - ev.at[e, "start_time"])
        slot = np.flatnonzero(classes[inside][0] == ev.at[e, "class_index"])
        got = dirs[inside][:, slot].reshape(-1, len(slot), 3)
        err = deg(great_circle(got, truth[:, None])).min(axis=1)  # its slot among those active
        assert err.max() < 0.03, err.max()  # the metadata's 0.01 deg rounding
        checked += inside.sum()
    assert checked > 100


def test_short_user_clips_end_on_a_label_frame(tmp_path):
    """A user clip shorter than its planned event is cut at its last whole label frame."""
    folder = tmp_path / "clips"
    (folder / "knock").mkdir(parents=True)
    noise = 0.3 * np.random.default_rng(0).standard_normal(int(0.73 * 8000))
    sf.write(folder / "knock" / "k.wav", noise, 8000)
    cfg = resolve(
        SynthConfig,
        {
            "fs": 8000,
            "n_clips": 1,
            "clip_seconds": 6.0,
            "subsets": ["ov1"],
            "motion": True,
            "snr_db": 60.0,
            "sources_dir": str(folder),
            "event_seconds": [1.0, 2.0],
        },
    )
    man = synthesize(tmp_path / "s", cfg)
    clip = pd.read_csv(man.file("clips.csv")).iloc[0]
    audio = sf.read(man.file(clip.audio), always_2d=True)[0].T
    meta = read_metadata(man.file(clip.labels))
    ev = metadata_events(meta)
    assert clip.n_events == len(np.unique(ev)) >= 2
    for e in np.unique(ev):
        frames = meta["frame"][ev == e]
        assert len(frames) == 7  # 0.73 s: 7 whole frames
        a, b = (round(f * METADATA_HOP_S * 8000) for f in (frames.min(), frames.max() + 1))
        w = audio[0] ** 2
        assert w[b + 16 : b + 400].mean() < 1e-4 * w[a:b].mean()  # silent after the cut


# ----------------------------------------------------------------------------- planning


def test_arcs_stay_in_the_elevation_range_and_fall_back_to_static():
    rng = np.random.default_rng(0)
    u0 = sph_to_unit(rng.uniform(-np.pi, np.pi, 400), rng.uniform(-0.4, 0.4, 400))
    v = tangent_directions(
        deg(np.arctan2(u0[:, 1], u0[:, 0])),
        deg(np.arcsin(u0[:, 2])),
        rng.uniform(0, 2 * np.pi, 400),
    )
    np.testing.assert_allclose(np.sum(u0 * v, axis=1), 0, atol=1e-12)
    arc = rng.uniform(0, 2 * np.pi, 400)
    lo, hi = np.sin(rad(-30.0)), np.sin(rad(25.0))
    fits = arc_fits(u0, v, arc, lo, hi)
    dense = arc_directions(u0[:, None], v[:, None], arc[:, None] * np.linspace(0, 1, 4001))
    z = dense[..., 2]
    truth = ((z >= lo - 1e-6) & (z <= hi + 1e-6)).all(axis=1)
    assert (fits == truth).all() and 0 < fits.sum() < len(fits)

    cfg = resolve(
        SynthConfig, {"motion": True, "grid_deg": 0.0, "elevation_range_deg": [-10.0, 10.0]}
    )
    ev = quantize_events(plan_events(np.random.default_rng(1), cfg, 3, 12), cfg.clip_seconds)
    ev = plan_motion(np.random.default_rng(2), cfg, ev)
    meta = motion_metadata(ev)
    assert meta["elevation_deg"].between(-10.005, 10.005).all()
    assert set(ev["speed_deg_s"]) <= {0.0, 10.0, 20.0, 40.0} and (ev["speed_deg_s"] > 0).any()

    flat = resolve(
        SynthConfig, {"motion": True, "grid_deg": 0.0, "elevation_range_deg": [0.0, 0.0]}
    )
    ev = plan_motion(
        np.random.default_rng(2),
        flat,
        quantize_events(plan_events(np.random.default_rng(1), flat, 2, 12), flat.clip_seconds),
    )
    assert (ev["speed_deg_s"] == 0).all()  # no heading keeps a great circle on a parallel


def test_quantized_events_keep_the_overlap_and_back_to_back_events_stay_apart():
    cfg = resolve(
        SynthConfig, {"motion": True, "gap_seconds": [0.0, 0.12], "event_seconds": [0.1, 0.4]}
    )
    for seed in range(5):
        ev = quantize_events(plan_events(np.random.default_rng(seed), cfg, 3, 2), 30.0)
        f0, f1 = ev["start_frame"].to_numpy(), ev["end_frame"].to_numpy()
        assert (f1 > f0).all() and f1.max() <= 300
        np.testing.assert_allclose(ev["start_time"], f0 * 0.1)
        busy = np.zeros(300, int)
        for a, b in zip(f0, f1, strict=True):
            busy[a:b] += 1
        assert busy.max() <= 3
        ev = plan_motion(np.random.default_rng(seed), cfg, ev)
        meta = motion_metadata(ev)
        assert len(np.unique(metadata_events(meta))) == len(ev)  # 2 classes, many contacts
        assert not meta.duplicated(["frame", "class", "source"]).any()


# ----------------------------------------------------------------------------- rooms


def test_crossfade_windows_sum_to_one():
    for hop in (1, 7, 800, 2205):
        w = crossfade_window(hop)
        assert len(w) == 2 * hop and w[hop] == pytest.approx(1.0) and w.min() >= 0
        np.testing.assert_allclose(w[:hop] + w[hop:], 1.0, atol=1e-12)
        n = 5 * hop + 3
        total = np.zeros((block_count(n, hop) + 1) * hop)
        for k in range(block_count(n, hop)):
            total[k * hop : k * hop + 2 * hop] += w
        np.testing.assert_allclose(total[hop : hop + n], 1.0, atol=1e-12)  # every sample


def _room_rirs(fs, positions, fmt="foa", seed=0):
    room = sample_room(np.random.default_rng(seed), (5, 4, 3), (5, 4, 3), (0.4, 0.4), 5)
    mic = tetra_positions_m() if fmt == "mic" else None
    paths = image_paths(room, positions, fs)
    return [
        impulse_response(p, fmt, fs, mic, (np.random.default_rng(1), room.rt60_s)) for p in paths
    ]


def test_a_source_that_does_not_move_renders_as_one_convolution():
    fs, hop = 8000, 400
    x = np.random.default_rng(0).standard_normal(fs)
    (rir,) = _room_rirs(fs, np.array([[1.0, 0.5, 0.2]]), fmt="mic")
    y = spatialize_moving(x, [rir] * block_count(len(x), hop), hop)
    z = spatialize(x, rir)
    assert y.shape == z.shape
    assert np.abs(y - z).max() < 1e-5 * np.abs(z).max()
    with pytest.raises(ValueError, match="blocks"):
        spatialize_moving(x, [rir] * 3, hop)


def _hf_ratio(y, fs, cutoff_hz=2500):
    """Share of the energy above ``cutoff_hz`` (a 500 Hz tone has none but clicks')."""
    spec = np.abs(np.fft.rfft(y, axis=-1)) ** 2
    f = np.fft.rfftfreq(y.shape[-1], 1 / fs)
    return spec[:, f > cutoff_hz].sum() / spec.sum()


def test_a_moving_tone_in_a_room_has_no_block_clicks():
    fs, hop = 16000, 800  # 50 ms blocks
    n = 2 * fs
    t = np.arange(n) / fs
    tone = np.sin(2 * np.pi * 500 * t) * np.minimum(1, np.minimum(t, t[::-1]) / 0.1) ** 2
    b = block_count(n, hop)
    angle = rad(40.0) * np.arange(b) * hop / fs  # 40 deg/s, 80 deg in 2 s
    u = arc_directions(np.array([1.0, 0, 0]), np.array([0, 0.8, 0.6]), angle)
    rirs = _room_rirs(fs, 1.5 * u)
    smooth = spatialize_moving(tone, rirs, hop)
    # a hard switch: block k's response over [k hop, (k + 1) hop) only, no crossfade
    hard = np.zeros_like(smooth)
    for k in range(b - 1):
        piece = spatialize(tone[k * hop : (k + 1) * hop], rirs[k])
        hard[:, k * hop : k * hop + piece.shape[1]] += piece[:, : hard.shape[1] - k * hop]
    assert _hf_ratio(smooth, fs) < 1e-4, _hf_ratio(smooth, fs)
    assert _hf_ratio(hard, fs) > 30 * _hf_ratio(smooth, fs)


def test_moving_sources_in_rooms_follow_their_planned_arcs(tmp_path):
    cfg = resolve(
        SynthConfig,
        preset_config("resyn"),
        {
            "fs": 8000,
            "n_clips": 2,
            "clip_seconds": 3.0,
            "subsets": ["ov2"],
            "motion": True,
            "angular_speeds_deg_s": [20.0, 40.0],
            "format": "mic",
        },
    )
    man = synthesize(tmp_path / "r", cfg)
    assert man.extra["label_format"] == "dcase" and man.extra["n_classes"] == 12
    assert man.extra["has_distance"] is True
    assert man.config["motion"] is True
    clips = pd.read_csv(man.file("clips.csv"))
    for c in clips.itertuples():
        audio, _ = sf.read(man.file(c.audio), always_2d=True)
        assert audio.shape == (3 * 8000, 4) and np.isfinite(audio).all()
        meta = read_metadata(man.file(c.labels))
        assert c.labels == f"labels/{c.clip_id}.csv" and len(meta) > 0
        assert meta.groupby("frame").size().max() == c.n_sources_max <= 2
        index = int(c.clip_id[4:8])
        planned = plan_events(np.random.default_rng([cfg.seed, index]), cfg, 2, 12)
        ev_of_row = metadata_events(meta)
        assert len(np.unique(ev_of_row)) == len(planned) == c.n_events
        starts = []
        for e in np.unique(ev_of_row):
            rows = meta[ev_of_row == e].sort_values("frame")
            assert (np.diff(rows["frame"]) == 1).all()
            u = sph_to_unit(
                rad(rows["azimuth_deg"].to_numpy()), rad(rows["elevation_deg"].to_numpy())
            )
            step = deg(great_circle(u[1:], u[:-1])) / METADATA_HOP_S  # deg/s per frame
            assert np.ptp(step) < 0.3 and min(abs(step.mean() - v) for v in (20, 40)) < 0.3
            assert np.abs(np.linalg.det(np.stack([u[:-2], u[1:-1], u[2:]], 1))).max() < 1e-3
            assert rows["elevation_deg"].between(-60.005, 50.005).all()
            assert rows["distance_m"].nunique() == 1
            starts.append(
                (
                    rows["frame"].iloc[0],
                    rows["class"].iloc[0],
                    rows["azimuth_deg"].iloc[0],
                    rows["elevation_deg"].iloc[0],
                )
            )
        # each event starts where the (unchanged) static plan put it, on the frame grid
        plan = planned.assign(frame=np.floor(planned["start_time"] / 0.1 + 0.5).astype(int))
        got = pd.DataFrame(starts, columns=["frame", "class_index", "azi", "ele"])
        got = got.sort_values(["frame", "class_index"]).reset_index(drop=True)
        want = plan[["frame", "class_index", "azi", "ele"]].sort_values(["frame", "class_index"])
        np.testing.assert_array_equal(got[["frame", "class_index"]], want[["frame", "class_index"]])
        u_got, u_want = (
            sph_to_unit(rad(d["azi"].to_numpy()), rad(d["ele"].to_numpy())) for d in (got, want)
        )
        assert deg(great_circle(u_got, u_want)).max() < 0.01  # (-180 is written 180)


# ----------------------------------------------------------------------------- options


def test_static_scenes_do_not_depend_on_the_motion_options(tmp_path):
    base = {"fs": 8000, "n_clips": 2, "clip_seconds": 2.0}
    a = synthesize(tmp_path / "a", resolve(SynthConfig, base))
    b = synthesize(
        tmp_path / "b",
        resolve(SynthConfig, base, {"angular_speeds_deg_s": [5.0], "moving_fraction": 0.5}),
    )
    assert a.fingerprint == b.fingerprint and not set(MOTION_OPTIONS) & set(a.config)
    assert "label_format" not in a.extra
    for f in sorted(p.relative_to(a.path) for p in a.path.rglob("*") if p.is_file()):
        if f.name != "manifest.json":
            assert (a.path / f).read_bytes() == (b.path / f).read_bytes(), f
    moving = resolve(SynthConfig, base, {"motion": True})
    assert set(MOTION_OPTIONS) <= set(config_dict(moving))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"layout": "tut2018"}, r"'motion'.*'layout' = 'tut2018'"),
        ({"clip_seconds": 2.05}, "clip_seconds"),
        ({"event_seconds": [0.05, 1.0]}, "event_seconds"),
        ({"angular_speeds_deg_s": []}, "angular_speeds_deg_s"),
        ({"angular_speeds_deg_s": [0.0, 20.0]}, "angular_speeds_deg_s"),
        ({"angular_speeds_deg_s": [400.0]}, "angular_speeds_deg_s"),
        ({"moving_fraction": 1.5}, "moving_fraction"),
    ],
)
def test_bad_motion_options_are_named(options, named):
    with pytest.raises(ConfigError, match=named):
        resolve(SynthConfig, {"motion": True, **options})


def test_cli_motion(tmp_path):
    from ssl_toolkit.cli import app

    runner = CliRunner()
    base = [
        "prep",
        "synth",
        "--clips",
        "1",
        "--fs",
        "8000",
        "--clip-seconds",
        "2",
        "--subsets",
        "ov2",
    ]
    res = runner.invoke(
        app,
        [
            *base,
            str(tmp_path / "m"),
            "--motion",
            "--angular-speeds",
            "15,30",
            "--moving-fraction",
            "0.5",
        ],
    )
    assert res.exit_code == 0, res.output
    from ssl_toolkit.core.artifacts import read_manifest

    man = read_manifest(tmp_path / "m", "scenes")
    assert man.config["angular_speeds_deg_s"] == [15.0, 30.0]
    assert man.config["moving_fraction"] == 0.5 and man.extra["label_format"] == "dcase"
    for args, named in (
        (["--motion", "--layout", "tut2018"], "tut2018"),
        (["--angular-speeds", "10"], "--motion"),
        (["--motion", "--angular-speeds", "ten"], "--angular-speeds"),
    ):
        res = runner.invoke(app, [*base, str(tmp_path / "x"), *args])
        assert res.exit_code == 1 and named in res.output, res.output
        assert not (tmp_path / "x").exists()
