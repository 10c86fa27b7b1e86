"""Permutation-aware conditioners of the coupling priors: ``[B, T, in] -> [B, T, out]``.

* :class:`SetConditioner` — a Transformer without positions (equivariant to any
  permutation of the elements);
* :class:`GraphConditioner` — attention restricted to a graph's edges (equivariant
  to relabelling the nodes together with the graph);
* :class:`GridConditioner` — the set Transformer told each cell's row, column and
  box (Sudoku: not a set).

The output layer is zero-initialised so every coupling starts at its conditioner's bias.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..condition import Condition, adjacency_of, grid_units
from .attention import AttentionBlock


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

    def forward(self, h: Tensor, mask: Tensor | None, condition: Condition | None = None) -> Tensor:
        pad = None if mask is None else ~mask
        return self.out(self.encoder(self.embed(h), src_key_padding_mask=pad))


class GraphConditioner(nn.Module):
    """Attention restricted to edges (plus self-loops), with the node degree as an
    input feature; no node positions: ``[B, n, in] -> [B, n, out]``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, heads: int, layers: int):
        super().__init__()
        self.inp = nn.Linear(in_dim + 1, hidden)
        self.blocks = nn.ModuleList(AttentionBlock(hidden, heads) for _ in range(layers))
        self.out = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.out.weight)

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
        self.register_buffer("units", grid_units(side, box))
        self.unit_embedding = nn.Embedding(3 * side, hidden)
        nn.init.normal_(self.unit_embedding.weight, std=0.1)  # comparable to the projected input

    def embed(self, h: Tensor) -> Tensor:
        if h.shape[1] != self.side**2:
            raise ValueError(f"prior=grid_coupling expects {self.side}×{self.side} = {self.side**2} cells per object, got {h.shape[1]}")
        return self.inp(h) + self.unit_embedding(self.units).sum(-2)  # row + column + box
