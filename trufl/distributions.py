"""Elementwise distribution helpers shared by the dequantisers and the priors.

Everything here is a pure function of tensors (no parameters), so both packages
import it and neither imports the other.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

NEG_INF = float("-inf")
#: uniforms are kept this far from 0 and 1 before a logit, so logistic samples stay finite
UNIFORM_EPS = 1e-6
#: log of the factor that gives a logistic unit variance (CatNF's ε and prior base: scale 1/1.81 ≈ √3/π)
LOG_UNIT_VARIANCE = math.log(1.81)


def logistic_log_pdf(e: Tensor) -> Tensor:
    """Log density of the standard logistic, elementwise."""
    return -F.softplus(e) - F.softplus(-e)


def sample_logistic(shape, device=None, dtype=None) -> Tensor:
    """Standard logistic samples of ``shape`` (the base of every flow prior)."""
    return torch.logit(sample_uniform(shape, device=device, dtype=dtype))


def sample_uniform(shape, device=None, dtype=None) -> Tensor:
    """U(0, 1) samples kept :data:`UNIFORM_EPS` away from the ends."""
    return torch.rand(shape, device=device, dtype=dtype).clamp(UNIFORM_EPS, 1 - UNIFORM_EPS)


def gaussian_log_pdf(u: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Log density of N(mean, exp(log_std)^2), elementwise."""
    return -0.5 * ((u - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)


def bounded(raw: Tensor, bound: float) -> Tensor:
    """Squash to (-bound, bound) smoothly (log-scales that cannot blow up)."""
    return bound * torch.tanh(raw / bound)


def learned_bound(raw: Tensor, log_bound: Tensor) -> Tensor:
    """``tanh(raw / max(1, b))·b`` with ``b = exp(log_bound)``: inside (−b, b), and the
    identity near 0 once b > 1 (CatNF's scaling factors, learned from b = 1)."""
    bound = log_bound.exp()
    return torch.tanh(raw / bound.clamp_min(1.0)) * bound


def inverse_softplus(y: Tensor) -> Tensor:
    """softplus⁻¹(y) = log(expm1(y)) for y > 0, stable for large and small y."""
    return y + torch.log(-torch.expm1(-y))


def gather(values: Tensor, index: Tensor) -> Tensor:
    """``values[..., index]`` for ``values [..., K]`` and ``index [...]``."""
    return values.gather(-1, index.long().unsqueeze(-1)).squeeze(-1)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the True entries of ``mask`` (same shape); 0 if none."""
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().clamp_min(1)
