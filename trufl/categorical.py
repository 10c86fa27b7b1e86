"""The reference row of every language-modelling table: a plain categorical LSTM
language model, ``p(x) = Π_t softmax(f(x_{<t}))[x_t]``, with no latent variable.

It is trained by the same job on the same batches as the dequantised models and
reports the same metric names where they mean something: ``nll_bits`` is its exact
negative log-likelihood. The ELBO's parts (recon, KL), decoding determinism and
accuracy, the IWBO and ``log Z`` do not exist for it; they are listed under
``not_applicable`` in ``results.json`` instead of being filled with numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .context import CausalLSTMContext
from .distributions import gather
from .objective import Terms
from .settings import Count, Injected, checked
from .precision import flow_input


class CategoricalLSTM(nn.Module):
    """Embedding → LSTM → softmax over the K categories (``flow=categorical``).

    Args:
    num_categories: K (filled in by the job).
    hidden: LSTM width (the config ties it to ``prior.hidden``, so a table compares
        models of the same size).
    embed_dim: token embedding width.
    num_layers: LSTM layers.
    """

    #: bounds and diagnostics of latent-variable models it does not have
    not_applicable = ("recon_bits", "kl_bits", "determinism", "decode_acc", "iwbo_bits", "log_Z")

    @checked("flow")
    def __init__(self, num_categories: Injected[int], hidden: Count = 256, embed_dim: Count = 64, num_layers: Count = 1):
        super().__init__()
        self.num_categories = int(num_categories)
        self.net = CausalLSTMContext(num_categories, dim=num_categories, hidden=hidden, embed_dim=embed_dim,
                                     num_layers=num_layers)

    def log_probs(self, x: Tensor) -> Tensor:
        """``log p(x_t = k | x_{<t})`` ``[B, T, K]``."""
        return F.log_softmax(flow_input(self.net(x)), dim=-1)  # float32 under bf16 autocast

    def terms(self, x: Tensor, mask: Tensor, condition=None) -> Terms:
        """Exact per-token log-likelihood ``[B, T]`` (see :meth:`Terms.exact`)."""
        return Terms.exact(gather(self.log_probs(x), x))

    @torch.no_grad()
    def generate(self, num: int, length: int, condition=None) -> Tensor:
        """``num`` sequences ``[num, length]`` by ancestral sampling, one LSTM step per token."""
        tokens, prev, state = [], None, None
        for _ in range(length):
            logits, state = self.net.step(prev, state, batch=num)
            prev = torch.multinomial(F.softmax(logits.float(), dim=-1), 1).squeeze(-1)
            tokens.append(prev)
        return torch.stack(tokens, dim=1)

    def log_support_mass(self, length: int, num_samples: int, condition=None) -> dict:
        """No latent space, so no support to renormalise to."""
        return {"not_applicable": "a categorical model has no latent support"}

    def summary(self) -> dict:
        return {"model": "categorical LSTM", "parameters": sum(p.numel() for p in self.parameters())}
