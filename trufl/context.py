"""Per-token context for the dequantisers (the ``context=`` group).

A context lets the encoder q(z|x) and the Bayes decoder p(x|z) depend on the
sequence: bounds (TRUFL) or means/scales (CatNF, Argmax) become functions of it.
The context of token t is computed from x_{<t} only, so the decoder
``p(x_t | z_t, x_{<t})`` stays a valid likelihood model and generation decodes
left to right, carrying the LSTM state (O(T) steps).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .settings import Count, Injected, checked


class CausalLSTMContext(nn.Module):
    """Embedding → LSTM over the previous tokens → linear map to ``dim`` features.

    ``forward(x [B, T]) -> [B, T, dim]``; ``step(prev [B], state) -> ([B, dim], state)``.
    ``embed_dim`` defaults to ``hidden``.
    """

    @checked("context")
    def __init__(self, num_categories: Injected[int], dim: Count = 32, hidden: Count = 128, embed_dim: Count | None = None,
                 num_layers: Count = 1):
        super().__init__()
        embed_dim = hidden if embed_dim is None else embed_dim
        self.dim, self.start = dim, num_categories
        self.embed = nn.Embedding(num_categories + 1, embed_dim)  # the last row is the start symbol
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers, batch_first=True)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        prev = torch.cat([torch.full_like(x[:, :1], self.start), x[:, :-1]], dim=1)
        h, _ = self.lstm(self.embed(prev))
        return self.out(h)

    def step(self, prev: Tensor | None, state=None, batch: int | None = None) -> tuple[Tensor, tuple]:
        """One token: ``prev`` is the previous category (None at t = 0)."""
        if prev is None:
            prev = torch.full((batch,), self.start, dtype=torch.long, device=self.out.weight.device)
        h, state = self.lstm(self.embed(prev.clamp_min(0))[:, None], state)
        return self.out(h[:, 0]), state
