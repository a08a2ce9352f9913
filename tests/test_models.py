"""CRNN and ensemble: shapes, heads, normalization inside, tracing, save/load."""

import math

import pytest
import torch

from ssl_toolkit.models import build_model, load_model, save_model
from ssl_toolkit.models.crnn import default_pools, pooled_bins

SMALL = dict(n_channels=4, n_bins=32, channels=(8, 8), pools=(4, 2), gru_layers=2, gru_units=16)


def test_crnn_outputs_unit_hypotheses_and_confidences():
    torch.manual_seed(0)
    m = build_model("crnn", K=5, **SMALL)
    hyps, conf = m(torch.randn(3, 4, 25, 32))
    assert hyps.shape == (3, 25, 5, 3) and conf.shape == (3, 25, 5)
    assert torch.allclose(hyps.norm(dim=-1), torch.ones(3, 25, 5), atol=1e-5)
    assert ((conf > 0) & (conf < 1)).all()


def test_paper_defaults():
    m = build_model("crnn", n_channels=7, n_bins=512)
    assert [b[0].out_channels for b in m.convs] == [64, 64, 64]
    assert [b[3].kernel_size for b in m.convs] == [(1, 8), (1, 8), (1, 2)]
    assert (m.gru.num_layers, m.gru.hidden_size, m.gru.bidirectional) == (4, 128, True)
    assert m.K == 5
    assert pooled_bins(64, (8, 8, 2)) == 0 and pooled_bins(512, (8, 8, 2)) == 4
    with pytest.raises(ValueError, match="cannot be pooled"):
        build_model("crnn", n_channels=7, n_bins=64, pools=(8, 8, 2))


@pytest.mark.parametrize(
    ("bins", "pools"),
    [(1025, (8, 8, 2)), (513, (8, 8, 2)), (256, (8, 8, 2)), (128, (8, 4, 2)), (64, (4, 4, 2)),
     (40, (4, 2, 2)), (16, (2, 2, 2)), (8, (2, 2, 1)), (2, (1, 1, 1))],
)  # fmt: skip
def test_default_pools_keep_the_paper_s_where_they_fit_and_leave_two_bins(bins, pools):
    assert default_pools(bins) == pools
    assert pooled_bins(bins, pools) >= min(bins, 2)
    m = build_model("crnn", n_channels=2, n_bins=bins, pools=pools, channels=(4, 4, 4))
    assert m(torch.randn(1, 2, 3, bins))[0].shape == (1, 3, 5, 3)


def test_default_pools_for_other_block_counts():
    assert default_pools(513, 2) == (8, 8) and default_pools(513, 4) == (8, 8, 2, 1)
    assert default_pools(64, 1) == (8,) and default_pools(64, 2) == (8, 4)


def test_spherical_head_maps_azimuth_elevation_in_dcase_frame():
    m = build_model("crnn", K=1, output="sph", **SMALL)
    lin = m.directions.linear
    torch.nn.init.zeros_(lin.weight)
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([math.pi / 2 + 2 * math.pi, 0.0]))  # az wraps: left
    hyps, _ = m(torch.randn(1, 4, 5, 32))
    assert torch.allclose(hyps[0, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)


def test_normalization_is_inside_the_model():
    torch.manual_seed(0)
    m = build_model("crnn", K=2, **SMALL).eval()
    z = torch.randn(2, 4, 10, 32)
    ref = m(z)
    mean, std = torch.rand(4, 32) * 3, torch.rand(4, 32) + 0.5
    m.norm.set_stats(mean, std)
    raw = z * std[None, :, None, :] + mean[None, :, None, :]
    out = m(raw)
    assert torch.allclose(out[0], ref[0], atol=1e-4) and torch.allclose(out[1], ref[1], atol=1e-5)


def test_no_confidence_head_gives_equal_scores():
    m = build_model("crnn", K=3, confidence=False, **SMALL)
    _, conf = m(torch.randn(2, 4, 6, 32))
    assert (conf == 1).all()


@pytest.mark.parametrize("name", ["crnn", "ensemble"])
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # from nn.GRU internals
def test_traceable_with_variable_batch_and_frames(name):
    torch.manual_seed(0)
    kw = dict(K=3, **SMALL) if name == "crnn" else dict(members=2, member_kwargs=SMALL)
    m = build_model(name, **kw).eval()
    traced = torch.jit.trace(m, torch.randn(2, 4, 25, 32))
    x = torch.randn(3, 4, 40, 32)
    for a, b in zip(traced(x), m(x), strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_ensemble_stacks_members_with_equal_confidence():
    torch.manual_seed(0)
    e = build_model("ensemble", members=3, member_kwargs=SMALL).eval()
    x = torch.randn(2, 4, 7, 32)
    hyps, conf = e(x)
    assert hyps.shape == (2, 7, 3, 3) and (conf == 1).all()
    assert torch.allclose(hyps[:, :, 1], e.members[1](x)[0][:, :, 0])


@pytest.mark.parametrize("name", ["crnn", "ensemble"])
def test_save_load_round_trip(tmp_path, name):
    torch.manual_seed(0)
    kw = dict(K=3, **SMALL) if name == "crnn" else dict(members=2, member_kwargs=SMALL)
    kw_json = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
    m = build_model(name, **kw).eval()
    save_model(tmp_path, m, name, kw_json, method="x", K=3)
    m2, meta = load_model(tmp_path)
    x = torch.randn(1, 4, 9, 32)
    assert meta["method"] == "x"
    assert all(torch.equal(a, b) for a, b in zip(m(x), m2(x), strict=True))
