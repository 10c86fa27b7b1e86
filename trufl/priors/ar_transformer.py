"""Autoregressive flow prior over elements with a causal Transformer: the prior for
sets, graphs and Sudoku boards.

The coupling priors (``set_coupling``, ``graph_coupling``, ``grid_coupling``) split
the *latent dimensions*, so their conditioners never see a whole token; with D = 2
and TRUFL's grid, one coordinate does not identify a category and no conditioner
ever learns which symbol sits where — and that is what the tasks' constraints are
about. This prior is :class:`~trufl.priors.ARLSTMPrior` (same head, same transforms,
same decoded-token inputs, same sampler and ``log Z`` estimator) with its LSTM
replaced by a causal Transformer that knows the task's structure:

* ``positions`` — what element t is: ``index`` (a learned embedding of t),
  ``grid`` (its row, column and box on a ``side × side`` board), ``degree`` (its
  degree in the batch's graph), or ``none``;
* ``relations=adjacency`` — attention logits get a learned bias per head and
  layer where the query element and the element whose token a key carries are
  adjacent in the batch's ``adjacency`` (a graph's edges; a Sudoku's constraint
  graph: same row, column or box), so an element looks up its neighbours' tokens.

``order=degree`` runs the autoregression over the elements sorted by their degree in
the batch's graph, largest first (ties in the given order): a permutation that depends
on the graph alone, so the density stays exact (log-determinant 0) and the most
constrained nodes are coloured first (the "largest-first" heuristic of graph colouring).

Element t's input carries token t − 1 (decoded) together with what element t − 1
is, plus what element t is; causal attention then gives element t everything known
of tokens < t. Sampling keeps a key/value cache per layer: one new position per
token, never re-running the prefix.

Equivariance: none is promised — the factorisation follows the given element
order (a graph's node labels, a board's row-major cells, a set's listed order);
the data's orders are random where the task is a set, so the model learns an
exchangeable density only as far as training does.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .ar_lstm import ARLSTMPrior, Inputs, Transform

Positions = Literal["none", "index", "grid", "degree"]
Order = Literal["given", "degree"]
Relations = Literal["none", "adjacency"]
POSITIONS, RELATIONS, ORDERS = get_args(Positions), get_args(Relations), get_args(Order)


class CausalAttentionBlock(nn.Module):
    """Pre-norm causal self-attention with an optional learned bias per relation and
    head, then an MLP. ``forward`` runs a whole sequence; ``step`` one new position
    against a key/value cache."""

    def __init__(self, hidden: int, heads: int, relations: int, dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"prior.hidden={hidden} must be divisible by prior.heads={heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.drop = nn.Dropout(dropout)
        # heads start with different preferences for related elements (learned)
        self.relation_bias = nn.Parameter(torch.linspace(-1.0, 3.0, heads).repeat(relations, 1)) if relations else None

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, H = x.shape
        return self.qkv(self.norm1(x)).view(B, T, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4).unbind(0)

    def _bias(self, relations: Tensor | None, causal: Tensor) -> Tensor:
        """Additive attention logits ``[B|1, heads, Tq, Tk]`` from the causal mask
        ``[Tq, Tk]`` (0 / −inf) and relations ``[B, R, Tq, Tk]`` (0/1)."""
        bias = causal[None, None]
        if self.relation_bias is not None:
            bias = bias + torch.einsum("brqk,rh->bhqk", relations, self.relation_bias)
        return bias

    def _finish(self, x: Tensor, att: Tensor) -> Tensor:
        B, _, T, _ = att.shape
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, T, -1)))
        return x + self.drop(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor, relations: Tensor | None, causal: Tensor) -> Tensor:
        """x ``[B, T, H]`` → ``[B, T, H]``; position t attends to positions ≤ t."""
        q, k, v = self._qkv(x)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=self._bias(relations, causal).to(q.dtype))
        return self._finish(x, att)

    def step(self, x_t: Tensor, cache: tuple[Tensor, Tensor] | None, relations: Tensor | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One new position ``x_t [n, 1, H]`` given the keys and values of the earlier
        ones (``cache``, each ``[n, heads, t, H/heads]``; None at t = 0) and its
        relations to every position so far ``[n, R, 1, t+1]``."""
        q, k, v = self._qkv(x_t)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        causal = torch.zeros(1, k.shape[2], dtype=q.dtype, device=q.device)  # every cached position is earlier
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=self._bias(relations, causal).to(q.dtype))
        return self._finish(x_t, att), (k, v)


