"""The prior interface: a flow is a distribution over ``z [B, T, D]``.

A prior is built for the support of the dequantiser it models (``Prior(support, ...)``:
the latent width D, and for priors that use it, the number of box faces and whether q
is uniform on its boxes) and is called with ``(z, mask, condition, support)``:

* ``mask [B, T]`` marks real tokens (log densities are 0 elsewhere);
* ``condition`` (:class:`~trufl.condition.Condition`) is what the task tells the prior
  about each object, e.g. a graph's adjacency; priors that do not read it model z
  unconditionally;
* ``support`` (:class:`~trufl.support.Support`) is the dequantiser's support at call
  time (the current box faces, decoding); None: the one the prior was built for.

Every prior here but the toy's is a flow onto a factorised standard logistic base
(:class:`LogisticBaseFlow`): a subclass gives ``forward(z) -> (e, log|det|)`` and the
explicit ``inverse(e) -> z``; the density and the sampler are written once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..condition import Condition
from ..distributions import logistic_log_pdf, sample_logistic
from ..settings import Injected, checked
from ..support import Support
from .support_mass import monte_carlo_support_mass, union_volume


class Prior(nn.Module):
    """``log_prob`` returns per-token log densities ``[B, T]`` (0 where ``mask`` is
    False) so losses can be normalised per token; ``sample`` draws ``[n, T, D]``."""

    @checked("prior")
    def __init__(self, support: Injected[Support]):
        super().__init__()
        self.support, self.dim = support, int(support.dim)
        # device and dtype of a prior without parameters (follows .to()/.double())
        self.register_buffer("anchor", torch.zeros(()), persistent=False)

    def log_prob(self, z: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                 support: Support | None = None) -> Tensor:
        raise NotImplementedError

    def sample(self, num: int, length: int, condition: Condition | None = None, support: Support | None = None) -> Tensor:
        raise NotImplementedError

    def log_support_mass(self, length: int, num_samples: int, condition: Condition | None = None,
                         support: Support | None = None) -> dict:
        """``log Z`` per token (nats), ``Z = P_{z~p}(every token of z lies in the support)``,
        with its standard error and the estimator's name. Monte Carlo unless a
        subclass knows better; ``condition`` (rows cycled to ``num_samples``) conditions
        the prior, e.g. on test graphs."""
        support = support or self.support
        sample = lambda num, length, condition: self.sample(num, length, condition, support)  # noqa: E731
        return monte_carlo_support_mass(sample, support.decode, length, num_samples, condition)

    @staticmethod
    def _masked(log_p: Tensor, mask: Tensor | None) -> Tensor:
        return log_p if mask is None else torch.where(mask, log_p, torch.zeros_like(log_p))


class LogisticBaseFlow(Prior):
    """A flow ``z -> e`` whose base is the factorised standard logistic.

    Subclasses implement :meth:`forward` (``z [B, T, D] -> e [B, T, D]`` and the
    log|det| per token ``[B, T]``) and :meth:`inverse`; one that replaces the base
    (the autoregressive prior's learned Gaussian) overrides :meth:`base_log_prob` and
    :meth:`sample_base`."""

    def base_log_prob(self, e: Tensor) -> Tensor:
        """The base's log density, elementwise ``[..., D]``."""
        return logistic_log_pdf(e)

    def sample_base(self, shape: tuple[int, ...]) -> Tensor:
        return sample_logistic(shape, device=self.anchor.device, dtype=self.anchor.dtype)

    def forward(self, z: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, e: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> Tensor:
        raise NotImplementedError

    def log_prob(self, z: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                 support: Support | None = None) -> Tensor:
        e, log_det = self.forward(z, mask, condition, support)
        return self._masked(self.base_log_prob(e).sum(-1) + log_det, mask)

    @torch.no_grad()
    def sample(self, num: int, length: int, condition: Condition | None = None, support: Support | None = None) -> Tensor:
        return self.inverse(self.sample_base((num, length, self.dim)), None, condition, support)


class StandardLogisticPrior(LogisticBaseFlow):
    """Fixed standard logistic in every dimension (no parameters): the toy's prior.
    Its mass on a union of boxes is exact (the boxes' volume in CDF space)."""

    def forward(self, z: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> tuple[Tensor, Tensor]:
        return z, torch.zeros_like(z[..., 0])

    def inverse(self, e: Tensor, mask: Tensor | None = None, condition: Condition | None = None,
                support: Support | None = None) -> Tensor:
        return e

    def log_support_mass(self, length: int, num_samples: int, condition: Condition | None = None,
                         support: Support | None = None) -> dict:
        support = support or self.support
        boxes = support.boxes() if support.fixed else None
        if boxes is not None:  # i.i.d. tokens: the per-token mass is the volume of the boxes
            lo, hi = boxes
            volume = union_volume(torch.sigmoid(lo.detach()), torch.sigmoid(hi.detach()))
            if volume is not None:
                return {"log_Z": math.log(volume), "stderr": 0.0,
                        "estimator": "exact (union of boxes under the logistic)"}
        return super().log_support_mass(length, num_samples, condition, support)
