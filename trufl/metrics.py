"""Metric helpers: unit conversions and the prior mass of the support (log Z)."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from .dequantisers.base import Dequantiser
from .priors.base import Prior, StandardLogisticPrior

LN2 = math.log(2.0)

#: the metric contract (DESIGN.md §1): every logger and results.json uses these names
SPLIT_METRICS = ("nll_bits", "recon_bits", "kl_bits", "determinism", "decode_acc")
TEST_ONLY_METRICS = ("iwbo_bits", "log_Z")
#: p(x|z) at least this large counts as deterministic decoding
DETERMINISM_THRESHOLD = 1 - 1e-6


SAMPLE_METRICS = ("sample/validity", "sample/acceptance")


def contract_keys(splits=("train", "val", "test"), constrained: bool = False) -> set[str]:
    """The metric names a run logs; ``constrained`` tasks add the sampling metrics."""
    keys = {f"{s}/{m}" for s in splits for m in SPLIT_METRICS}
    if "test" in splits:
        keys |= {f"test/{m}" for m in TEST_ONLY_METRICS}
    return keys | set(SAMPLE_METRICS) if constrained else keys


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


@torch.no_grad()
def log_support_mass(
    deq: Dequantiser, prior: Prior, length: int, num_samples: int = 256, decode=None, exact_ok: bool = True,
    cond: dict | None = None, what: str = "",
) -> dict:
    """``log Z`` per token (nats), ``Z = P_{z~p}(every token of z lies in some support)``.

    Exact when the support is everything (Z = 1) or when the prior is the
    factorised standard logistic (volume of the union of boxes in CDF space);
    otherwise Monte Carlo over ``num_samples`` prior sequences of ``length``
    tokens, with a delta-method standard error. ``decode(z) -> [n, T]`` (−1 outside
    every support) replaces ``deq.decode`` when supports depend on a context;
    then ``exact_ok`` must be False. ``cond`` (rows repeated to ``num_samples``)
    conditions the prior, e.g. on test graphs; ``what`` names them.
    """
    boxes = deq.support_boxes()
    if boxes is None:
        return {"log_Z": 0.0, "stderr": 0.0, "estimator": "exact (support is all of R^D)"}
    if exact_ok and type(prior) is StandardLogisticPrior:  # noqa: E721 (subclasses may differ)
        volume = union_volume(torch.sigmoid(boxes[0].detach()), torch.sigmoid(boxes[1].detach()))
        if volume is not None:
            return {"log_Z": math.log(volume), "stderr": 0.0, "estimator": "exact (union of boxes under the logistic)"}
    device = next(deq.parameters()).device
    if cond:
        rows = torch.arange(num_samples) % next(iter(cond.values())).shape[0]
        cond = {k: v[rows].to(device) for k, v in cond.items()}
    z = prior.sample(num_samples, length, **(cond or {})).to(device)
    inside = ((decode or deq.decode)(z) >= 0).all(-1).float()
    p = inside.mean().item()
    estimator = f"monte carlo ({num_samples} prior samples of {length} tokens{what})"
    if p == 0:
        return {"log_Z": float("nan"), "stderr": float("nan"), "estimator": estimator + ": no sample inside the support"}
    stderr = math.sqrt((1 - p) / (num_samples * p))
    return {"log_Z": math.log(p) / length, "stderr": stderr / length, "estimator": estimator}
