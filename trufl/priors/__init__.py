"""Priors over the latent sequence ``z [B, T, D]``."""

from .ar_lstm import ARLSTMPrior
from .ar_transformer import ARTransformerPrior
from .base import LogisticBaseFlow, Prior, StandardLogisticPrior
from .coupling import GraphCouplingPrior, GridCouplingPrior, SetCouplingPrior

__all__ = ["Prior", "LogisticBaseFlow", "StandardLogisticPrior", "ARLSTMPrior", "ARTransformerPrior", "SetCouplingPrior", "GraphCouplingPrior", "GridCouplingPrior"]
