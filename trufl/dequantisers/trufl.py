"""TRUFL: truncated-flow dequantisation (Tan, Huang, Sordoni, Courville, ICLR 2022).

Per category k and latent dimension d, a box ``[a_kd, b_kd] ⊂ (0, 1)`` in the CDF
space of the standard logistic F. A sample is

    u ~ U(0,1);  v = a + (b - a) u;  e = F⁻¹(v);  z = μ_k + s_k e

(μ, s: optional per-category elementwise flow, off by default). The support of
``q(z|k)`` is the box, so the Bayes decoder ``p(k|z) ∝ q(z|k)`` is exact
(``log p(x|z) = 0``) wherever boxes do not overlap.

The pathwise derivative of ``E_q[log p(x|z)]`` misses the jumps of the integrand
at other boxes' faces, so with a shared base the boxes never move apart
(DESIGN.md §2). ``boundary_gradient`` selects how that is handled:

* ``exact``   — D = 1, shared base: integrate the piecewise-constant posterior
  over the cells the faces cut; exact value and exact derivative.
* ``sampled`` — any D: an unbiased face-crossing estimator of the missing
  derivative, added as a zero-valued surrogate to the sampled ``log p(x|z)``.
* ``none``    — plain pathwise gradient (kept to demonstrate the stall).
* ``auto``    — ``exact`` where it applies, else ``sampled``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import NEG_INF, Dequantiser, logistic_log_pdf, select_rows

BOUNDARY_GRADIENTS = ("auto", "exact", "sampled", "none")


def grid_partition(num_categories: int, dim: int, gap: float) -> tuple[Tensor, Tensor]:
    """Disjoint initial boxes: ``n`` intervals per dimension with ``n^D >= K``.

    Category k sits on the cell whose base-n digits are k's, so no two boxes
    share a cell (Argmax's binary code is the n = 2 case). Each cell is shrunk
    by ``gap`` (a fraction of its width) on both sides. Returns ``a, w [K, D]``.
    """
    n = 1
    while n**dim < num_categories:
        n += 1
    k = torch.arange(num_categories)
    digits = torch.stack([(k // n**d) % n for d in range(dim)], dim=-1).double()  # [K, D]
    a = (digits + gap) / n
    w = torch.full_like(a, (1 - 2 * gap) / n)
    return a, w


class TruflDequantiser(Dequantiser):
    """Learned boxes in the logistic's CDF space; see the module docstring.

    Args:
        num_categories: K.
        dim: D, latent dimensions per token.
        location_scale: learn a per-category elementwise affine flow (μ_k, s_k).
        boundary_gradient: one of ``auto | exact | sampled | none``.
        init_gap: relative gap left between neighbouring boxes at initialisation.
        max_log_scale: bound on |log s_k| (tanh-squashed).
        context_dim: width of an optional per-token context that shifts the bounds.
    """

    def __init__(
        self,
        num_categories: int,
        dim: int = 3,
        location_scale: bool = False,
        boundary_gradient: str = "auto",
        init_gap: float = 0.01,
        max_log_scale: float = 3.0,
        context_dim: int = 0,
    ):
        super().__init__(num_categories, dim, context_dim)
        if boundary_gradient not in BOUNDARY_GRADIENTS:
            raise ValueError(f"flow.boundary_gradient must be one of {BOUNDARY_GRADIENTS}, got {boundary_gradient!r}")
        if not 0 <= init_gap < 0.5:
            raise ValueError(f"flow.init_gap must be in [0, 0.5), got {init_gap}")
        exact_ok = dim == 1 and not location_scale
        if boundary_gradient == "exact" and not exact_ok:
            raise ValueError(
                "flow.boundary_gradient=exact needs flow.dim=1 and flow.location_scale=false "
                "(a piecewise-constant posterior); use 'sampled' or 'auto'"
            )
        if boundary_gradient == "auto":
            boundary_gradient = "exact" if exact_ok else "sampled"
        self.boundary_gradient = boundary_gradient
        self.location_scale = location_scale
        self.max_log_scale = max_log_scale

        a, w = grid_partition(num_categories, dim, init_gap)
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
    def boxes(self, context: Tensor | None = None) -> dict[str, Tensor]:
        """Box parameters, each ``[K, D]`` (or ``[..., K, D]`` with context).

        Keys: ``a`` (lower CDF bound), ``log_w`` (log CDF width), ``loc``,
        ``log_s``, and the box in z-space ``zlo``, ``zhi``. Membership tests
        and samples both use ``zlo/zhi`` so a sample is always inside its box.
        """
        logits = self.bound_logits
        loc = log_s = None
        if self.location_scale:
            loc, log_s = self.loc, self.raw_log_scale
        extra = self._context_offsets(context)
        if extra is not None:
            logits = logits + extra[..., :3]
            if self.location_scale:
                loc, log_s = loc + extra[..., 3], log_s + extra[..., 4]
        log_g = F.log_softmax(logits, dim=-1)
        a = log_g[..., 0].exp()
        log_w = log_g[..., 1]
        b = a + log_w.exp()
        if loc is None:
            loc = torch.zeros_like(a)
            log_s = torch.zeros_like(a)
        else:
            log_s = self.max_log_scale * torch.tanh(log_s / self.max_log_scale)
            loc = loc.expand_as(a)
            log_s = log_s.expand_as(a)
        s = log_s.exp()
        return dict(a=a, log_w=log_w, loc=loc, log_s=log_s, zlo=loc + s * torch.logit(a), zhi=loc + s * torch.logit(b))

    # -- interface ------------------------------------------------------------
    def sample(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        box = {k: select_rows(v, x) for k, v in self.boxes(context).items()}  # [..., D]
        u = torch.rand(box["a"].shape, device=x.device).clamp(1e-6, 1 - 1e-6)
        e = torch.logit(box["a"] + box["log_w"].exp() * u)
        # Clamp to the z-space box used by log_prob_all so rounding can never
        # put a sample outside its own support.
        z = torch.minimum(torch.maximum(box["loc"] + box["log_s"].exp() * e, box["zlo"]), box["zhi"])
        log_q = (logistic_log_pdf(e) - box["log_s"] - box["log_w"]).sum(-1)
        return z, log_q

    def _per_dim(self, z: Tensor, box: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Finite per-dimension log densities and memberships, each ``[..., K, D]``."""
        zk = z.unsqueeze(-2)
        e = (zk - box["loc"]) * torch.exp(-box["log_s"])
        log_d = logistic_log_pdf(e) - box["log_s"] - box["log_w"]
        member = (zk >= box["zlo"]) & (zk <= box["zhi"])
        return log_d, member

    def log_prob_all(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        log_d, member = self._per_dim(z, self.boxes(context))
        return torch.where(member.all(-1), log_d.sum(-1), torch.full_like(log_d[..., 0], NEG_INF))

    def recon_log_prob(
        self, x: Tensor, z: Tensor, context: Tensor | None = None, log_post: Tensor | None = None
    ) -> Tensor:
        if self.boundary_gradient == "exact":
            return self._exact_recon_1d(x, self.boxes(context))
        sampled = super().recon_log_prob(x, z, context, log_post)
        if self.boundary_gradient == "none":
            return sampled
        surrogate = self._face_surrogate(x, z, self.boxes(context))
        return sampled + (surrogate - surrogate.detach())

    # -- the boundary gradient ------------------------------------------------
    def _exact_recon_1d(self, x: Tensor, box: dict[str, Tensor]) -> Tensor:
        """``E_{q(z|x)}[log p(x|z)]`` exactly, D = 1 and a shared base.

        In CDF space every q(·|k) is uniform on [a_k, b_k], so p(x|v) is
        constant on the cells between sorted box faces. Gradients flow through
        the cell lengths (the faces) and the densities 1/w_k.
        """
        a, log_w = box["a"][..., 0], box["log_w"][..., 0]  # [K] or [..., K]
        b = a + log_w.exp()
        faces, _ = torch.sort(torch.cat([a, b], dim=-1), dim=-1)  # [..., 2K]
        lo, hi = faces[..., :-1], faces[..., 1:]  # [..., 2K-1] cells
        mid = (0.5 * (lo + hi)).detach()
        member = (mid.unsqueeze(-1) >= a.unsqueeze(-2)) & (mid.unsqueeze(-1) <= b.unsqueeze(-2))  # [..., C, K]
        log_norm = torch.logsumexp(torch.where(member, -log_w.unsqueeze(-2), NEG_INF), dim=-1)  # [..., C]
        a_x, b_x, log_w_x = (select_rows(t.unsqueeze(-1), x).squeeze(-1) for t in (a, b, log_w))  # [...]
        x_in = select_rows(member.transpose(-1, -2), x)  # [..., C]: cell inside box x
        lo_c = torch.minimum(torch.maximum(lo, a_x.unsqueeze(-1)), b_x.unsqueeze(-1))
        hi_c = torch.minimum(torch.maximum(hi, a_x.unsqueeze(-1)), b_x.unsqueeze(-1))
        log_post = torch.where(x_in, -log_w_x.unsqueeze(-1) - log_norm, torch.zeros_like(lo_c))
        return ((hi_c - lo_c) * log_post).sum(-1) * torch.exp(-log_w_x)

    def _face_surrogate(self, x: Tensor, z: Tensor, box: dict[str, Tensor]) -> Tensor:
        """Zero-valued term whose gradient is the face-crossing part of ∂E[log p(x|z)].

        In the unit cube of box x (coordinates u), the face of another box j
        at z_d = c sits at u_d = φ(c). Moving φ changes the integral by the jump
        of log p(x|z) across the face, integrated over the face; the sample's
        other coordinates give a one-point Monte Carlo estimate of that
        integral, so the estimator is unbiased for any D. The jump across the
        face of j is ``softplus(log q(z*|j) - log S)``, S the summed density of
        the *other* boxes containing the face point z* (z with z_d = c).

        q(z*|k) factorises into the density in dimension d at the face (per
        box, not per token) times the density in the other dimensions (per
        token, not per face), so S is one small matmul per dimension.
        Returns ``[...]``.
        """
        K, D = self.num_categories, self.dim
        log_d, member = self._per_dim(z, box)  # [..., K, D]
        faces = torch.stack([box["zlo"], box["zhi"]], dim=-1).transpose(-3, -2)  # [(...), D, J, 2]
        bx = {k: select_rows(v, x)[..., None, None] for k, v in box.items()}  # [..., D, 1, 1]
        phi = (torch.sigmoid((faces - bx["loc"]) * torch.exp(-bx["log_s"])) - bx["a"]) * torch.exp(-bx["log_w"])

        with torch.no_grad():  # the jump only scales φ's gradient
            kd = lambda t: t.transpose(-1, -2)[..., None, None]  # noqa: E731  [..., D, K, 1, 1]
            cf = faces.detach().unsqueeze(-3)  # [(...), D, 1, J, 2]
            e = (cf - kd(box["loc"])) * torch.exp(-kd(box["log_s"]))
            log_f = (logistic_log_pdf(e) - kd(box["log_s"]) - kd(box["log_w"])).double()  # [(...), D, K, J, 2]
            in_f = (cf >= kd(box["zlo"])) & (cf <= kd(box["zhi"]))
            not_j = ~torch.eye(K, dtype=torch.bool, device=z.device)[:, :, None]  # [K, J, 1]: j's own density is the jump
            face_density = torch.where(in_f & not_j, log_f.exp(), 0.0).flatten(-2)  # [(...), D, K, 2J]
            log_other = (log_d.sum(-1, keepdim=True) - log_d).transpose(-1, -2).double()  # [..., D, K]
            in_other = ((member.sum(-1, keepdim=True) - member.long()) == D - 1).transpose(-1, -2)  # [..., D, K]
            other_density = torch.where(in_other, log_other.exp(), 0.0)
            if face_density.dim() == 3:  # context-free boxes: one [K, 2J] matrix per dimension
                rest = torch.einsum("...dk,dkm->...dm", other_density, face_density)
            else:
                rest = (other_density.unsqueeze(-2) @ face_density).squeeze(-2)
            rest = rest.unflatten(-1, (K, 2))  # [..., D, J, 2]
            log_j = log_other.unsqueeze(-1) + torch.diagonal(log_f, dim1=-3, dim2=-2).movedim(-1, -2)
            not_x = (F.one_hot(x.long(), K) == 0)[..., None, :, None]  # [..., 1, J, 1]
            valid = in_other.unsqueeze(-1) & not_x & (phi > 0) & (phi < 1) & (rest > 0)
            jump = F.softplus(log_j - rest.log()).to(phi.dtype)
            sign = torch.tensor([1.0, -1.0], dtype=phi.dtype, device=z.device)  # enter j at its lower face, leave at its upper
            weight = torch.where(valid, sign * jump, torch.zeros_like(jump))
        return (weight * phi).sum(dim=(-3, -2, -1))

    def support_boxes(self) -> tuple[Tensor, Tensor]:
        box = self.boxes()
        return box["zlo"], box["zhi"]

    # -- reporting -------------------------------------------------------------
    def summary(self) -> dict:
        box = self.boxes()
        out = {
            "box_lower": box["a"].tolist(),
            "box_upper": (box["a"] + box["log_w"].exp()).tolist(),
            # prior mass of each box under a standard logistic (its CDF-space volume)
            "box_widths": box["log_w"].sum(-1).exp().tolist(),
        }
        if self.location_scale:
            out["loc"] = box["loc"].tolist()
            out["log_scale"] = box["log_s"].tolist()
        return out



def log_union_mass_1d(lower: Tensor, upper: Tensor) -> Tensor:
    """log of the length of a union of intervals ``[lower_k, upper_k] ⊂ (0,1)``."""
    order = torch.argsort(lower)
    lo, hi = lower[order].tolist(), upper[order].tolist()
    total, cur_lo, cur_hi = 0.0, lo[0], hi[0]
    for l, h in zip(lo[1:], hi[1:]):
        if l > cur_hi:
            total += cur_hi - cur_lo
            cur_lo, cur_hi = l, h
        else:
            cur_hi = max(cur_hi, h)
    total += cur_hi - cur_lo
    return torch.tensor(math.log(total))
