"""Optional parts of what the autoregressive prior's encoder reads of the previous tokens,
as CatNF's reference conditioner has them (each off by default):

* :class:`LatentEmbedding` — a two-layer GELU MLP of each token's latent instead of the
  raw latent;
* :func:`drop_tokens` — input dropout: whole token inputs zeroed with probability p in
  training, without rescaling;
* :class:`PositionEmbedding` — a learned embedding of the one-hot pair [t, T − 1 − t]
  (position and distance to the sequence's end).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LatentEmbedding(nn.Sequential):
    """``Linear(D → hidden), GELU, Linear(hidden → width), GELU`` per token."""

    def __init__(self, dim: int, width: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, width), nn.GELU())
        self.width = width


def shifted(x: Tensor) -> Tensor:
    """``x [B, T, F]`` one position later, zeros first: what position t reads of token t − 1."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


def drop_tokens(x: Tensor, p: float, training: bool) -> Tensor:
    """``x [B, T, F]`` with whole positions zeroed with probability ``p`` (training only; not
    rescaled, so evaluation sees the same scale of inputs as the kept ones in training)."""
    if not training or p == 0:
        return x
    keep = torch.empty(x.shape[:-1] + (1,), dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return x * keep


class PositionEmbedding(nn.Module):
    """``Linear(2·max_length → width)`` of the one-hot [t, T − 1 − t] of each position t of a
    sequence of T tokens; positions at or past T (padding) read the bias alone. Written as
    column look-ups: the same map and initialisation as the linear layer on one-hot inputs."""

    def __init__(self, width: int, max_length: int):
        super().__init__()
        self.width, self.max_length = width, max_length
        self.linear = nn.Linear(2 * max_length, width)

    def forward(self, positions: Tensor, lengths: Tensor) -> Tensor:
        """``positions [P]`` of sequences of ``lengths [B]`` → ``[B, P, width]``."""
        longest = int(lengths.max()) if lengths.numel() else 0
        if longest > self.max_length:
            raise ValueError(f"prior.time_max_length={self.max_length} is shorter than a sequence of {longest} tokens "
                             "(raise prior.time_max_length)")
        weight, L = self.linear.weight.T, self.max_length  # [2L, width]
        back = (lengths[:, None] - 1 - positions[None]).clamp(0, L - 1)
        inside = (positions[None] < lengths[:, None])[..., None]
        onehot_part = weight[positions.clamp(0, L - 1)][None] + weight[L + back]
        return torch.where(inside, onehot_part, torch.zeros_like(onehot_part)) + self.linear.bias
