"""Losses on hand-computed cases: values, winners, gradients, masking, empty frames."""

import itertools
import math

import pytest
import torch

from ssl_toolkit.core.geometry import great_circle, rad, sph_to_unit
from ssl_toolkit.losses import (
    distance_matrix,
    oracle_angle,
    pit_loss,
    rmcl_loss,
    temperature_at,
    winner_indicator,
)

D = torch.float64


def unit(az_deg, el_deg=0.0):
    return sph_to_unit(torch.tensor(rad(az_deg), dtype=D), torch.tensor(rad(el_deg), dtype=D))


def case():
    """One frame, K=3 hypotheses (front, left, back), S=3 targets (the third inactive).

    Target 0 is 10 deg left of front (closest: hyp 0 at 10 deg, hyp 1 at 80 deg);
    target 1 is left and 30 deg up (closest: hyp 1 at 30 deg); target 2 sits on
    hyp 2 but is inactive.
    """
    hyps = torch.stack([unit(0), unit(90), unit(180)])[None, None].requires_grad_(True)
    targets = torch.stack([unit(10), unit(90, 30), unit(180)])[None, None]
    active = torch.tensor([[[True, True, False]]])
    conf = torch.tensor([[[0.9, 0.6, 0.2]]], dtype=D)
    return hyps, conf, targets, active  # (1, 1, 3, 3), (1, 1, 3), (1, 1, 3, 3), (1, 1, 3)


def test_wta_value_is_mean_distance_to_closest_hypothesis():
    hyps, conf, targets, active = case()
    loss = rmcl_loss(hyps, conf, targets, active, beta=0.0)
    assert loss.item() == pytest.approx(rad(20.0), abs=1e-5)  # mean(10 deg, 30 deg)


def test_rmcl_adds_bce_against_winner_indicator():
    hyps, conf, targets, active = case()
    bce = -(math.log(0.9) + math.log(0.6) + math.log(1 - 0.2)) / 3  # winners: hyps 0 and 1
    loss = rmcl_loss(hyps, conf, targets, active, beta=2.0)
    assert loss.item() == pytest.approx(rad(20.0) + 2.0 * bce, abs=1e-5)
    ind = winner_indicator(distance_matrix(hyps, targets), active)
    assert ind.tolist() == [[[1.0, 1.0, 0.0]]]  # hyp 2 only wins the inactive target


def test_gradients_reach_winners_only():
    hyps, conf, targets, active = case()
    rmcl_loss(hyps, conf, targets, active, beta=0.0).backward()
    g = hyps.grad[0, 0].norm(dim=-1)
    assert g[0] > 0 and g[1] > 0 and g[2] == 0


def test_frames_without_source_give_zero_distance_and_push_conf_down():
    hyps, conf, targets, _ = case()
    none = torch.zeros(1, 1, 3, dtype=torch.bool)
    assert rmcl_loss(hyps, conf, targets, none, beta=0.0).item() == 0.0
    bce = -(math.log(0.1) + math.log(0.4) + math.log(0.8)) / 3  # every target is 0
    assert rmcl_loss(hyps, conf, targets, none).item() == pytest.approx(bce, abs=1e-6)


def test_relaxed_wta_gives_epsilon_to_the_others():
    hyps, conf, targets, active = case()
    eps = 0.1
    d = torch.tensor(
        [[10.0, 80.0, 170.0], [90.0, 30.0, 90.0 + 0.0]], dtype=D
    )  # degrees, rows = active targets
    d[1, 0] = d[1, 2] = 90.0  # up-left is 90 deg from front and from back
    per_target = (1 - eps) * d.min(1).values + eps / 2 * (d.sum(1) - d.min(1).values)
    loss = rmcl_loss(hyps, conf, targets, active, mode="relaxed", epsilon=eps, beta=0.0)
    assert loss.item() == pytest.approx(rad(per_target.mean().item()), abs=1e-5)
    loss.backward()
    assert (hyps.grad[0, 0].norm(dim=-1) > 0).all()  # everyone is pulled a little


def test_top_n_wta_averages_the_n_closest():
    hyps, conf, targets, active = case()
    # target 0: 10 and 80 deg; target 1: 30 and 90 deg
    loss = rmcl_loss(hyps, conf, targets, active, mode="top-n", top_n=2, beta=0.0)
    assert loss.item() == pytest.approx(rad(((10 + 80) / 2 + (30 + 90) / 2) / 2), abs=1e-5)


