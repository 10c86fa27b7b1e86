"""One attention block for every prior that attends over elements: the causal encoder of
the autoregressive prior (with a key/value cache for sampling) and the graph-attention
conditioner of the coupling prior (attention restricted to a graph's edges)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..precision import attention


class AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention, then an MLP, each with a residual.

    ``mask``: SDPA's ``attn_mask`` ``[B|1, 1|heads, Tq, Tk]`` — bool (True = may attend)
    or additive float (0 / −inf). ``relations`` (``[B, R, Tq, Tk]``, 0/1) add a learned
    logit per relation and head (``relations`` > 0 at construction); heads start with
    different preferences for related elements.
    """

    def __init__(self, hidden: int, heads: int, relations: int = 0, dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"prior hidden={hidden} must be divisible by heads={heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.drop = nn.Dropout(dropout)
        self.relation_bias = nn.Parameter(torch.linspace(-1.0, 3.0, heads).repeat(relations, 1)) if relations else None

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, H = x.shape
        return self.qkv(self.norm1(x)).view(B, T, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4).unbind(0)

    def _mask(self, mask: Tensor, relations: Tensor | None, dtype: torch.dtype) -> Tensor:
        if self.relation_bias is None or relations is None:
            return mask
        return (mask + torch.einsum("brqk,rh->bhqk", relations, self.relation_bias)).to(dtype)

    def _attend(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, relations: Tensor | None) -> Tensor:
        att = attention(q, k, v, self._mask(mask, relations, q.dtype))
        B, _, T, _ = att.shape
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, T, -1)))
        return x + self.drop(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor, mask: Tensor, relations: Tensor | None = None) -> Tensor:
        """``x [B, T, H]`` → ``[B, T, H]``."""
        q, k, v = self._qkv(x)
        return self._attend(x, q, k, v, mask, relations)

    def step(self, x_t: Tensor, cache: tuple[Tensor, Tensor] | None, relations: Tensor | None = None
             ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One new position ``x_t [n, 1, H]`` attending to itself and every earlier one, whose
        keys and values are ``cache`` (each ``[n, heads, t, H/heads]``; None at t = 0);
        ``relations [n, R, 1, t+1]``. Returns its output and the extended cache."""
        q, k, v = self._qkv(x_t)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        everything = torch.zeros(1, 1, 1, k.shape[2], dtype=q.dtype, device=q.device)
        return self._attend(x_t, q, k, v, everything, relations), (k, v)


def causal_mask(length: int, dtype: torch.dtype, device=None) -> Tensor:
    """``[1, 1, T, T]`` additive mask: position t attends to positions ≤ t."""
    return torch.full((length, length), float("-inf"), dtype=dtype, device=device).triu(1)[None, None]
