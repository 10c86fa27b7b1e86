"""The optimiser and its learning-rate schedule (the ``optim`` config section; presets in
``trufl/conf/optim/``: the shared protocol and the reference codes' optimisers)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch

from .settings import Injected, NonNegative, NonNegativeInt, Positive, Range, check_fields

Optimizer = Literal["adamw", "adam", "radam"]
Schedule = Literal["constant", "cosine", "exponential"]
OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "radam": torch.optim.RAdam}


@dataclass
class OptimSettings:
    """An optimiser with a linear warm-up, then a constant, cosine (to 0 at ``max_steps``) or
    exponential (``lr · decay^n`` after n steps, or n epochs with ``decay_every=epoch``) rate.

    preset: the name of the ``trufl/conf/optim/`` preset these settings came from (a label:
        ``shared``, or the reference code whose optimiser it reproduces).
    clip_steps: clip the gradient norm (``trainer.gradient_clip_val``) in the first
        ``clip_steps`` optimiser steps only; None: every step. CatNF's reference code clips
        at its first step only (its clip gets a one-shot parameter generator)."""

    lr: Positive = 1e-3
    weight_decay: NonNegative = 0.0
    optimizer: Optimizer = "adamw"
    schedule: Schedule = "constant"
    warmup_steps: NonNegativeInt = 0
    decay: Annotated[float, Range(0, 1, low_open=True)] = 1.0
    decay_every: Literal["step", "epoch"] = "step"
    preset: str = "shared"
    clip_steps: NonNegativeInt | None = None
    max_steps: Injected[int | None] = None  # trainer.max_steps

    def __post_init__(self):
        check_fields(self, "optim")
        if self.schedule == "cosine" and not (self.max_steps and self.max_steps > 0):
            raise ValueError("optim.schedule=cosine needs trainer.max_steps > 0")
        if self.decay_every == "epoch" and (self.schedule != "exponential" or self.warmup_steps):
            raise ValueError("optim.decay_every=epoch applies to optim.schedule=exponential without warm-up steps")

    def lr_factor(self, n: int) -> float:
        """Multiplier of ``lr`` after ``n`` scheduler steps (optimiser steps, or epochs)."""
        warm = min(1.0, (n + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.schedule == "constant":
            return warm
        if self.schedule == "exponential":
            return warm * self.decay**n
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, n / self.max_steps)))

    def clips_at(self, step: int) -> bool:
        """Whether the gradient norm is clipped at optimiser step ``step`` (0-based)."""
        return self.clip_steps is None or step < self.clip_steps

    def configure(self, parameters):
        """What ``LightningModule.configure_optimizers`` returns."""
        optimiser = OPTIMIZERS[self.optimizer](parameters, lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant" and not self.warmup_steps:
            return optimiser
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, self.lr_factor)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": self.decay_every}}
