"""The LightningModule shared by every model (docs/design.md, The model): it trains a likelihood
model (a :class:`~trufl.latent.LatentVariableModel`: dequantiser + prior) on the
weighted ELBO and logs the contract's metrics; the maths lives in :mod:`trufl.objective`, generation in
:mod:`trufl.sampling`, the schedule in :mod:`trufl.optim`.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from .condition import Condition
from .data.base import Task
from .metrics import LN2
from .objective import Terms, bits_metrics, check_finite, iwbo, weighted_loss
from .optim import OptimSettings
from .sampling import EvalSettings, Generation, evaluate_generation
from .weighting import Constant


class LikelihoodModule(pl.LightningModule):
    """Args:
    model: the likelihood model (``terms``, ``log_weight``, ``generate``, ``log_support_mass``).
    weighting: schedule returning ``(recon_factor, kl_factor)`` per step.
    recon_weight, kl_weight: the loss weights (top-level config keys).
    optim: optimiser settings; evaluation: test-time settings.
    check_finite_every: check the loss terms for NaN/inf every n steps (0: never).
    """

    def __init__(self, model: nn.Module, weighting=None, recon_weight: float = 1.0, kl_weight: float = 1.0,
                 optim: OptimSettings | None = None, evaluation: EvalSettings | None = None, check_finite_every: int = 1):
        super().__init__()
        self.model = model
        self.weighting = weighting or Constant()
        self.recon_weight, self.kl_weight = float(recon_weight), float(kl_weight)
        self.optim = optim or OptimSettings()
        self.evaluation = evaluation or EvalSettings()
        self.check_finite_every = check_finite_every
        self.generation: Generation | None = None  # filled at the end of testing
        # no save_hyperparameters: the resolved config is logged once and kept in results.json

    def terms(self, batch: dict) -> tuple[Terms, Tensor, Condition | None]:
        condition = batch.get("condition")
        return self.model.terms(batch["x"], batch["mask"], condition), batch["mask"], condition

    def _log_split(self, split: str, metrics: dict[str, Tensor], n_tokens: int, **kw) -> None:
        for name, value in metrics.items():
            self.log(f"{split}/{name}", value, batch_size=n_tokens, **kw)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        t, mask, _ = self.terms(batch)
        recon_f, kl_f = self.weighting(self.global_step)
        loss = weighted_loss(t, mask, self.recon_weight * recon_f, self.kl_weight * kl_f)
        if self.check_finite_every and self.global_step % self.check_finite_every == 0:
            check_finite(loss, t, mask, self.global_step)
        n = int(mask.sum().clamp_min(1))
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=n)
        self._log_split("train", bits_metrics(t, mask), n, on_step=True, on_epoch=False)
        return loss

    def _eval_step(self, split: str, batch: dict) -> None:
        t, mask, condition = self.terms(batch)
        n = int(mask.sum())
        self._log_split(split, bits_metrics(t, mask), n, on_step=False, on_epoch=True, sync_dist=True)
        if split == "test" and self.evaluation.iw_samples > 0 and "iwbo_bits" not in self.model.not_applicable:
            bound = iwbo(self.model, batch["x"], mask, self.evaluation.iw_samples, condition)
            self.log("test/iwbo_bits", -bound.sum() / n / LN2, batch_size=n, on_epoch=True, sync_dist=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        task: Task = self.trainer.datamodule
        self.generation = evaluate_generation(self.model, task, self.evaluation)
        for name, value in self.generation.metrics.items():
            self.log(name, value)

    def configure_optimizers(self):
        return self.optim.configure(self.parameters())

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if self.optim.clips_at(self.global_step):  # optim.clip_steps: the first steps only
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
