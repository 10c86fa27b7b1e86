"""The prior interface: a flow is a distribution over ``z [B, T, D]``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..dequantisers.base import logistic_log_pdf


class Prior(nn.Module):
    """``log_prob`` returns per-token log densities ``[B, T]`` (0 where ``mask`` is
    False) so losses can be normalised per token; ``sample`` draws ``[n, T, D]``.

    Conditioning that a batch carries besides ``x`` and ``mask`` (a graph's
    ``adjacency``) reaches ``log_prob`` and ``sample`` as keyword arguments;
    priors that do not use it model z unconditionally (a baseline)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)

    def log_prob(self, z: Tensor, mask: Tensor | None = None, **cond) -> Tensor:
        raise NotImplementedError

    def sample(self, num: int, length: int, **cond) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def _masked(log_p: Tensor, mask: Tensor | None) -> Tensor:
        return log_p if mask is None else torch.where(mask, log_p, torch.zeros_like(log_p))


class StandardLogisticPrior(Prior):
    """Fixed standard logistic in every dimension (no parameters): the toy's prior."""

    def log_prob(self, z: Tensor, mask: Tensor | None = None, **cond) -> Tensor:
        return self._masked(logistic_log_pdf(z).sum(-1), mask)

    def sample(self, num: int, length: int, **cond) -> Tensor:
        u = torch.rand(num, length, self.dim).clamp(1e-7, 1 - 1e-7)
        return torch.logit(u)
