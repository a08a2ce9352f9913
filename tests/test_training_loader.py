"""The training data path: batches read whole into reused buffers, by worker processes
or not, equal to the memory-mapped rows in the sampler's order; options chosen per device."""

import pickle
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import BatchSampler, DistributedSampler

from ssl_toolkit.core.config import ConfigError, resolve
from ssl_toolkit.features.store import open_features
from ssl_toolkit.training import TrainConfig, train
from ssl_toolkit.training import data as loader_module
from ssl_toolkit.training.data import LoaderOptions, loader_options, make_loader

TINY = {"channels": [8, 8], "pools": [4, 4], "gru_layers": 1, "gru_units": 16}


def expected_batches(fs, rows, batch_size, seed, epoch, rank=0, world=1):
    """The batches as the loader before this one made them: float32 rows of the memmaps
    at the positions of BatchSampler(DistributedSampler(seed), epoch)."""
    s = DistributedSampler(range(len(rows)), world, rank, shuffle=True, seed=seed)
    s.set_epoch(epoch)
    for positions in BatchSampler(s, batch_size, drop_last=False):
        r = rows[np.asarray(positions)]
        yield (
            np.asarray(fs.features[r], np.float32),
            np.asarray(fs.directions[r], np.float32),
            np.asarray(fs.activity[r], bool),
        )


def assert_same_batches(got, want):
    got, want = list(got), list(want)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[0].dtype == torch.float32 and g[2].dtype == torch.bool
        for a, b in zip(g, w, strict=True):
            np.testing.assert_array_equal(a.numpy(), b)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_the_rows_in_the_samplers_order_whatever_the_workers(tiny_features, workers):
    """Two epochs (a short last batch each); every batch is kept (list) and still right
    at the end: delivered batches are copies, never views of a reused buffer."""
    fs = open_features(tiny_features.path)
    rows = fs.rows("train")  # 18 chunks: batches of 4, 4, 4, 4, 2
    opts = LoaderOptions(num_workers=workers, prefetch_factor=2)
    loader, sampler = make_loader(fs, rows, 4, shuffle=True, seed=5, options=opts)
    assert loader.ring.slots == opts.ahead + 2 and len(loader) == 5
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        assert_same_batches(loader, expected_batches(fs, rows, 4, 5, epoch))


def test_an_abandoned_epoch_does_not_disturb_the_next_one(tiny_features):
    """`--max-steps` leaves the loader mid-epoch (batches still in flight in the workers)."""
    fs = open_features(tiny_features.path)
    rows = fs.rows("train")
    opts = LoaderOptions(num_workers=2, prefetch_factor=2)
    loader, sampler = make_loader(fs, rows, 3, shuffle=True, seed=1, options=opts)
    sampler.set_epoch(0)
    for i, _ in enumerate(loader):
        if i == 1:
            break
    sampler.set_epoch(1)
    assert_same_batches(loader, expected_batches(fs, rows, 3, 1, 1))


def test_workers_started_by_spawn_read_the_same_batches(tiny_features):
    """spawn (macOS) and forkserver pickle the dataset: memory maps by path, the ring by
    shared-memory handle, no data."""
    fs = open_features(tiny_features.path)
    rows = fs.rows("val")
    opts = LoaderOptions(num_workers=1, prefetch_factor=2)
    loader, sampler = make_loader(fs, rows, 4, shuffle=True, seed=2, options=opts, context="spawn")
    sampler.set_epoch(3)
    assert_same_batches(loader, expected_batches(fs, rows, 4, 2, 3))


def test_the_dataset_pickles_without_its_data(tiny_features):
    fs = open_features(tiny_features.path)
    opts = LoaderOptions(num_workers=1)
    loader, _ = make_loader(fs, fs.rows(), 8, shuffle=False, seed=0, options=opts)
    ds = loader.loader.dataset
    blob = bytes(ForkingPickler.dumps(ds))
    assert len(blob) < 20_000 < fs.features.nbytes
    twin = pickle.loads(blob)
    assert twin.ring.buffers[0].data_ptr() != 0
    assert twin[(0, [3, 1])] == (0, 2)  # reads into the shared ring
    want = np.asarray(fs.features[fs.rows()[[3, 1]]])
    np.testing.assert_array_equal(ds.ring.slot(0, 2)[0].numpy(), want)


def test_the_global_rng_does_not_depend_on_the_workers(tiny_features):
    """Dropout and drawn negatives use the global RNG: iterating a loader never draws
    from it, with or without (persistent) workers."""
    fs = open_features(tiny_features.path)
    states = []
    for workers in (0, 2):
        opts = LoaderOptions(num_workers=workers)
        loader, sampler = make_loader(fs, fs.rows("train"), 6, shuffle=True, seed=0, options=opts)
        torch.manual_seed(0)
        for epoch in range(2):
            sampler.set_epoch(epoch)
            list(loader)
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], torch.manual_seed(0).get_state())
    assert torch.equal(states[0], states[1])


@pytest.mark.parametrize(
    ("device", "cores", "world", "want"),
    [
        ("cpu", 16, 1, LoaderOptions(0, False, 2)),
        ("cuda", 2, 1, LoaderOptions(1, True, 2)),
        ("cuda", 16, 1, LoaderOptions(4, True, 2)),
        ("cuda", 8, 4, LoaderOptions(1, True, 2)),  # DDP: 2 cores per process
        ("cuda", 1, 1, LoaderOptions(1, True, 2)),
        ("mps", 8, 1, LoaderOptions(4, False, 2)),
    ],
)
def test_loader_options_follow_the_device_and_the_cores(monkeypatch, device, cores, world, want):
    monkeypatch.setattr(loader_module, "available_cores", lambda: cores)
    assert loader_options(device, world=world) == want


def test_loader_options_given_in_the_config_win(monkeypatch):
    monkeypatch.setattr(loader_module, "available_cores", lambda: 16)
    assert loader_options("cpu", 3, True, 4) == LoaderOptions(3, False, 4)  # no pinning on CPU
    assert loader_options("cuda", 0, False) == LoaderOptions(0, False, 2)
    assert LoaderOptions(2, True, 3).describe() == (
        "2 data-loader workers (3 batches ahead each, pinned)"
    )
    with pytest.raises(ConfigError, match="'prefetch_factor'"):
        resolve(TrainConfig, {"prefetch_factor": 0})
    with pytest.raises(ConfigError, match="'num_workers'"):
        resolve(TrainConfig, {"num_workers": -1})


def test_training_with_workers_reaches_the_same_weights(tiny_features, tmp_path):
    """The same seed gives the same run with 0 or 2 workers, also when `max_steps` ends
    an epoch midway (18 train chunks in batches of 6: steps 1-3, then 4-5 of 6)."""
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        opts = dict(K=2, epochs=3, max_steps=5, batch_size=6, num_workers=workers)
        man = train(tiny_features.path, out, resolve(TrainConfig, TINY, opts, {"seed": 4}))
        assert man.extra["data_loader"]["num_workers"] == workers
        runs[workers] = load_file(str(Path(out) / "model.safetensors"))
    a, b = runs[0], runs[2]
    assert all(torch.equal(a[k], b[k]) for k in a)
