"""The prior interface: a flow is a distribution over ``z [B, T, D]``.

Every prior here is a flow onto a factorised standard logistic base
(:class:`LogisticBaseFlow`): a subclass gives ``forward(z) -> (e, log|det|)`` and
the explicit ``inverse(e) -> z``; the density and the sampler are written once.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

from ..distributions import logistic_log_pdf, sample_logistic
from .support import Support, monte_carlo_support_mass, union_volume


class Decoding(Protocol):
    """What a prior may read of the dequantiser: functions of z only, never of x
    (a :class:`~trufl.latent.LatentVariableModel` passes itself as ``readout=``)."""

    def decode(self, z: Tensor) -> Tensor:
        """Categories ``[n, T]`` of ``z [n, T, D]``; −1 outside every support."""

    def decode_step(self, z_t: Tensor, state) -> tuple[Tensor, object]:
        """One token ``z_t [n, D]`` → its categories ``[n]`` and the state for the next one."""

    def faces(self) -> Tensor | None:
        """Faces of the support's boxes per dimension in CDF coordinates σ(z), ``[D, F]``;
        None when the support is all of R^D."""


class Prior(nn.Module):
    """``log_prob`` returns per-token log densities ``[B, T]`` (0 where ``mask`` is
    False) so losses can be normalised per token; ``sample`` draws ``[n, T, D]``.

    Conditioning that a batch carries besides ``x`` and ``mask`` (a graph's
    ``adjacency``) reaches ``log_prob`` and ``sample`` as keyword arguments;
    priors that do not use it model z unconditionally (a baseline)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)
        # device and dtype of a prior without parameters (follows .to()/.double())
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor, mask: Tensor | None = None, **cond) -> Tensor:
        raise NotImplementedError

    def sample(self, num: int, length: int, **cond) -> Tensor:
        raise NotImplementedError

    def log_support_mass(self, support: Support, length: int, num_samples: int, cond: dict | None = None) -> dict:
        """``log Z`` per token (nats), ``Z = P_{z~p}(every token of z lies in the support)``,
        with its standard error and the estimator's name. Monte Carlo unless a
        subclass knows better; ``cond`` (rows cycled to ``num_samples``) conditions
        the prior, e.g. on test graphs."""
        return monte_carlo_support_mass(self.sample, support, length, num_samples, cond)

    @staticmethod
    def _masked(log_p: Tensor, mask: Tensor | None) -> Tensor:
        return log_p if mask is None else torch.where(mask, log_p, torch.zeros_like(log_p))


class LogisticBaseFlow(Prior):
    """A flow ``z -> e`` whose base is the factorised standard logistic.

    Subclasses implement :meth:`forward` (``z [B, T, D] -> e [B, T, D]`` and the
    log|det| per token ``[B, T]``) and :meth:`inverse`."""

    def forward(self, z: Tensor, mask: Tensor | None = None, **cond) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, e: Tensor, mask: Tensor | None = None, **cond) -> Tensor:
        raise NotImplementedError

    def log_prob(self, z: Tensor, mask: Tensor | None = None, **cond) -> Tensor:
        e, log_det = self.forward(z, mask, **cond)
        return self._masked(logistic_log_pdf(e).sum(-1) + log_det, mask)

    @torch.no_grad()
    def sample(self, num: int, length: int, **cond) -> Tensor:
        e = sample_logistic((num, length, self.dim), device=self.anchor.device, dtype=self.anchor.dtype)
        return self.inverse(e, **cond)


class StandardLogisticPrior(LogisticBaseFlow):
    """Fixed standard logistic in every dimension (no parameters): the toy's prior.
    Its mass on a union of boxes is exact (the boxes' volume in CDF space)."""

    def forward(self, z: Tensor, mask: Tensor | None = None, **cond) -> tuple[Tensor, Tensor]:
        return z, torch.zeros_like(z[..., 0])

    def inverse(self, e: Tensor, mask: Tensor | None = None, **cond) -> Tensor:
        return e

    def log_support_mass(self, support: Support, length: int, num_samples: int, cond: dict | None = None) -> dict:
        if support.boxes is not None:  # i.i.d. tokens: the per-token mass is the volume of the boxes
            lo, hi = support.boxes
            volume = union_volume(torch.sigmoid(lo.detach()), torch.sigmoid(hi.detach()))
            if volume is not None:
                return {"log_Z": math.log(volume), "stderr": 0.0,
                        "estimator": "exact (union of boxes under the logistic)"}
        return super().log_support_mass(support, length, num_samples, cond)
