"""The prior mass of the dequantiser's support, ``Z = P_{z~p}(z ∈ S)``, and its estimators.

The support S of q(z) is a union of boxes (TRUFL, Argmax's valid codes); the
renormalised prior ``p(z)·1[z ∈ S]/Z`` gives the tighter bound ``ELBO − log Z``
(docs/design.md, Renormalised prior). Each prior chooses its estimator
(:meth:`trufl.priors.Prior.log_support_mass`): exact where the boxes' volume is the
answer, sequential importance sampling with exact per-token masses for an
autoregressive prior with D = 1, Monte Carlo otherwise.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import torch
from torch import Tensor

from ..condition import Condition


def union_volume(lo: Tensor, hi: Tensor, max_cells: int = 2_000_000) -> float | None:
    """Volume of a union of boxes ``[lo_k, hi_k] ⊂ [0,1]^D`` (``[K, D]``), exactly,
    by cutting space at every face; ``None`` if that needs more than ``max_cells``."""
    K, D = lo.shape
    cuts = [torch.unique(torch.cat([lo[:, d], hi[:, d], lo.new_tensor([0.0, 1.0])]).clamp(0, 1)) for d in range(D)]
    if math.prod(len(c) - 1 for c in cuts) > max_cells:
        return None
    lo64, hi64 = lo.double(), hi.double()
    volume = 0.0
    # cells of the first D-1 dims by enumeration, the last dim vectorised
    for cell in itertools.product(*[range(len(c) - 1) for c in cuts[:-1]]):
        mids = [0.5 * (cuts[d][i] + cuts[d][i + 1]).item() for d, i in enumerate(cell)]
        size = math.prod((cuts[d][i + 1] - cuts[d][i]).item() for d, i in enumerate(cell))
        inside = torch.ones(K, dtype=torch.bool)
        for d, m in enumerate(mids):
            inside &= (lo64[:, d] <= m) & (m <= hi64[:, d])
        if not inside.any():
            continue
        last = cuts[-1].double()
        mid = 0.5 * (last[1:] + last[:-1])
        covered = ((lo64[inside, -1, None] <= mid) & (mid <= hi64[inside, -1, None])).any(0)
        volume += size * float(((last[1:] - last[:-1]) * covered).sum())
    return volume


def union_of_intervals(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Disjoint intervals ``[lo, hi]`` (sorted) covering the same set as the given ones
    (TRUFL's learned boxes may overlap slightly)."""
    order = torch.argsort(lo)
    merged: list[list[float]] = []
    for a, b in zip(lo[order].tolist(), hi[order].tolist()):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return lo.new_tensor([m[0] for m in merged]), lo.new_tensor([m[1] for m in merged])


@torch.no_grad()
def monte_carlo_support_mass(sample: Callable[..., Tensor], decode: Callable[[Tensor], Tensor], length: int,
                             num_samples: int, condition: Condition | None = None) -> dict:
    """``log Z`` per token from ``num_samples`` sequences of ``sample(num, length, condition)``
    (the condition's rows cycled), decoded by ``decode`` (−1 outside every support), with a
    delta-method standard error."""
    z = sample(num_samples, length, condition.cycle(num_samples) if condition is not None else None)
    inside = (decode(z) >= 0).all(-1).float()
    p = inside.mean().item()
    estimator = f"monte carlo ({num_samples} prior samples of {length} tokens)"
    if p == 0:
        return {"estimator": estimator, "unavailable": f"no prior sample of {length} tokens landed inside the support "
                "(Z is below about 1/num_samples): raise eval.log_z_samples or use an estimator with per-token masses"}
    stderr = math.sqrt((1 - p) / (num_samples * p))
    return {"log_Z": math.log(p) / length, "stderr": stderr / length, "estimator": estimator}


@torch.no_grad()
def sequential_support_mass(autoregress: Callable, lo: Tensor, hi: Tensor, length: int, num_samples: int,
                            dtype: torch.dtype, device) -> dict:
    """``log Z`` per token of an autoregressive prior over D = 1 latents whose every token
    has the support ``∪ [lo_k, hi_k]`` (z-space), by sequential importance sampling: each
    token is drawn from its conditional restricted to the support, whose mass m_t is exact
    (CDF differences at the faces), and ``Ẑ = mean over sequences of Π_t m_t`` is unbiased
    with a finite estimate even where whole prior sequences almost never land inside.

    ``autoregress(n, length, draw)`` runs the prior token by token, calling
    ``draw(t, cdf) -> e_t [n, 1]`` for token t's base variable, where ``cdf(points [n, m])``
    is token t's conditional CDF at z-space points."""
    lo, hi = union_of_intervals(lo.to(dtype).clamp(-50, 50), hi.to(dtype).clamp(-50, 50))
    n = num_samples
    faces = torch.cat([lo, hi])[None].expand(n, -1)
    log_w = torch.zeros(n, dtype=torch.float64, device=device)

    def restricted(t: int, cdf: Callable[[Tensor], Tensor]) -> Tensor:
        nonlocal log_w
        f_lo, f_hi = cdf(faces).double().chunk(2, dim=1)
        widths = (f_hi - f_lo).clamp_min(0)  # [n, intervals]
        log_w = log_w + widths.sum(-1).clamp_min(1e-300).log()
        k = torch.multinomial(widths + 1e-300, 1)  # an interval in proportion to its mass
        u = f_lo.gather(1, k)[:, 0] + torch.rand(n, dtype=torch.float64, device=device) * widths.gather(1, k)[:, 0]
        return torch.logit(u.clamp(1e-15, 1 - 1e-15)).to(dtype)[:, None]

    autoregress(n, length, restricted)
    log_z = (torch.logsumexp(log_w, 0) - math.log(n)).item()
    w = torch.exp(log_w - log_w.max())
    rel_se = (w.std() / (w.mean() * math.sqrt(n))).item() if n > 1 else float("nan")  # delta method: se of log Ẑ
    return {"log_Z": log_z / length, "stderr": rel_se / length,
            "estimator": f"sequential importance sampling ({n} sequences of {length} tokens, exact per-token masses)"}
