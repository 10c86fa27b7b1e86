"""Uniform dequantisation of the category index (ordinal data; Theis, van den Oord &
Bethge, ICLR 2016): category k owns the interval ``[lo + k·w, lo + (k+1)·w)`` of one
latent dimension, ``w = 2·extent / K``, and q(z|k) is uniform on it.

Nothing is learned: the supports are a fixed partition, so decoding is exact
(``log p(x|z) = 0``) and the bound is the prior's log-probability of the interval —
but the order of the categories is imposed (neighbouring indices are neighbouring
intervals), which suits ordinal data and not symbols. It is the worked example of
docs/extending.md: a dequantiser is this module, ``trufl/conf/flow/uniform.yaml`` and one
entry in the shared test table (``tests/test_dequantisers.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..distributions import NEG_INF, sample_uniform
from ..settings import Count, Positive, checked
from .base import ContextDim, Dequantiser, NumCategories


class UniformDequantiser(Dequantiser):
    """Args:
    num_categories: K.
    dim: must be 1 (an index has one dimension).
    extent: the intervals tile ``[−extent, extent]``, where the standard logistic prior
        has its mass.
    context_dim: must be 0 (nothing here depends on the sequence).
    """

    @checked("flow")
    def __init__(self, num_categories: NumCategories, dim: Count = 1, extent: Positive = 4.0, context_dim: ContextDim = 0):
        super().__init__(num_categories, dim, context_dim)
        if dim != 1:
            raise ValueError(f"flow=uniform dequantises the category index: flow.dim must be 1, got {dim}")
        if context_dim:
            raise ValueError("flow=uniform has no parameters for a context to shift: use context=none")
        self.extent = float(extent)
        self.width = 2 * self.extent / num_categories
        self.register_buffer("lower", -self.extent + self.width * torch.arange(num_categories, dtype=torch.float32))

    def sample(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        u = sample_uniform(x.shape, device=x.device, dtype=self.lower.dtype)
        z = (self.lower[x.long()] + self.width * u)[..., None]
        return z, torch.full(x.shape, -math.log(self.width), dtype=z.dtype, device=z.device)

    def log_prob_all(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        inside = (z >= self.lower) & (z < self.lower + self.width)  # [..., K] (z is [..., 1])
        return torch.where(inside, torch.full_like(inside, -math.log(self.width), dtype=z.dtype), NEG_INF)

    _factorised = True

    def _conditionals(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        offset = (z - self.lower) / self.width  # [..., K] (z is [..., 1]): position in each interval
        inside = (offset >= 0) & (offset < 1)
        log_pdf = torch.where(inside, torch.full_like(offset, -math.log(self.width)), NEG_INF)
        return log_pdf[..., None], torch.log(offset.clamp(0, 1))[..., None], torch.log((1 - offset).clamp(0, 1))[..., None]

    def _support_boxes(self) -> tuple[Tensor, Tensor]:
        return self.lower[:, None], (self.lower + self.width)[:, None]

    def summary(self) -> dict:
        return {"interval_width": self.width, "extent": self.extent}
