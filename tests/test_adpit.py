"""ADPIT (multi-ACCDOA): candidates, hand-computed cases, a brute-force reference, the
official 13-candidate formulation, gradients."""

import itertools

import numpy as np
import pytest
import torch

from ssl_toolkit.core.geometry import rad, sph_to_unit
from ssl_toolkit.losses import adpit_loss
from ssl_toolkit.losses.adpit import adpit_errors, candidate_table

D = torch.float64


def unit(az_deg, el_deg=0.0):
    return sph_to_unit(torch.tensor(rad(az_deg), dtype=D), torch.tensor(rad(el_deg), dtype=D))


def frame(events, n_slots=3):
    """``(directions [1, 1, S, 3], activity [1, 1, S])`` with ``events`` in the first slots."""
    d = torch.zeros(1, 1, n_slots, 3, dtype=D)
    a = torch.zeros(1, 1, n_slots, dtype=torch.bool)
    for s, e in enumerate(events):
        d[0, 0, s], a[0, 0, s] = e, True
    return d, a


def out(*tracks):
    """A ``[1, 1, N, 1, 3]`` output from N track vectors."""
    return torch.stack(tracks)[None, None, :, None].clone().requires_grad_(True)


def test_candidate_table_is_the_official_13_for_three_tracks():
    table, counts = candidate_table(3)
    assert table.shape == (14, 3) and list(np.bincount(counts)) == [1, 1, 6, 6]
    assert table[0].tolist() == [3, 3, 3]  # the silent candidate: the zero target
    twos = {"".join(f"B{i}" for i in row) for row in table[counts == 2]}
    assert twos == {"B0B0B1", "B0B1B0", "B0B1B1", "B1B0B0", "B1B0B1", "B1B1B0"}
    assert {tuple(r) for r in table[counts == 3]} == set(itertools.permutations(range(3)))
    assert table[counts == 1].tolist() == [[0, 0, 0]]
    # other track counts: surjections (N = 4: 1 + 14 + 36 + 24) and plain ACCDOA (N = 1)
    assert len(candidate_table(4)[0]) == 1 + 1 + 14 + 36 + 24
    assert candidate_table(1)[0].tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="1 to 6 tracks"):
        candidate_table(7)


def test_one_event_is_duplicated_on_every_track():
    """Output near A on tracks 0 and 1 and elsewhere on track 2: the (A, A, A) candidate,
    computed by hand (no other candidate applies to one event)."""
    a = unit(30)
    d, act = frame([a])
    y = out(0.9 * a, a + torch.tensor([0.1, 0, 0], dtype=D), unit(-120) * 0.5)
    want = (
        ((0.9 * a - a) ** 2).sum() + 0.1**2 + ((unit(-120) * 0.5 - a) ** 2).sum()
    ) / 9  # mean over 3 tracks x 3 coordinates
    assert adpit_loss(y, d, act).item() == pytest.approx(want.item(), rel=1e-12)


def test_two_events_pick_the_best_arrangement_b1_b0_b1():
    b0, b1 = unit(0), unit(90, 20)
    d, act = frame([b0, b1])
    noise = torch.tensor([0.05, -0.02, 0.01], dtype=D)
    y = out(b1 + noise, 0.8 * b0, b1 - noise)
    want = ((noise**2).sum() * 2 + ((0.2 * b0) ** 2).sum()) / 9
    assert adpit_loss(y, d, act).item() == pytest.approx(want.item(), rel=1e-12)
    # the same output against (B0B1B1) would cost far more: the search is real
    fixed = ((y[0, 0, :, 0] - torch.stack([b0, b1, b1])) ** 2).sum() / 9
    assert fixed.item() > 10 * want.item()


def test_three_events_are_permuted():
    c = [unit(0), unit(120), unit(-120, 30)]
    d, act = frame(c)
    y = out(c[2], c[0], 0.7 * c[1])  # the permutation (C2, C0, C1), one track short
    want = ((0.3 * c[1]) ** 2).sum() / 9
    assert adpit_loss(y, d, act).item() == pytest.approx(want.item(), rel=1e-12)


