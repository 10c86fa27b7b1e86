"""Flow building blocks: ActNorm, masked linear layers and the mixture-CDF transform.

Every transform returns its output and its log-determinant contribution; inverses
are explicit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..dequantisers.base import logistic_log_pdf


class ActNorm(nn.Module):
    """Per-dimension affine ``y = (z + bias) · exp(log_scale)`` with data-dependent init.

    The first call in training mode sets bias and scale so that the batch's
    output has zero mean and unit variance per dimension (Glow). Shapes:
    z ``[..., D]``; log-determinant per position ``[...]``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def initialise(self, z: Tensor, mask: Tensor | None = None) -> None:
        flat = z.reshape(-1, z.shape[-1]) if mask is None else z[mask]
        if flat.shape[0] < 2:
            return
        self.bias.copy_(-flat.mean(0))
        self.log_scale.copy_(-flat.std(0).clamp_min(1e-3).log())
        self.initialised.fill_(True)

    def forward(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialised:
            self.initialise(z.detach(), mask)
        y = (z + self.bias) * self.log_scale.exp()
        return y, self.log_scale.sum().expand(z.shape[:-1])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


class InvertibleLinear(nn.Module):
    """``y = z Wᵀ`` mixing the latent dimensions (Glow's 1×1 convolution), W
    initialised to a random rotation. Shapes: z ``[..., D]``; log-determinant
    per position ``[...]``. D is small, so W is kept whole (no LU)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(dim, dim))[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z @ self.weight.T, torch.linalg.slogdet(self.weight)[1].expand(z.shape[:-1])

    def inverse(self, y: Tensor) -> Tensor:
        return torch.linalg.solve(self.weight, y.unsqueeze(-1)).squeeze(-1)


class MaskedLinear(nn.Linear):
    """Linear layer with a fixed connectivity mask (MADE); the mask is applied
    functionally in ``forward``, never by editing the weights in place."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MaskedHead(nn.Module):
    """Parameters for each latent dimension d from a context h and ``z[..., :d]``.

    Input ``[..., H + D]`` (context first), output ``[..., D, P]``: the output
    for dimension d sees the context and dimensions ``< d`` only.
    """

    def __init__(self, context: int, dim: int, hidden: int, params_per_dim: int):
        super().__init__()
        self.dim, self.params_per_dim = dim, params_per_dim
        in_deg = torch.cat([torch.zeros(context), torch.arange(1, dim + 1)])  # context: degree 0
        hid_deg = torch.arange(hidden) % max(dim, 1)  # degrees 0..D-1
        out_deg = torch.arange(dim).repeat_interleave(params_per_dim) + 1  # dim d has degree d+1
        self.inp = MaskedLinear(context + dim, hidden, hid_deg[:, None] >= in_deg[None, :])
        self.mid = MaskedLinear(hidden, hidden, hid_deg[:, None] >= hid_deg[None, :])
        self.out = MaskedLinear(hidden, dim * params_per_dim, out_deg[:, None] > hid_deg[None, :])
        nn.init.zeros_(self.out.weight)

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        a = F.gelu(self.inp(torch.cat([h, z], dim=-1)))
        a = F.gelu(self.mid(a)) + a
        return self.out(a).view(*z.shape[:-1], self.dim, self.params_per_dim)


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
        log_s = self.max_log_scale * torch.tanh(p[..., 2 * M : 3 * M] / self.max_log_scale)
        alpha = 3.0 * torch.tanh(p[..., 3 * M] / 3.0)
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
