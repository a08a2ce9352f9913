import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_features(tmp_path):
    """A small valid features artifact (dummy features that encode directions)."""
    from ssl_toolkit.testing import make_features_artifact

    return make_features_artifact(tmp_path / "features", n_chunks=30, bins=32)
