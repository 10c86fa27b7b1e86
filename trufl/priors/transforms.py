"""Elementwise monotone transforms whose parameters come from a conditioner.

Each is stateless: ``forward(y, params) -> (out, log|d out/d y|)`` and an explicit
``inverse(out, params) -> y``, elementwise over ``y [...]`` with ``params [..., P]``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ..distributions import bounded, logistic_log_pdf, soft_bounded


class MixtureLogisticCDF:
    """Elementwise ``y ↦ logit(C(y)) · exp(α) + β`` with C a mixture-of-logistics CDF.

    Parameters per element (last axis, ``3M + 2``): M mixture logits, M means,
    M log-scales, then α and β. Stateless: the parameters come from a conditioner.

    ``log_bounds`` (every method; None: α in ±3, log-scales in ±``max_log_scale``) are
    CatNF's learned bounds ``(of α [...], of the log-scales [..., M])``
    (:func:`~trufl.distributions.soft_bounded`); the map is then CatNF's
    ``(logit(C(y)) + t)·exp(α)``, i.e. β = t·exp(α).
    Otherwise the log-scales are squashed into ±``max_log_scale`` and α into ±3;
    ``bounded=False`` leaves both as given (the caller has bounded them).
    """

    def __init__(self, num_mixtures: int, max_log_scale: float = 6.0, bounded: bool = True):
        self.M = num_mixtures
        self.max_log_scale = max_log_scale
        self.bounded = bounded

    @property
    def num_params(self) -> int:
        return 3 * self.M + 2

    def split(self, p: Tensor, log_bounds: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        M = self.M
        log_pi = F.log_softmax(p[..., :M], dim=-1)
        mu = p[..., M : 2 * M]
        if log_bounds is not None:
            alpha = soft_bounded(p[..., 3 * M], log_bounds[0])
            return log_pi, mu, soft_bounded(p[..., 2 * M : 3 * M], log_bounds[1]), alpha, p[..., 3 * M + 1] * alpha.exp()
        log_s, alpha = p[..., 2 * M : 3 * M], p[..., 3 * M]
        if self.bounded:
            log_s, alpha = bounded(log_s, self.max_log_scale), bounded(alpha, 3.0)
        return log_pi, mu, log_s, alpha, p[..., 3 * M + 1]

    def forward(self, y: Tensor, p: Tensor, log_bounds: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """y ``[...]``, p ``[..., 3M+2]`` → output ``[...]``, log|dy'/dy| ``[...]``."""
        log_pi, mu, log_s, alpha, beta = self.split(p, log_bounds)
        t = (y.unsqueeze(-1) - mu) * torch.exp(-log_s)
        log_c = torch.logsumexp(log_pi + F.logsigmoid(t), dim=-1)
        log_1mc = torch.logsumexp(log_pi + F.logsigmoid(-t), dim=-1)
        log_pdf = torch.logsumexp(log_pi + logistic_log_pdf(t) - log_s, dim=-1)
        out = (log_c - log_1mc) * alpha.exp() + beta
        return out, log_pdf - log_c - log_1mc + alpha

    @torch.no_grad()
    def inverse(self, out: Tensor, p: Tensor, log_bounds: tuple[Tensor, Tensor] | None = None, tol: float = 1e-12,
                max_iter: int = 60) -> Tensor:
        """Exact inverse by bracketed Newton in float64 (bisection where Newton leaves the bracket).

        The root lies between the component quantiles at the target level,
        which gives a tight initial bracket; Newton usually converges in a few
        steps, so the float64 work is small.
        """
        dtype = out.dtype
        log_pi, mu, log_s, alpha, beta = (t.double() for t in self.split(p, log_bounds))
        target = (out.double() - beta) * torch.exp(-alpha)  # = logit C(y)
        quantiles = mu + log_s.exp() * target.unsqueeze(-1)
        lo, hi = quantiles.min(-1).values, quantiles.max(-1).values
        y = 0.5 * (lo + hi)
        for _ in range(max_iter):
            t = (y.unsqueeze(-1) - mu) * torch.exp(-log_s)
            log_c = torch.logsumexp(log_pi + F.logsigmoid(t), dim=-1)
            log_1mc = torch.logsumexp(log_pi + F.logsigmoid(-t), dim=-1)
            f = log_c - log_1mc - target
            lo = torch.where(f < 0, y, lo)
            hi = torch.where(f > 0, y, hi)
            log_pdf = torch.logsumexp(log_pi + logistic_log_pdf(t) - log_s, dim=-1)
            step = f * torch.exp(log_c + log_1mc - log_pdf)  # f / f'
            newton = y - step
            inside = (newton > lo) & (newton < hi)
            y_new = torch.where(inside, newton, 0.5 * (lo + hi))
            if bool(((y_new - y).abs() <= tol * (1 + y.abs())).all()):
                y = y_new
                break
            y = y_new
        return y.to(dtype)


