"""Objects from the composed config that need no LightningModule: any node (``build``) and the
likelihood model (``build_likelihood``). :mod:`trufl.build` adds the module, the logger, the
callbacks and the trainer; :class:`~trufl.model.LikelihoodModule` rebuilds itself from a
checkpoint's config with these (no import of :mod:`trufl.build`, which imports the module)."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig
from torch import nn

from .data.corpora import HubUnavailableError
from .dequantisers.base import Dequantiser
from .latent import LatentVariableModel


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
