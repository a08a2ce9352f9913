"""The loss each method trains with (validation runs annealed MCL at temperature 0)."""

from __future__ import annotations

from functools import partial

from ..losses import adpit_loss, pit_loss, rmcl_loss, temperature_at
from ..models.crnn import accdoa_from_raw
from .options import TrainConfig

_WTA_MODES = {"wta": "wta", "wta-relaxed": "relaxed", "wta-top-n": "top-n", "ie": "wta"}


def make_loss(cfg: TrainConfig):
    """``loss(hyps, conf, directions, activity, progress, generator=None)`` for ``cfg.method``.

    ``progress`` is the fraction of training done (None during validation);
    ``generator`` is the random source of rMCL*'s drawn negatives (None: the global one).
    ``accdoa`` takes the raw tracks of ``AccdoaCRNN.forward(x, raw=True)`` (``conf`` =
    their norms) and, class-aware, the batch's ``classes [B, T, S]``.
    """
    if cfg.method == "accdoa":
        return partial(_accdoa, tracks=cfg.K)
    negatives = cfg.negatives if cfg.negatives == "all" else int(cfg.negatives)
    if cfg.method == "pit":
        return lambda h, c, d, a, _p, generator=None: pit_loss(h, c, d, a, beta=cfg.beta)
    if cfg.method == "rmcl":
        loss = partial(
            rmcl_loss,
            mode=cfg.wta_mode,
            epsilon=cfg.epsilon,
            top_n=cfg.top_n,
            beta=cfg.beta,
            negatives=negatives,
        )
        return lambda h, c, d, a, _p, generator=None: loss(h, c, d, a, generator=generator)
    if cfg.method == "amcl":
        return partial(_amcl, cfg=cfg, negatives=negatives)
    mode = _WTA_MODES[cfg.method]
    loss = partial(rmcl_loss, mode=mode, epsilon=cfg.epsilon, top_n=cfg.top_n, beta=0.0)
    return lambda h, c, d, a, _p, generator=None: loss(h, c, d, a)


def _amcl(h, c, d, a, progress, generator=None, *, cfg: TrainConfig, negatives):
    t = 0.0
    if progress is not None:
        t = temperature_at(
            progress,
            cfg.temperature,
            cfg.temperature_schedule,
            t_min=cfg.temperature_min,
            wta_fraction=cfg.wta_fraction,
        )
    return rmcl_loss(
        h, c, d, a, mode="amcl", temperature=t, beta=cfg.beta, negatives=negatives,
        generator=generator,
    )  # fmt: skip


def _accdoa(h, c, d, a, _progress, generator=None, classes=None, *, tracks: int):
    """ADPIT on the multi-ACCDOA output rebuilt from its polar form ``(h, c)``."""
    return adpit_loss(accdoa_from_raw(h, c, tracks), d, a, classes)
