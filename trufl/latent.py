"""The latent-variable model: a dequantiser, a flow prior and the Bayes decoder, with an
optional causal context for the dequantiser (docs/design.md, The model).

    log p(x) >= E_q[log p(x|z)] + E_q[log p(z) - log q(z|x)]

:meth:`LatentVariableModel.terms` draws one ``z ~ q(z|x)`` and returns the per-token
terms every loss and metric is computed from (:mod:`trufl.objective`);
:meth:`LatentVariableModel.generate` draws objects from the prior and decodes them
(:mod:`trufl.sampling` adds rejection).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .condition import Condition
from .dequantisers.base import Dequantiser
from .distributions import gather
from .objective import Terms
from .priors.base import Prior
from .support import Support


class LatentVariableModel(nn.Module):
    """Args:
    dequantiser: any :class:`~trufl.dequantisers.Dequantiser`.
    prior: any :class:`~trufl.priors.Prior` over ``[B, T, D]``, built for the
        dequantiser's support.
    context_encoder: optional causal context (``trufl.context``) for the dequantiser.
    """

    #: every metric of the contract applies
    not_applicable: tuple[str, ...] = ()

    def __init__(self, dequantiser: Dequantiser, prior: Prior, context_encoder: nn.Module | None = None):
        super().__init__()
        if context_encoder is not None and dequantiser.context_dim != context_encoder.dim:
            raise ValueError(f"dequantiser context_dim={dequantiser.context_dim} != context.dim={context_encoder.dim}")
        if prior.dim != dequantiser.dim:
            raise ValueError(f"prior dim {prior.dim} != dequantiser dim {dequantiser.dim}")
        self.context_encoder = context_encoder  # registered first: parameter order as in earlier checkpoints
        self.dequantiser = dequantiser
        self.prior = prior
        #: where q(z) puts mass and how z is decoded (with the context, left to right): the prior's view
        self.support: Support = dequantiser.support(context_encoder)

    def context(self, x: Tensor) -> Tensor | None:
        """Per-token context ``[B, T, C]`` from x_{<t}, or None without an encoder."""
        return self.context_encoder(x) if self.context_encoder is not None else None

    def terms(self, x: Tensor, mask: Tensor, condition: Condition | None = None) -> Terms:
        """Per-token terms ``[B, T]`` of one sample z ~ q(z|x); ``condition`` goes to the prior."""
        deq = self.dequantiser
        ctx = self.context(x)
        z, log_q = deq.sample(x, ctx)
        log_post = deq.decoder_log_prob(z, ctx)  # once: for the loss, the metrics and decoding
        recon = deq.recon_log_prob(x, z, ctx, log_post=log_post)
        log_p = self.prior.log_prob(z, mask, condition, self._support_of(z, log_post))
        log_post = log_post.detach()
        log_px = gather(log_post, x)
        correct = (log_post.argmax(-1) == x) & torch.isfinite(log_px)
        return Terms(recon, log_p, log_q, log_px, correct)

    def log_weight(self, x: Tensor, mask: Tensor, condition: Condition | None = None, ctx: Tensor | None = None) -> Tensor:
        """``log p(x|z) + log p(z) − log q(z|x)`` per sequence ``[B]`` for one fresh
        ``z ~ q(z|x)``: an importance weight of the IWBO."""
        deq = self.dequantiser
        z, log_q = deq.sample(x, ctx)
        log_post = deq.decoder_log_prob(z, ctx)
        log_p = self.prior.log_prob(z, mask, condition, self._support_of(z, log_post))
        per_token = gather(log_post, x) + log_p - log_q
        return torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1)

    def _support_of(self, z: Tensor, log_post: Tensor) -> Support:
        """The support, told decode(z) from the posterior already computed for z (its argmax),
        so the prior does not decode z again. Not with a context: decoding then runs left to
        right on decoded tokens, not on x's context."""
        if self.context_encoder is not None:
            return self.support
        return self.support.knowing(z, self.dequantiser.argmax_posterior(log_post.detach()))

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Categories ``[n, T]`` for latents ``z [n, T, D]``; -1 where z is outside
        every support. With a causal context, left to right carrying its state."""
        return self.support.decode(z)

    @torch.no_grad()
    def generate(self, num: int, length: int, condition: Condition | None = None) -> Tensor:
        """``num`` objects ``[num, length]`` drawn from the prior (given ``condition``, e.g.
        graphs) and decoded; -1 marks a token outside every support."""
        device = next(self.parameters()).device
        return self.decode(self.prior.sample(num, length, condition, self.support).to(device))

    @torch.no_grad()
    def log_support_mass(self, length: int, num_samples: int, condition: Condition | None = None) -> dict:
        """``log Z`` per token, Z the prior mass of q(z)'s support (docs/design.md, Renormalised
        prior), with its estimator (the prior's own; exact where the support is everything)."""
        if self.support.num_boxes == 0:
            return {"log_Z": 0.0, "stderr": 0.0, "estimator": "exact (support is all of R^D)"}
        return self.prior.log_support_mass(length, num_samples, condition, self.support)

    def summary(self) -> dict:
        """Learned quantities for ``results.json`` (e.g. TRUFL's boxes)."""
        return self.dequantiser.summary()
