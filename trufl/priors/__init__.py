"""Priors over the latent sequence ``z [B, T, D]``."""

from .ar_lstm import ARLSTMPrior
from .base import Prior, StandardLogisticPrior
from .set_coupling import SetCouplingPrior

__all__ = ["Prior", "StandardLogisticPrior", "ARLSTMPrior", "SetCouplingPrior"]
