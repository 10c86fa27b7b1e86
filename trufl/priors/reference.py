"""Reference implementations kept to check and measure the real ones against (tests and
``make bench``), never used for training or generation."""

from __future__ import annotations

import torch
from torch import Tensor

from ..condition import Condition
from ..support import Support
from .autoregressive import AutoregressivePrior


@torch.no_grad()
def recomputing_inverse(prior: AutoregressivePrior, e: Tensor, condition: Condition | None = None,
                        support: Support | None = None) -> Tensor:
    """:meth:`AutoregressivePrior.inverse` the naive way: the encoder re-runs over the whole
    prefix for every token (O(T²) encoder work, as the Argmax reference code samples), with
    no state carried. It must agree with the stateful sampler (in float64: free-running
    float32 samples diverge by rounding amplified through the autoregression)."""
    support = support or prior.support

    def invert(e: Tensor, mask, condition) -> Tensor:
        n, T, D = e.shape
        now = prior.transform.current(support)
        y = torch.zeros(n, 1, D, dtype=e.dtype, device=e.device)  # a placeholder for the next token
        for t in range(T):
            ids = prior._decoded(prior.transform.denormalise(y), support)
            h = prior.encoder(prior._inputs(y, ids, T), condition)  # a prefix of a sequence of T
            y[:, -1] = prior.invert_token(h[:, -1], e[:, t], now)
            y = torch.cat([y, torch.zeros_like(y[:, :1])], dim=1)
        return prior.transform.denormalise(y[:, :-1])

    return prior.in_prior_order(invert, e, None, condition)
