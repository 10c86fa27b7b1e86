"""Sequence encoders of the autoregressive prior: what element t knows of the elements
before it.

An encoder maps the prior's inputs ``[B, T, in_dim]`` (position t holds what is known
of tokens < t) to outputs ``[B, T, out_dim]``, causally, and steps one position at a
time when sampling, carrying its state (never re-running the prefix):

    h = encoder(inputs, condition)                        # [B, T, out_dim]
    h_t, state = encoder.step(input_t, state, t, condition)   # [n, 1, in_dim] → [n, 1, out_dim]

The prior builds its encoder with ``encoder(in_dim)`` (configs give a partial: every
setting but ``in_dim``). Adding an encoder is one class here and one config node.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..condition import Condition, adjacency_of, grid_units
from ..settings import Count, Injected, NonNegativeInt, Range, checked
from .attention import AttentionBlock, causal_mask

Positions = Literal["none", "index", "grid", "degree"]
Relations = Literal["none", "adjacency"]
Dropout = Annotated[float, Range(0, 1, high_open=True)]


class LSTMEncoder(nn.Module):
    """An LSTM over the sequence (the language models' encoder).

    Args:
    in_dim: input width (filled in by the prior).
    hidden: LSTM width (= out_dim); num_layers: LSTM layers; dropout: between layers.
    out_layer: > 0 adds a linear map to that width (= out_dim) and a GELU after the LSTM
        (CatNF's conditioner).
    """

    @checked("prior.encoder")
    def __init__(self, in_dim: Injected[Count], hidden: Count = 256, num_layers: Count = 1, dropout: Dropout = 0.0,
                 out_layer: NonNegativeInt = 0):
        super().__init__()
        self.out_dim = out_layer or hidden
        self.lstm = nn.LSTM(in_dim, hidden, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.out = nn.Linear(hidden, out_layer) if out_layer else None

    def _project(self, h: Tensor) -> Tensor:
        return F.gelu(self.out(h)) if self.out is not None else h

    def forward(self, inputs: Tensor, condition: Condition | None = None) -> Tensor:
        return self._project(self.lstm(inputs)[0])

    def step(self, input_t: Tensor, state, t: int, condition: Condition | None = None) -> tuple[Tensor, tuple]:
        h, state = self.lstm(input_t, state)
        return self._project(h), state


class CausalTransformerEncoder(nn.Module):
    """A causal Transformer that knows the task's structure (sets, graphs, Sudoku).

    * ``positions`` — what element t is: ``index`` (a learned embedding of t), ``grid``
      (its row, column and box on a ``side × side`` board of ``box × box`` boxes),
      ``degree`` (its degree in the batch's graph), or ``none``;
    * ``relations=adjacency`` — attention logits get a learned bias per head and layer
      where the query element and the element whose token a key carries are adjacent in
      the condition's ``adjacency`` (a graph's edges; a Sudoku's constraint graph), so an
      element looks up its neighbours' tokens.

    Element t's input carries token t − 1 together with what element t − 1 is, plus what
    element t is; causal attention then gives element t everything known of tokens < t.
    Sampling keeps a key/value cache per layer.

    Args:
    in_dim: input width (filled in by the prior).
    hidden: width (= out_dim); num_layers: blocks; heads: attention heads; dropout.
    positions, relations: above. max_length: elements at most (``positions=index``).
    side, box: the board (``positions=grid``).
    """

    @checked("prior.encoder")
    def __init__(self, in_dim: Injected[Count], hidden: Count = 128, num_layers: Count = 3, heads: Count = 4,
                 positions: Positions = "index", relations: Relations = "none", max_length: Count = 128,
                 side: Count = 9, box: Count = 3, dropout: Dropout = 0.0):
        super().__init__()
        if positions == "grid" and side % box:
            raise ValueError(f"prior.encoder.box={box} must divide prior.encoder.side={side}")
        self.out_dim, self.positions, self.relations = hidden, positions, relations
        self.max_length, self.side = max_length, side
        self.inp = nn.Linear(in_dim, hidden)
        self.first = nn.Parameter(torch.zeros(hidden))  # "what element −1 is": nothing
        if positions == "index":
            self.cur, self.prev = nn.Embedding(max_length, hidden), nn.Embedding(max_length, hidden)
        elif positions == "grid":
            self.register_buffer("units", grid_units(side, box), persistent=False)
            self.cur, self.prev = nn.Embedding(3 * side, hidden), nn.Embedding(3 * side, hidden)
        elif positions == "degree":
            self.cur, self.prev = nn.Linear(1, hidden), nn.Linear(1, hidden)
        for table in (getattr(self, "cur", None), getattr(self, "prev", None)):
            if isinstance(table, nn.Embedding):
                nn.init.normal_(table.weight, std=0.1)  # comparable to the projected input
        self.blocks = nn.ModuleList(AttentionBlock(hidden, heads, int(relations == "adjacency"), dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden)

    def _capacity(self) -> int:
        return self.side**2 if self.positions == "grid" else self.max_length if self.positions == "index" else 1 << 62

    def _position_features(self, index: Tensor, condition: Condition | None) -> Tensor | int:
        """``cur(t) + prev(t − 1)`` for positions ``index [T]`` → ``[B|1, T, H]``."""
        if self.positions == "none":
            return 0
        if index.numel() and int(index.max()) >= self._capacity():
            raise ValueError(f"prior.encoder.positions={self.positions} knows {self._capacity()} elements, got a sequence of "
                             f"{int(index.max()) + 1}" + (" (raise prior.encoder.max_length)" if self.positions == "index" else ""))
        prev_index = index - 1
        if self.positions == "degree":
            degree = adjacency_of(condition, "prior.encoder.positions=degree").sum(-1).to(self.first.dtype)[..., None]
            cur = self.cur(torch.log1p(degree[:, index]))
            prev = self.prev(torch.log1p(degree[:, prev_index.clamp_min(0)]))
        elif self.positions == "grid":
            cur = self.cur(self.units[index]).sum(-2)[None]
            prev = self.prev(self.units[prev_index.clamp_min(0)]).sum(-2)[None]
        else:
            cur, prev = self.cur(index)[None], self.prev(prev_index.clamp_min(0))[None]
        prev = torch.where((prev_index < 0)[None, :, None], self.first.expand_as(prev), prev)
        return cur + prev

    def _relations(self, condition: Condition | None, queries: slice, length: int) -> Tensor | None:
        """``[B, 1, Tq, length]``: 1 where query element t and the element whose token key
        position s carries (s − 1) are adjacent; key 0 carries no token."""
        if self.relations == "none":
            return None
        adjacency = adjacency_of(condition, "prior.encoder.relations=adjacency")
        return F.pad(adjacency[:, queries, : length - 1].to(self.first.dtype), (1, 0))[:, None]

    def forward(self, inputs: Tensor, condition: Condition | None = None) -> Tensor:
        T = inputs.shape[1]
        x = self.inp(inputs) + self._position_features(torch.arange(T, device=inputs.device), condition)
        mask, relations = causal_mask(T, x.dtype, x.device), self._relations(condition, slice(0, T), T)
        for block in self.blocks:
            x = block(x, mask, relations)
        return self.norm(x)

    def step(self, input_t: Tensor, state, t: int, condition: Condition | None = None) -> tuple[Tensor, list]:
        x = self.inp(input_t) + self._position_features(torch.tensor([t], device=input_t.device), condition)
        relations = self._relations(condition, slice(t, t + 1), t + 1)
        caches, new = state if state is not None else [None] * len(self.blocks), []
        for block, cache in zip(self.blocks, caches):
            x, cache = block.step(x, cache, relations)
            new.append(cache)
        return self.norm(x), new
