"""Detection after merging nearby hypotheses: hand-computed merges, the radius learned with
the threshold on val, and the merge carried by runs and exports into eval and predict."""

import json

import numpy as np
import pandas as pd
import pytest
from export_fixtures import N_FFT, make_run
from test_predict import loud_second_half  # noqa: F401 (fixture)

from ssl_toolkit.analysis.thresholds import learn_detection
from ssl_toolkit.core.geometry import great_circle, sph_to_unit
from ssl_toolkit.inference.export import export_run
from ssl_toolkit.inference.predict import predict_files
from ssl_toolkit.models.localize import detections, load_localizer, merge_nearby


def u(az_deg, el_deg=0.0):
    return sph_to_unit(np.radians(az_deg), np.radians(el_deg)).astype(np.float32)


def angle_deg(a, b):
    return float(np.degrees(great_circle(np.asarray(a, np.float64), np.asarray(b, np.float64))))


def test_a_split_source_is_merged_into_its_most_confident_hypothesis():
    # slot 0 at 0 deg (0.4), slot 1 at 10 deg (0.3), slot 2 at 90 deg (0.6), slot 3 invalid
    hyps = np.stack([u(0), u(10), u(90), u(5)])[None]
    conf = np.array([[0.4, 0.3, 0.6, 0.9]], np.float32)
    valid = np.array([[True, True, True, False]])
    h, c, v = merge_nearby(hyps, conf, valid, 20.0)
    np.testing.assert_array_equal(v, [[True, False, True, False]])  # slot 1 merged away
    np.testing.assert_allclose(c[0, [0, 2]], [0.7, 0.6], atol=1e-6)  # mass summed
    # the weighted mean of two unit vectors 10 deg apart, weights 0.4 and 0.3: hand-computed
    # azimuth atan2(0.3 sin 10, 0.4 + 0.3 cos 10) = 4.28 deg
    want = np.degrees(np.arctan2(0.3 * np.sin(np.radians(10)), 0.4 + 0.3 * np.cos(np.radians(10))))
    assert abs(want - 4.28) < 0.01
    assert angle_deg(h[0, 0], u(want)) < 1e-3
    np.testing.assert_allclose(h[0, 2], u(90), atol=1e-6)  # alone: unchanged
    # the invalid slot neither gathers nor is gathered, though it is close and confident
    assert not v[0, 3] and c[0, 3] == 0
    # a threshold of 0.5 now finds both sources once; without the merge it finds one
    _, det = detections(hyps, conf, valid, 0.5, 20.0)
    assert det.sum() == 2
    assert detections(hyps, conf, valid, 0.5, 0.0)[1].sum() == 1


def test_no_merge_radius_changes_nothing_and_confidence_is_capped():
    rng = np.random.default_rng(0)
    hyps = rng.normal(size=(50, 5, 3)).astype(np.float32)
    hyps /= np.linalg.norm(hyps, axis=-1, keepdims=True)
    conf = rng.uniform(size=(50, 5)).astype(np.float32)
    valid = np.ones((50, 5), bool)
    for out, given in zip(merge_nearby(hyps, conf, valid, 0.0), (hyps, conf, valid), strict=True):
        np.testing.assert_array_equal(out, given)
    _, c, _ = merge_nearby(hyps, np.full_like(conf, 0.9), valid, 180.0)  # all into one
    np.testing.assert_allclose(c.max(1), 1.0)  # 4.5 summed, reported as 1
    assert ((c > 0).sum(1) == 1).all()


def _merge_one_frame(h, c, v, radius):
    """Reference: the same greedy merge, one frame, plain Python."""
    order = sorted((k for k in range(len(c)) if v[k]), key=lambda k: -c[k])
    free, out = set(order), {}
    for k in order:
        if k not in free:
            continue
        group = [j for j in order if j in free and angle_deg(h[k], h[j]) <= radius + 1e-4]
        w = np.array([c[j] for j in group], np.float64)
        mean = (w[:, None] * h[group]).sum(0)
        out[k] = (mean / np.linalg.norm(mean), min(w.sum(), 1.0))
        free -= set(group)
    return out


def test_vectorized_merge_equals_a_per_frame_reference():
    rng = np.random.default_rng(1)
    n, k = 200, 6
    centres = rng.normal(size=(n, 2, 3))
    pick = rng.integers(0, 2, size=(n, k))
    hyps = np.take_along_axis(centres, pick[..., None], 1) + 0.25 * rng.normal(size=(n, k, 3))
    hyps = (hyps / np.linalg.norm(hyps, axis=-1, keepdims=True)).astype(np.float32)
    conf = rng.uniform(size=(n, k)).astype(np.float32)
    valid = rng.uniform(size=(n, k)) > 0.15
    h, c, v = merge_nearby(hyps, conf, valid, 25.0)
    merged_any = 0
    for i in range(n):
        ref = _merge_one_frame(hyps[i], conf[i], valid[i], 25.0)
        assert set(np.flatnonzero(v[i])) == set(ref), i
        for slot, (direction, mass) in ref.items():
            np.testing.assert_allclose(h[i, slot], direction, atol=1e-5)
            assert abs(c[i, slot] - mass) < 1e-5
        merged_any += len(ref) < valid[i].sum()
    assert merged_any > 50  # the case is not trivial