class PiecewiseLinearCDF:
    """Elementwise ``z ↦ e = logit F(σ(z))`` with F a piecewise-linear CDF on ``[0, 1]``.

    In the logistic's CDF coordinate ``v = σ(z)`` the density is constant on each
    bin: bin i (between ``knots[i]`` and ``knots[i+1]``) has density
    ``e^{h_i} / Σ_j w_j e^{h_j}`` (``w`` the bin widths), so zero heights give the
    standard logistic and a zero-width bin gets no mass. With knots at a
    dequantiser's box faces this is exactly the step shape TRUFL's q has (uniform
    in v on each box), so ``log p(z) − log q(z|x)`` can equal the log-probability
    of the box: the bound of a categorical model.

    Shapes: ``z [..., D]``; ``knots [D, n+1]`` sorted with ``knots[:, 0] = 0`` and
    ``knots[:, -1] = 1`` (shared by all positions; they may coincide); ``h [..., D, n]``.
    """

    @staticmethod
    def _bins(knots: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log density per bin, mass below and mass above each bin, all ``[..., D, n]``."""
        w = knots[:, 1:] - knots[:, :-1]
        # -inf for a zero-width bin, with a zero (not NaN) gradient there
        log_w = torch.where(w > 0, torch.log(w.clamp_min(torch.finfo(w.dtype).tiny)), torch.full_like(w, -torch.inf))
        log_dens = h - torch.logsumexp(log_w + h, dim=-1, keepdim=True)
        mass = torch.exp(log_w + log_dens)
        below = torch.cumsum(mass, -1) - mass
        above = torch.flip(torch.cumsum(torch.flip(mass, [-1]), -1), [-1]) - mass
        return log_dens, below, above

    @staticmethod
    def bin_index(z: Tensor, knots: Tensor) -> Tensor:
        """The bin of each element, ``[..., D]`` in ``0..n-1`` (right-closed at inner knots,
        so a point on a repeated knot lands in the bin of nonzero width after it)."""
        v = torch.sigmoid(z).movedim(-1, 0).reshape(z.shape[-1], -1).contiguous()
        idx = torch.searchsorted(knots[:, 1:-1].contiguous(), v.to(knots.dtype), right=True)
        return idx.reshape(z.shape[-1], *z.shape[:-1]).movedim(0, -1)

    def forward(self, z: Tensor, knots: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """z ``[..., D]`` → e ``[..., D]`` and log|de/dz| ``[..., D]``."""
        log_dens, below, above = self._bins(knots, h)
        i = self.bin_index(z, knots).unsqueeze(-1)
        pick = lambda t: t.gather(-1, i).squeeze(-1)  # noqa: E731
        k = knots.expand(*z.shape[:-1], *knots.shape)
        k_lo, k_hi = pick(k[..., :-1]), pick(k[..., 1:])
        log_d = pick(log_dens)
        v, one_minus_v = torch.sigmoid(z), torch.sigmoid(-z)
        # distances to the bin's ends, exact in the outer bins where 1 - v would cancel
        to_lo = torch.where(k_lo <= 0, v, v - k_lo)
        to_hi = torch.where(k_hi >= 1, one_minus_v, k_hi - v)
        tiny = torch.finfo(z.dtype).tiny
        dens = log_d.exp()
        log_left = torch.log((pick(below) + to_lo * dens).clamp_min(tiny))  # log F
        log_right = torch.log((pick(above) + to_hi * dens).clamp_min(tiny))  # log(1 - F)
        e = log_left - log_right
        log_det = log_d + F.logsigmoid(z) + F.logsigmoid(-z) - log_left - log_right
        return e, log_det

    @torch.no_grad()
    def inverse(self, e: Tensor, knots: Tensor, h: Tensor) -> Tensor:
        """Closed-form inverse in float64: e ``[..., D]`` → z ``[..., D]``."""
        dtype = e.dtype
        e, knots, h = e.double(), knots.double(), h.double()
        log_dens, below, above = self._bins(knots, h)
        cum = below + log_dens.exp() * (knots[:, 1:] - knots[:, :-1])
        u, one_minus_u = torch.sigmoid(e), torch.sigmoid(-e)
        # the first bin whose cumulative mass exceeds u (zero-mass bins are skipped)
        n = h.shape[-1]
        i = torch.searchsorted(cum[..., :-1].contiguous(), u.unsqueeze(-1), right=True).clamp_max(n - 1)
        pick = lambda t: t.gather(-1, i).squeeze(-1)  # noqa: E731
        k = knots.expand(*e.shape[:-1], *knots.shape)
        k_lo, k_hi = pick(k[..., :-1]), pick(k[..., 1:])
        dens = pick(log_dens).exp()
        # solve from the nearer end of [0, 1] so neither v nor 1 - v cancels
        v_left = k_lo + (u - pick(below)).clamp_min(0) / dens
        w_right = (1 - k_hi) + (one_minus_u - pick(above)).clamp_min(0) / dens  # = 1 - v
        v = torch.where(u < 0.5, v_left, 1 - w_right)
        one_minus_v = torch.where(u < 0.5, 1 - v_left, w_right)
        return (torch.log(v) - torch.log(one_minus_v)).to(dtype)
