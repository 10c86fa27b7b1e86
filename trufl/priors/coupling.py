"""Permutation-invariant coupling flows for sets and graphs.

Each layer splits the *latent dimensions* (never the elements) in two halves and
transforms one half elementwise with mixture-of-logistics CDF layers whose
parameters come from a network over all elements' other half: a Transformer
without positional encodings (sets) or attention restricted to the graph's
edges (graphs). Every operation is permutation-equivariant over elements, so
``log p(z)`` is invariant to their order. Needs D >= 2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..dequantisers.base import logistic_log_pdf
from .base import Prior
from .layers import ActNorm, InvertibleLinear, MixtureLogisticCDF


class SetConditioner(nn.Module):
    """Transformer encoder without positions: ``[B, T, in] -> [B, T, out]``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.out.weight)

    def embed(self, h: Tensor) -> Tensor:
        """Per-element input features ``[B, T, hidden]`` (no positions)."""
        return self.inp(h)

    def forward(self, h: Tensor, mask: Tensor | None, adjacency: Tensor | None = None) -> Tensor:
        pad = None if mask is None else ~mask
        return self.out(self.encoder(self.embed(h), src_key_padding_mask=pad))


class GraphAttentionBlock(nn.Module):
    """Pre-norm attention over each node's neighbours (and itself), then an MLP."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: Tensor, allowed: Tensor) -> Tensor:
        B, n, H = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(B, n, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        h = h + self.proj(att.transpose(1, 2).reshape(B, n, H))
        return h + self.mlp(self.norm2(h))


class GraphConditioner(nn.Module):
    """Attention restricted to edges (plus self-loops), with the node degree as an
    input feature; no node positions: ``[B, n, in] -> [B, n, out]``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int):
        super().__init__()
        self.inp = nn.Linear(in_dim + 1, hidden)
        self.blocks = nn.ModuleList(GraphAttentionBlock(hidden, heads) for _ in range(layers))
        self.out = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.out.weight)

    def forward(self, h: Tensor, mask: Tensor | None, adjacency: Tensor | None = None) -> Tensor:
        if adjacency is None:
            raise ValueError("prior=graph_coupling needs the graph: batches must carry 'adjacency'")
        eye = torch.eye(h.shape[1], dtype=torch.bool, device=h.device)
        allowed = adjacency | eye
        if mask is not None:
            allowed = allowed & mask[:, None, :] | eye
        degree = adjacency.sum(-1, keepdim=True).to(h.dtype)
        x = self.inp(torch.cat([h, torch.log1p(degree)], dim=-1))
        for block in self.blocks:
            x = block(x, allowed)
        return self.out(x)


