"""Run under ``torchrun --nproc-per-node 2``: train every method with DDP (gloo).

Usage: ``torchrun ... ddp_every_method.py FEATURES OUT_DIR``. One process group serves
all methods (the library joins an existing group and the script leaves it at the end).
"""

import sys
from pathlib import Path

import torch

from ssl_toolkit.core.config import resolve
from ssl_toolkit.training import METHODS, TrainConfig, run

TINY = {"channels": [8, 8], "pools": [4, 4], "gru_layers": 1, "gru_units": 16}


def main() -> None:
    features, out = sys.argv[1], Path(sys.argv[2])
    torch.distributed.init_process_group("gloo")
    run.teardown = lambda rt: None  # keep the group for the next method
    for method in METHODS:
        cfg = resolve(
            TrainConfig,
            TINY,
            {
                "method": method,
                "K": 2,
                "epochs": 1,
                "batch_size": 8,
                "negatives": "1" if method == "rmcl" else "all",
            },
        )
        run.train(features, out / method, cfg)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
