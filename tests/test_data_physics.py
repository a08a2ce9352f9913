"""Labels are correct by construction: the physics of the rendered audio agrees with them.

(a) MIC: inter-capsule delays measured by GCC-PHAT match the labelled direction.
(b) FOA: the active intensity vector of the direct sound points to the labelled direction.
(c) RESYN rooms: the impulse responses decay at the drawn RT60.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from physics_reference import gcc_phat_delay

from ssl_toolkit.core.config import resolve
from ssl_toolkit.core.geometry import deg, great_circle, rad, sph_to_unit
from ssl_toolkit.data_prep.arrays import SPEED_OF_SOUND_M_S, tetra_positions_m
from ssl_toolkit.data_prep.render import impulse_response, lead_samples
from ssl_toolkit.data_prep.rooms import image_paths, sample_room
from ssl_toolkit.data_prep.synth import SynthConfig, preset_config, synthesize

FS = 44100


@pytest.fixture(scope="module")
def noise_folder(tmp_path_factory):
    """A user folder of white-noise clips at 48 kHz (broadband, resampled on load)."""
    root = tmp_path_factory.mktemp("noise_clips")
    rng = np.random.default_rng(7)
    (root / "white").mkdir()
    for i in range(3):
        sf.write(root / "white" / f"n{i}.wav", 0.3 * rng.standard_normal(48000), 48000)
    return root


def _synth(tmp_path, noise_folder, preset, fmt, n_clips=2, **extra):
    cfg = resolve(
        SynthConfig,
        preset_config(preset),
        {
            "format": fmt,
            "fs": FS,
            "n_clips": n_clips,
            "clip_seconds": 2.0,
            "subsets": ["ov1"],
            "grid_deg": 0.0,
            "snr_db": 60.0,
            "event_seconds": [0.5, 0.9],
            "sources_dir": str(noise_folder),
            "elevation_range_deg": [-60.0, 60.0],
            **extra,
        },
    )
    man = synthesize(tmp_path / f"{preset}_{fmt}", cfg)
    clips = pd.read_csv(man.file("clips.csv"))
    for row in clips.itertuples():
        audio, _ = sf.read(man.file(row.audio), always_2d=True)
        for ev in pd.read_csv(man.file(row.labels)).itertuples():
            yield audio.T, ev


def _segment(audio: np.ndarray, ev) -> np.ndarray:
    return audio[:, int(ev.start_time * FS) : int(ev.end_time * FS)]


#: A user's array: 5 capsules on a 5 cm circle and one 4 cm above the centre.
USER_ARRAY = [[0.05 * np.cos(a), 0.05 * np.sin(a), 0.0] for a in np.arange(5) * 2 * np.pi / 5] + [
    [0.0, 0.0, 0.04]
]


@pytest.mark.parametrize("array", ["tetrahedral", "user"])
def test_mic_delays_match_labelled_direction(tmp_path, noise_folder, array):
    extra = {"mic_positions_m": USER_ARRAY} if array == "user" else {}
    mic = np.asarray(USER_ARRAY) if array == "user" else tetra_positions_m()
    n_checked = 0
    for audio, ev in _synth(tmp_path, noise_folder, "ansyn", "mic", **extra):
        assert audio.shape[0] == len(mic)
        seg = _segment(audio, ev)
        u = sph_to_unit(rad(ev.azi), rad(ev.ele))
        arrival = -(mic @ u) / SPEED_OF_SOUND_M_S * FS  # plane wave, samples, (M,)
        for i, j in itertools.combinations(range(len(mic)), 2):
            expected = arrival[i] - arrival[j]
            assert abs(gcc_phat_delay(seg[i], seg[j]) - expected) < 0.15, (ev, i, j)
            n_checked += 1
    assert n_checked >= 12


def _intensity_direction(foa: np.ndarray) -> np.ndarray:
    """Direction of the time-averaged active intensity of ACN/SN3D signals [4, n]."""
    w, y, z, x = foa
    i = np.array([np.sum(w * x), np.sum(w * y), np.sum(w * z)])
    return i / np.linalg.norm(i)


def test_foa_intensity_points_to_labelled_direction(tmp_path, noise_folder):
    errors = []
    for audio, ev in _synth(tmp_path, noise_folder, "ansyn", "foa"):
        u = sph_to_unit(rad(ev.azi), rad(ev.ele))
        errors.append(deg(great_circle(_intensity_direction(_segment(audio, ev)), u)))
    assert len(errors) >= 2
    assert max(errors) < 2.0


def test_label_times_are_direct_sound_arrivals(tmp_path, noise_folder):
    """The direct sound reaches the array at start_time (to the millisecond), in a room."""
    ms = FS // 1000
    for audio, ev in _synth(tmp_path, noise_folder, "resyn", "foa"):
        w = audio[0] ** 2
        a, b = round(ev.start_time * FS), round(ev.end_time * FS)
        level = w[a:b].mean()
        assert w[a - 5 * ms : a - ms].mean() < 1e-3 * level  # nothing before the onset
        # events fade in over 10 ms: the first 10 ms carry about 1/3 of the full level
        assert w[a + ms : a + 10 * ms].mean() > 0.05 * level


def test_resyn_direct_sound_intensity_points_to_source():
    """In rooms, the direct part of each impulse response points to the source."""
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(6):
        room = sample_room(rng, (4, 3, 2.5), (8, 6, 3.5), (0.3, 0.7), max_order=6)
        az, el = rng.uniform(-np.pi, np.pi), rng.uniform(-1.0, 1.0)
        u = sph_to_unit(az, el).astype(np.float64)
        paths = image_paths(room, (1.0 * u)[None], FS)[0]
        dist = np.linalg.norm(paths.positions_m, axis=1)
        if np.sort(dist)[1] - dist[0] < 0.5:  # first reflection within 1.5 ms: skip
            continue
        rir = impulse_response(paths, "foa", FS, tail=(rng, room.rt60_s))
        lead = lead_samples(FS, None)
        direct = rir[:, : lead + 20]  # up to 0.45 ms after the direct arrival
        assert deg(great_circle(_intensity_direction(direct), u)) < 3.0
        checked += 1
    assert checked >= 3


def test_resyn_impulse_response_decays_at_drawn_rt60():
    """Schroeder backward integration of the hybrid (ISM + tail) response gives the RT60."""
    rng = np.random.default_rng(11)
    room = sample_room(rng, (6, 5, 3), (6, 5, 3), (0.5, 0.5), max_order=6)
    paths = image_paths(room, np.array([[1.5, 0.5, 0.2]]), 16000)[0]
    rir = impulse_response(paths, "mic", 16000, tetra_positions_m(), tail=(rng, room.rt60_s))
    edc = np.cumsum((rir[0] ** 2)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    t5, t25 = np.argmax(edc_db < -5), np.argmax(edc_db < -25)
    rt60_est = 3 * (t25 - t5) / 16000  # T20 extrapolated to 60 dB
    assert rt60_est == pytest.approx(room.rt60_s, rel=0.2)
