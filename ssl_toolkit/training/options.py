"""``TrainConfig``: every option of ``ssl train``, with defaults in code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.config import ConfigError, check_choices, choose, resolve, to_dict
from ..features.augment import MODES as AUGMENT_MODES
from ..losses.adpit import MAX_TRACKS
from ..losses.annealed import SCHEDULES
from ..losses.wta import MODES
from ..models.localize import is_scored

METHODS = ("rmcl", "wta", "wta-relaxed", "wta-top-n", "amcl", "pit", "ie", "accdoa")
#: Defaults that depend on the method, applied under the TOML and CLI layers by
#: :func:`resolve_train_config` (``accdoa``: 3 tracks, as the DCASE baselines).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {"accdoa": {"K": 3}}
#: Options added after runs existed, with the value every older run was trained with: left
#: out of a run's recorded config (and fingerprint) while they have that value, and filled
#: in where a recorded config lacks them, so that older runs stay up to date and resumable
#: (``augment``: older runs were not augmented, new runs are by default).
LATE_OPTIONS = {"classes": False, "augment": "none", "freq_mask": 0}
DEVICES = ("auto", "cpu", "cuda", "mps")
AMP_DTYPES = ("auto", "bf16", "fp16")
#: Options of how a run is executed, not of what it learns: ``--resume`` may change them
#: (another machine, fp32 after trouble with AMP), and a checkpoint's fingerprint leaves
#: them out. A run's manifest records those of its last (resumed) part.
RUNTIME_OPTIONS = (
    "device",
    "amp",
    "amp_dtype",
    "compile",
    "num_workers",
    "pin_memory",
    "prefetch_factor",
    "tensorboard",
)


@dataclass(frozen=True)
class TrainConfig:
    """Options of a training run (resolved config stored in the run's manifest).

    Attributes:
        method: ``rmcl`` (WTA variant + confidence BCE), ``wta`` (MCL), ``wta-relaxed``
            (epsilon-WTA), ``wta-top-n``, ``amcl`` (annealed MCL, with scores), ``pit``
            (S slots, permutation search; K is set to the features' S), ``ie``
            (K single-hypothesis models trained with seeds seed, seed+1, ...) or
            ``accdoa`` (multi-ACCDOA trained with ADPIT, the DCASE 2022-2024 SELD
            baseline: K tracks per class of Cartesian vectors whose norms are the
            activities; duplicated tracks closer than 15 degrees are unified; the
            hypotheses are the K x classes tracks, the norms their confidences).
        K: hypotheses per frame (IE: members; accdoa: tracks per class, 1 to 6; when
            neither the TOML nor the CLI sets it, 3 for accdoa and 5 for the others).
        epochs: maximum number of epochs.
        batch_size: chunks per optimizer step (global: split across DDP processes).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps before the inverse-square-root decay
            (None: 5 % of the planned steps).
        max_steps: optional cap on optimizer steps (smoke tests).
        seed: seed of initialization, data order, dropout and drawn negatives.
        deterministic: deterministic algorithms (a resumed run then reaches the same weights).
        device: ``auto`` (CUDA > MPS > CPU), ``cpu``, ``cuda``, ``mps``.
        amp: mixed precision (autocast) in the dtype of ``amp_dtype``; ``--no-amp``: fp32.
        amp_dtype: ``auto``: on CUDA bf16 where supported, else fp16 (with loss scaling),
            and none (fp32) on CPU and MPS; ``bf16``: bf16 autocast on CUDA or CPU (fast
            on CPUs with native bf16, e.g. AVX512-BF16 or AMX; slower than fp32 on others);
            ``fp16``: fp16 autocast with loss scaling, on CUDA only.
        compile: ``torch.compile`` the model.
        patience: early stopping after this many epochs without a better val loss.
        grad_clip: max gradient norm (0: off).
        channels: filters of each conv block.
        pools: frequency max-pooling of each conv block (CLI ``--pools 4,4,2``). None
            (default): fitted to the features' F bins by
            :func:`ssl_toolkit.models.crnn.default_pools`: the paper's 128 in total,
            at most 8 per block in order (3 blocks: 8, 8, 2), the largest pool halved
            while fewer than 2 bins would be left (F >= 256: 8, 8, 2; 128-255: 8, 4, 2;
            64-127, e.g. 64 mel bands: 4, 4, 2; 32-63: 4, 2, 2). The run's resolved
            config records the pools used.
        gru_layers, gru_units: the bidirectional GRU.
        dropout: after conv blocks and between GRU layers.
        output: ``unit`` (normalized 3-D) or ``sph`` (azimuth/elevation) heads.
        wta_mode: rMCL's WTA variant: ``wta``, ``relaxed``, ``top-n``.
        epsilon: relaxed-WTA share of the non-winners.
        top_n: winners of top-n WTA.
        beta: weight of the confidence (rmcl, amcl) or activity (pit) BCE.
        negatives: ``all`` or an integer n of negatives drawn per frame (rMCL*).
        temperature: initial temperature of annealed MCL (radians).
        temperature_schedule: ``constant``, ``linear`` or ``exponential``.
        temperature_min: final temperature of the exponential schedule.
        wta_fraction: last fraction of training run as plain WTA (annealed MCL).
        num_workers: data-loading worker processes. Unset: none on CPU (the training
            process reads a batch in milliseconds); on CUDA or MPS, one per core the
            process may use less one, 1 to 4.
        pin_memory: page-locked batch buffers for asynchronous copies to a CUDA device
            (unset: on CUDA; ignored elsewhere).
        prefetch_factor: batches each worker reads ahead (unset: 2).
        tensorboard: also write TensorBoard event files to ``RUN/tensorboard/``
            (needs ``pip install tensorboard``).
        classes: class-aware training (``accdoa`` only): one set of K tracks per class of
            the features' per-frame classes (features without classes are refused).
            Off: class-agnostic, every source is of one class.
        augment: exact spatial augmentation of the training batches
            (:mod:`ssl_toolkit.features.augment`): each chunk is transformed by a symmetry
            of the features' array drawn at random (features by channel operations,
            labels by the same rotation or reflection); ``z``: the symmetries that map z to
            +-z (the elevations are kept; 16 for FOA, 8 for the tetrahedral array), ``full``:
            all of them (48 for FOA, 24 for the tetrahedral array), ``none``: off.
            Validation is never augmented.
        freq_mask: SpecAugment-style frequency mask of up to this many consecutive bins
            per training chunk, the same bins in every channel, set to the features' mean
            (0: off).
    """

    #: Options with a fixed set of values (checked and matched up to case by core.config).
    CHOICES = {
        "method": METHODS, "device": DEVICES, "amp_dtype": AMP_DTYPES, "output": ("unit", "sph"),
        "wta_mode": tuple(m for m in MODES if m != "amcl"), "temperature_schedule": SCHEDULES,
        "augment": AUGMENT_MODES,
    }  # fmt: skip

    method: str = "rmcl"
    K: int = 5
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int | None = None
    max_steps: int | None = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: bool = True
    amp_dtype: str = "auto"
    compile: bool = False
    patience: int = 10
    grad_clip: float = 5.0
    channels: tuple[int, ...] = (64, 64, 64)
    pools: tuple[int, ...] | None = None
    gru_layers: int = 4
    gru_units: int = 128
    dropout: float = 0.0
    output: str = "unit"
    wta_mode: str = "wta"
    epsilon: float = 0.05
    top_n: int = 2
    beta: float = 1.0
    negatives: str = "all"
    temperature: float = 0.5
    temperature_schedule: str = "exponential"
    temperature_min: float = 1e-3
    wta_fraction: float = 0.1
    num_workers: int | None = None
    pin_memory: bool | None = None
    prefetch_factor: int | None = None
    tensorboard: bool = False
    classes: bool = False
    augment: str = "z"
    freq_mask: int = 0

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first invalid option."""
        check_choices(self)
        for name in ("K", "epochs", "batch_size", "gru_layers", "gru_units", "top_n"):
            if getattr(self, name) < 1:
                raise ConfigError(f"option {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "max_steps"):
            v = getattr(self, name)
            if v is not None and v < (0 if name == "warmup_steps" else 1):
                raise ConfigError(f"option {name!r} must be positive, got {v}")
        self._validate_blocks()
        if not (self.lr > 0 and self.weight_decay >= 0 and self.grad_clip >= 0):
            raise ConfigError("options 'lr' (> 0), 'weight_decay', 'grad_clip' (>= 0) are invalid")
        if not 0 <= self.epsilon < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("options 'epsilon' and 'dropout' must be in [0, 1)")
        if self.beta < 0 or self.temperature < 0 or not 0 < self.temperature_min:
            raise ConfigError("options 'beta', 'temperature' >= 0 and 'temperature_min' > 0")
        if not 0 <= self.wta_fraction <= 1:
            raise ConfigError(f"option 'wta_fraction' must be in [0, 1], got {self.wta_fraction}")
        if self.negatives != "all" and not (self.negatives.isdigit() and int(self.negatives) > 0):
            raise ConfigError(
                f"option 'negatives' must be 'all' or a positive integer, got {self.negatives!r}"
            )
        if self.freq_mask < 0:
            raise ConfigError(
                f"option 'freq_mask' (--freq-mask) must be >= 0, got {self.freq_mask}"
            )
        if self.patience < 1:
            raise ConfigError(f"option 'patience' must be >= 1, got {self.patience}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"option 'num_workers' must be >= 0, got {self.num_workers}")
        if self.prefetch_factor is not None and self.prefetch_factor < 1:
            raise ConfigError(f"option 'prefetch_factor' must be >= 1, got {self.prefetch_factor}")
        if self.classes and self.method != "accdoa":
            raise ConfigError(
                f"option 'classes' (--classes) is for --method accdoa, not {self.method!r}"
            )
        if self.method == "accdoa" and self.K > MAX_TRACKS:
            raise ConfigError(
                f"option 'K' (-K) is the number of accdoa tracks per class: 1 to {MAX_TRACKS}, "
                f"got {self.K}"
            )

    def _validate_blocks(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"option 'channels' {list(self.channels)} needs positive integers")
        if self.pools is None:
            return
        if len(self.channels) != len(self.pools) or min(self.pools) < 1:
            raise ConfigError(
                f"option 'pools' (--pools) {list(self.pools)} needs one positive integer per conv "
                f"block of 'channels' {list(self.channels)}; leave it unset to fit the features"
            )

    @property
    def scored(self) -> bool:
        """Whether the model learns confidence scores."""
        return is_scored(self.method)


def resolve_train_config(*layers: dict[str, Any] | None) -> TrainConfig:
    """:func:`~ssl_toolkit.core.config.resolve` a TrainConfig with the defaults of its
    method (:data:`METHOD_DEFAULTS`) under ``layers`` (TOML, CLI: None = not given)."""
    method = TrainConfig.method
    for layer in layers:
        if (layer or {}).get("method") is not None:
            method = choose("method", layer["method"], METHODS)  # type: ignore[index]
    return resolve(TrainConfig, METHOD_DEFAULTS.get(method), *layers)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config a run records (manifest, fingerprint, resume state): :func:`to_dict`
    less the :data:`LATE_OPTIONS` at their default."""
    d = to_dict(cfg)
    return {k: v for k, v in d.items() if not (k in LATE_OPTIONS and v == LATE_OPTIONS[k])}