class GridConditioner(SetConditioner):
    """The set Transformer over the cells of an ``n×n`` grid of ``b×b`` boxes (Sudoku:
    9, 3), told each cell's row, column and box by learned embeddings:
    ``[B, n², in] -> [B, n², out]`` (cells in row-major order)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int, side: int = 9, box: int = 3):
        super().__init__(in_dim, out_dim, hidden, heads, layers)
        if side % box:
            raise ValueError(f"prior.box={box} must divide prior.side={side}")
        self.side = side
        cell = torch.arange(side * side)
        row, col = cell // side, cell % side
        self.register_buffer("units", torch.stack([row, side + col, 2 * side + (row // box) * (side // box) + col // box], -1))
        self.unit_embedding = nn.Embedding(3 * side, hidden)
        nn.init.normal_(self.unit_embedding.weight, std=0.1)  # comparable to the projected input

    def embed(self, h: Tensor) -> Tensor:
        if h.shape[1] != self.side**2:
            raise ValueError(f"prior=grid_coupling expects {self.side}×{self.side} = {self.side**2} cells per object, got {h.shape[1]}")
        return self.inp(h) + self.unit_embedding(self.units).sum(-2)  # row + column + box


class CouplingPrior(Prior):
    """Coupling flow over latent-dimension halves; subclasses choose the conditioner.

    Args:
    dim: D >= 2.
    num_layers: coupling layers (alternating halves).
    hidden, heads, transformer_layers: conditioner size.
    num_mixtures: logistic components per CDF transform.
    mix_dims: a learned invertible linear map over the latent dimensions before
        every coupling layer (CatNF/Glow), so the halves are not fixed axes.
    """

    conditioner = SetConditioner
    name = "coupling"

    def __init__(
        self,
        dim: int,
        num_layers: int = 4,
        hidden: int = 64,
        heads: int = 4,
        transformer_layers: int = 2,
        num_mixtures: int = 8,
        mix_dims: bool = False,
    ):
        super().__init__(dim)
        if dim < 2:
            raise ValueError(f"prior={self.name} splits latent dimensions: flow.dim must be >= 2, got {dim}")
        if num_layers < 1:
            raise ValueError(f"prior.num_layers must be >= 1, got {num_layers}")
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
            self.build_conditioner(len(a), len(b) * self.transform.num_params, hidden, heads, transformer_layers)
            for a, b in halves
        )
        with torch.no_grad():  # spread the initial mixture means so components differ
            for cond, (_, b) in zip(self.conditioners, halves):
                bias = cond.out.bias.view(len(b), self.transform.num_params)
                bias[:, num_mixtures : 2 * num_mixtures] = torch.linspace(-2, 2, num_mixtures)

    def build_conditioner(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int) -> nn.Module:
        return self.conditioner(in_dim, out_dim, hidden, heads, layers)

    def _params(self, layer: int, z: Tensor, mask: Tensor | None, adjacency: Tensor | None) -> Tensor:
        a, b = self.halves[layer]
        out = self.conditioners[layer](z[..., a], mask, adjacency)
        return out.view(*z.shape[:-1], len(b), self.transform.num_params)

    def forward(self, z: Tensor, mask: Tensor | None = None, adjacency: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z ``[B, T, D]`` → base e and log|det| per element ``[B, T]``."""
        y, log_det = self.actnorm(z, mask)
        for layer, (_, b) in enumerate(self.halves):
            if self.mixers is not None:
                y, ld = self.mixers[layer](y)
                log_det = log_det + ld
            params = self._params(layer, y, mask, adjacency)
            out, ld = self.transform.forward(y[..., b], params)
            y = y.clone()
            y[..., b] = out
            log_det = log_det + ld.sum(-1)
        return y, log_det

    def log_prob(self, z: Tensor, mask: Tensor | None = None, adjacency: Tensor | None = None, **cond) -> Tensor:
        e, log_det = self.forward(z, mask, adjacency)
        return self._masked(logistic_log_pdf(e).sum(-1) + log_det, mask)

    @torch.no_grad()
    def inverse(self, e: Tensor, mask: Tensor | None = None, adjacency: Tensor | None = None) -> Tensor:
        y = e.clone()
        for layer in reversed(range(len(self.halves))):
            _, b = self.halves[layer]
            params = self._params(layer, y, mask, adjacency)  # the conditioning half is unchanged by this layer
            y[..., b] = self.transform.inverse(y[..., b], params)
            if self.mixers is not None:
                y = self.mixers[layer].inverse(y)
        return self.actnorm.inverse(y)

    @torch.no_grad()
    def sample(self, num: int, length: int, adjacency: Tensor | None = None, **cond) -> Tensor:
        param = next(self.parameters())
        u = torch.rand(num, length, self.dim, device=param.device, dtype=param.dtype).clamp(1e-6, 1 - 1e-6)
        return self.inverse(torch.logit(u), adjacency=adjacency)


class SetCouplingPrior(CouplingPrior):
    """Sets: a Transformer conditioner without positional encodings."""

    conditioner = SetConditioner
    name = "set_coupling"


class GraphCouplingPrior(CouplingPrior):
    """Graphs: attention over each node's neighbours; ``adjacency [B, n, n]`` is required."""

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

    def __init__(self, dim: int, num_layers: int = 4, hidden: int = 64, heads: int = 4, transformer_layers: int = 2,
                 num_mixtures: int = 8, mix_dims: bool = False, side: int = 9, box: int = 3):
        self.side, self.box = side, box  # read by build_conditioner during super().__init__
        super().__init__(dim, num_layers, hidden, heads, transformer_layers, num_mixtures, mix_dims)

    def build_conditioner(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int) -> nn.Module:
        return GridConditioner(in_dim, out_dim, hidden, heads, layers, self.side, self.box)
