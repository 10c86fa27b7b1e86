"""Permutation-invariant coupling flows for sets and graphs.

Each layer splits the *latent dimensions* (never the elements) in two halves and
transforms one half elementwise with mixture-of-logistics CDF layers whose
parameters come from a network over all elements' other half: a Transformer
without positional encodings (sets) or attention restricted to the graph's
edges (graphs). Every operation is permutation-equivariant over elements, so
``log p(z)`` is invariant to their order. Needs D >= 2.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from ..condition import Condition
from ..distributions import LOG_UNIT_VARIANCE, soft_bounded
from ..settings import Count, Injected, checked
from ..support import Support
from .base import LogisticBaseFlow
from .conditioners import Block, GraphConditioner, GridConditioner, SetConditioner
from .layers import ActNorm, InvertibleLinear
from .transforms import MixtureLogisticCDF
from ..precision import flow_input


class CouplingPrior(LogisticBaseFlow):
    """Coupling flow over latent-dimension halves; subclasses choose the conditioner.

    Args:
    support: the dequantiser's support (only its D >= 2 is read; filled in by the job).
    num_layers: coupling layers (alternating halves).
    hidden, heads, transformer_layers: conditioner size.
    num_mixtures: logistic components per CDF transform.
    mix_dims: a learned invertible linear map over the latent dimensions before
        every coupling layer (CatNF/Glow), so the halves are not fixed axes.
    actnorm: ``first`` — one data-initialised ActNorm before the flow; ``every`` — one before
        every layer (CatNF/Glow: ActNorm, 1×1 map, coupling).
    split: ``alternate`` — the halves swap roles from layer to layer; ``fixed`` — the first
        half conditions the second in every layer (CatNF's channel mask; needs ``mix_dims``,
        which mixes the dimensions between layers).
    block: the conditioner's network around its attention layers, ``pre_norm`` or CatNF's
        (:mod:`trufl.priors.conditioners`).
    scale_bounds: ``fixed`` — the mixture log-scales within ±6 and the output log-scale α
        within ±3 (tanh-squashed); ``learned`` — CatNF's: each inside a learned bound that
        starts at 1 (:func:`~trufl.distributions.soft_bounded`, one per dimension and slot).
    base: ``standard`` — the flow ends on the standard logistic; ``unit_variance`` — on the
        logistic of variance 1 (scale 1/1.81), CatNF's base: the ActNorms' unit-variance
        outputs then start matched to it (a fixed last step ``e = 1.81·y``).
    conditioner: builds a conditioner ``(in_dim, out_dim, hidden, heads, layers, block)`` (default: the class's).
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
        actnorm: Literal["first", "every"] = "first",
        split: Literal["alternate", "fixed"] = "alternate",
        block: Block = "pre_norm",
        scale_bounds: Literal["fixed", "learned"] = "fixed",
        base: Literal["standard", "unit_variance"] = "standard",
        conditioner: Callable[..., nn.Module] | None = None,
    ):
        super().__init__(support)
        conditioner = conditioner or self.conditioner
        dim = self.dim
        if dim < 2:
            raise ValueError(f"prior={self.name} splits latent dimensions: flow.dim must be >= 2, got {dim}")
        if split == "fixed" and not mix_dims:
            raise ValueError("prior.split=fixed needs prior.mix_dims=true: without the 1×1 maps the first half is never transformed")
        self.actnorm = ActNorm(dim)  # before the first layer; with actnorm=every, the others before theirs
        self.inner_actnorms = nn.ModuleList(ActNorm(dim) for _ in range(num_layers - 1)) if actnorm == "every" else None
        self.log_base_scale = LOG_UNIT_VARIANCE if base == "unit_variance" else 0.0
        self.transform = MixtureLogisticCDF(num_mixtures, bounded=scale_bounds == "fixed")
        first, second = list(range(dim // 2)), list(range(dim // 2, dim))
        self.halves = [(first, second) if i % 2 == 0 or split == "fixed" else (second, first) for i in range(num_layers)]
        self.mixers = nn.ModuleList(InvertibleLinear(dim) for _ in self.halves) if mix_dims else None
        # per layer, transformed dimension and slot (M mixture log-scales, then α): log of the bound
        self.log_bounds = (nn.Parameter(torch.zeros(num_layers, dim - dim // 2, num_mixtures + 1))
                           if scale_bounds == "learned" else None)
        self.conditioners = nn.ModuleList(
            conditioner(len(a), len(b) * self.transform.num_params, hidden, heads, transformer_layers, block)
            for a, b in self.halves
        )
        if block == "pre_norm":  # zero output weights: spread the initial mixture means so components differ
            with torch.no_grad():
                for cond, (_, b) in zip(self.conditioners, self.halves):
                    bias = cond.head.out.bias.view(len(b), self.transform.num_params)
                    bias[:, num_mixtures : 2 * num_mixtures] = torch.linspace(-2, 2, num_mixtures)

    def _actnorm(self, layer: int) -> ActNorm | None:
        if layer == 0:
            return self.actnorm
        return self.inner_actnorms[layer - 1] if self.inner_actnorms is not None else None

    def _params(self, layer: int, z: Tensor, mask: Tensor | None, condition: Condition | None) -> Tensor:
        a, b = self.halves[layer]
        out = flow_input(self.conditioners[layer](z[..., a], mask, condition))
        p = out.view(*z.shape[:-1], len(b), self.transform.num_params)
        if self.log_bounds is None:
            return p
        M = self.transform.M  # slots 2M..3M: the mixture log-scales and α
        scales = soft_bounded(p[..., 2 * M : 3 * M + 1], self.log_bounds[layer, : len(b)])
        return torch.cat([p[..., : 2 * M], scales, p[..., 3 * M + 1 :]], dim=-1)

    def forward(self, z: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> tuple[Tensor, Tensor]:
        """z ``[B, T, D]`` → base e and log|det| per element ``[B, T]``."""
        y, log_det = z, torch.zeros_like(z[..., 0])
        for layer, (_, b) in enumerate(self.halves):
            if (norm := self._actnorm(layer)) is not None:
                y, ld = norm(y, mask)
                log_det = log_det + ld
            if self.mixers is not None:
                y, ld = self.mixers[layer](y)
                log_det = log_det + ld
            params = self._params(layer, y, mask, condition)
            out, ld = self.transform.forward(y[..., b], params)
            y = y.clone()
            y[..., b] = out
            log_det = log_det + ld.sum(-1)
        if self.log_base_scale:
            y, log_det = y * math.exp(self.log_base_scale), log_det + self.dim * self.log_base_scale
        return y, log_det

    @torch.no_grad()
    def inverse(self, e: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> Tensor:
        y = e * math.exp(-self.log_base_scale)
        for layer in reversed(range(len(self.halves))):
            _, b = self.halves[layer]
            params = self._params(layer, y, mask, condition)  # the conditioning half is unchanged by this layer
            y[..., b] = self.transform.inverse(y[..., b], params)
            if self.mixers is not None:
                y = self.mixers[layer].inverse(y)
            if (norm := self._actnorm(layer)) is not None:
                y = norm.inverse(y)
        return y


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
                 transformer_layers: Count = 2, num_mixtures: Count = 8, mix_dims: bool = False,
                 actnorm: Literal["first", "every"] = "first", split: Literal["alternate", "fixed"] = "alternate",
                 block: Block = "pre_norm", scale_bounds: Literal["fixed", "learned"] = "fixed",
                 base: Literal["standard", "unit_variance"] = "standard", side: Count = 9, box: Count = 3):
        super().__init__(support, num_layers, hidden, heads, transformer_layers, num_mixtures, mix_dims, actnorm, split,
                         block, scale_bounds, base, conditioner=partial(GridConditioner, side=side, box=box))
