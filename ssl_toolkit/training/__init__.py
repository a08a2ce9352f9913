"""``ssl train``: fit a multi-hypothesis model on a features artifact.

``train(features, out, cfg)`` writes a ``run`` artifact: ``model.safetensors`` +
``model.json`` (best weights on the validation loss), ``history.csv`` (one row per
epoch), ``checkpoint/`` (resume state). Launched by ``torchrun --nproc-per-node N
-m ssl_toolkit train ...`` it trains with DistributedDataParallel (gloo on CPU,
NCCL on CUDA) and a distributed sampler; ``batch_size`` is then the global batch.
"""

from .options import METHODS, TrainConfig
from .run import model_kwargs, train

__all__ = ["METHODS", "TrainConfig", "model_kwargs", "train"]
