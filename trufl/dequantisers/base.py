"""The one interface every dequantiser shares.

Shapes: ``x`` is ``[...]`` (integer categories), ``z`` is ``[..., D]``, ``context``
(optional) is ``[..., C]``. Every method broadcasts over the leading ``...`` so the
model, metrics and sampling are written once for all dequantisers.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from ..distributions import NEG_INF, gather
from ..support import CausalDecoding, Support
from ..settings import Count, Injected, NonNegativeInt, Range, checked
from ..precision import flow_input

#: K, from the task
NumCategories = Injected[Annotated[int, Range(2)]]
#: the context's width (0: none), from the context encoder
ContextDim = Injected[NonNegativeInt]


class Dequantiser(nn.Module):
    """Maps categories to continuous latents and back.

    Subclasses implement :meth:`sample` and :meth:`log_prob_all`; the decoder is
    the Bayes posterior of the encoder, ``p(k|z) ∝ q(z|k) p̃(k)`` with ``p̃``
    uniform, unless a subclass overrides :meth:`decoder_log_prob`.
    """

    #: invalid category returned by :meth:`decode` for z outside every support
    INVALID = -1

    @checked("flow")
    def __init__(self, num_categories: NumCategories, dim: Count, context_dim: ContextDim = 0):
        super().__init__()
        self.num_categories = int(num_categories)
        self.dim = int(dim)
        self.context_dim = int(context_dim)

    # -- the interface --------------------------------------------------------
    def sample(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``z ~ q(z|x)``: returns ``z [..., D]`` and ``log q(z|x) [...]``."""
        raise NotImplementedError

    def log_prob_all(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``log q(z|k)`` for every k: ``[..., K]``, ``-inf`` outside k's support."""
        raise NotImplementedError

    def decoder_log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(k|z)`` ``[..., K]``; rows outside every support are all ``-inf``."""
        log_q = self.log_prob_all(z, context)
        norm = torch.logsumexp(log_q, dim=-1, keepdim=True)
        # Outside every support the posterior is undefined; keep it at -inf
        # rather than letting logsumexp produce NaN (-inf - -inf).
        return torch.where(torch.isfinite(norm), log_q - norm, torch.full_like(log_q, NEG_INF))

    def decode(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Argmax of the decoder ``[...]``; :attr:`INVALID` where z is in no support."""
        return self.argmax_posterior(self.decoder_log_prob(z, context))

    @classmethod
    def argmax_posterior(cls, log_post: Tensor) -> Tensor:
        """Categories ``[...]`` from the decoder ``log_post [..., K]``: the argmax, or
        :attr:`INVALID` where every category is impossible."""
        k = log_post.argmax(dim=-1)
        return torch.where(torch.isfinite(log_post).any(dim=-1), k, torch.full_like(k, cls.INVALID))

    def in_support(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``[...]`` bool: z lies in the support of some category."""
        return torch.isfinite(self.log_prob_all(z, context)).any(dim=-1)

    def recon_log_prob(
        self, x: Tensor, z: Tensor, context: Tensor | None = None, log_post: Tensor | None = None
    ) -> Tensor:
        """Estimate of ``E_q[log p(x|z)]`` per token ``[...]`` for the loss.

        The value is ``log p(x|z)`` at the sample; subclasses may return an exact
        expectation or add a zero-valued surrogate so the *gradient* accounts for
        what the pathwise derivative misses (TRUFL's box faces). ``log_post``:
        :meth:`decoder_log_prob` at ``z`` if the caller has it already.
        """
        if log_post is None:
            log_post = self.decoder_log_prob(z, context)
        return gather(log_post, x)

    def support(self, context: nn.Module | None = None) -> Support:
        """Where q(z) puts its mass and how z is decoded (:class:`~trufl.support.Support`):
        what a prior is built for. ``context``: the causal context encoder, if any (the
        supports then move with the sequence and decoding runs left to right)."""
        boxes = self._support_boxes()
        if context is None:
            decode, step = self.decode, self._decode_step
        else:
            causal = CausalDecoding(self.decode, context)
            decode, step = causal, causal.step
        return Support(self.num_categories, self.dim, decode, step, num_boxes=0 if boxes is None else boxes[0].shape[0],
                       uniform=self._uniform_on_boxes, fixed=context is None,
                       boxes_fn=self._support_boxes if boxes is not None else None,
                       conditionals_fn=self._conditionals if self._factorised else None)

    #: q(z|k) is uniform on box k in the logistic's CDF coordinates σ(z) (TRUFL without a
    #: location-scale flow): a prior then needs no shape inside a box, only its mass
    _uniform_on_boxes: bool = False

    def _support_boxes(self) -> tuple[Tensor, Tensor] | None:
        """The support of q(z) as a union of boxes ``lo, hi [K, D]`` in z-space
        (context-free parameters), or ``None`` when it is all of R^D."""
        return None

    @property
    def _factorised(self) -> bool:
        """q(z|k) is a product over dimensions of known conditionals (:meth:`_conditionals`)."""
        return False

    def _conditionals(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per dimension, for every category: ``log q(z_d|k)``, ``log P(Z_d <= z_d|k)`` and
        ``log P(Z_d > z_d|k)``, each ``[..., K, D]`` for ``z [..., D]`` (context-free)."""
        raise NotImplementedError

    def _decode_step(self, z_t: Tensor, state=None) -> tuple[Tensor, None]:
        return self.decode(z_t), None

    # -- helpers --------------------------------------------------------------
    def _context_head(self, params_per_cell: int) -> nn.Linear | None:
        """Map context → offsets of ``params_per_cell`` parameters per (k, d), zero-initialised
        so training starts at the context-free parameters; None without a context."""
        if self.context_dim <= 0:
            return None
        head = nn.Linear(self.context_dim, self.num_categories * self.dim * params_per_cell)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    def _shift_by_context(self, context: Tensor | None, *params: Tensor) -> tuple[Tensor, ...]:
        """Each of ``params`` (``[K, D]``, or ``[K, D, P]`` for P parameters per cell) plus its
        slice of the context head's offsets, in order (``[..., K, D(, P)]``); unchanged
        without a context."""
        if self.context_net is None or context is None:
            return params
        extra = flow_input(self.context_net(context)).view(*context.shape[:-1], self.num_categories, self.dim, -1)
        shifted, start = [], 0
        for p in params:
            if p.dim() == 3:
                shifted.append(p + extra[..., start : start + p.shape[-1]])
                start += p.shape[-1]
            else:
                shifted.append(p + extra[..., start])
                start += 1
        return tuple(shifted)

    def extra_repr(self) -> str:
        return f"K={self.num_categories}, D={self.dim}, context_dim={self.context_dim}"

    def summary(self) -> dict:
        """Learned quantities worth reporting in ``results.json`` (override)."""
        return {}


def select_rows(params: Tensor, x: Tensor) -> Tensor:
    """Rows of ``params [K, D]`` or ``[..., K, D]`` for categories ``x [...]`` → ``[..., D]``."""
    if params.dim() == 2:
        return params[x.long()]
    index = x.long()[..., None, None].expand(*x.shape, 1, params.shape[-1])
    return params.expand(*x.shape, *params.shape[-2:]).gather(-2, index).squeeze(-2)
