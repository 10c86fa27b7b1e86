"""Permutation-aware conditioners of the coupling priors: ``[B, T, in] -> [B, T, out]``.

* :class:`SetConditioner` — a Transformer without positions (equivariant to any
  permutation of the elements);
* :class:`GraphConditioner` — attention restricted to a graph's edges (equivariant
  to relabelling the nodes together with the graph);
* :class:`GridConditioner` — the set Transformer told each cell's row, column and
  box (Sudoku: not a set).

Two blocks (``prior.block``) around the attention layers:

* ``pre_norm`` — a linear input, pre-norm layers (ReLU feed-forward), then a LayerNorm and
  a zero-initialised linear output, so every coupling starts at its conditioner's bias;
* ``catnf`` — CatNF's coupling network: an MLP input (Linear, GELU, Linear), post-norm
  layers (GELU feed-forward), a LayerNorm-MLP head, all at PyTorch's default init.

Both end in a LayerNorm: the residual stream of pre-norm layers grows with its input, and
without it the coupling parameters did too (``docs/baselines.md``, the coupling prior's
divergence).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..condition import Condition, adjacency_of, grid_units
from ..precision import cpu_attention_kernels
from .attention import AttentionBlock

#: the network around a conditioner's attention layers (module docstring)
Block = Literal["pre_norm", "catnf"]


def input_layer(in_dim: int, hidden: int, block: Block) -> nn.Module:
    if block == "catnf":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
    return nn.Linear(in_dim, hidden)


class Head(nn.Module):
    """LayerNorm, then a linear output (zero weights) or an MLP (default init); ``out`` is the last
    linear layer (its bias is where the couplings' initial parameters are set)."""

    def __init__(self, hidden: int, out_dim: int, block: Block):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU()) if block == "catnf" else nn.Identity()
        self.out = nn.Linear(hidden, out_dim)
        if block == "pre_norm":
            nn.init.zeros_(self.out.weight)

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self.mlp(self.norm(h)))


class SetConditioner(nn.Module):
    """Transformer encoder without positions: ``[B, T, in] -> [B, T, out]``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int, block: Block = "pre_norm"):
        super().__init__()
        self.inp = input_layer(in_dim, hidden, block)
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, batch_first=True,
                                           activation="gelu" if block == "catnf" else "relu",
                                           norm_first=block == "pre_norm")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = Head(hidden, out_dim, block)

    def embed(self, h: Tensor) -> Tensor:
        """Per-element input features ``[B, T, hidden]`` (no positions)."""
        return self.inp(h)

    def forward(self, h: Tensor, mask: Tensor | None, condition: Condition | None = None) -> Tensor:
        pad = None if mask is None else ~mask
        x = self.embed(h)
        with cpu_attention_kernels(x):
            x = self.encoder(x, src_key_padding_mask=pad)
        return self.head(x)


class GraphConditioner(nn.Module):
    """Attention restricted to edges (plus self-loops), with the node degree as an
    input feature; no node positions: ``[B, n, in] -> [B, n, out]``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int, block: Block = "pre_norm"):
        super().__init__()
        self.inp = input_layer(in_dim + 1, hidden, block)
        self.blocks = nn.ModuleList(AttentionBlock(hidden, heads) for _ in range(layers))
        self.head = Head(hidden, out_dim, block)

    def forward(self, h: Tensor, mask: Tensor | None, condition: Condition | None = None) -> Tensor:
        adjacency = adjacency_of(condition, "prior=graph_coupling")
        eye = torch.eye(h.shape[1], dtype=torch.bool, device=h.device)
        allowed = adjacency | eye
        if mask is not None:
            allowed = allowed & mask[:, None, :] | eye
        degree = adjacency.sum(-1, keepdim=True).to(h.dtype)
        x = self.inp(torch.cat([h, torch.log1p(degree)], dim=-1))
        for block in self.blocks:
            x = block(x, allowed[:, None])
        return self.head(x)


class GridConditioner(SetConditioner):
    """The set Transformer over the cells of an ``n×n`` grid of ``b×b`` boxes (Sudoku:
    9, 3), told each cell's row, column and box by learned embeddings:
    ``[B, n², in] -> [B, n², out]`` (cells in row-major order)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int, block: Block = "pre_norm",
                 side: int = 9, box: int = 3):
        super().__init__(in_dim, out_dim, hidden, heads, layers, block)
        if side % box:
            raise ValueError(f"prior.box={box} must divide prior.side={side}")
        self.side = side
        self.register_buffer("units", grid_units(side, box))
        self.unit_embedding = nn.Embedding(3 * side, hidden)
        nn.init.normal_(self.unit_embedding.weight, std=0.1)  # comparable to the projected input

    def embed(self, h: Tensor) -> Tensor:
        if h.shape[1] != self.side**2:
            raise ValueError(f"prior=grid_coupling expects {self.side}×{self.side} = {self.side**2} cells per object, got {h.shape[1]}")
        return self.inp(h) + self.unit_embedding(self.units).sum(-2)  # row + column + box
