"""Schedules for the reconstruction and KL weights (the ``weighting=`` group).

A schedule returns multiplicative factors ``(recon_factor, kl_factor)`` for a
training step; the loss uses ``recon_weight * recon_factor`` and
``kl_weight * kl_factor``. Reported bounds always use weights 1.
"""

from __future__ import annotations

from typing import Annotated

from .settings import Count, NonNegative, Range, checked


class Constant:
    """Factors 1 throughout."""

    def __call__(self, step: int) -> tuple[float, float]:
        return 1.0, 1.0


class LinearWarmup:
    """KL factor rising linearly from ``start`` to 1 over ``steps`` (KL annealing)."""

    @checked("weighting")
    def __init__(self, steps: Count = 1000, start: Annotated[float, Range(0, 1)] = 0.0):
        self.steps, self.start = steps, start

    def __call__(self, step: int) -> tuple[float, float]:
        return 1.0, self.start + (1 - self.start) * min(1.0, step / self.steps)


class ExponentialDecay:
    """Reconstruction factor ``1 + (start - 1) · decay^step``: CatNF's 2 → 1 schedule."""

    @checked("weighting")
    def __init__(self, start: NonNegative = 2.0, decay: Annotated[float, Range(0, 1, low_open=True)] = 0.999):
        self.start, self.decay = start, decay

    def __call__(self, step: int) -> tuple[float, float]:
        return 1.0 + (self.start - 1.0) * self.decay**step, 1.0
