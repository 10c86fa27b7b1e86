"""Schedules for the reconstruction and KL weights (the ``weighting=`` group).

A schedule returns multiplicative factors ``(recon_factor, kl_factor)`` for a
training step; the loss uses ``recon_weight * recon_factor`` and
``kl_weight * kl_factor``. Reported bounds always use weights 1.
"""

from __future__ import annotations


class Constant:
    """Factors 1 throughout."""

    def __call__(self, step: int) -> tuple[float, float]:
        return 1.0, 1.0


class LinearWarmup:
    """KL factor rising linearly from ``start`` to 1 over ``steps`` (KL annealing)."""

    def __init__(self, steps: int = 1000, start: float = 0.0):
        if steps < 1:
            raise ValueError(f"weighting.steps must be >= 1, got {steps}")
        if not 0 <= start <= 1:
            raise ValueError(f"weighting.start must be in [0, 1], got {start}")
        self.steps, self.start = steps, start

    def __call__(self, step: int) -> tuple[float, float]:
        return 1.0, self.start + (1 - self.start) * min(1.0, step / self.steps)


class ExponentialDecay:
    """Reconstruction factor ``1 + (start - 1) · decay^step``: CatNF's 2 → 1 schedule."""

    def __init__(self, start: float = 2.0, decay: float = 0.999):
        if start < 0:
            raise ValueError(f"weighting.start must be >= 0, got {start}")
        if not 0 < decay <= 1:
            raise ValueError(f"weighting.decay must be in (0, 1], got {decay}")
        self.start, self.decay = start, decay

    def __call__(self, step: int) -> tuple[float, float]:
        return 1.0 + (self.start - 1.0) * self.decay**step, 1.0
