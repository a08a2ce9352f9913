"""Learning check: validation oracle error of trained runs vs random directions.

``python -m ssl_toolkit.training.check FEATURES RUN [RUN ...]`` prints, for each
run, its method, K and best validation oracle error (degrees), next to the oracle
error of K directions drawn uniformly on the sphere for every frame of the same
validation chunks (the chance level a trained model must beat).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from rich.table import Table

from ..analysis.metrics import chance_oracle_error
from ..core import console
from ..core.artifacts import read_manifest
from ..features.store import open_features


def random_oracle_deg(features, k: int, split: str = "val", seed: int = 0) -> float:
    """Oracle error (degrees) of ``k`` uniform random directions per frame on ``split``.

    Args:
        features: a features artifact path.
        k: number of random hypotheses per frame.
        split: which chunks.
        seed: of the random directions.
    """
    fs = open_features(features)
    rows = fs.rows(split)
    d = np.asarray(fs.directions[rows], dtype=np.float64).reshape(-1, fs.max_sources, 3)
    a = np.asarray(fs.activity[rows], dtype=bool).reshape(-1, fs.max_sources)
    return chance_oracle_error(d, a, k, seed)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    features, runs = argv[0], argv[1:]
    table = Table(title=f"validation oracle error on {features}")
    for col in ("run", "method", "K", "epochs", "val oracle (deg)", "random K dirs (deg)"):
        table.add_column(col, justify="right")
    for run in runs:
        e = read_manifest(run, "run").extra
        rand = random_oracle_deg(features, int(e["K"]))
        table.add_row(
            Path(run).name,
            e["method"],
            str(e["K"]),
            str(e["epochs_run"]),
            f"{e['val_oracle_deg']:.1f}",
            f"{rand:.1f}",
        )
    console.out.print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
