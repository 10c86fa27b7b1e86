"""The objective (docs/design.md#model): per-token terms of one sample, the weighted loss,
the reported bounds and the importance-weighted bound.

    loss per token = -(recon_weight · log p(x|z) + kl_weight · (log p(z) − log q(z|x)))

Every reported bound uses weights 1, in bits per token.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .distributions import masked_mean
from .metrics import DETERMINISM_THRESHOLD, LN2


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf; the message names the step and the term."""


class Terms(NamedTuple):
    """Per-token terms ``[B, T]`` of one sample z ~ q(z|x).

    ``recon`` is the estimate of E_q[log p(x|z)] the loss differentiates (its value
    is log p(x|z) at the sample, or the exact expectation); ``log_px`` the decoder's
    log p(x|z) at the sample and ``correct`` whether its argmax is x (both detached).
    """

    recon: Tensor
    log_p: Tensor | None
    log_q: Tensor | None
    log_px: Tensor | None
    correct: Tensor | None

    @classmethod
    def exact(cls, log_lik: Tensor) -> "Terms":
        """A model without a latent (the categorical baseline): ``recon`` holds the exact
        log-likelihood per token and the latent terms are absent."""
        return cls(log_lik, None, None, None, None)

    @property
    def is_exact(self) -> bool:
        return self.log_q is None


def weighted_loss(t: Terms, mask: Tensor, recon_weight: float, kl_weight: float) -> Tensor:
    """The training loss per token (nats) with the given weights (an exact likelihood
    has no terms to weight: its loss is the NLL)."""
    if t.is_exact:
        return -masked_mean(t.recon, mask)
    per_token = -(recon_weight * t.recon + kl_weight * (t.log_p - t.log_q))
    return masked_mean(per_token, mask)


def bits_metrics(t: Terms, mask: Tensor) -> dict[str, Tensor]:
    """The contract's per-split metrics (weights 1): −ELBO, its two parts,
    determinism and decoding accuracy (only the NLL for an exact likelihood)."""
    if t.is_exact:
        return {"nll_bits": -masked_mean(t.recon.detach(), mask) / LN2}
    recon_bits = -masked_mean(t.recon.detach(), mask) / LN2
    kl_bits = masked_mean((t.log_q - t.log_p).detach(), mask) / LN2
    return {
        "nll_bits": recon_bits + kl_bits,
        "recon_bits": recon_bits,
        "kl_bits": kl_bits,
        "determinism": masked_mean((t.log_px >= math.log(DETERMINISM_THRESHOLD)).float(), mask),
        "decode_acc": masked_mean(t.correct.float(), mask),
    }


@torch.no_grad()
def iwbo(model, x: Tensor, mask: Tensor, k: int, condition=None) -> Tensor:
    """Importance-weighted bound per sequence ``[B]`` (nats) with ``k`` samples of
    ``model.log_weight``: ``log (1/k) Σ_i w_i``, never below the ELBO in expectation."""
    ctx = model.context(x)
    # a loop, not a k-times larger batch: bounded memory
    log_w = torch.stack([model.log_weight(x, mask, condition, ctx) for _ in range(k)])
    return torch.logsumexp(log_w, dim=0) - math.log(k)


def check_finite(loss: Tensor, t: Terms, mask: Tensor, step: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the step and the NaN/inf terms
    (one host sync for all terms)."""
    names = ("recon",) if t.is_exact else ("recon", "log_p", "log_q")
    sums = torch.stack([loss] + [torch.where(mask, getattr(t, k), torch.zeros_like(getattr(t, k))).sum() for k in names])
    finite = torch.isfinite(sums.detach()).tolist()
    if all(finite):
        return
    bad = [k for k, ok in zip(("loss",) + names, finite) if not ok]
    raise NonFiniteLossError(
        f"non-finite loss at step {step}: term(s) {bad} are NaN/inf "
        "(recon = log p(x|z), log_p = prior, log_q = dequantiser)"
    )


def has_estimate(log_z: dict) -> bool:
    """``log_z`` holds a finite ``log_Z`` (0.0 included: CatNF's support is everything)."""
    value = log_z.get("log_Z")
    return value is not None and math.isfinite(value)


def renormalised_bound(metrics: dict, log_z: dict) -> dict:
    """The bound under the prior renormalised to the support, ``ELBO − log Z``.

    q(z|x) lives inside the support S, so ``p̃(z) = p(z)·1[z ∈ S]/Z`` gives a valid,
    tighter bound. With a Monte Carlo Z it is an estimate (biased optimistic,
    since E[log Ẑ] ≤ log Z); the estimator is named beside it.
    """
    if "test/nll_bits" not in metrics or not has_estimate(log_z):
        return {}
    return {
        "test/nll_bits": metrics["test/nll_bits"] + log_z["log_Z"] / LN2,
        "log_Z_estimator": log_z["estimator"],
    }
