"""Autoregressive flow prior with an LSTM conditioner (CatNF / Flow++ style).

Token t, dimension d: ``num_flows`` elementwise mixture-of-logistics CDF layers
(``y ↦ logit C(y)·e^α + β``) map the ActNorm'ed latent to a logistic base. Their
parameters come from an LSTM over the previous tokens' latents plus a masked
head over the previous dimensions of the same token, so the Jacobian is
triangular and ``log p(z)`` is one parallel pass.

Sampling carries the LSTM state forward: T LSTM steps and T·D head calls for T
tokens, never re-running the sequence per element; each element is inverted by
bracketed Newton in float64 (:meth:`MixtureLogisticCDF.inverse`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import LogisticBaseFlow
from .layers import ActNorm, MaskedHead
from .transforms import MixtureLogisticCDF


class ARLSTMPrior(LogisticBaseFlow):
    """Args:
    dim: D, latent dimensions per token.
    hidden: LSTM width.
    num_layers: LSTM layers.
    num_mixtures: logistic components per CDF layer.
    num_flows: CDF layers per element.
    head_hidden: width of the masked head.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        num_layers: int = 1,
        num_mixtures: int = 8,
        num_flows: int = 2,
        head_hidden: int = 128,
        dropout: float = 0.0,
    ):
        super().__init__(dim)
        if num_flows < 1 or num_mixtures < 1:
            raise ValueError("prior.num_flows and prior.num_mixtures must be >= 1")
        self.actnorm = ActNorm(dim)
        self.start = nn.Parameter(torch.zeros(1, 1, dim))
        self.lstm = nn.LSTM(dim, hidden, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.transform = MixtureLogisticCDF(num_mixtures)
        self.num_flows = num_flows
        self.head = MaskedHead(hidden, dim, head_hidden, num_flows * self.transform.num_params)
        with torch.no_grad():  # spread the initial mixture means so components differ
            bias = self.head.out.bias.view(dim, num_flows, self.transform.num_params)
            bias[..., num_mixtures : 2 * num_mixtures] = torch.linspace(-2, 2, num_mixtures)

    def _params(self, h: Tensor, y: Tensor) -> Tensor:
        """Head output ``[..., D, num_flows, 3M+2]``."""
        return self.head(h, y).view(*y.shape, self.num_flows, self.transform.num_params)

    def forward(self, z: Tensor, mask: Tensor | None = None, **cond) -> tuple[Tensor, Tensor]:
        """z ``[B, T, D]`` → base variable e ``[B, T, D]`` and log|det| per token ``[B, T]``."""
        y, log_det = self.actnorm(z, mask)
        shifted = torch.cat([self.start.expand(z.shape[0], 1, -1), y[:, :-1]], dim=1)
        h, _ = self.lstm(shifted)
        params = self._params(h, y)
        for layer in range(self.num_flows):
            y, ld = self.transform.forward(y, params[..., layer, :])
            log_det = log_det + ld.sum(-1)
        return y, log_det

    def _invert_token(self, h: Tensor, e_t: Tensor) -> Tensor:
        """One token's latent ``[n, D]`` from its LSTM output ``h [n, H]`` and base ``e_t [n, D]``,
        dimension by dimension (the masked head sees the dimensions already inverted)."""
        y = torch.zeros_like(e_t)
        for d in range(self.dim):
            params = self._params(h, y)[:, d]  # [n, num_flows, P]
            v = e_t[:, d]
            for layer in reversed(range(self.num_flows)):
                v = self.transform.inverse(v, params[:, layer, :])
            y = torch.cat([y[:, :d], v[:, None], y[:, d + 1 :]], dim=1)
        return y

    @torch.no_grad()
    def inverse(self, e: Tensor, mask: Tensor | None = None, **cond) -> Tensor:
        """e ``[n, T, D]`` → z, token by token with the LSTM state carried forward."""
        n, T, D = e.shape
        state = None
        inp = self.start.expand(n, 1, D).to(e.dtype)
        out = []
        for t in range(T):
            h, state = self.lstm(inp, state)
            out.append(self._invert_token(h[:, 0], e[:, t]))
            inp = out[-1][:, None]
        return self.actnorm.inverse(torch.stack(out, dim=1))

    @torch.no_grad()
    def inverse_recomputing(self, e: Tensor) -> Tensor:
        """Reference sampler that re-runs the LSTM over the whole prefix for every
        token (O(T²) LSTM work, as the Argmax reference code does). For tests and
        benchmarks only; :meth:`inverse` is the one to use."""
        n, T, D = e.shape
        y = torch.zeros(n, 0, D, dtype=e.dtype, device=e.device)
        for t in range(T):
            h, _ = self.lstm(torch.cat([self.start.expand(n, 1, D).to(e.dtype), y], dim=1))
            y = torch.cat([y, self._invert_token(h[:, -1], e[:, t])[:, None]], dim=1)
        return self.actnorm.inverse(y)
