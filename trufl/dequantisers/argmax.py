"""Argmax flows (Hoogeboom, Nielsen, Jaini, Forré, Welling, NeurIPS 2021).

* ``binary`` (D = ⌈log₂K⌉): ``u ~ N(μ_x, σ_x)``, ``z_d = (2·bit_d(x) − 1)·softplus(u_d)``;
  decode ``bits = 1[z > 0]``. Codes ≥ K are *not* in any support: ``in_support``
  is false there and ``decode`` returns ``INVALID`` (the reference code silently
  maps them to a valid symbol).
* ``onehot`` (D = K): ``v ~ N(μ_x, σ_x)``, ``z_x = v_x`` and
  ``z_i = v_x − softplus(v_x − v_i)`` for i ≠ x, so ``argmax z = x``.

Supports are disjoint, so the Bayes decoder is exact: ``log p(x|z) = 0``.

``encoder=bilstm`` (the reference's text encoder): μ and σ of token t come from a
bidirectional LSTM over the whole sequence x (:class:`SequenceEncoder`), not from a
table per category. q(z|x) may read all of x, later tokens too, because decoding never
needs it: z's orthants are disjoint, so x = decode(z) token by token without any
context, and ``log q(z_t | x)`` for z's own category is computed from the sequence
decode(z) (every other category's is −inf).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..distributions import NEG_INF, bounded, gaussian_log_pdf, inverse_softplus
from ..settings import Count, Positive, checked
from .base import ContextDim, Dequantiser, NumCategories, select_rows
from ..precision import flow_input

Variant = Literal["binary", "onehot"]


def softplus_floor(dtype: torch.dtype) -> float:
    """The smallest u whose softplus is a normal float of ``dtype`` (below it, softplus
    loses precision and then underflows to 0)."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


def required_dim(num_categories: int, variant: str) -> int:
    return max(1, math.ceil(math.log2(num_categories))) if variant == "binary" else num_categories


