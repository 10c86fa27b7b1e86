"""Priors over the latent sequence ``z [B, T, D]``, each built for a dequantiser's support."""

from .autoregressive import AutoregressivePrior
from .base import LogisticBaseFlow, Prior, StandardLogisticPrior
from .coupling import GraphCouplingPrior, GridCouplingPrior, SetCouplingPrior
from .encoders import CausalTransformerEncoder, LSTMEncoder

__all__ = ["Prior", "LogisticBaseFlow", "StandardLogisticPrior", "AutoregressivePrior", "LSTMEncoder",
           "CausalTransformerEncoder", "SetCouplingPrior", "GraphCouplingPrior", "GridCouplingPrior"]
