"""The optimiser and its learning-rate schedule (the ``optim`` config section)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from .settings import Injected, NonNegative, NonNegativeInt, Positive, check_fields

Schedule = Literal["constant", "cosine"]


@dataclass
class OptimSettings:
    """AdamW with a linear warm-up, then a constant or cosine (to 0 at ``max_steps``) rate."""

    lr: Positive = 1e-3
    weight_decay: NonNegative = 0.0
    schedule: Schedule = "constant"
    warmup_steps: NonNegativeInt = 0
    max_steps: Injected[int | None] = None  # trainer.max_steps

    def __post_init__(self):
        check_fields(self, "optim")
        if self.schedule == "cosine" and not (self.max_steps and self.max_steps > 0):
            raise ValueError("optim.schedule=cosine needs trainer.max_steps > 0")

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at optimiser step ``step``."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.schedule == "constant":
            return warm
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / self.max_steps)))

    def configure(self, parameters):
        """What ``LightningModule.configure_optimizers`` returns."""
        optimiser = torch.optim.AdamW(parameters, lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant" and not self.warmup_steps:
            return optimiser
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, self.lr_factor)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
