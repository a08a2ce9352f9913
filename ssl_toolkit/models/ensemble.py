"""Independent ensembles (IE): N single-hypothesis models trained separately.

Reference: Lakshminarayanan et al., "Simple and Scalable Predictive Uncertainty
Estimation using Deep Ensembles", NeurIPS 2017; the IE baseline of rMCL.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import build_model


class Ensemble(nn.Module):
    """N members (each ``K=1``) combined as N hypotheses of equal confidence.

    Args:
        members: number of members N.
        member: registry name of each member.
        member_kwargs: constructor arguments of each member (``K`` forced to 1).

    ``forward`` returns ``hyps [B, T, N, 3]`` (member n's hypothesis in slot n)
    and ``conf [B, T, N]`` equal to 1 everywhere (all members are equally trusted).
    """

    def __init__(
        self, members: int, member: str = "crnn", member_kwargs: dict[str, Any] | None = None
    ):
        super().__init__()
        kwargs = {**(member_kwargs or {}), "K": 1, "confidence": False}
        self.members = nn.ModuleList(build_model(member, **kwargs) for _ in range(members))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hyps = torch.cat([m(x)[0] for m in self.members], dim=-2)  # (B, T, N, 3)
        return hyps, hyps[..., 0] * 0.0 + 1.0  # from the data: traced graphs keep B and T dynamic