def test_silence_targets_zero_and_the_exact_target_costs_nothing():
    d, act = frame([])
    y = out(unit(10) * 0.2, unit(50) * 0.1, torch.zeros(3, dtype=D))
    assert adpit_loss(y, d, act).item() == pytest.approx((0.04 + 0.01) / 9)
    a, b = unit(10), unit(200, -40)
    for events, tracks in (([a], (a, a, a)), ([a, b], (b, a, a)), ([a, b, a], (a, a, b))):
        d, act = frame(events)
        assert adpit_loss(out(*tracks), d, act).item() == pytest.approx(0.0, abs=1e-15)


def test_events_beyond_the_tracks_are_ignored_first_n_in_slot_order():
    """Four events of one class and three tracks: the first three (slot order) are the
    targets; an output on the fourth gains nothing."""
    e = [unit(0), unit(90), unit(180), unit(-90)]
    d, act = frame(e, n_slots=4)
    assert adpit_loss(out(e[1], e[2], e[0]), d, act).item() == pytest.approx(0.0, abs=1e-15)
    assert adpit_loss(out(e[1], e[2], e[3]), d, act).item() > 0.1


def test_classes_split_events_and_out_of_range_classes_are_ignored():
    a, b = unit(40), unit(-100, 10)
    d, act = frame([a, b])
    classes = torch.tensor([[[1, 0, -1]]])
    y = torch.zeros(1, 1, 3, 2, 3, dtype=D)  # (B, T, N, C=2, 3)
    y[0, 0, :, 0] = b  # class 0: b on every track
    y[0, 0, :, 1] = a  # class 1: a on every track
    assert adpit_loss(y, d, act, classes).item() == pytest.approx(0.0, abs=1e-15)
    errs = adpit_errors(y, d, act, torch.tensor([[[1, 5, -1]]]))  # b: class 5 of 2
    assert errs[0, 0, 0].item() == pytest.approx(3.0)  # class 0 silent: 3 unit tracks
    with pytest.raises(ValueError, match="C = 1"):
        adpit_loss(y, d, act)


def brute_force(y, d, act, cls, n_classes):
    """Per (b, t, c), every candidate enumerated in a plain loop (numpy)."""
    y, d, act = y.detach().numpy(), d.numpy(), act.numpy()
    b_, t_, n, _, _ = y.shape
    total = 0.0
    for b, t, c in itertools.product(range(b_), range(t_), range(n_classes)):
        ev = [d[b, t, s] for s in range(d.shape[2]) if act[b, t, s] and cls[b, t, s] == c][:n]
        tracks = y[b, t, :, c]
        if not ev:
            total += (tracks**2).sum()
            continue
        costs = [
            ((tracks - np.stack([ev[i] for i in f])) ** 2).sum()
            for f in itertools.product(range(len(ev)), repeat=n)
            if len(set(f)) == len(ev)
        ]
        total += min(costs)
    return total / (b_ * t_ * n_classes * n * 3)


@pytest.mark.parametrize("n_tracks,n_classes", [(3, 1), (3, 4), (2, 3), (4, 2), (1, 2)])
def test_vectorized_loss_equals_a_brute_force_loop(rng, n_tracks, n_classes):
    b, t, s = 3, 5, 5
    v = rng.normal(size=(b, t, s, 3))
    d = torch.tensor(v / np.linalg.norm(v, axis=-1, keepdims=True))
    act = torch.tensor(rng.random((b, t, s)) < 0.6)
    cls = rng.integers(0, n_classes, size=(b, t, s))
    y = torch.tensor(rng.uniform(-1, 1, size=(b, t, n_tracks, n_classes, 3)))
    classes = torch.tensor(np.where(act.numpy(), cls, -1)) if n_classes > 1 else None
    got = adpit_loss(y, d, act, classes).item()
    want = brute_force(y, d, act, cls if n_classes > 1 else np.zeros_like(cls), n_classes)
    assert got == pytest.approx(want, rel=1e-12)


