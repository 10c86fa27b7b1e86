"""Permutation-invariant coupling flows for sets and graphs.

Each layer splits the *latent dimensions* (never the elements) in two halves and
transforms one half elementwise with mixture-of-logistics CDF layers whose
parameters come from a network over all elements' other half: a Transformer
without positional encodings (sets) or attention restricted to the graph's
edges (graphs). Every operation is permutation-equivariant over elements, so
``log p(z)`` is invariant to their order. Needs D >= 2.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn

from ..condition import Condition
from ..settings import Count, Injected, checked
from ..support import Support
from .base import LogisticBaseFlow
from .conditioners import GraphConditioner, GridConditioner, SetConditioner
from .layers import ActNorm, InvertibleLinear
from .transforms import MixtureLogisticCDF


class CouplingPrior(LogisticBaseFlow):
    """Coupling flow over latent-dimension halves; subclasses choose the conditioner.

    Args:
    support: the dequantiser's support (only its D >= 2 is read; filled in by the job).
    num_layers: coupling layers (alternating halves).
    hidden, heads, transformer_layers: conditioner size.
    num_mixtures: logistic components per CDF transform.
    mix_dims: a learned invertible linear map over the latent dimensions before
        every coupling layer (CatNF/Glow), so the halves are not fixed axes.
    conditioner: builds a conditioner ``(in_dim, out_dim, hidden, heads, layers)`` (default: the class's).
    """

    conditioner = SetConditioner
    name = "coupling"

    @checked("prior")
    def __init__(
        self,
        support: Injected[Support],
        num_layers: Count = 4,
        hidden: Count = 64,
        heads: Count = 4,
        transformer_layers: Count = 2,
        num_mixtures: Count = 8,
        mix_dims: bool = False,
        conditioner: Callable[..., nn.Module] | None = None,
    ):
        super().__init__(support)
        conditioner = conditioner or self.conditioner
        dim = self.dim
        if dim < 2:
            raise ValueError(f"prior={self.name} splits latent dimensions: flow.dim must be >= 2, got {dim}")
        self.actnorm = ActNorm(dim)
        self.transform = MixtureLogisticCDF(num_mixtures)
        halves = []
        for i in range(num_layers):
            first = list(range(dim // 2))
            second = list(range(dim // 2, dim))
            halves.append((first, second) if i % 2 == 0 else (second, first))
        self.halves = halves
        self.mixers = nn.ModuleList(InvertibleLinear(dim) for _ in halves) if mix_dims else None
        self.conditioners = nn.ModuleList(
            conditioner(len(a), len(b) * self.transform.num_params, hidden, heads, transformer_layers)
            for a, b in halves
        )
        with torch.no_grad():  # spread the initial mixture means so components differ
            for cond, (_, b) in zip(self.conditioners, halves):
                bias = cond.out.bias.view(len(b), self.transform.num_params)
                bias[:, num_mixtures : 2 * num_mixtures] = torch.linspace(-2, 2, num_mixtures)

    def _params(self, layer: int, z: Tensor, mask: Tensor | None, condition: Condition | None) -> Tensor:
        a, b = self.halves[layer]
        out = self.conditioners[layer](z[..., a], mask, condition)
        return out.view(*z.shape[:-1], len(b), self.transform.num_params)

    def forward(self, z: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> tuple[Tensor, Tensor]:
        """z ``[B, T, D]`` → base e and log|det| per element ``[B, T]``."""
        y, log_det = self.actnorm(z, mask)
        for layer, (_, b) in enumerate(self.halves):
            if self.mixers is not None:
                y, ld = self.mixers[layer](y)
                log_det = log_det + ld
            params = self._params(layer, y, mask, condition)
            out, ld = self.transform.forward(y[..., b], params)
            y = y.clone()
            y[..., b] = out
            log_det = log_det + ld.sum(-1)
        return y, log_det

    @torch.no_grad()
    def inverse(self, e: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> Tensor:
        y = e.clone()
        for layer in reversed(range(len(self.halves))):
            _, b = self.halves[layer]
            params = self._params(layer, y, mask, condition)  # the conditioning half is unchanged by this layer
            y[..., b] = self.transform.inverse(y[..., b], params)
            if self.mixers is not None:
                y = self.mixers[layer].inverse(y)
        return self.actnorm.inverse(y)


class SetCouplingPrior(CouplingPrior):
    """Sets: a Transformer conditioner without positional encodings."""

    conditioner = SetConditioner
    name = "set_coupling"


class GraphCouplingPrior(CouplingPrior):
    """Graphs: attention over each node's neighbours; the condition's ``adjacency [B, n, n]`` is required."""

    conditioner = GraphConditioner
    name = "graph_coupling"


class GridCouplingPrior(CouplingPrior):
    """Sudoku: a Transformer conditioner that knows each cell's row, column and box.

    Args (besides :class:`CouplingPrior`'s):
        side: cells per row and column (9).
        box: box side (3).
    """

    conditioner = GridConditioner
    name = "grid_coupling"

    @checked("prior")
    def __init__(self, support: Injected[Support], num_layers: Count = 4, hidden: Count = 64, heads: Count = 4,
                 transformer_layers: Count = 2, num_mixtures: Count = 8, mix_dims: bool = False, side: Count = 9, box: Count = 3):
        super().__init__(support, num_layers, hidden, heads, transformer_layers, num_mixtures, mix_dims,
                         conditioner=partial(GridConditioner, side=side, box=box))
