"""``ToyConfig``: the options of ``ssl toy`` (data, models, training and scoring)."""

from __future__ import annotations

from dataclasses import dataclass

from ...core.config import ConfigError, refuse_choice

TOY_METHODS = ("smcl", "rmcl", "rmcl*", "ie")
IE_TARGETS = ("closest", "all")


@dataclass(frozen=True)
class ToyConfig:
    """Options of ``ssl toy``.

    The defaults take about 80 s (78-84 s over seeds 0-2) on 2 shared CPU cores: one training
    thread, 5-7 s per K = 20 model, about 55 s for the 20 IE members, a few seconds of EMD;
    mean EMDs over seeds 0-2: rMCL 0.171, rMCL* 0.172, sMCL 0.191, IE 0.645. ``PAPER`` holds
    the authors' sizes (two hidden layers of 256, batch 128, 20 epochs of 100,000 samples:
    15,625 steps): 11.5 min, rMCL 0.166, rMCL* 0.168, sMCL 0.187, IE 0.654 (seed 0);
    ``QUICK`` takes a few seconds, for tests.

    Attributes:
        K: hypotheses of the multi-hypothesis MLPs (sMCL, rMCL, rMCL*).
        methods: predictors trained, among smcl, rmcl, rmcl*, ie.
        steps: optimizer steps per model.
        batch_size: samples (values of t with their targets) per step.
        lr: Adam learning rate.
        hidden: units of each hidden layer.
        layers: hidden layers of the MLP.
        negatives: negatives drawn per sample by rMCL*.
        ie_members: single-hypothesis members of the independent ensemble.
        ie_target: what an IE member learns: the ``closest`` target (the authors' code)
            or ``all`` (the mean loss over the targets).
        n_eval_t: values of t where the EMD is measured.
        n_gt_samples: ground-truth samples per value of t for the EMD.
        plot_t: values of t drawn in hypotheses.png.
        seed: seed of data, initialization and drawn negatives.
    """

    K: int = 20
    methods: tuple[str, ...] = TOY_METHODS
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    hidden: int = 128
    layers: int = 2
    negatives: int = 1
    ie_members: int = 20
    ie_target: str = "closest"
    n_eval_t: int = 50
    n_gt_samples: int = 1000
    plot_t: tuple[float, ...] = (0.1, 0.6, 0.9)
    seed: int = 0

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid option."""
        for m in self.methods:
            if m not in TOY_METHODS:
                refuse_choice("methods", m, TOY_METHODS)
        for name in ("K", "steps", "batch_size", "hidden", "layers", "ie_members", "n_eval_t"):
            if getattr(self, name) < 1:
                raise ConfigError(f"toy option {name} must be >= 1")
        if self.n_gt_samples < 1 or self.lr <= 0:
            raise ConfigError("toy options n_gt_samples and lr must be positive")
        if not 0 <= self.negatives <= self.K - 1:
            raise ConfigError(f"toy option negatives must be in [0, K - 1], got {self.negatives}")
        if self.ie_target not in IE_TARGETS:
            refuse_choice("ie_target", self.ie_target, IE_TARGETS)
        if any(not 0 <= t <= 1 for t in self.plot_t):
            raise ConfigError("toy option plot_t: values must lie in [0, 1]")


QUICK = {"steps": 150, "batch_size": 128, "hidden": 32, "n_eval_t": 8, "n_gt_samples": 200}
PAPER = {"steps": 15625, "batch_size": 128, "hidden": 256, "layers": 2}
