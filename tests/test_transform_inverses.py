"""The samplers' inverses against plain bisection on the forward map (float64).

Bisection needs nothing but monotonicity, so it is an independent reference for
the bracketed-Newton inverse of the mixture CDF and the closed-form inverse of the
piecewise-linear CDF. Parameters range over ordinary and extreme values (log-scales
at their bounds, far-apart means, a dominant weight, α at ±3, tall and zero-width
bins, targets far in the tails). Where the map is flat to float64 (derivative below
1e-3) no inverse can pin the input to 1e-6, so there the check is on the output:
the inverse's forward value equals the target.
"""

from __future__ import annotations

import pytest
import torch

from trufl.priors.transforms import MixtureLogisticCDF, PiecewiseLinearCDF

N = 1000


def bisect(forward, target: torch.Tensor, lo: float = -1e6, hi: float = 1e6, iters: int = 120) -> torch.Tensor:
    """The y with ``forward(y) = target`` elementwise, for an increasing ``forward``."""
    lo, hi = torch.full_like(target, lo), torch.full_like(target, hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = forward(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def mixture_params(gen: torch.Generator, t: MixtureLogisticCDF) -> torch.Tensor:
    """``[N, 3M+2]``: a quarter each ordinary, wide, extreme and degenerate-looking."""
    M = t.M
    p = torch.randn(N, t.num_params, generator=gen, dtype=torch.float64)
    q = N // 4
    p[q : 2 * q] *= 4
    extreme = p[2 * q : 3 * q]
    extreme[:, M : 2 * M] *= 50  # means far apart
    extreme[:, 2 * M : 3 * M] = torch.where(torch.rand(q, M, generator=gen) < 0.5, -1e3, 1e3).double()  # log-scales past both bounds
    extreme[:, 3 * M] = torch.where(torch.rand(q, generator=gen) < 0.5, -1e3, 1e3).double()  # α at ±3
    dominant = p[3 * q :]
    dominant[:, 0] = 40.0  # one component holds (almost) all the weight
    dominant[:, 2 * M : 3 * M] = -1e3  # at the narrowest scale
    return p


def bisection_errors(forward, inverse, target: torch.Tensor) -> dict[str, float]:
    """How far ``inverse(target)`` is from bisection's root, in units of the tolerance
    (≤ 1 passes): ``input`` where the map's slope exceeds 1e-3 (|Δy| against
    1e-6 + 1e-6·|y|), ``output`` everywhere (|forward(y) − target| against 1e-6 + 1e-9·|target|),
    and the fraction of targets where the input is checked."""
    fast = inverse(target)
    ref = bisect(forward, target)
    y = ref.clone().requires_grad_(True)
    slope = torch.autograd.grad(forward(y).sum(), y)[0]
    conditioned = slope > 1e-3
    input_err = (fast - ref).abs() / (1e-6 + 1e-6 * ref.abs())
    output_err = (forward(fast) - target).abs() / (1e-6 + 1e-9 * target.abs())
    return {"input": input_err[conditioned].max().item(), "output": output_err.max().item(),
            "conditioned": conditioned.float().mean().item()}


@pytest.mark.parametrize("num_mixtures", [1, 4, 8])
def test_mixture_cdf_inverse_matches_bisection(num_mixtures):
    gen = torch.Generator().manual_seed(num_mixtures)
    t = MixtureLogisticCDF(num_mixtures)
    p = mixture_params(gen, t)
    e = torch.logit(torch.rand(N, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12))  # out to ±27
    errors = bisection_errors(lambda y: t.forward(y, p)[0], lambda out: t.inverse(out, p), e)
    assert errors["conditioned"] > 0.5, "the cases must mostly be invertible to 1e-6"
    assert errors["input"] <= 1 and errors["output"] <= 1, errors


@pytest.mark.parametrize("repeated_knots", [False, True])
def test_piecewise_linear_cdf_inverse_matches_bisection(repeated_knots):
    gen = torch.Generator().manual_seed(int(repeated_knots))
    t = PiecewiseLinearCDF()
    inner = torch.rand(1, 9, generator=gen, dtype=torch.float64)
    parts = [torch.tensor([[0.0, 1.0]], dtype=torch.float64), inner, torch.tensor([[1e-9, 1 - 1e-9]], dtype=torch.float64)]
    if repeated_knots:
        parts.append(inner[:, :3])  # zero-width bins
    knots = torch.sort(torch.cat(parts, 1), 1).values  # [1, n+1]
    h = 6 * torch.randn(N, 1, knots.shape[1] - 1, generator=gen, dtype=torch.float64)  # heights over ±20
    h[: N // 4] = h[: N // 4].sign() * 30  # bins with e^{±30} relative density
    e = torch.logit(torch.rand(N, 1, generator=gen, dtype=torch.float64).clamp(1e-12, 1 - 1e-12))
    forward = lambda y: t.forward(y, knots, h)[0]  # noqa: E731
    errors = bisection_errors(forward, lambda out: t.inverse(out, knots, h), e)
    assert errors["conditioned"] > 0.5, "the cases must mostly be invertible to 1e-6"
    assert errors["input"] <= 1 and errors["output"] <= 1, errors
