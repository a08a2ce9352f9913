"""Toy experiment: the data follow the stated law, the losses honour their options, the EMD is
sound, training is deterministic, and a quick `ssl toy` ranks IE last."""

import math

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from ssl_toolkit.experiments.toy.config import ToyConfig
from ssl_toolkit.experiments.toy.data import QUADRANTS, quadrant_probs, sample_batch, sample_points
from ssl_toolkit.experiments.toy.experiment import emd_plane
from ssl_toolkit.experiments.toy.model import single_hypothesis_loss, toy_loss, train_method


def quadrant_of(pts: np.ndarray) -> np.ndarray:
    """Index into QUADRANTS of each point: ``[..., 2] -> [...]``."""
    same = (np.sign(pts)[..., None, :] == QUADRANTS).all(-1)  # (..., 4)
    assert same.sum(-1).min() == 1
    return same.argmax(-1)


def test_quadrant_probabilities_match_the_law():
    rng = np.random.default_rng(0)
    for t in (0.0, 0.2, 0.5, 0.9):
        p = quadrant_probs(np.array([t]))[0]
        np.testing.assert_allclose(p, [(1 - t) / 2, (1 - t) / 2, t / 2, t / 2])
        pts = sample_points(rng, np.array([t]), 20000)[0]
        freq = np.bincount(quadrant_of(pts), minlength=4) / len(pts)
        assert np.abs(freq - p).max() < 0.015  # > 4 sigma at n = 20,000
        assert np.abs(pts).max() <= 1
        np.testing.assert_allclose(np.abs(pts).mean(0), 0.5, atol=0.01)  # uniform in a quadrant


def test_target_count_and_independent_quadrants():
    rng = np.random.default_rng(1)
    t, targets, active = sample_batch(rng, 100000)
    t = t[:, 0]
    assert active[:, 0].all() and targets.shape == (100000, 2, 2)
    two = active[:, 1]
    for lo in np.arange(0, 1, 0.1):  # P(2 targets | t) = |1 - 2t|, per bin of t
        b = (t >= lo) & (t < lo + 0.1)
        assert abs(two[b].mean() - np.abs(1 - 2 * t[b]).mean()) < 0.02
    # Both targets drawn independently: P(both in (-,-) or (+,+) | t) = (1 - t)^2.
    q = quadrant_of(targets[two])  # (N2, 2)
    both_diag = (q < 2).all(1)
    assert abs(both_diag.mean() - ((1 - t[two]) ** 2).mean()) < 0.01


def test_emd_of_the_truth_and_of_a_point_mass():
    rng = np.random.default_rng(2)
    gt, other = sample_points(rng, np.zeros(2), 400).astype(np.float64)  # t = 0: (-,-), (+,+)
    w = np.full(400, 1 / 400)
    assert emd_plane(gt, w, gt) < 1e-9
    assert emd_plane(other, w, gt) < 0.2  # two samples of the same law: sampling noise only
    assert emd_plane(other * [-1, 1], w, gt) > 0.5  # its mirror image, in (+,-) and (-,+)
    # A point mass at the origin against the uniform law on [-1, 1]^2 (t = 1/2): E|U| for U
    # uniform in the unit square, (sqrt(2) + asinh(1)) / 3.
    uni = sample_points(rng, np.array([0.5]), 4000)[0].astype(np.float64)
    expected = (math.sqrt(2) + math.asinh(1)) / 3
    assert abs(emd_plane(np.zeros((1, 2)), np.ones(1), uni) - expected) < 0.02


def test_wta_loss_hand_computed():
    hyps = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]])  # (1, 3, 2)
    targets = torch.tensor([[[0.0, 0.5], [0.9, 1.0]]])  # (1, 2, 2)
    logits = torch.zeros(1, 3)
    both, first = torch.tensor([[True, True]]), torch.tensor([[True, False]])
    wta = toy_loss(hyps, logits, targets, both, confidence=False, negatives=None)
    assert abs(wta.item() - (0.5 + 0.1) / 2) < 1e-5
    only_first = toy_loss(hyps, logits, targets, first, confidence=False, negatives=None)
    assert abs(only_first.item() - 0.5) < 1e-5
    logits.requires_grad_(True)
    toy_loss(hyps, logits, targets, both, confidence=True, negatives=None).backward()
    assert (logits.grad[0, :2] < 0).all() and logits.grad[0, 2] > 0  # winners up, loser down


