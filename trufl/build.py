"""Objects from the composed config: the task, the model, the logger, the callbacks
and the trainer. ``_target_``s are validated first (:mod:`trufl.config`)."""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor

from .builders import build, build_likelihood
from .callbacks import progress_bar
from .checkpoints import AtomicCheckpointIO
from .model import LikelihoodModule
from .resume import ResumeState

__all__ = ["build", "build_likelihood", "build_model", "build_logger", "build_trainer"]


def build_model(cfg: DictConfig, num_categories: int) -> LikelihoodModule:
    """The LightningModule for a task with ``num_categories`` categories; its checkpoints
    carry ``cfg`` (:meth:`LikelihoodModule.from_config`)."""
    return LikelihoodModule.from_config(cfg, num_categories)


def build_logger(cfg: DictConfig, **overrides):
    """The configured logger (None for ``logger=none``); ``overrides`` replace config values
    (a resumed run's W&B id)."""
    return instantiate(cfg.logger, **overrides) if cfg.get("logger") else None


def build_trainer(cfg: DictConfig, logger, root: str) -> pl.Trainer:
    callbacks = [build(node) for node in (cfg.get("callbacks") or {}).values()]
    if logger is None:  # it has nowhere to log to (Lightning refuses it): logger=none keeps the default callbacks usable
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks.append(ResumeState())  # always: what exact resumption needs besides Lightning's state
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(progress_bar())
    # checkpoints are written atomically beside their final path (trufl.checkpoints), unless the
    # trainer config brings its own plugins
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    return instantiate(cfg.trainer, logger=logger if logger is not None else False, callbacks=callbacks,
                       default_root_dir=str(root), **plugins)