def test_amcl_is_softmin_weighted_and_tends_to_wta():
    hyps, conf, targets, active = case()
    t = 0.5
    d = distance_matrix(hyps, targets)[0, 0, :2]  # (2 active targets, K)
    expected = (torch.softmax(-d / t, -1) * d).sum(-1).mean()
    loss = rmcl_loss(hyps, conf, targets, active, mode="amcl", temperature=t, beta=0.0)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    cold = rmcl_loss(hyps, conf, targets, active, mode="amcl", temperature=1e-4, beta=0.0)
    assert cold.item() == pytest.approx(rad(20.0), abs=1e-5)
    hot = rmcl_loss(hyps, conf, targets, active, mode="amcl", temperature=1e4, beta=0.0)
    assert hot.item() == pytest.approx(d.mean().item(), abs=1e-4)  # uniform weights


def test_temperature_schedules_end_in_wta():
    for sched in ("constant", "linear", "exponential"):
        assert temperature_at(0.0, 2.0, sched) == pytest.approx(2.0)
        assert temperature_at(0.95, 2.0, sched, wta_fraction=0.1) == 0.0
    assert temperature_at(0.45, 2.0, "linear", wta_fraction=0.1) == pytest.approx(1.0)
    assert temperature_at(0.45, 1.0, "exponential", t_min=0.01, wta_fraction=0.1) == (
        pytest.approx(0.1)
    )
    assert temperature_at(0.5, 2.0, "constant") == 2.0


def test_drawn_negatives_keep_positives_and_n_negatives_per_frame():
    k = 5
    hyps = torch.stack([unit(a) for a in (0, 72, 144, 216, 288)])[None, None]  # (1, 1, 5, 3)
    targets = unit(1)[None, None, None]  # one target on hyp 0
    active = torch.ones(1, 1, 1, dtype=torch.bool)
    conf = torch.tensor([[[0.9] + [0.2] * (k - 1)]], dtype=D)
    loss = rmcl_loss(hyps, conf, targets, active, beta=1.0, negatives=1)
    bce = -(math.log(0.9) + math.log(0.8)) / 2  # the positive and one negative
    assert loss.item() == pytest.approx(rad(1.0) + bce, abs=1e-6)
    all_neg = rmcl_loss(hyps, conf, targets, active, beta=1.0)
    bce_all = -(math.log(0.9) + (k - 1) * math.log(0.8)) / k  # every hypothesis is a term
    assert all_neg.item() == pytest.approx(rad(1.0) + bce_all, abs=1e-6)


def loop_rmcl(hyps, conf, targets, active, beta):
    """The straightforward per-frame loop, as the reference code is structured."""
    dist_sum, n_act, bce_sum = 0.0, 0, 0.0
    for b, t in itertools.product(range(hyps.shape[0]), range(hyps.shape[1])):
        y = torch.zeros(hyps.shape[2], dtype=D)
        for s in range(targets.shape[2]):
            if active[b, t, s]:
                d = great_circle(hyps[b, t], targets[b, t, s])
                dist_sum += d.min()
                n_act += 1
                y[d.argmin()] = 1
        bce_sum += torch.nn.functional.binary_cross_entropy(conf[b, t], y, reduction="sum")
    return dist_sum / max(n_act, 1) + beta * bce_sum / conf.numel()


def test_vectorized_rmcl_matches_per_frame_loop(rng):
    g = torch.Generator().manual_seed(0)
    hyps = torch.nn.functional.normalize(torch.randn(3, 4, 5, 3, generator=g, dtype=D), dim=-1)
    targets = torch.nn.functional.normalize(torch.randn(3, 4, 3, 3, generator=g, dtype=D), dim=-1)
    active = torch.rand(3, 4, 3, generator=g) > 0.4
    active[0, 0] = False  # a silent frame
    conf = torch.rand(3, 4, 5, generator=g, dtype=D) * 0.98 + 0.01
    ref = loop_rmcl(hyps, conf, targets, active, beta=0.7)
    assert rmcl_loss(hyps, conf, targets, active, beta=0.7).item() == pytest.approx(ref.item())
    assert oracle_angle(hyps, targets, active).item() == pytest.approx(
        loop_rmcl(hyps, conf, targets, active, beta=0.0).item()
    )


