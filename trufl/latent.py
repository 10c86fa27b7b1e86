"""The latent-variable model of DESIGN.md §1: a dequantiser, a flow prior and the
Bayes decoder, with an optional causal context for the dequantiser.

    log p(x) >= E_q[log p(x|z)] + E_q[log p(z) - log q(z|x)]

:meth:`LatentVariableModel.terms` draws one ``z ~ q(z|x)`` and returns the per-token
terms every loss and metric is computed from (:mod:`trufl.objective`);
:meth:`LatentVariableModel.generate` draws objects from the prior and decodes them
(:mod:`trufl.sampling` adds rejection).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .dequantisers.base import Dequantiser
from .distributions import gather
from .objective import Terms
from .priors.base import Prior
from .priors.support import Support


class LatentVariableModel(nn.Module):
    """Args:
    dequantiser: any :class:`~trufl.dequantisers.Dequantiser`.
    prior: any :class:`~trufl.priors.Prior` over ``[B, T, D]``.
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

    def context(self, x: Tensor) -> Tensor | None:
        """Per-token context ``[B, T, C]`` from x_{<t}, or None without an encoder."""
        return self.context_encoder(x) if self.context_encoder is not None else None

    def terms(self, x: Tensor, mask: Tensor, cond: dict | None = None) -> Terms:
        """Per-token terms ``[B, T]`` of one sample z ~ q(z|x); ``cond`` goes to the prior."""
        deq = self.dequantiser
        ctx = self.context(x)
        z, log_q = deq.sample(x, ctx)
        log_post = deq.decoder_log_prob(z, ctx)  # once: for the loss, the metrics and decoding
        recon = deq.recon_log_prob(x, z, ctx, log_post=log_post)
        log_p = self.prior.log_prob(z, mask, **self.prior_condition(cond, self._decoded_sample(z, log_post)))
        log_post = log_post.detach()
        log_px = gather(log_post, x)
        correct = (log_post.argmax(-1) == x) & torch.isfinite(log_px)
        return Terms(recon, log_p, log_q, log_px, correct)

    def log_weight(self, x: Tensor, mask: Tensor, cond: dict | None = None, ctx: Tensor | None = None) -> Tensor:
        """``log p(x|z) + log p(z) − log q(z|x)`` per sequence ``[B]`` for one fresh
        ``z ~ q(z|x)``: an importance weight of the IWBO."""
        deq = self.dequantiser
        z, log_q = deq.sample(x, ctx)
        log_post = deq.decoder_log_prob(z, ctx)
        log_p = self.prior.log_prob(z, mask, **self.prior_condition(cond, self._decoded_sample(z, log_post)))
        per_token = gather(log_post, x) + log_p - log_q
        return torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1)

    def _decoded_sample(self, z: Tensor, log_post: Tensor) -> "DecodedSample | None":
        """A readout that knows decode(z) from the posterior already computed for z (its
        argmax), so the prior does not decode z again; None with a context (decoding then
        runs left to right on decoded tokens, not on x's context)."""
        if self.context_encoder is not None:
            return None
        return DecodedSample(self, z, log_post)

    def prior_condition(self, cond: dict | None, readout=None) -> dict:
        """What the prior is given besides z: the task's condition (e.g. a graph) and
        ``readout`` (decoding and box faces, functions of z only; default this model)."""
        return {**(cond or {}), "readout": readout if readout is not None else self}

    @torch.no_grad()
    def decode_step(self, z_t: Tensor, state=None) -> tuple[Tensor, tuple]:
        """Categories ``[n]`` of one token ``z_t [n, D]`` given the state of the previous
        ones (the causal context's); returns the state for the next token."""
        if self.context_encoder is None:
            return self.dequantiser.decode(z_t), None
        prev, ctx_state = state if state is not None else (None, None)
        ctx, ctx_state = self.context_encoder.step(prev, ctx_state, batch=z_t.shape[0])
        tokens = self.dequantiser.decode(z_t, ctx)
        return tokens, (tokens, ctx_state)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Categories ``[n, T]`` for latents ``z [n, T, D]``; -1 where z is outside
        every support. With a causal context, left to right carrying its state."""
        if self.context_encoder is None:
            return self.dequantiser.decode(z)
        tokens, state = [], None
        for t in range(z.shape[1]):
            tok, state = self.decode_step(z[:, t], state)
            tokens.append(tok)
        return torch.stack(tokens, dim=1)

    def faces(self) -> Tensor | None:
        """Box faces per dimension ``[D, 2·boxes]`` in CDF coordinates σ(z) (context-free
        boxes), or None when the support is all of R^D."""
        boxes = self.dequantiser.support_boxes()
        if boxes is None:
            return None
        return torch.sigmoid(torch.cat(boxes, dim=0)).T

    @torch.no_grad()
    def generate(self, num: int, length: int, cond: dict | None = None) -> Tensor:
        """``num`` objects ``[num, length]`` drawn from the prior (given ``cond``, e.g.
        graphs) and decoded; -1 marks a token outside every support."""
        device = next(self.parameters()).device
        return self.decode(self.prior.sample(num, length, **self.prior_condition(cond)).to(device))

    @torch.no_grad()
    def log_support_mass(self, length: int, num_samples: int, cond: dict | None = None) -> dict:
        """``log Z`` per token, Z the prior mass of q(z)'s support (DESIGN.md §4),
        with its estimator (the prior's own; exact where the support is everything)."""
        boxes = self.dequantiser.support_boxes()
        if boxes is None:
            return {"log_Z": 0.0, "stderr": 0.0, "estimator": "exact (support is all of R^D)"}
        # with a context the supports move with the sequence: only decoding knows them
        support = Support(self.decode, boxes if self.context_encoder is None else None)
        return self.prior.log_support_mass(support, length, num_samples, self.prior_condition(cond))

    def summary(self) -> dict:
        """Learned quantities for ``results.json`` (e.g. TRUFL's boxes)."""
        return self.dequantiser.summary()


class DecodedSample:
    """A model's readout (:class:`~trufl.priors.base.Decoding`) that decodes one tensor
    ``z`` (the sample of :meth:`LatentVariableModel.terms`) from its posterior ``log_post``
    ``[..., K]``, already computed, when the prior asks; anything else goes to the model."""

    def __init__(self, model: LatentVariableModel, z: Tensor, log_post: Tensor):
        self.model, self.z, self.log_post = model, z, log_post

    def decode(self, z: Tensor) -> Tensor:
        if z is not self.z:
            return self.model.decode(z)
        return self.model.dequantiser.argmax_posterior(self.log_post.detach())

    def decode_step(self, z_t: Tensor, state=None) -> tuple[Tensor, tuple]:
        return self.model.decode_step(z_t, state)

    def faces(self) -> Tensor | None:
        return self.model.faces()
