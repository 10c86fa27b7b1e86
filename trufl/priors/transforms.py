"""Elementwise monotone transforms whose parameters come from a conditioner.

Each is stateless: ``forward(y, params) -> (out, log|d out/d y|)`` and an explicit
``inverse(out, params) -> y``, elementwise over ``y [...]`` with ``params [..., P]``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ..distributions import bounded, logistic_log_pdf


class MixtureLogisticCDF:
    """Elementwise ``y ↦ logit(C(y)) · exp(α) + β`` with C a mixture-of-logistics CDF.

    Parameters per element (last axis, ``3M + 2``): M mixture logits, M means,
    M log-scales, then α and β. Stateless: the parameters come from a conditioner.
    """

    def __init__(self, num_mixtures: int, max_log_scale: float = 6.0):
        self.M = num_mixtures
        self.max_log_scale = max_log_scale

    @property
    def num_params(self) -> int:
        return 3 * self.M + 2

    def split(self, p: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        M = self.M
        log_pi = F.log_softmax(p[..., :M], dim=-1)
        mu = p[..., M : 2 * M]
        log_s = bounded(p[..., 2 * M : 3 * M], self.max_log_scale)
        alpha = bounded(p[..., 3 * M], 3.0)
        return log_pi, mu, log_s, alpha, p[..., 3 * M + 1]

    def forward(self, y: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        """y ``[...]``, p ``[..., 3M+2]`` → output ``[...]``, log|dy'/dy| ``[...]``."""
        log_pi, mu, log_s, alpha, beta = self.split(p)
        t = (y.unsqueeze(-1) - mu) * torch.exp(-log_s)
        log_c = torch.logsumexp(log_pi + F.logsigmoid(t), dim=-1)
        log_1mc = torch.logsumexp(log_pi + F.logsigmoid(-t), dim=-1)
        log_pdf = torch.logsumexp(log_pi + logistic_log_pdf(t) - log_s, dim=-1)
        out = (log_c - log_1mc) * alpha.exp() + beta
        return out, log_pdf - log_c - log_1mc + alpha

    @torch.no_grad()
    def inverse(self, out: Tensor, p: Tensor, tol: float = 1e-12, max_iter: int = 60) -> Tensor:
        """Exact inverse by bracketed Newton in float64 (bisection where Newton leaves the bracket).

        The root lies between the component quantiles at the target level,
        which gives a tight initial bracket; Newton usually converges in a few
        steps, so the float64 work is small.
        """
        dtype = out.dtype
        log_pi, mu, log_s, alpha, beta = (t.double() for t in self.split(p))
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
