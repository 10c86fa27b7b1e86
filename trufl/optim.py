"""The optimiser and its learning-rate schedule (the ``optim`` config section)."""

from __future__ import annotations

import math
from typing import Literal, get_args
from dataclasses import dataclass

import torch

Schedule = Literal["constant", "cosine"]
SCHEDULES = get_args(Schedule)


@dataclass
class OptimSettings:
    """AdamW with a linear warm-up, then a constant or cosine (to 0 at ``max_steps``) rate."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    max_steps: int | None = None

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
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