def test_pit_searches_permutations():
    # slots: left, front; targets: front, left -> the swap costs 0, the identity 180 deg
    hyps = torch.stack([unit(90), unit(0)])[None, None].requires_grad_(True)
    targets = torch.stack([unit(0), unit(90)])[None, None]
    active = torch.ones(1, 1, 2, dtype=torch.bool)
    conf = torch.tensor([[[0.9, 0.9]]], dtype=D)
    loss = pit_loss(hyps, conf, targets, active, beta=1.0)
    # abs 1e-3: great_circle clamps the cosine just inside 1 (finite gradients)
    assert loss.item() == pytest.approx(-math.log(0.9), abs=1e-3)
    identity = rad(90.0) * 2 / 2 - math.log(0.9)
    assert loss.item() < identity - 1.0


def brute_pit(hyps, conf, targets, active, beta):
    s_n = targets.shape[-2]
    d_tot, b_tot = 0.0, 0.0
    for b, t in itertools.product(range(hyps.shape[0]), range(hyps.shape[1])):
        best = None
        for perm in itertools.permutations(range(s_n)):
            d = sum(
                great_circle(targets[b, t, s], hyps[b, t, perm[s]]) * active[b, t, s]
                for s in range(s_n)
            )
            bce = sum(
                torch.nn.functional.binary_cross_entropy(conf[b, t, perm[s]], active[b, t, s].to(D))
                for s in range(s_n)
            )
            if best is None or d + beta * bce < best[0] + beta * best[1]:
                best = (d, bce)
        d_tot, b_tot = d_tot + best[0], b_tot + best[1]
    return d_tot / max(int(active.sum()), 1) + beta * b_tot / active.numel()


def test_pit_matches_brute_force_with_inactive_slots():
    g = torch.Generator().manual_seed(1)
    hyps = torch.nn.functional.normalize(torch.randn(2, 3, 3, 3, generator=g, dtype=D), dim=-1)
    targets = torch.nn.functional.normalize(torch.randn(2, 3, 3, 3, generator=g, dtype=D), dim=-1)
    active = torch.rand(2, 3, 3, generator=g) > 0.5
    conf = torch.rand(2, 3, 3, generator=g, dtype=D) * 0.98 + 0.01
    ref = brute_pit(hyps, conf, targets, active, beta=0.5)
    assert pit_loss(hyps, conf, targets, active, beta=0.5).item() == pytest.approx(ref.item())


def test_pit_refuses_slot_count_mismatch():
    h = torch.nn.functional.normalize(torch.randn(1, 1, 5, 3), dim=-1)
    with pytest.raises(ValueError, match="slots"):
        pit_loss(h, torch.rand(1, 1, 5), h[:, :, :3], torch.ones(1, 1, 3, dtype=torch.bool))


def test_wta_pieces_take_any_distance_matrix():
    """Assignment, winner indicator and drawn negatives work on a plane's distances too (the
    toy uses them): two targets, three hypotheses on a line, hand-computed."""
    from ssl_toolkit.losses import assigned_distance, negative_mask

    hyps = torch.tensor([[0.0], [1.0], [5.0]])  # (K, 1) points on a line
    targets = torch.tensor([[0.2], [4.0]])  # (S, 1)
    dist = (targets[:, None] - hyps[None]).abs().sum(-1)[None]  # (1, S, K)
    both, first = torch.tensor([[True, True]]), torch.tensor([[True, False]])
    assert assigned_distance(dist, both).item() == pytest.approx((0.2 + 1.0) / 2)
    assert assigned_distance(dist, first).item() == pytest.approx(0.2)
    assert winner_indicator(dist, both).tolist() == [[1.0, 0.0, 1.0]]
    assert winner_indicator(dist, first).tolist() == [[1.0, 0.0, 0.0]]
    gen = torch.Generator().manual_seed(0)
    kept = negative_mask(torch.tensor([[1.0, 0.0, 0.0]]).expand(1000, 3), 1, gen)
    assert kept[:, 0].all() and (kept[:, 1:].sum(1) == 1).all()  # the winner + one negative
    assert 0.4 < kept[:, 1].float().mean().item() < 0.6  # drawn uniformly
