"""CatNF: categorical normalising-flow dequantisation (Lippe & Gavves, ICLR 2021).

``q(z|k)``: a diagonal logistic with learned per-category location and bounded
log-scale, optionally followed by ``num_flows`` category-conditioned affine
coupling layers (the "linear flows" variant). The decoder is the exact Bayes
posterior; ``log q(z|k)`` for every k is one batched pass over a K axis.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..distributions import bounded, logistic_log_pdf, sample_uniform
from .base import Dequantiser, select_rows


class ConditionalAffineCoupling(nn.Module):
    """``y_b ← y_b · exp(s(y_a, h)) + t(y_a, h)``, conditioned on an embedding h.

    ``a`` are the untouched dimensions (empty for D = 1, where the layer is a
    category-conditioned elementwise affine map). Shapes: y ``[..., D]``,
    h ``[..., E]``; log-determinants ``[...]``.
    """

    def __init__(self, dim: int, emb_dim: int, hidden: int, parity: int, max_log_scale: float):
        super().__init__()
        half = dim // 2
        first = list(range(half)) if parity == 0 else list(range(dim - half, dim))
        self.register_buffer("idx_a", torch.tensor(first, dtype=torch.long))
        self.register_buffer("idx_b", torch.tensor([d for d in range(dim) if d not in first], dtype=torch.long))
        self.max_log_scale = max_log_scale
        self.net = nn.Sequential(
            nn.Linear(len(first) + emb_dim, hidden), nn.GELU(), nn.Linear(hidden, 2 * len(self.idx_b))
        )
        nn.init.zeros_(self.net[-1].weight)  # start at the identity
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        y_a = y.index_select(-1, self.idx_a)
        h = h.expand(*y.shape[:-1], h.shape[-1])
        log_s, t = self.net(torch.cat([y_a, h], dim=-1)).chunk(2, dim=-1)
        return bounded(log_s, self.max_log_scale), t

    def forward(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        log_s, t = self._params(y, h)
        out = y.clone()
        out[..., self.idx_b] = y[..., self.idx_b] * log_s.exp() + t
        return out, log_s.sum(-1)

    def inverse(self, y: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        log_s, t = self._params(y, h)  # y_a is unchanged, so the same parameters
        out = y.clone()
        out[..., self.idx_b] = (y[..., self.idx_b] - t) * torch.exp(-log_s)
        return out, log_s.sum(-1)


class CatNFDequantiser(Dequantiser):
    """Logistic mixture encoder with a Bayes-posterior decoder.

    Args:
        num_categories: K.
        dim: D.
        num_flows: category-conditioned coupling layers after the logistic (0: plain mixture).
        hidden: width of the coupling networks.
        max_log_scale: bound on |log-scale| (tanh-squashed).
        init_loc_std: spread of the initial category locations.
        context_dim: width of an optional per-token context shifting loc/log-scale.
    """

    def __init__(
        self,
        num_categories: int,
        dim: int = 3,
        num_flows: int = 0,
        hidden: int = 64,
        max_log_scale: float = 3.0,
        init_loc_std: float = 1.0,
        context_dim: int = 0,
    ):
        super().__init__(num_categories, dim, context_dim)
        if num_flows < 0:
            raise ValueError(f"flow.num_flows must be >= 0, got {num_flows}")
        self.max_log_scale = max_log_scale
        self.loc = nn.Parameter(init_loc_std * torch.randn(num_categories, dim))
        self.raw_log_scale = nn.Parameter(torch.zeros(num_categories, dim))
        self.embedding = nn.Parameter(torch.randn(num_categories, hidden) / hidden**0.5) if num_flows else None
        self.flows = nn.ModuleList(
            ConditionalAffineCoupling(dim, hidden, hidden, i % 2, max_log_scale) for i in range(num_flows)
        )
        self.context_net = self._context_head(2)

    def _loc_scale(self, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """Locations and log-scales ``[K, D]`` (``[..., K, D]`` with context)."""
        loc, raw = self.loc, self.raw_log_scale
        extra = self._context_offsets(context)
        if extra is not None:
            loc, raw = loc + extra[..., 0], raw + extra[..., 1]
        return loc, bounded(raw, self.max_log_scale)

    def sample(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        loc, log_s = (select_rows(t, x) for t in self._loc_scale(context))  # [..., D]
        e = torch.logit(sample_uniform(loc.shape, device=loc.device, dtype=loc.dtype))
        z = loc + log_s.exp() * e
        log_q = (logistic_log_pdf(e) - log_s).sum(-1)
        if self.flows:
            h = self.embedding[x.long()]
            for flow in self.flows:
                z, log_det = flow(z, h)
                log_q = log_q - log_det
        return z, log_q

    def log_prob_all(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        loc, log_s = self._loc_scale(context)  # [(...), K, D]
        y = z.unsqueeze(-2).expand(*z.shape[:-1], self.num_categories, self.dim)
        log_q = torch.zeros(y.shape[:-1], dtype=z.dtype, device=z.device)
        for flow in reversed(self.flows):
            y, log_det = flow.inverse(y, self.embedding)
            log_q = log_q - log_det
        e = (y - loc) * torch.exp(-log_s)
        return log_q + (logistic_log_pdf(e) - log_s).sum(-1)

    def summary(self) -> dict:
        loc, log_s = self._loc_scale(None)
        return {"loc": loc.tolist(), "log_scale": log_s.tolist()}