class ARTransformerPrior(ARLSTMPrior):
    """Args (besides :class:`ARLSTMPrior`'s head, transform and input options):
    dim: D, latent dimensions per element.
    hidden: Transformer width; num_layers: its blocks; heads: attention heads.
    positions: ``none | index | grid | degree`` (module docstring).
    relations: ``none | adjacency`` (module docstring); ``adjacency`` needs the batch's
        ``adjacency [B, T, T]`` (graph colouring, Sudoku).
    order: ``given | degree`` (module docstring); ``degree`` needs the batch's ``adjacency``.
    max_length: elements at most (``positions=index``).
    side, box: the board (``positions=grid``): cells per row and column, box side.
    dropout: after attention and MLP.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 128,
        num_layers: int = 3,
        heads: int = 4,
        positions: Positions = "index",
        relations: Relations = "none",
        order: Order = "given",
        max_length: int = 128,
        side: int = 9,
        box: int = 3,
        dropout: float = 0.0,
        head_hidden: int = 128,
        head_layers: int = 2,
        inputs: Inputs = "decoded",
        embed_dim: int = 64,
        transform: Transform = "auto",
        num_bins: int | None = None,
        num_mixtures: int = 8,
        num_flows: int = 2,
        num_categories: int | None = None,
        num_faces: int = 0,
        boxes_uniform: bool = False,
    ):
        if positions not in POSITIONS:
            raise ValueError(f"prior.positions={positions!r} must be one of {POSITIONS}")
        if relations not in RELATIONS:
            raise ValueError(f"prior.relations={relations!r} must be one of {RELATIONS}")
        if order not in ORDERS:
            raise ValueError(f"prior.order={order!r} must be one of {ORDERS}")
        if positions == "grid" and side % box:
            raise ValueError(f"prior.box={box} must divide prior.side={side}")
        if heads < 1 or num_layers < 1 or max_length < 1:
            raise ValueError(f"prior.heads, prior.num_layers and prior.max_length must be >= 1, got {heads}, {num_layers}, {max_length}")
        # read by _init_encoder during super().__init__
        self.positions, self.relations, self.heads, self.order = positions, relations, heads, order
        self.max_length, self.side, self.box = max_length, side, box
        super().__init__(dim, hidden=hidden, num_layers=num_layers, num_mixtures=num_mixtures, num_flows=num_flows,
                         head_hidden=head_hidden, head_layers=head_layers, dropout=dropout, inputs=inputs,
                         embed_dim=embed_dim, transform=transform, num_bins=num_bins, num_categories=num_categories,
                         num_faces=num_faces, boxes_uniform=boxes_uniform)

    # -- the encoder -----------------------------------------------------------
    def _init_encoder(self, in_dim: int, hidden: int, num_layers: int, dropout: float) -> None:
        self.inp = nn.Linear(in_dim, hidden)
        self.first = nn.Parameter(torch.zeros(hidden))  # "what element −1 is": nothing
        if self.positions == "index":
            self.cur, self.prev = nn.Embedding(self.max_length, hidden), nn.Embedding(self.max_length, hidden)
        elif self.positions == "grid":
            cell = torch.arange(self.side**2)
            row, col = cell // self.side, cell % self.side
            box = (row // self.box) * (self.side // self.box) + col // self.box
            self.register_buffer("units", torch.stack([row, self.side + col, 2 * self.side + box], -1), persistent=False)
            self.cur, self.prev = nn.Embedding(3 * self.side, hidden), nn.Embedding(3 * self.side, hidden)
        elif self.positions == "degree":
            self.cur, self.prev = nn.Linear(1, hidden), nn.Linear(1, hidden)
        for table in (getattr(self, "cur", None), getattr(self, "prev", None)):
            if isinstance(table, nn.Embedding):
                nn.init.normal_(table.weight, std=0.1)  # comparable to the projected input
        relations = 1 if self.relations == "adjacency" else 0
        self.blocks = nn.ModuleList(CausalAttentionBlock(hidden, self.heads, relations, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden)

    def _adjacency(self, cond: dict) -> Tensor:
        adjacency = cond.get("adjacency")
        if adjacency is None:
            raise ValueError(f"prior.relations={self.relations} / prior.positions={self.positions} read the batch's graph: "
                             "batches must carry 'adjacency' (graph colouring, Sudoku)")
        return adjacency

    def _position_features(self, index: Tensor, cond: dict) -> Tensor | int:
        """``cur(t) + prev(t − 1)`` for positions ``index [T]`` → ``[B|1, T, H]``."""
        if self.positions == "none":
            return 0
        if index.numel() and int(index.max()) >= self._capacity():
            raise ValueError(f"prior.positions={self.positions} knows {self._capacity()} elements, got a sequence of {int(index.max()) + 1}"
                             + (" (raise prior.max_length)" if self.positions == "index" else ""))
        prev_index = index - 1
        if self.positions == "degree":
            degree = self._adjacency(cond).sum(-1).to(self.first.dtype)[..., None]  # [B, N, 1]
            cur = self.cur(torch.log1p(degree[:, index]))
            prev = self.prev(torch.log1p(degree[:, prev_index.clamp_min(0)]))
        elif self.positions == "grid":
            cur = self.cur(self.units[index]).sum(-2)[None]
            prev = self.prev(self.units[prev_index.clamp_min(0)]).sum(-2)[None]
        else:
            cur, prev = self.cur(index)[None], self.prev(prev_index.clamp_min(0))[None]
        prev = torch.where((prev_index < 0)[None, :, None], self.first.expand_as(prev), prev)
        return cur + prev

    def _capacity(self) -> int:
        return self.side**2 if self.positions == "grid" else self.max_length if self.positions == "index" else 1 << 62

    def _relations(self, cond: dict, queries: slice, length: int) -> Tensor | None:
        """``[B, 1, Tq, length]``: 1 where query element t and the element whose token key
        position s carries (s − 1) are adjacent; key 0 carries no token."""
        if self.relations == "none":
            return None
        adjacency = self._adjacency(cond)[:, queries, : length - 1].to(self.first.dtype)
        return F.pad(adjacency, (1, 0))[:, None]

    def _encode(self, inputs: Tensor, cond: dict) -> Tensor:
        T = inputs.shape[1]
        index = torch.arange(T, device=inputs.device)
        x = self.inp(inputs) + self._position_features(index, cond)
        causal = torch.full((T, T), float("-inf"), dtype=x.dtype, device=x.device).triu(1)
        relations = self._relations(cond, slice(0, T), T)
        for block in self.blocks:
            x = block(x, relations, causal)
        return self.norm(x)

    def _encode_step(self, input_t: Tensor, state, t: int, cond: dict) -> tuple[Tensor, list]:
        index = torch.tensor([t], device=input_t.device)
        x = self.inp(input_t) + self._position_features(index, cond)
        relations = self._relations(cond, slice(t, t + 1), t + 1)
        caches = state if state is not None else [None] * len(self.blocks)
        new = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block.step(x, cache, relations)
            new.append(cache)
        return self.norm(x), new

    # -- the order of the autoregression ----------------------------------------
    def _permutation(self, cond: dict) -> Tensor | None:
        """``[B, T]``: the elements in the order the prior visits them (None: as given)."""
        if self.order == "given":
            return None
        degree = self._adjacency(cond).sum(-1)
        return torch.sort(-degree, dim=1, stable=True).indices  # largest first, ties as given

    @staticmethod
    def _take(x: Tensor | None, perm: Tensor) -> Tensor | None:
        """``x [B, T, ...]`` with its elements in the order ``perm [B, T]``."""
        if x is None:
            return None
        index = perm.view(*perm.shape, *([1] * (x.dim() - 2))).expand(*perm.shape, *x.shape[2:])
        return x.gather(1, index)

    def _ordered(self, cond: dict, perm: Tensor) -> dict:
        adjacency = self._adjacency(cond)
        T = perm.shape[1]
        rows = adjacency.gather(1, perm[:, :, None].expand(-1, T, adjacency.shape[2]))
        return {**cond, "adjacency": rows.gather(2, perm[:, None, :].expand(-1, T, -1))}

    def _in_prior_order(self, call, x: Tensor, mask: Tensor | None, cond: dict):
        """``call(x, mask, cond)`` with the elements in the prior's order, its outputs
        (tensors ``[B, T, ...]``, or a tuple of them) put back in the given order."""
        perm = self._permutation(cond)
        if perm is None:
            return call(x, mask, cond)
        out = call(self._take(x, perm), self._take(mask, perm), self._ordered(cond, perm))
        back = torch.argsort(perm, dim=1)
        return tuple(self._take(o, back) for o in out) if isinstance(out, tuple) else self._take(out, back)

    def forward(self, z: Tensor, mask: Tensor | None = None, readout=None, **cond) -> tuple[Tensor, Tensor]:
        parent = super().forward
        return self._in_prior_order(lambda x, m, c: parent(x, m, readout, **c), z, mask, cond)

    def inverse(self, e: Tensor, mask: Tensor | None = None, readout=None, **cond) -> Tensor:
        parent = super().inverse
        return self._in_prior_order(lambda x, m, c: parent(x, m, readout, **c), e, mask, cond)

    @torch.no_grad()
    def inverse_recomputing(self, e: Tensor, readout=None, **cond) -> Tensor:
        parent = super().inverse_recomputing
        return self._in_prior_order(lambda x, m, c: parent(x, readout, **c), e, None, cond)

    def log_support_mass(self, support, length: int, num_samples: int, cond: dict | None = None) -> dict:
        """As :class:`ARLSTMPrior`'s, in the prior's own order (every element shares the
        support, so Z does not depend on the order; a graph sorted by degree sorts to itself)."""
        if self.order != "given" and cond and cond.get("adjacency") is not None:
            cond = self._ordered(cond, self._permutation(cond))
        return super().log_support_mass(support, length, num_samples, cond)