def official_style(y, d, act):
    """The official 13-candidate, padded formulation (N = 3, one class), from its
    description: per frame, targets A0 (one event), B0/B1 (two), C0-C2 (three or more),
    zero where they do not apply; each candidate padded with the other groups' first
    arrangement so inapplicable candidates equal the applicable one; the argmin picked."""
    b_, t_ = y.shape[:2]
    z = torch.zeros(b_, t_, 3, dtype=y.dtype)
    groups = {k: z.clone() for k in ("A0", "B0", "B1", "C0", "C1", "C2")}
    for b, t in itertools.product(range(b_), range(t_)):
        ev = [d[b, t, s] for s in range(d.shape[2]) if act[b, t, s]]
        names = {1: ["A0"], 2: ["B0", "B1"]}.get(len(ev), ["C0", "C1", "C2"])
        for name, e in zip(names, ev[:3], strict=False):
            groups[name][b, t] = e
    g = groups
    cands_a = [(g["A0"],) * 3]
    cands_b = [tuple(g[f"B{i}"] for i in f) for f in
               ((0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0))]  # fmt: skip
    cands_c = [tuple(g[f"C{i}"] for i in p) for p in itertools.permutations(range(3))]
    cat = lambda c: torch.stack(c, 2)  # noqa: E731  (B, T, 3 tracks, 3)
    pad_a, pad_b, pad_c = cat(cands_b[0]) + cat(cands_c[0]), cat(cands_a[0]) + cat(
        cands_c[0]), cat(cands_a[0]) + cat(cands_b[0])  # fmt: skip
    targets = [cat(c) + pad_a for c in cands_a] + [cat(c) + pad_b for c in cands_b]
    targets += [cat(c) + pad_c for c in cands_c]
    yy = y[:, :, :, 0]  # (B, T, 3, 3)
    losses = torch.stack([((yy - tg) ** 2).mean((-1, -2)) for tg in targets])  # (13, B, T)
    return losses.gather(0, losses.argmin(0, keepdim=True)).mean()


def test_equals_the_official_padded_13_candidates(rng):
    b, t, s = 4, 6, 4
    v = rng.normal(size=(b, t, s, 3))
    d = torch.tensor(v / np.linalg.norm(v, axis=-1, keepdims=True))
    act = torch.tensor(rng.random((b, t, s)) < 0.5)
    y = torch.tensor(rng.uniform(-1, 1, size=(b, t, 3, 1, 3)))
    assert adpit_loss(y, d, act).item() == pytest.approx(official_style(y, d, act).item())


def test_gradients_flow_to_the_chosen_candidate_only():
    b0, b1 = unit(0), unit(90)
    d, act = frame([b0, b1])
    y = out(b1 * 0.9, b0 * 0.9, b1 * 0.9)  # best: (B1, B0, B1)
    adpit_loss(y, d, act).backward()
    g = y.grad[0, 0, :, 0]
    want = 2 * (torch.stack([b1, b0, b1]) * 0.9 - torch.stack([b1, b0, b1])) / 9
    torch.testing.assert_close(g, want)
    y = torch.randn(2, 3, 3, 2, 3, requires_grad=True)
    dd = torch.nn.functional.normalize(torch.randn(2, 3, 3, 3), dim=-1)
    aa = torch.rand(2, 3, 3) < 0.7
    adpit_loss(y, dd, aa, torch.randint(0, 2, (2, 3, 3))).backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_bad_shapes_are_refused():
    d, act = frame([unit(0)])
    with pytest.raises(ValueError, match=r"\[B, T, N, C, 3\]"):
        adpit_loss(torch.zeros(1, 1, 3, 3), d, act)
    with pytest.raises(ValueError, match="disagree"):
        adpit_loss(torch.zeros(1, 2, 3, 1, 3, dtype=D), d, act)