def _random_problem(seed: int, B: int = 16, K: int = 8):
    g = torch.Generator().manual_seed(seed)
    hyps = (torch.rand(B, K, 2, generator=g) * 2 - 1).requires_grad_(True)
    logits = torch.randn(B, K, generator=g).requires_grad_(True)
    targets = torch.rand(B, 2, 2, generator=g) * 2 - 1
    active = torch.stack([torch.ones(B, dtype=torch.bool), torch.rand(B, generator=g) < 0.5], 1)
    d = torch.cdist(hyps.detach(), targets)  # (B, K, 2)
    winners = torch.zeros(B, K, dtype=torch.bool)
    for b in range(B):
        for s in range(2):
            if active[b, s]:
                winners[b, d[b, :, s].argmin()] = True
    return hyps, logits, targets, active, winners


def test_wta_gradient_reaches_only_the_winners():
    hyps, logits, targets, active, winners = _random_problem(0)
    toy_loss(hyps, logits, targets, active, confidence=False, negatives=None).backward()
    moved = hyps.grad.abs().sum(-1) > 0  # (B, K)
    assert torch.equal(moved, winners)
    assert logits.grad is None  # sMCL has no confidence term


def test_negatives_option_is_honoured():
    hyps, logits, targets, active, winners = _random_problem(1)
    used = {}
    for n in (None, 0, 1, 3):
        logits.grad = None
        gen = torch.Generator().manual_seed(5)
        loss = toy_loss(hyps, logits, targets, active, confidence=True, negatives=n, gen=gen)
        loss.backward()
        used[n] = logits.grad != 0  # (B, K): hypotheses whose confidence the BCE trains
        assert (used[n] | ~winners).all()  # every winner is trained
    assert used[None].all()  # rMCL: every hypothesis (winners up, all others down)
    assert torch.equal(used[0], winners)
    for n in (1, 3):  # rMCL*: the winners and exactly n drawn non-winners per sample
        assert torch.equal((used[n] & ~winners).sum(1), torch.full((16,), n))
    assert not torch.equal(used[1], used[None]) and not torch.equal(used[1], used[3])


def test_single_hypothesis_loss_closest_or_all():
    hyp = torch.zeros(1, 2, requires_grad=True)
    targets = torch.tensor([[[0.6, 0.8], [0.3, 0.0]]])  # at distances 1.0 and 0.3
    both, first = torch.tensor([[True, True]]), torch.tensor([[True, False]])
    closest = single_hypothesis_loss(hyp, targets, both, closest=True)
    assert abs(closest.item() - 0.3) < 1e-5
    assert abs(single_hypothesis_loss(hyp, targets, both, closest=False).item() - 0.65) < 1e-5
    assert abs(single_hypothesis_loss(hyp, targets, first, closest=True).item() - 1.0) < 1e-5
    closest.backward()
    np.testing.assert_allclose(hyp.grad[0].numpy(), [-1.0, 0.0], atol=1e-5)  # to (0.3, 0)


def test_training_is_deterministic_and_ie_members_independent():
    cfg = ToyConfig(steps=5, batch_size=16, hidden=8, K=4, ie_members=5)
    ts = np.linspace(0, 1, 4)
    a, b = (train_method("rmcl*", cfg, seed=3).predict(ts) for _ in range(2))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (4, 4, 2) and np.allclose(a[1].sum(1), 1)
    hyps, w = train_method("ie", cfg, seed=3).predict(ts)
    assert hyps.shape == (4, 5, 2) and np.allclose(w, 0.2)
    assert np.unique(hyps[:, :, 0].round(6), axis=1).shape[1] == 5  # five distinct members


def test_cli_toy_quick(tmp_path):
    from ssl_toolkit.cli import app

    res = CliRunner().invoke(app, ["toy", str(tmp_path / "toy"), "--quick"])
    assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp_path / "toy" / "summary.csv").set_index("method")
    assert set(s.index) == {"smcl", "rmcl", "rmcl*", "ie"}
    assert s.mean_emd["ie"] > 2 * s.mean_emd.drop("ie").max()  # IE is worst, by far
    assert (tmp_path / "toy" / "summary.md").read_text().count("\n") == 6
    for png in ("hypotheses.png", "emd.png"):
        assert (tmp_path / "toy" / png).stat().st_size > 1000
