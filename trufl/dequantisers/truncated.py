"""TRUFL: truncated-flow dequantisation (Tan, Huang, Sordoni, Courville, ICLR 2022).

Per category k and latent dimension d, a box ``[a_kd, b_kd] ⊂ (0, 1)`` in the CDF
space of the standard logistic F. A sample is

    u ~ U(0,1);  v = a + (b - a) u;  e = F⁻¹(v);  z = μ_k + s_k e

(μ, s: optional per-category elementwise flow, off by default). The support of
``q(z|k)`` is the box, so the Bayes decoder ``p(k|z) ∝ q(z|k)`` is exact
(``log p(x|z) = 0``) wherever boxes do not overlap.

The pathwise derivative of ``E_q[log p(x|z)]`` misses the jumps of the integrand
at other boxes' faces, so with a shared base the boxes never move apart
(docs/design.md, Dequantisers). ``boundary_gradient`` selects how that is handled
(:mod:`trufl.dequantisers.boundary`):

* ``exact``   — D = 1, shared base: integrate the piecewise-constant posterior
  over the cells the faces cut; exact value and exact derivative.
* ``sampled`` — any D: an unbiased face-crossing estimator of the missing
  derivative, added as a zero-valued surrogate to the sampled ``log p(x|z)``.
* ``none``    — plain pathwise gradient (kept to demonstrate the stall).
* ``auto``    — ``exact`` where it applies, else ``sampled``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..distributions import NEG_INF, bounded, logistic_log_pdf, sample_uniform
from ..settings import Count, Positive, Range, checked
from .base import ContextDim, Dequantiser, NumCategories
from .boundary import exact_recon_1d, face_surrogate
from .boxes import Boxes, grid_partition, overlapping_boxes

BoundaryGradient = Literal["auto", "exact", "sampled", "none"]
BoxInit = Literal["grid", "central", "random"]


class TruflDequantiser(Dequantiser):
    """Learned boxes in the logistic's CDF space; see the module docstring.

    Args:
        num_categories: K.
        dim: D, latent dimensions per token (None: 1, measured best for TRUFL on text).
        location_scale: learn a per-category elementwise affine flow (μ_k, s_k).
        boundary_gradient: one of ``auto | exact | sampled | none``.
        init: where the boxes start: ``grid`` (disjoint cells, ``init_gap`` apart), ``central``
            (all on one central interval) or ``random`` (random overlapping intervals); from the
            overlapping starts the partition has to be learned (docs/toy.md).
        init_gap: relative gap left between neighbouring boxes at the ``grid`` start.
        max_log_scale: bound on |log s_k| (tanh-squashed).
        context_dim: width of an optional per-token context that shifts the bounds.
    """

    @checked("flow")
    def __init__(
        self,
        num_categories: NumCategories,
        dim: Count | None = None,
        location_scale: bool = False,
        boundary_gradient: BoundaryGradient = "auto",
        init: BoxInit = "grid",
        init_gap: Annotated[float, Range(0, 0.5, high_open=True)] = 0.01,
        max_log_scale: Positive = 3.0,
        context_dim: ContextDim = 0,
    ):
        dim = 1 if dim is None else dim
        super().__init__(num_categories, dim, context_dim)
        exact_ok = dim == 1 and not location_scale
        if boundary_gradient == "exact" and not exact_ok:
            raise ValueError(
                "flow.boundary_gradient=exact needs flow.dim=1 and flow.location_scale=false "
                "(a piecewise-constant posterior); use 'sampled' or 'auto'"
            )
        if boundary_gradient == "auto":
            boundary_gradient = "exact" if exact_ok else "sampled"
        self.boundary_gradient = boundary_gradient
        self.init = init
        self.location_scale = location_scale
        self.max_log_scale = max_log_scale

        a, w = grid_partition(num_categories, dim, init_gap) if init == "grid" else overlapping_boxes(num_categories, dim, init)
        gaps = torch.stack([a, w, 1 - a - w], dim=-1).clamp_min(1e-4)
        # Three logits per (k, d): left gap, width, right gap; the softmax keeps
        # 0 < a < b < 1 and the bounds ordered whatever the optimiser does.
        self.bound_logits = nn.Parameter(gaps.log().float())  # [K, D, 3]
        n_ctx = 3
        if location_scale:
            self.loc = nn.Parameter(torch.zeros(num_categories, dim))
            self.raw_log_scale = nn.Parameter(torch.zeros(num_categories, dim))
            n_ctx += 2
        self.context_net = self._context_head(n_ctx)  # zero-initialised: starts at the partition

    # -- parameters -----------------------------------------------------------
    def boxes(self, context: Tensor | None = None) -> Boxes:
        """The boxes, ``[K, D]`` per field (``[..., K, D]`` with a context)."""
        loc = log_s = None
        if self.location_scale:
            logits, loc, log_s = self._shift_by_context(context, self.bound_logits, self.loc, self.raw_log_scale)
        else:
            (logits,) = self._shift_by_context(context, self.bound_logits)
        log_g = F.log_softmax(logits, dim=-1)
        a = log_g[..., 0].exp()
        log_w = log_g[..., 1]
        b = a + log_w.exp()
        if loc is None:
            loc = torch.zeros_like(a)
            log_s = torch.zeros_like(a)
        else:
            log_s = bounded(log_s, self.max_log_scale).expand_as(a)
            loc = loc.expand_as(a)
        s = log_s.exp()
        return Boxes(a, log_w, loc, log_s, zlo=loc + s * torch.logit(a), zhi=loc + s * torch.logit(b))

    # -- interface ------------------------------------------------------------
    def sample(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        box = self.boxes(context).select(x)  # [..., D]
        u = sample_uniform(box.a.shape, device=x.device)
        e = torch.logit(box.a + box.log_w.exp() * u)
        # Clamp to the z-space box used by log_prob_all so rounding can never
        # put a sample outside its own support.
        z = torch.minimum(torch.maximum(box.loc + box.log_s.exp() * e, box.zlo), box.zhi)
        log_q = (logistic_log_pdf(e) - box.log_s - box.log_w).sum(-1)
        return z, log_q

    def log_prob_all(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        log_d, member = self.boxes(context).per_dim(z, self.location_scale)
        return torch.where(member.all(-1), log_d.sum(-1), torch.full_like(log_d[..., 0], NEG_INF))

    def recon_log_prob(
        self, x: Tensor, z: Tensor, context: Tensor | None = None, log_post: Tensor | None = None
    ) -> Tensor:
        if self.boundary_gradient == "exact":
            return exact_recon_1d(x, self.boxes(context))
        sampled = super().recon_log_prob(x, z, context, log_post)
        if self.boundary_gradient == "none":
            return sampled
        surrogate = face_surrogate(x, z, self.boxes(context), self.location_scale)
        return sampled + (surrogate - surrogate.detach())

    @property
    def _factorised(self) -> bool:
        return self.context_net is None

    def _conditionals(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        box = self.boxes()
        log_d, member = box.per_dim(z, self.location_scale)
        zk = z.unsqueeze(-2)
        e = (zk - box.loc) * torch.exp(-box.log_s)
        # in the box's CDF coordinate: below = (σ(e) − a)/w, above = (b − σ(e))/w, each clamped to [0, 1];
        # above from σ(−e) and the right gap so that 1 − v does not cancel near the top
        right_gap = 1 - box.b
        below = ((torch.sigmoid(e) - box.a) * torch.exp(-box.log_w)).clamp(0, 1)
        above = ((torch.sigmoid(-e) - right_gap) * torch.exp(-box.log_w)).clamp(0, 1)
        return torch.where(member, log_d, NEG_INF), torch.log(below), torch.log(above)

    @property
    def _uniform_on_boxes(self) -> bool:
        return not self.location_scale

    def _support_boxes(self) -> tuple[Tensor, Tensor]:
        box = self.boxes()
        return box.zlo, box.zhi

    # -- reporting -------------------------------------------------------------
    def summary(self) -> dict:
        """Bounds in CDF space; ``box_widths`` is each box's CDF-space volume and
        ``box_mass`` its mass under a standard logistic (they coincide without
        ``location_scale``: the toy's table compares them with the probabilities)."""
        box = self.boxes()
        out = {
            "box_lower": box.a.tolist(),
            "box_upper": box.b.tolist(),
            "box_widths": box.log_w.sum(-1).exp().tolist(),
            "box_mass": (torch.sigmoid(box.zhi) - torch.sigmoid(box.zlo)).prod(-1).tolist(),
        }
        if self.location_scale:
            out["loc"] = box.loc.tolist()
            out["log_scale"] = box.log_s.tolist()
        return out