class SequenceEncoder(nn.Module):
    """Argmax flows' context encoder: embedding → bidirectional LSTM over the whole sequence →
    linear map to a ``context``-wide feature per token → per token a mean and a raw
    log-std per dimension. ``x [B, T]`` → two ``[B, T, D]``."""

    def __init__(self, num_categories: int, dim: int, hidden: int, num_layers: int, context: int):
        super().__init__()
        self.embed = nn.Embedding(num_categories, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers, batch_first=True, bidirectional=True)
        self.context = nn.Linear(2 * hidden, context)
        self.out = nn.Linear(context, 2 * dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.dim() != 2:
            raise ValueError(f"flow.encoder=bilstm reads whole sequences [B, T], got a tensor of shape {tuple(x.shape)}")
        return flow_input(self.out(self.context(self.lstm(self.embed(x.long()))[0]))).chunk(2, dim=-1)


class ArgmaxDequantiser(Dequantiser):
    """Argmax-flow dequantiser with a Gaussian base per category (or per token of a sequence).

    Args:
        num_categories: K.
        dim: must be ``None`` (derived) or equal to ⌈log₂K⌉ (binary) / K (one-hot).
        variant: ``binary`` or ``onehot``.
        max_log_scale: bound on |log σ|.
        context_dim: width of an optional per-token context shifting μ and log σ.
        encoder: ``table`` (μ, σ per category) or ``bilstm`` (module docstring; x and z are then
            ``[B, T]`` and ``[B, T, D]``).
        encoder_hidden, encoder_layers, encoder_context: ``bilstm``'s width, layers and
            per-token context width.
    """

    @checked("flow")
    def __init__(
        self,
        num_categories: NumCategories,
        dim: Count | None = None,
        variant: Variant = "binary",
        max_log_scale: Positive = 3.0,
        context_dim: ContextDim = 0,
        encoder: Literal["table", "bilstm"] = "table",
        encoder_hidden: Count = 512,
        encoder_layers: Count = 1,
        encoder_context: Count = 128,
    ):
        need = required_dim(num_categories, variant)
        if dim is not None and dim != need:
            raise ValueError(
                f"flow.dim={dim} but argmax/{variant} with K={num_categories} needs dim={need}; "
                "leave flow.dim=null to derive it"
            )
        if encoder == "bilstm" and context_dim:
            raise ValueError("flow.encoder=bilstm reads the whole sequence already: use context=none")
        super().__init__(num_categories, need, context_dim)
        self.variant = variant
        self.max_log_scale = max_log_scale
        if encoder == "bilstm":
            self.mean = self.raw_log_std = None
            self.sequence_encoder = SequenceEncoder(num_categories, need, encoder_hidden, encoder_layers, encoder_context)
        else:
            self.mean = nn.Parameter(torch.zeros(num_categories, need))
            self.raw_log_std = nn.Parameter(torch.zeros(num_categories, need))
            self.sequence_encoder = None
        k = torch.arange(num_categories)
        if variant == "binary":
            bits = torch.stack([(k >> d) & 1 for d in range(need)], dim=-1)
            self.register_buffer("signs", (2 * bits - 1).float())  # [K, D]
        self.context_net = self._context_head(2)

    def _gaussian(self, context: Tensor | None, tokens: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """μ and log σ: ``[K, D]`` per category, or with ``encoder=bilstm`` ``[B, T, 1, D]`` per token of
        the sequences ``tokens [B, T]`` (the same for every category)."""
        if self.sequence_encoder is not None:
            mean, raw = self.sequence_encoder(tokens)
            return mean.unsqueeze(-2), bounded(raw, self.max_log_scale).unsqueeze(-2)
        mean, raw = self._shift_by_context(context, self.mean, self.raw_log_std)
        return mean, bounded(raw, self.max_log_scale)

    def sample(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.sequence_encoder is not None:
            mean, log_std = (t.squeeze(-2) for t in self._gaussian(None, x))
        else:
            mean, log_std = (select_rows(t, x) for t in self._gaussian(context))
        u = mean + log_std.exp() * torch.randn_like(mean)
        if self.variant == "binary":
            # softplus(u) underflows to 0 (a face of every orthant: outside x's support) for
            # u < log(tiny); keep u where |z| is a normal number and the inverse is exact
            u = u.clamp_min(softplus_floor(u.dtype))
            z = self.signs[x.long()] * F.softplus(u)
            return z, (gaussian_log_pdf(u, mean, log_std) - F.logsigmoid(u)).sum(-1)
        top = u.gather(-1, x.long().unsqueeze(-1))
        gap = top - u
        # top - softplus(gap) rounds to top when softplus(gap) is below top's float spacing:
        # a tie the argmax may break against x, so stay strictly below top
        below = torch.minimum(top - F.softplus(gap), torch.nextafter(top, torch.full_like(top, NEG_INF)))
        is_x = F.one_hot(x.long(), self.dim).bool()
        z = torch.where(is_x, u, below)
        # the density of the z actually represented: the gap it encodes after rounding
        # (as log_prob_all reads it), not the gap drawn, which rounding may have moved
        gap = torch.where(is_x, gap, inverse_softplus((top - below).clamp_min(torch.finfo(u.dtype).tiny)))
        u = torch.where(is_x, u, top - gap)
        log_jac = torch.where(is_x, 0.0, F.logsigmoid(gap)).sum(-1)
        return z, gaussian_log_pdf(u, mean, log_std).sum(-1) - log_jac

    def code(self, z: Tensor) -> Tensor:
        """The category z's region encodes ``[...]`` (may be ≥ K for binary)."""
        if self.variant == "onehot":
            return z.argmax(-1)
        weights = 2 ** torch.arange(self.dim, device=z.device)
        return ((z > 0).long() * weights).sum(-1)

    def _support_boxes(self) -> tuple[Tensor, Tensor] | None:
        if self.variant == "onehot":  # every z has an argmax < K
            return None
        inf = torch.full_like(self.signs, float("inf"))
        zero = torch.zeros_like(self.signs)
        return torch.where(self.signs > 0, zero, -inf), torch.where(self.signs > 0, inf, zero)

    @property
    def _factorised(self) -> bool:  # binary: each dimension is one bit's half-line
        return self.variant == "binary" and self.context_net is None and self.sequence_encoder is None

    def _conditionals(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z_d = s·softplus(u), u ~ N(μ, σ), s = ±1 category k's bit: on its half-line the CDF is
        Φ((softplus⁻¹(|z|) − μ)/σ) (s = +1) or its complement (s = −1)."""
        mean, log_std = self._gaussian(None)  # [K, D]
        zk = z.unsqueeze(-2)
        u = inverse_softplus(zk.abs().clamp_min(F.softplus(torch.tensor(softplus_floor(z.dtype))).item()))
        t = (u - mean) * torch.exp(-log_std)
        own_side = (zk * self.signs) > 0
        log_pdf = torch.where(own_side, gaussian_log_pdf(u, mean, log_std) - F.logsigmoid(u), NEG_INF)
        low, high = torch.special.log_ndtr(t), torch.special.log_ndtr(-t)  # P(|z| below / above)
        zero, neg_inf = torch.zeros_like(t), torch.full_like(t, NEG_INF)
        positive = self.signs > 0
        log_cdf = torch.where(positive, torch.where(zk > 0, low, neg_inf), torch.where(zk < 0, high, zero))
        log_sf = torch.where(positive, torch.where(zk > 0, high, zero), torch.where(zk < 0, low, neg_inf))
        return log_pdf, log_cdf, log_sf

    def _own(self, z: Tensor) -> Tensor:
        """``[..., K]``: True at the category whose region holds z (nowhere for an unused code)."""
        K, code = self.num_categories, self.code(z)
        return F.one_hot(code.clamp_max(K - 1), K).bool() & (code < K).unsqueeze(-1)

    def decoder_log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """With ``encoder=bilstm``: 0 at z's own category and −inf elsewhere, read from the code
        alone (q(z|x) > 0 on x's whole region, so this is the Bayes posterior; no second
        pass of the sequence encoder)."""
        if self.sequence_encoder is None:
            return super().decoder_log_prob(z, context)
        return torch.where(self._own(z), 0.0, NEG_INF).to(z.dtype)

    def log_prob_all(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        K = self.num_categories
        # bilstm: the sequence z decodes to (a token outside every support, whose row is -inf, read as K - 1)
        mean, log_std = self._gaussian(context, self.code(z).clamp_max(K - 1) if self.sequence_encoder is not None else None)
        own = self._own(z)
        zk = z.unsqueeze(-2)  # [..., 1, D]
        if self.variant == "binary":
            u = inverse_softplus(zk.abs().clamp_min(F.softplus(torch.tensor(softplus_floor(z.dtype))).item()))
            u = u.expand(*z.shape[:-1], K, self.dim)
            log_q = (gaussian_log_pdf(u, mean, log_std) - F.logsigmoid(u)).sum(-1)
        else:
            top = z.max(-1, keepdim=True).values.unsqueeze(-2)  # [..., 1, 1]
            is_top = F.one_hot(z.argmax(-1), self.dim).bool().unsqueeze(-2)
            gap = inverse_softplus((top - zk).clamp_min(1e-30))
            u = torch.where(is_top, zk, top - gap)
            log_q = (gaussian_log_pdf(u, mean, log_std) - torch.where(is_top, 0.0, F.logsigmoid(gap))).sum(-1)
        return torch.where(own, log_q, torch.full_like(log_q, NEG_INF))
