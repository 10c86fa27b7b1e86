"""Objects from the composed config: the task, the model, the logger, the callbacks
and the trainer. ``_target_``s are validated first (:mod:`trufl.config`)."""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor
from torch import nn

from .callbacks import progress_bar
from .data.corpora import HubUnavailableError
from .dequantisers.base import Dequantiser
from .latent import LatentVariableModel
from .model import LikelihoodModule
from .optim import OptimSettings
from .resume import ResumeState
from .sampling import EvalSettings


def build(node: DictConfig, **kwargs):
    """``instantiate`` that surfaces our own clear errors (bad values, missing
    files, offline hub) instead of Hydra's wrapper around them. ``kwargs`` reach the
    constructor as they are (Hydra would turn objects into configs)."""
    try:
        factory = instantiate(node, _partial_=True)
    except InstantiationException as err:
        if isinstance(err.__cause__, (ValueError, OSError, HubUnavailableError)):
            raise err.__cause__ from None
        raise
    return factory(**kwargs)


def build_likelihood(cfg: DictConfig, num_categories: int) -> nn.Module:
    """The likelihood model: a categorical model when ``flow`` is one (no latent, so no
    prior or context), else context (optional), dequantiser and a prior built for the
    dequantiser's support, in that order (parameter initialisation draws from the seeded
    generator in this order)."""
    if not issubclass(get_class(cfg.flow._target_), Dequantiser):
        if cfg.get("context"):
            raise ValueError(f"flow={cfg.flow._target_} has no latent to give a context to: use context=none")
        return build(cfg.flow, num_categories=num_categories)
    context = build(cfg.context, num_categories=num_categories) if cfg.get("context") else None
    deq = build(cfg.flow, num_categories=num_categories, context_dim=context.dim if context is not None else 0)
    prior = build(cfg.prior, support=deq.support(context))  # every prior is built for the support it models
    model = LatentVariableModel(deq, prior, context)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"the model has no parameters to train (flow._target_={cfg.flow._target_}, prior._target_="
                         f"{cfg.prior._target_}): choose a prior or a dequantiser that learns, e.g. prior=ar_lstm")
    return model


def build_model(cfg: DictConfig, num_categories: int) -> LikelihoodModule:
    """The LightningModule for a task with ``num_categories`` categories."""
    optim = OptimSettings(**cfg.optim, max_steps=cfg.trainer.get("max_steps"))
    return LikelihoodModule(
        build_likelihood(cfg, num_categories), build(cfg.weighting), cfg.recon_weight, cfg.kl_weight,
        optim=optim, evaluation=EvalSettings(**cfg.eval), check_finite_every=cfg.check_finite_every,
    )


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
    return instantiate(cfg.trainer, logger=logger if logger is not None else False, callbacks=callbacks,
                       default_root_dir=str(root))
