"""The prior mass of the dequantiser's support, ``Z = P_{z~p}(z ∈ S)`` (DESIGN.md §4).

The support S of q(z) is a union of boxes (TRUFL, Argmax's valid codes); the
renormalised prior ``p(z)·1[z ∈ S]/Z`` gives the tighter bound ``ELBO − log Z``.
Each prior owns its estimator of Z (:meth:`trufl.priors.Prior.log_support_mass`);
the pieces they share are here.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass
class Support:
    """Where q(z) puts mass. ``decode(z [n, T, D]) -> [n, T]`` is −1 for a token outside
    every support; ``boxes = (lo, hi)``, each ``[K, D]`` in z-space, is the support of
    every token when it does not depend on the sequence (None otherwise)."""

    decode: Callable[[Tensor], Tensor]
    boxes: tuple[Tensor, Tensor] | None = None


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


def cycle_rows(cond: dict | None, num: int) -> dict:
    """Conditioning with its tensors' rows cycled to ``num`` rows (other values, e.g.
    the ``readout``, are passed as they are)."""
    tensors = {k: v for k, v in (cond or {}).items() if isinstance(v, torch.Tensor)}
    if not tensors:
        return dict(cond or {})
    rows = torch.arange(num) % next(iter(tensors.values())).shape[0]
    return {**cond, **{k: v[rows.to(v.device)] for k, v in tensors.items()}}


@torch.no_grad()
def monte_carlo_support_mass(sample, support: Support, length: int, num_samples: int, cond: dict | None = None) -> dict:
    """``log Z`` per token from ``num_samples`` sequences of ``sample(num, length, **cond)``,
    with a delta-method standard error."""
    z = sample(num_samples, length, **cycle_rows(cond, num_samples))
    inside = (support.decode(z) >= 0).all(-1).float()
    p = inside.mean().item()
    estimator = f"monte carlo ({num_samples} prior samples of {length} tokens)"
    if p == 0:
        return {"estimator": estimator, "unavailable": f"no prior sample of {length} tokens landed inside the support "
                "(Z is below about 1/num_samples): raise eval.log_z_samples or use an estimator with per-token masses"}
    stderr = math.sqrt((1 - p) / (num_samples * p))
    return {"log_Z": math.log(p) / length, "stderr": stderr / length, "estimator": estimator}
