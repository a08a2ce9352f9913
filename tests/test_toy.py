"""Toy experiment: data follows the stated law, the loss picks winners, ssl toy runs end to end."""

import numpy as np
import pandas as pd
import torch
from typer.testing import CliRunner

from ssl_toolkit.toy import quadrant_probs, sample_batch, sample_points, toy_loss


def test_quadrant_law_and_target_count():
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(quadrant_probs(np.array([0.2])), [[0.4, 0.4, 0.1, 0.1]])
    pts = sample_points(rng, np.full(1, 0.2), 20000)[0]
    same_sign = np.mean(np.sign(pts[:, 0]) == np.sign(pts[:, 1]))
    assert abs(same_sign - 0.8) < 0.02 and np.abs(pts).max() <= 1
    t, _, active = sample_batch(rng, 20000)
    two = active[:, 1]
    near_edge = np.abs(t[:, 0] - 0.5) > 0.45  # |1 - 2t| > 0.9
    assert two[near_edge].mean() > 0.88 and two[np.abs(t[:, 0] - 0.5) < 0.05].mean() < 0.12


def test_loss_hand_computed():
    hyps = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]])  # (1, 3, 2)
    targets = torch.tensor([[[0.0, 0.5], [0.9, 1.0]]])  # (1, 2, 2)
    logits = torch.zeros(1, 3)
    wta = toy_loss(
        hyps, logits, targets, torch.tensor([[True, True]]), confidence=False, negatives=None
    )
    assert abs(wta.item() - (0.5 + 0.1) / 2) < 1e-5
    only_first = toy_loss(
        hyps, logits, targets, torch.tensor([[True, False]]), confidence=False, negatives=None
    )
    assert abs(only_first.item() - 0.5) < 1e-5
    logits.requires_grad_(True)
    toy_loss(
        hyps, logits, targets, torch.tensor([[True, True]]), confidence=True, negatives=None
    ).backward()
    assert (logits.grad[0, :2] < 0).all() and logits.grad[0, 2] > 0  # winners up, loser down


def test_cli_toy_quick(tmp_path):
    from ssl_toolkit.cli import app

    res = CliRunner().invoke(app, ["toy", str(tmp_path / "toy"), "--quick", "--steps", "100"])
    assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp_path / "toy" / "summary.csv").set_index("method")
    assert set(s.index) == {"smcl", "rmcl", "rmcl*", "ie"}
    assert s.mean_emd["ie"] > s.mean_emd["rmcl"] and s.mean_emd["ie"] > s.mean_emd["smcl"]
    assert (tmp_path / "toy" / "hypotheses.png").stat().st_size > 1000