def _split_frames(n=400, sep_deg=8.0, conf_each=0.45, seed=0):
    """Val frames of one source each, which the model splits between two hypotheses
    ``sep_deg`` apart around it (an rMCL model's cell border), three far ones unsure."""
    rng = np.random.default_rng(seed)
    az = rng.uniform(-180, 180, n)
    el = rng.uniform(-40, 40, n)
    targets = np.stack([u(az, el), u(az + 180, -el)], 1)  # second slot inactive
    active = np.zeros((n, 2), bool)
    active[:, 0] = True
    hyps = np.stack([u(az - sep_deg / 2, el), u(az + sep_deg / 2, el), u(az + 90, 0 * el),
                     u(az - 90, 0 * el), u(az + 180, 0 * el)], 1)  # fmt: skip
    conf = np.tile(np.array([conf_each, conf_each, 0.05, 0.05, 0.05], np.float32), (n, 1))
    seg = np.arange(n) // 50
    return hyps, conf, np.ones(conf.shape, bool), targets, active, seg


def test_learned_detection_merges_a_source_split_between_two_hypotheses():
    hyps, conf, valid, targets, active, seg = _split_frames()
    thr, merge, found = learn_detection(hyps, conf, valid, targets, active, seg,
                                        radii=(0.0, 10.0, 20.0, 30.0))  # fmt: skip
    assert merge >= 10.0  # the two halves (8 deg apart) are one source again
    assert found[merge][1] == pytest.approx(1.0)  # every source found once, within 20 deg
    assert found[0.0][1] < 0.8  # without merging: reported twice or missed
    assert thr <= 0.9


def test_learned_detection_does_not_merge_two_close_sources():
    """Two real sources 25 deg apart, each held by one confident hypothesis: merging them
    (radius 30) would lose one, so no merge is learned."""
    n = 300
    rng = np.random.default_rng(2)
    az = rng.uniform(-180, 180, n)
    targets = np.stack([u(az), u(az + 25)], 1)
    active = np.ones((n, 2), bool)
    hyps = np.stack([u(az), u(az + 25), u(az + 120), u(az - 120)], 1)
    conf = np.tile(np.array([0.9, 0.8, 0.05, 0.05], np.float32), (n, 1))
    _, merge, found = learn_detection(hyps, conf, np.ones(conf.shape, bool), targets, active,
                                      np.arange(n) // 50, radii=(0.0, 30.0))  # fmt: skip
    assert merge == 0.0 and found[0.0][1] == pytest.approx(1.0)
    assert found[30.0][1] < 0.8


def _directions(df):
    return sph_to_unit(
        np.radians(df.azimuth_deg.to_numpy()), np.radians(df.elevation_deg.to_numpy())
    )


@pytest.mark.parametrize("merge", [0.0, 60.0])
def test_run_and_export_apply_the_models_merge_in_predict(tmp_path, loud_second_half, merge):  # noqa: F811
    kw = {"channels": 8, "bins": N_FFT // 2, "K": 3}
    run, _ = make_run(tmp_path / "run", kwargs=kw, threshold=0.3, merge_deg=merge)
    exp = export_run(run.path, tmp_path / "exp")
    io = json.loads((exp.path / "io.json").read_text())
    assert io["merge_deg"] == merge and load_localizer(exp.path).merge_deg == merge
    assert load_localizer(run.path).merge_deg == merge
    for art, name in ((run.path, "r"), (exp.path, "e")):
        (src_csv,) = predict_files(art, [loud_second_half], tmp_path / name)
        hyps = pd.read_csv(tmp_path / name / "rec_hypotheses.csv").sort_values(
            ["frame", "hypothesis"]
        )
        src = pd.read_csv(src_csv)
        n = hyps.frame.nunique()
        h = _directions(hyps).reshape(n, 3, 3).astype(np.float32)
        c = hyps.confidence.to_numpy().reshape(n, 3).astype(np.float32)
        want_h, want_det = detections(h, c, np.ones((n, 3), bool), 0.3, merge)
        _, want_c, _ = merge_nearby(h, c, np.ones((n, 3), bool), merge)
        assert len(src) == want_det.sum() > 0
        np.testing.assert_array_equal(hyps.detected.to_numpy().reshape(n, 3), want_det)
        got = _directions(src)
        np.testing.assert_allclose(got, want_h[want_det], atol=2e-4)
        np.testing.assert_allclose(src.confidence, want_c[want_det], atol=2e-5)
        if merge:  # the model's random hypotheses do gather within 60 deg here
            assert (src.confidence > hyps.confidence.max() + 1e-6).any() or len(src) < (
                hyps.confidence >= 0.3).sum()  # fmt: skip
