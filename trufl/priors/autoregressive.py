"""Autoregressive flow prior over the elements of an object (CatNF / Flow++ style):

    p(z) = Π_t p(z_t | f(z_<t), condition),   z_t ∈ R^D

built from three parts, each replaceable on its own:

* an **encoder** (:mod:`trufl.priors.encoders`: an LSTM, or a causal Transformer that
  knows a task's structure) over what is known of the elements before t;
* an **elementwise transform** (:mod:`trufl.priors.elementwise`: mixture-of-logistics
  CDFs, or a spline with knots at the support's box faces) of each latent dimension
  to the logistic base;
* a masked **head** (:class:`~trufl.priors.layers.MaskedHead`) giving the transform's
  parameters for dimension d from the encoder's output and the token's dimensions < d,
  so the Jacobian is triangular and ``log p(z)`` is one parallel pass.

What the encoder reads of the previous elements (``inputs``):

* ``latent`` — their latents z_<t (the papers' setting). Under TRUFL's grid a category
  is a non-monotone function of each coordinate, so the encoder must learn to decode.
* ``decoded`` — an embedding of ``decode(z_<t)``, the support's categories (one extra
  row for "outside every support"). The density stays normalised: each factor is a
  density in z_t for every value of what it conditions on, and ``decode`` is a function
  of z_<t alone. (Conditioning on the data x_<t would leak x into p(z): it agrees with
  decode(z_<t) only where decoding is exact.) Exact for a deterministic decoder; for a
  stochastic one (CatNF) the tokens read are the decoder's argmax, not x.
* ``both`` — the two concatenated.
* ``auto`` — ``decoded`` where the support has boxes (TRUFL, Argmax: decoding is exact or
  nearly so), else ``both`` (CatNF: its decoder's argmax is often not x, so the latents
  keep what the tokens lose).

``order=degree`` visits the elements sorted by their degree in the condition's graph,
largest first (ties in the given order): a permutation that depends on the graph alone,
so the density stays exact (log-determinant 0); graph colouring's "largest first".

Sampling carries the encoder's state: T encoder steps and T·D head calls for T tokens,
never re-running the sequence per element (the O(T²) reference is
:func:`trufl.priors.reference.recomputing_inverse`).
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch import Tensor, nn

from ..condition import Condition, adjacency_of
from ..distributions import LOG_UNIT_VARIANCE, gaussian_log_pdf
from ..settings import Count, Injected, NonNegativeInt, checked
from ..support import Support
from .base import LogisticBaseFlow
from .elementwise import HeadFeatures, HeadInit, ScaleBounds, TransformKind, make_transform
from .encoders import Dropout
from .layers import MaskedHead
from .support_mass import sequential_support_mass
from .token_inputs import LatentEmbedding, PositionEmbedding, drop_tokens, shifted

Inputs = Literal["latent", "decoded", "both", "auto"]
Order = Literal["given", "degree"]
Base = Literal["logistic", "unit_logistic", "gaussian"]


class AutoregressivePrior(LogisticBaseFlow):
    """Args:
    support: the dequantiser's support (D, K, box faces; filled in by the job).
    encoder: builds the sequence encoder from its input width (a partial of
        :class:`~trufl.priors.encoders.LSTMEncoder` or ``CausalTransformerEncoder``).
    inputs: ``latent | decoded | both`` (module docstring).
    embed_dim: width of the embedding of decoded tokens.
    transform: ``mixture | spline | auto`` (:func:`~trufl.priors.elementwise.make_transform`).
    num_bins: spline bins besides the box faces (None: 1 where q is uniform on its boxes, else 16).
    num_mixtures, num_flows: mixture components per CDF layer, CDF layers per dimension.
    head_hidden, head_layers: the masked head's width and hidden layers (0: a linear readout).
    order: ``given | degree`` (module docstring).

    Options of CatNF's reference prior (defaults: off, this repository's prior):
    actnorm, head_features, scale_bounds, head_init: the mixture's (``elementwise.MixtureTransform``).
    head_feature_embed, head_blocks: the head's (``feature_embed``, ``blocks``: ``layers.MaskedHead``).
    latent_embed, latent_embed_hidden: > 0 reads the latents through a GELU MLP of these
        widths (``token_inputs.LatentEmbedding``); the first position then reads zeros.
    input_dropout: whole token inputs zeroed with this probability in training, not rescaled.
    time_embed, time_max_length: > 0 adds a learned embedding of [t, T − 1 − t] of this width for
        sequences of up to ``time_max_length`` (as the token input: of the previous position).
    base: ``logistic`` (standard), ``unit_logistic`` (of unit variance, scale 1/1.81: CatNF's)
        or ``gaussian`` (learned, a mean and log-scale per dimension from N(0, 1): Argmax flows').
    """

    @checked("prior")
    def __init__(self, support: Injected[Support], encoder: Callable[[int], nn.Module], inputs: Inputs = "decoded",
                 embed_dim: Count = 64, transform: TransformKind = "auto", num_bins: Count | None = None,
                 num_mixtures: Count = 8, num_flows: Count = 2, head_hidden: Count = 128, head_layers: NonNegativeInt = 2,
                 order: Order = "given", actnorm: bool = True, head_features: HeadFeatures = "plain",
                 scale_bounds: ScaleBounds = "fixed", head_init: HeadInit = "spread", head_feature_embed: NonNegativeInt = 0,
                 head_blocks: bool = False, latent_embed: NonNegativeInt = 0, latent_embed_hidden: Count = 128,
                 input_dropout: Dropout = 0.0, time_embed: NonNegativeInt = 0, time_max_length: Count = 128, base: Base = "logistic"):
        super().__init__(support)
        if inputs == "auto":
            inputs = "decoded" if support.num_boxes else "both"
        if inputs != "latent" and not support.num_categories:
            raise ValueError(f"prior.inputs={inputs} embeds decoded tokens: the support must know K")
        if latent_embed and inputs == "decoded":
            raise ValueError("prior.latent_embed embeds the latents: it needs prior.inputs=latent|both")
        if transform == "support" and base != "logistic":
            raise ValueError("prior.transform=support maps onto the standard logistic base (its log density is the "
                             f"mixture's exactly only there): prior.base=logistic, got {base!r}")
        dim, self.inputs, self.order, self.input_dropout = self.dim, inputs, order, input_dropout
        self.transform = make_transform(transform, support, num_bins, num_mixtures, num_flows, actnorm=actnorm,
                                        features=head_features, scale_bounds=scale_bounds, head_init=head_init)
        self.start = nn.Parameter(torch.zeros(1, 1, dim)) if inputs != "decoded" and not latent_embed else None
        self.latent_embed = LatentEmbedding(dim, latent_embed, latent_embed_hidden) if latent_embed else None
        self.time = PositionEmbedding(time_embed, time_max_length) if time_embed else None
        latent_width = (latent_embed or dim) if inputs != "decoded" else 0
        self.encoder = encoder(latent_width + (embed_dim if inputs != "latent" else 0) + time_embed)
        self.head = MaskedHead(self.encoder.out_dim, dim, head_hidden, self.transform.params_per_dim,
                               features_per_dim=self.transform.features_per_dim, zero_out=False, layers=head_layers,
                               feature_embed=head_feature_embed, blocks=head_blocks)
        self.transform.init_head(self.head)
        if inputs != "latent":
            K = support.num_categories
            self.invalid, self.begin = K, K + 1  # extra embedding rows
            self.embed = nn.Embedding(K + 2, embed_dim)
        self.base = base
        self.base_loc = nn.Parameter(torch.zeros(dim)) if base == "gaussian" else None
        self.base_log_scale = nn.Parameter(torch.zeros(dim)) if base == "gaussian" else None

    @property
    def reads_tokens(self) -> bool:
        return self.inputs != "latent"

    # -- the encoder's inputs ------------------------------------------------------
    def _token_ids(self, tokens: Tensor) -> Tensor:
        return torch.where(tokens < 0, torch.full_like(tokens, self.invalid), tokens)

    def _decoded(self, z: Tensor, support: Support) -> Tensor | None:
        """Embedding rows of decode(z) ``[B, T]`` (None when the encoder reads latents only)."""
        if not self.reads_tokens:
            return None
        with torch.no_grad():  # piecewise constant in z: nothing to differentiate
            return self._token_ids(support.decode(z))

    def _inputs(self, y: Tensor, ids: Tensor | None, lengths: Tensor | int | None = None) -> Tensor:
        """Encoder input at every position from the previous token: ``[B, T, in]`` (``lengths``:
        the sequences' lengths, for the position embedding; None: T)."""
        B, T = y.shape[:2]
        parts = []
        if self.start is not None:
            parts.append(torch.cat([self.start.expand(B, 1, -1).to(y.dtype), y[:, :-1]], dim=1))
        if self.latent_embed is not None:
            parts.append(shifted(self.latent_embed(y)))
        if ids is not None:
            begin = torch.full_like(ids[:, :1], self.begin)
            parts.append(self.embed(torch.cat([begin, ids[:, :-1]], dim=1)).to(y.dtype))
        x = drop_tokens(torch.cat(parts, dim=-1), self.input_dropout, self.training)
        if self.time is None:
            return x
        lengths = torch.as_tensor(T if lengths is None else lengths, device=y.device).expand(B)
        return torch.cat([x, shifted(self.time(torch.arange(T, device=y.device), lengths).to(y.dtype))], dim=-1)

    def _step_input(self, y_prev: Tensor | None, ids_prev: Tensor | None, n: int, dtype, t: int = 0,
                    length: int | None = None) -> Tensor:
        """Encoder input ``[n, 1, in]`` from the previous token (None at t = 0) of a sequence of
        ``length``, as in :meth:`_inputs`."""
        parts = []
        if self.start is not None:
            parts.append(self.start.expand(n, 1, -1).to(dtype) if y_prev is None else y_prev[:, None])
        if self.latent_embed is not None:
            parts.append(self.anchor.new_zeros(n, 1, self.latent_embed.width, dtype=dtype) if y_prev is None
                         else self.latent_embed(y_prev[:, None]))
        if self.reads_tokens:
            if ids_prev is None:
                ids_prev = torch.full((n,), self.begin, dtype=torch.long, device=self.anchor.device)
            parts.append(self.embed(ids_prev)[:, None].to(dtype))
        x = drop_tokens(torch.cat(parts, dim=-1), self.input_dropout, self.training)
        if self.time is None:
            return x
        previous = self.time(torch.tensor([max(t - 1, 0)], device=x.device), torch.tensor([length], device=x.device))
        return torch.cat([x, (previous if t > 0 else torch.zeros_like(previous)).to(dtype).expand(n, 1, -1)], dim=-1)

    # -- the base ---------------------------------------------------------------
    def base_log_prob(self, e: Tensor) -> Tensor:
        if self.base == "gaussian":
            return gaussian_log_pdf(e, self.base_loc, self.base_log_scale)
        if self.base == "unit_logistic":
            return super().base_log_prob(e * math.exp(LOG_UNIT_VARIANCE)) + LOG_UNIT_VARIANCE
        return super().base_log_prob(e)

    def sample_base(self, shape: tuple[int, ...]) -> Tensor:
        if self.base == "gaussian":
            return self.base_loc + self.base_log_scale.exp() * torch.randn(shape, device=self.anchor.device, dtype=self.anchor.dtype)
        e = super().sample_base(shape)
        return e * math.exp(-LOG_UNIT_VARIANCE) if self.base == "unit_logistic" else e

    # -- the flow --------------------------------------------------------------
    def forward(self, z: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> tuple[Tensor, Tensor]:
        """z ``[B, T, D]`` → base variable e ``[B, T, D]`` and log|det| per token ``[B, T]``."""
        support = support or self.support
        return self.in_prior_order(lambda z, mask, condition: self._forward(z, mask, condition, support), z, mask, condition)

    def _forward(self, z: Tensor, mask: Tensor | None, condition: Condition | None, support: Support) -> tuple[Tensor, Tensor]:
        now = self.transform.current(support)
        y, log_det = self.transform.normalise(z, mask)
        lengths = mask.sum(1) if mask is not None and self.time is not None else None
        h = self.encoder(self._inputs(y, self._decoded(z, support), lengths), condition)
        e, ld = now.forward(y, self.head(h, now.features(y)))
        return e, log_det + ld.sum(-1)

    def invert_token(self, h: Tensor, e_t: Tensor, now) -> Tensor:
        """One token's y ``[n, D]`` from its encoder output ``h [n, H]`` and base ``e_t [n, D]``,
        dimension by dimension (the masked head sees the dimensions already inverted)."""
        if getattr(now, "inverts_tokens", False):  # its later dimensions' weights follow from the earlier ones
            return now.inverse_token(e_t, self.head(h, now.features(torch.zeros_like(e_t))))
        y = torch.zeros_like(e_t)
        for d in range(self.dim):
            v = now.inverse_dim(e_t[:, d], self.head(h, now.features(y))[:, d], d)
            y = torch.cat([y[:, :d], v[:, None], y[:, d + 1 :]], dim=1)
        return y

    @torch.no_grad()
    def _autoregress(self, n: int, length: int, support: Support, dtype, base, condition: Condition | None) -> Tensor:
        """z ``[n, length, D]`` token by token, carrying the encoder (and decoder) state: token
        t inverts ``base(t, h, now) -> e_t [n, D]`` given its encoder output ``h [n, H]``."""
        now = self.transform.current(support)
        state = decoder_state = y_t = ids = None
        out = []
        for t in range(length):
            h, state = self.encoder.step(self._step_input(y_t, ids, n, dtype, t, length), state, t, condition)
            y_t = self.invert_token(h[:, 0], base(t, h[:, 0], now), now)
            if self.reads_tokens:
                tokens, decoder_state = support.decode_step(self.transform.denormalise(y_t), decoder_state)
                ids = self._token_ids(tokens)
            out.append(y_t)
        return self.transform.denormalise(torch.stack(out, dim=1))

    def inverse(self, e: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> Tensor:
        """e ``[n, T, D]`` → z, token by token with the encoder (and decoder) state carried forward."""
        support = support or self.support

        def invert(e: Tensor, mask, condition) -> Tensor:
            return self._autoregress(e.shape[0], e.shape[1], support, e.dtype, lambda t, h, now: e[:, t], condition)

        return self.in_prior_order(invert, e, mask, condition)

    # -- the order of the autoregression ----------------------------------------
    def permutation(self, condition: Condition | None) -> Tensor | None:
        """``[B, T]``: the elements in the order the prior visits them (None: as given)."""
        if self.order == "given":
            return None
        degree = adjacency_of(condition, "prior.order=degree").sum(-1)
        return torch.sort(-degree, dim=1, stable=True).indices  # largest first, ties as given

    @staticmethod
    def _take(x: Tensor | None, perm: Tensor) -> Tensor | None:
        """``x [B, T, ...]`` with its elements in the order ``perm [B, T]``."""
        if x is None:
            return None
        index = perm.view(*perm.shape, *([1] * (x.dim() - 2))).expand(*perm.shape, *x.shape[2:])
        return x.gather(1, index)

    @staticmethod
    def _ordered(condition: Condition, perm: Tensor) -> Condition:
        adjacency = condition.adjacency
        T = perm.shape[1]
        rows = adjacency.gather(1, perm[:, :, None].expand(-1, T, adjacency.shape[2]))
        return Condition(adjacency=rows.gather(2, perm[:, None, :].expand(-1, T, -1)))

    def in_prior_order(self, call, x: Tensor, mask: Tensor | None, condition: Condition | None):
        """``call(x, mask, condition)`` with the elements in the prior's order, its outputs
        (tensors ``[B, T, ...]``, or a tuple of them) put back in the given order."""
        perm = self.permutation(condition)
        if perm is None:
            return call(x, mask, condition)
        out = call(self._take(x, perm), self._take(mask, perm), self._ordered(condition, perm))
        back = torch.argsort(perm, dim=1)
        return tuple(self._take(o, back) for o in out) if isinstance(out, tuple) else self._take(out, back)

    # -- support mass ----------------------------------------------------------
    @torch.no_grad()
    def log_support_mass(self, length: int, num_samples: int, condition: Condition | None = None,
                         support: Support | None = None) -> dict:
        """Sequential importance sampling with exact per-token masses when D = 1 and every
        token's support is the same intervals (:func:`~trufl.priors.support_mass.sequential_support_mass`);
        otherwise Monte Carlo. In the prior's own order (every element shares the support,
        so Z does not depend on it)."""
        support = support or self.support
        boxes = support.boxes() if support.fixed else None
        if self.dim != 1 or boxes is None or self.base != "logistic":  # the exact masses assume the standard logistic
            return super().log_support_mass(length, num_samples, condition, support)
        perm = self.permutation(condition)
        if perm is not None:  # a graph sorted by degree sorts to itself
            condition = self._ordered(condition, perm)
        dtype = self.anchor.dtype

        def autoregress(n: int, length: int, draw) -> Tensor:
            def base(t: int, h: Tensor, now) -> Tensor:
                params = self.head(h, now.features(torch.zeros(n, 1, dtype=h.dtype, device=h.device)))[:, 0]

                def cdf(points: Tensor) -> Tensor:  # token t's conditional CDF at z-space points [n, m]
                    y = self.transform.normalise(points[..., None])[0][..., 0]
                    e, _ = now.forward_dim(y, params[:, None].expand(-1, points.shape[1], -1), 0)
                    return torch.sigmoid(e)

                return draw(t, cdf)

            return self._autoregress(n, length, support, dtype, base, condition.cycle(n) if condition is not None else None)

        return sequential_support_mass(autoregress, boxes[0][:, 0], boxes[1][:, 0], length, num_samples, dtype,
                                       self.anchor.device)
