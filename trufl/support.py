"""The support of q(z): where the dequantiser puts its mass and how a latent is decoded.

:class:`Support` is everything a prior may know of the dequantiser — functions of z
only, never of x. A dequantiser describes itself with ``Dequantiser.support()``; a prior
is built for one (``Prior(support, ...)``), reads its static facts (how many boxes,
whether q is uniform on them) to size itself, and calls it for the current box faces
and for decoding while it runs.

* TRUFL: boxes ``[lo_k, hi_k]`` (K of them), q uniform on each in the logistic's CDF
  coordinate σ(z) unless a location-scale flow is on;
* Argmax (binary): the K valid orthants (codes ≥ K are outside every support);
* CatNF, Argmax (one-hot): all of R^D (``num_boxes = 0``).

With a causal context the boxes move with the sequence (``fixed = False``): the boxes
reported are the context-free ones, and only decoding, left to right, knows each
token's support.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor

Boxes = tuple[Tensor, Tensor]
DecodeStep = Callable[[Tensor, object], tuple[Tensor, object]]


@dataclass(frozen=True)
class Support:
    """Args:
    num_categories: K.
    dim: D, latent dimensions per token.
    num_boxes: boxes whose union is the support (0: all of R^D).
    uniform: q(z|k) is uniform on box k in CDF coordinates σ(z), so a prior needs no
        shape inside a box, only its mass (TRUFL without a location-scale flow).
    fixed: the boxes are every token's support (False when a context moves them).
    boxes_fn: the current context-free boxes ``(lo, hi)``, each ``[num_boxes, D]`` in
        z-space (None when ``num_boxes = 0``).
    decode_fn: categories ``[n, T]`` of latents ``[n, T, D]``, −1 outside every support.
    decode_step_fn: one token ``z_t [n, D]`` and the state of the previous ones → its
        categories ``[n]`` and the next state (``state = None`` at t = 0).
    known: ``(z, decode(z))`` already computed for one tensor z (see :meth:`knowing`).
    conditionals_fn: where q(z|k) factorises over dimensions (context-free): ``z [..., D] ->
        (log_pdf, log_cdf, log_sf)``, each ``[..., K, D]``, the log density, CDF and survival
        function of q(z_d|k) at z_d; None otherwise. The support-matched prior is built from it.
    """

    num_categories: int
    dim: int
    decode_fn: Callable[[Tensor], Tensor]
    decode_step_fn: DecodeStep
    num_boxes: int = 0
    uniform: bool = False
    fixed: bool = True
    boxes_fn: Callable[[], Boxes] | None = None
    known: tuple[Tensor, Tensor] | None = None
    conditionals_fn: Callable[[Tensor], tuple[Tensor, Tensor, Tensor]] | None = None

    @classmethod
    def unbound(cls, dim: int, num_categories: int = 0) -> Support:
        """All of R^D with nothing to decode: a prior on its own, without a dequantiser."""

        def no_decoder(*_):
            raise ValueError("this prior reads decoded tokens: build it for a dequantiser's support "
                             "(Dequantiser.support()), not Support.unbound")

        return cls(num_categories, dim, no_decoder, no_decoder)

    # -- where q(z) puts mass ------------------------------------------------------------
    @property
    def num_faces(self) -> int:
        """Box faces per dimension: 2 per box."""
        return 2 * self.num_boxes

    def boxes(self) -> Boxes | None:
        """The current boxes ``(lo, hi)``, each ``[num_boxes, D]`` in z-space; None: all of R^D."""
        return self.boxes_fn() if self.boxes_fn is not None else None

    def faces(self) -> Tensor | None:
        """The boxes' faces per dimension in CDF coordinates σ(z), ``[D, num_faces]``."""
        boxes = self.boxes()
        return None if boxes is None else torch.sigmoid(torch.cat(boxes, dim=0)).T

    # -- decoding --------------------------------------------------------------------
    def decode(self, z: Tensor) -> Tensor:
        """Categories ``[n, T]`` of ``z [n, T, D]``; −1 outside every support."""
        if self.known is not None and z is self.known[0]:
            return self.known[1]
        return self.decode_fn(z)

    def decode_step(self, z_t: Tensor, state=None) -> tuple[Tensor, object]:
        return self.decode_step_fn(z_t, state)

    def knowing(self, z: Tensor, tokens: Tensor) -> Support:
        """This support, told that ``decode(z) = tokens`` for this very tensor ``z`` (the
        model has the posterior of its sample already), so a prior does not decode it again."""
        return replace(self, known=(z, tokens))


class CausalDecoding:
    """Decoding with a causal context: token t's support depends on the tokens before it,
    so decoding runs left to right, the context encoder stepped on the decoded tokens.

    ``decode_token(z_t [n, D], context [n, C]) -> [n]`` is the dequantiser's decoder;
    ``context.step(prev [n] | None, state, batch=n) -> (context [n, C], state)``."""

    def __init__(self, decode_token: Callable[[Tensor, Tensor], Tensor], context):
        self.decode_token, self.context = decode_token, context

    @torch.no_grad()
    def step(self, z_t: Tensor, state=None) -> tuple[Tensor, tuple]:
        prev, ctx_state = state if state is not None else (None, None)
        ctx, ctx_state = self.context.step(prev, ctx_state, batch=z_t.shape[0])
        tokens = self.decode_token(z_t, ctx)
        return tokens, (tokens, ctx_state)

    @torch.no_grad()
    def __call__(self, z: Tensor) -> Tensor:
        tokens, state = [], None
        for t in range(z.shape[1]):
            tok, state = self.step(z[:, t], state)
            tokens.append(tok)
        return torch.stack(tokens, dim=1)
