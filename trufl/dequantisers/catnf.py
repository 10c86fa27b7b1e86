"""CatNF: categorical normalising-flow dequantisation (Lippe & Gavves, ICLR 2021).

``q(z|k)``: a diagonal logistic with learned per-category location and bounded
log-scale, optionally followed by ``num_flows`` category-conditioned affine
coupling layers (the "linear flows" variant). The decoder is the exact Bayes
posterior; ``log q(z|k)`` for every k is one batched pass over a K axis.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..distributions import LOG_UNIT_VARIANCE, bounded, logistic_log_pdf, sample_uniform
from ..settings import Count, NonNegative, NonNegativeInt, Positive, Range, checked
from .base import ContextDim, Dequantiser, NumCategories, select_rows
from ..precision import flow_input


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
        log_s, t = flow_input(self.net(torch.cat([y_a, h], dim=-1))).chunk(2, dim=-1)
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


def grid_locations(num_categories: int, dim: int, spread: float) -> Tensor:
    """``[K, D]``: the first K cells (row-major) of a regular grid with ceil(K^(1/D)) levels
    per dimension over ``[-spread, spread]``."""
    levels = math.ceil(num_categories ** (1 / dim) - 1e-9)
    axis = torch.linspace(-spread, spread, levels) if levels > 1 else torch.zeros(1)
    cells = torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)
    return cells[:num_categories].clone()


class CatNFDequantiser(Dequantiser):
    """Logistic mixture encoder with a Bayes-posterior decoder.

    Args:
        num_categories: K.
        dim: D (None: 3, CatNF's own for language modelling).
        num_flows: category-conditioned coupling layers after the logistic (0: plain mixture).
        hidden: width of the coupling networks.
        max_log_scale: bound on |log-scale| (tanh-squashed).
        init: ``random`` — locations drawn from N(0, init_loc_std²), log-scales 0 (all
            categories overlap at the start); ``grid`` — locations at the centres of a
            regular grid of ceil(K^(1/D)) levels per dimension over
            ``[-init_spread, init_spread]``, log-scales ``init_log_scale``: categories start
            (almost) separate, as TRUFL's boxes do. Adam moves a location by about the
            learning rate per step, so from ``random`` the encoder cannot separate 16
            categories in a few thousand steps: measured on sets, CatNF stays at the
            uniform rate from ``random`` (docs/constrained_generation.md).
        init_loc_std: spread of the initial locations (``init=random``).
        init_spread: half-width of the initial grid (``init=grid``).
        init_log_scale: initial log-scale of every category (``init=grid``).
        context_dim: width of an optional per-token context shifting loc/log-scale.
        parameterisation: ``table`` — a location and log-scale per category (above);
            ``embedding`` — CatNF's reference encoder: a ``embed_dim``-wide embedding of the
            category and a linear map to a location b and raw scale s per dimension,
            ``z = (ε + b)·exp(tanh(s))`` with ε a unit-variance logistic (scale 1/1.81), so
            |log-scale| < 1; the map's scale rows start at zero and its weights are multiplied by
            4/√D (initial locations with std √(16/(3D)) per dimension, scales 1). ``init``,
            ``init_*`` and ``max_log_scale`` do not apply to it.
        embed_dim: width of the category embedding (``parameterisation=embedding``).
    """

    @checked("flow")
    def __init__(
        self,
        num_categories: NumCategories,
        dim: Count | None = None,
        num_flows: NonNegativeInt = 0,
        hidden: Count = 64,
        max_log_scale: Positive = 3.0,
        init_loc_std: NonNegative = 1.0,
        context_dim: ContextDim = 0,
        init: Literal["random", "grid"] = "random",
        init_spread: Positive = 6.0,
        init_log_scale: Annotated[float, Range(-10, 10)] = -2.5,
        parameterisation: Literal["table", "embedding"] = "table",
        embed_dim: Count = 64,
    ):
        dim = 3 if dim is None else dim
        super().__init__(num_categories, dim, context_dim)
        self.parameterisation = parameterisation
        if init == "grid" and not abs(init_log_scale) < max_log_scale:
            raise ValueError(f"flow.init_log_scale={init_log_scale} must lie inside (-flow.max_log_scale, flow.max_log_scale) = ±{max_log_scale}")
        self.max_log_scale = max_log_scale
        if init == "grid":
            loc = grid_locations(num_categories, dim, init_spread)
            raw = torch.full((num_categories, dim), max_log_scale * math.atanh(init_log_scale / max_log_scale))
        else:
            loc, raw = init_loc_std * torch.randn(num_categories, dim), torch.zeros(num_categories, dim)
        if parameterisation == "embedding":
            self.loc = self.raw_log_scale = None
            self.category_embedding = nn.Embedding(num_categories, embed_dim)  # N(0, 1)
            self.encoder_linear = nn.Linear(embed_dim, 2 * dim)
            with torch.no_grad():
                self.encoder_linear.weight[dim:].zero_()  # every scale starts at 1
                self.encoder_linear.weight.mul_(4 / math.sqrt(dim))
                self.encoder_linear.bias.zero_()
        else:
            self.loc = nn.Parameter(loc)
            self.raw_log_scale = nn.Parameter(raw)
        self.embedding = nn.Parameter(torch.randn(num_categories, hidden) / hidden**0.5) if num_flows else None
        self.flows = nn.ModuleList(
            ConditionalAffineCoupling(dim, hidden, hidden, i % 2, max_log_scale) for i in range(num_flows)
        )
        self.context_net = self._context_head(2)

    def _loc_scale(self, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """Locations and log-scales ``[K, D]`` (``[..., K, D]`` with context) of the logistic
        ``z = loc + exp(log_scale)·e``, e standard logistic."""
        if self.parameterisation == "embedding":
            b, s = flow_input(self.encoder_linear(self.category_embedding.weight)).chunk(2, dim=-1)
            b, s = self._shift_by_context(context, b, s)
            t = torch.tanh(s)  # z = (ε + b)·e^t, ε = e/1.81: location b·e^t, log-scale t − log 1.81
            return b * t.exp(), t - LOG_UNIT_VARIANCE
        loc, raw = self._shift_by_context(context, self.loc, self.raw_log_scale)
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

    @property
    def _factorised(self) -> bool:  # the linear flows and a context couple the dimensions
        return not self.flows and self.context_net is None

    def _conditionals(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        loc, log_s = self._loc_scale(None)
        t = (z.unsqueeze(-2) - loc) * torch.exp(-log_s)
        return logistic_log_pdf(t) - log_s, F.logsigmoid(t), F.logsigmoid(-t)

    def summary(self) -> dict:
        loc, log_s = self._loc_scale(None)
        return {"loc": loc.tolist(), "log_scale": log_s.tolist()}

