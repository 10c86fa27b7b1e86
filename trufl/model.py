"""The LightningModule shared by every model (docs/design.md, The model): it trains a likelihood
model (a :class:`~trufl.latent.LatentVariableModel`: dequantiser + prior) on the
weighted ELBO and logs the contract's metrics; the maths lives in :mod:`trufl.objective`, generation in
:mod:`trufl.sampling`, the schedule in :mod:`trufl.optim`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from . import checkpoint as ckpt
from .builders import build, build_likelihood
from .condition import Condition
from .config import to_container
from .data.base import Task
from .metrics import LN2
from .objective import Terms, bits_metrics, check_finite, iwbo, weighted_loss
from .optim import OptimSettings
from .sampling import EvalSettings, Generation, evaluate_generation
from .weighting import Constant
from .precision import no_autocast


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
        #: the resolved config and K it was built from (:meth:`from_config`), saved in every checkpoint
        #: (not save_hyperparameters: the constructor takes built objects, not the config)
        self.config: dict | None = None
        self.num_categories: int | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig, num_categories: int) -> LikelihoodModule:
        """The module for a task with ``num_categories`` categories, built from the composed
        config; its checkpoints carry ``cfg`` (resolved) and K, so
        :meth:`load_from_checkpoint` needs nothing else."""
        optim = OptimSettings(**cfg.optim, max_steps=cfg.trainer.get("max_steps"))
        module = cls(
            build_likelihood(cfg, num_categories), build(cfg.weighting), cfg.recon_weight, cfg.kl_weight,
            optim=optim, evaluation=EvalSettings(**cfg.eval), check_finite_every=cfg.check_finite_every,
        )
        module.config, module.num_categories = to_container(cfg), int(num_categories)
        return module

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.config is not None:  # plain dicts, lists and scalars: loadable with weights_only=True
            checkpoint[ckpt.CONFIG_KEY] = self.config
            checkpoint[ckpt.CATEGORIES_KEY] = self.num_categories

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, map_location="cpu", hparams_file=None,
                             strict: bool | None = None, weights_only: bool = True, *,
                             config: str | Path | Mapping | DictConfig | None = None, **kwargs) -> LikelihoodModule:
        """The module of a checkpoint (or of a run directory's ``checkpoints/last.ckpt``),
        rebuilt from the config the checkpoint carries: no Hydra needed (docs/checkpoints.md).

        ``config`` replaces the stored config (a run's ``results.json``, a dict or a DictConfig):
        for checkpoints from before checkpoints carried one, or to change ``eval.*``. It must
        describe the same model. Loaded with ``weights_only=True`` unless told otherwise; on the CPU
        unless ``map_location`` says otherwise. Lightning's ``hparams_file`` and keyword overrides
        do not apply: the constructor takes built objects, not hyper-parameters."""
        if hparams_file is not None or kwargs:
            given = ["hparams_file"] * (hparams_file is not None) + sorted(kwargs)
            raise TypeError(f"LikelihoodModule.load_from_checkpoint takes no {', '.join(given)}: the module is "
                            "rebuilt from the checkpoint's config; pass config=<changed config> instead")
        path = ckpt.checkpoint_file(checkpoint_path)
        state = ckpt.read(path, map_location, weights_only)
        return cls.from_checkpoint(state, path, config, strict=True if strict is None else strict)

    @classmethod
    def from_checkpoint(cls, state: dict, path: Path, config: str | Path | Mapping | DictConfig | None = None,
                        strict: bool = True) -> LikelihoodModule:
        """The module of an already read checkpoint ``state`` (read from ``path``, named in errors)."""
        if config is None:
            stored, num_categories = ckpt.stored_config(state, path)
            cfg = OmegaConf.create(stored)
        else:
            cfg = ckpt.config_from(config)
            num_categories = state.get(ckpt.CATEGORIES_KEY)
        if num_categories is None:
            num_categories = ckpt.num_categories(cfg)
        with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG as it was
            module = cls.from_config(cfg, num_categories)
        module.on_load_checkpoint(state)
        module.load_state_dict(state["state_dict"], strict=strict)
        device = next((t.device for t in state["state_dict"].values() if isinstance(t, Tensor)), None)
        return module.to(device) if device is not None else module

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
        with no_autocast():  # trainer.precision=bf16-mixed trains in bf16; every reported number is float32
            self._evaluate(split, batch)

    def _evaluate(self, split: str, batch: dict) -> None:
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
        with no_autocast():  # samples from the float32 model (a bf16 inverse matches its forward only to bf16)
            self.generation = evaluate_generation(self.model, task, self.evaluation)
        for name, value in self.generation.metrics.items():
            self.log(name, value)

    def configure_optimizers(self):
        return self.optim.configure(self.parameters())

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if self.optim.clips_at(self.global_step):  # optim.clip_steps: the first steps only
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
