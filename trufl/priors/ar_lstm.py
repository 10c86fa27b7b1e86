"""Autoregressive flow prior with an LSTM conditioner (CatNF / Flow++ style).

Token t, dimension d: an elementwise monotone transform maps the latent to a
logistic base. Its parameters come from an LSTM over the previous tokens plus a
masked head over the previous dimensions of the same token, so the Jacobian is
triangular and ``log p(z)`` is one parallel pass.

What the LSTM reads of the previous tokens (``inputs``):

* ``latent`` — their latents z_{<t} (the papers' setting). Under TRUFL's grid a
  category is a non-monotone function of each coordinate, so the LSTM must first
  learn to decode.
* ``decoded`` — an embedding of ``decode(z_{<t})``, the dequantiser's categories
  (one extra row for "outside every support"). The density stays normalised:
  ``p(z) = Π_t p(z_t | f(z_{<t}))`` with ``f = decode`` a function of ``z_{<t}``
  alone, so each factor is a density in z_t for every value of what it conditions
  on. Conditioning on the data x_{<t} instead would leak x into p(z) (it agrees
  with decode(z_{<t}) only where decoding is exact), so training decodes z exactly
  as sampling does.
* ``both`` — the two concatenated.

The transform of a token's latent (``transform``): ``mixture`` — ``num_flows``
mixture-of-logistics CDF layers after ActNorm, inverted by bracketed Newton; or
``spline`` — one piecewise-linear CDF in the logistic's CDF coordinate with knots
at the dequantiser's box faces plus a uniform grid (:class:`PiecewiseLinearCDF`),
which can be uniform on every box as TRUFL's q is, inverted in closed form.

Sampling carries the LSTM state forward: T LSTM steps and T·D head calls for T
tokens, never re-running the sequence per element.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import Decoding, LogisticBaseFlow
from .support import Support, cycle_rows
from .layers import ActNorm, MaskedHead
from .transforms import MixtureLogisticCDF, PiecewiseLinearCDF

Inputs = Literal["latent", "decoded", "both"]
Transform = Literal["mixture", "spline", "auto"]
INPUTS, TRANSFORMS = get_args(Inputs), get_args(Transform)


class ARLSTMPrior(LogisticBaseFlow):
    """Args:
    dim: D, latent dimensions per token.
    hidden: LSTM width.
    num_layers: LSTM layers.
    num_mixtures: logistic components per CDF layer (``transform=mixture``).
    num_flows: CDF layers per element (``transform=mixture``).
    head_hidden: width of the masked head.
    head_layers: its hidden layers (0: a linear readout of the LSTM state).
    dropout: between LSTM layers.
    inputs: ``latent | decoded | both`` (module docstring).
    embed_dim: width of the embedding of decoded tokens.
    transform: ``mixture | spline`` (module docstring), or ``auto``: spline when the
        dequantiser's support has box faces (TRUFL, Argmax), else mixture (CatNF: a
        spline with uniform bins in CDF space cannot follow its narrow logistic bumps;
        sets_shuffle, CatNF D=1, 1000 steps: 3.79 bits spline vs 3.44 mixture).
    num_bins: uniform bins of the spline besides the box faces; None: 1 when q is
        uniform on its boxes (``boxes_uniform``: TRUFL), so each bin is a box or a gap
        and the prior is a categorical distribution over boxes with q's shape inside
        each (measured best), else 16.
    num_categories: K (filled in by the job); needed to embed decoded tokens.
    num_faces: box faces per dimension of the dequantiser's support (filled in by
        the job: 2 × boxes, 0 when the support is all of R^D); spline knots.
    boxes_uniform: the dequantiser's q is uniform on its boxes in CDF coordinates
        (filled in by the job); sets ``num_bins=None``.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        num_layers: int = 1,
        num_mixtures: int = 8,
        num_flows: int = 2,
        head_hidden: int = 128,
        head_layers: int = 2,
        dropout: float = 0.0,
        inputs: Inputs = "latent",
        embed_dim: int = 64,
        transform: Transform = "mixture",
        num_bins: int | None = None,
        num_categories: int | None = None,
        num_faces: int = 0,
        boxes_uniform: bool = False,
    ):
        super().__init__(dim)
        if transform == "auto":
            transform = "spline" if num_faces else "mixture"
        if num_bins is None:
            num_bins = 1 if boxes_uniform and num_faces else 16
        if inputs not in INPUTS:
            raise ValueError(f"prior.inputs={inputs!r} must be one of {INPUTS}")
        if transform not in TRANSFORMS:
            raise ValueError(f"prior.transform={transform!r} must be one of {TRANSFORMS}")
        if num_flows < 1 or num_mixtures < 1 or num_bins < 1:
            raise ValueError("prior.num_flows, prior.num_mixtures and prior.num_bins must be >= 1")
        if inputs != "latent" and not num_categories:
            raise ValueError(f"prior.inputs={inputs} embeds decoded tokens: num_categories is needed")
        self.inputs, self.spline = inputs, transform == "spline"
        self.num_flows, self.num_bins, self.num_faces = num_flows, num_bins, num_faces
        self.actnorm = None if self.spline else ActNorm(dim)  # spline knots live in z's own coordinates
        self.start = nn.Parameter(torch.zeros(1, 1, dim)) if inputs != "decoded" else None
        lstm_in = (dim if inputs != "decoded" else 0) + (embed_dim if inputs != "latent" else 0)
        self._init_encoder(lstm_in, hidden, num_layers, dropout)
        if self.spline:
            self.transform = PiecewiseLinearCDF()
            n_bins = num_bins + num_faces
            # small random output weights, zero bias: near the standard logistic, and the LSTM learns
            # from the first step (zero weights cut its gradient: val 1.640 vs 1.576 bits/char after 1500 steps)
            self.head = MaskedHead(hidden, dim, head_hidden, n_bins, features_per_dim=n_bins, zero_out=False, layers=head_layers)
            nn.init.zeros_(self.head.out.bias)
        else:
            self.transform = MixtureLogisticCDF(num_mixtures)
            self.head = MaskedHead(hidden, dim, head_hidden, num_flows * self.transform.num_params, layers=head_layers)
            with torch.no_grad():  # spread the initial mixture means so components differ
                bias = self.head.out.bias.view(dim, num_flows, self.transform.num_params)
                bias[..., num_mixtures : 2 * num_mixtures] = torch.linspace(-2, 2, num_mixtures)
        if inputs != "latent":
            self.invalid, self.begin = num_categories, num_categories + 1  # extra embedding rows
            self.embed = nn.Embedding(num_categories + 2, embed_dim)

    # -- the sequence encoder (a subclass may replace the LSTM) --------------------
    def _init_encoder(self, in_dim: int, hidden: int, num_layers: int, dropout: float) -> None:
        self.lstm = nn.LSTM(in_dim, hidden, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)

    def _encode(self, inputs: Tensor, cond: dict) -> Tensor:
        """Outputs ``[B, T, H]`` at every position from the inputs ``[B, T, in]`` (position t
        holds what is known of tokens < t); ``cond``: the batch's conditioning."""
        return self.lstm(inputs)[0]

    def _encode_step(self, input_t: Tensor, state, t: int, cond: dict) -> tuple[Tensor, object]:
        """Position t's output ``[n, 1, H]`` from its input ``[n, 1, in]`` and the state
        carried from position t − 1 (None at t = 0)."""
        return self.lstm(input_t, state)

    @property
    def reads_tokens(self) -> bool:
        return self.inputs != "latent"

    # -- pieces ----------------------------------------------------------------
    def knots(self, readout: Decoding | None) -> Tensor | None:
        """Spline knots ``[D, num_bins + num_faces + 1]`` in CDF coordinates (None for mixtures)."""
        if not self.spline:
            return None
        grid = torch.linspace(0, 1, self.num_bins + 1, device=self.anchor.device, dtype=self.anchor.dtype)
        grid = grid.expand(self.dim, -1)
        if self.num_faces == 0:
            return grid
        faces = readout.faces() if readout is not None else None
        if faces is None or faces.shape != (self.dim, self.num_faces):
            got = None if faces is None else tuple(faces.shape)
            raise ValueError(f"prior.transform=spline expects {self.num_faces} box faces per dimension from the dequantiser, got {got}")
        return torch.sort(torch.cat([grid, faces.to(grid.dtype).clamp(0, 1)], dim=1), dim=1).values

    def _features(self, y: Tensor, knots: Tensor | None) -> Tensor | None:
        """What the masked head reads of a token's own dimensions: y (mixture) or the
        one-hot bin of each coordinate (spline, where a box is a product of bins); None
        when D = 1 (the head reads no features of the token's own last dimension)."""
        if self.dim == 1:
            return None
        if knots is None:
            return y
        return F.one_hot(self.transform.bin_index(y, knots), knots.shape[1] - 1).to(y.dtype)

    def _token_ids(self, tokens: Tensor) -> Tensor:
        return torch.where(tokens < 0, torch.full_like(tokens, self.invalid), tokens)

    def _require_readout(self, readout: Decoding | None) -> None:
        if self.reads_tokens and readout is None:
            raise ValueError(f"prior.inputs={self.inputs} reads decoded tokens: use the prior inside a LatentVariableModel")

    def _decoded(self, z: Tensor, readout: Decoding | None) -> Tensor | None:
        """Embedding rows of decode(z) ``[B, T]`` (None when the LSTM reads latents only)."""
        if not self.reads_tokens:
            return None
        self._require_readout(readout)
        with torch.no_grad():  # piecewise constant in z: nothing to differentiate
            return self._token_ids(readout.decode(z))

    def _lstm_inputs(self, y: Tensor, ids: Tensor | None) -> Tensor:
        """LSTM input at every position from the previous token: ``[B, T, in]``."""
        B = y.shape[0]
        parts = []
        if self.start is not None:
            parts.append(torch.cat([self.start.expand(B, 1, -1).to(y.dtype), y[:, :-1]], dim=1))
        if ids is not None:
            begin = torch.full_like(ids[:, :1], self.begin)
            parts.append(self.embed(torch.cat([begin, ids[:, :-1]], dim=1)).to(y.dtype))
        return torch.cat(parts, dim=-1)

    def _step_input(self, y_prev: Tensor | None, ids_prev: Tensor | None, n: int, dtype) -> Tensor:
        """LSTM input ``[n, 1, in]`` from the previous token (``None`` at t = 0), as in
        :meth:`_lstm_inputs`."""
        parts = []
        if self.start is not None:
            parts.append(self.start.expand(n, 1, -1).to(dtype) if y_prev is None else y_prev[:, None])
        if self.reads_tokens:
            if ids_prev is None:
                ids_prev = torch.full((n,), self.begin, dtype=torch.long, device=self.anchor.device)
            parts.append(self.embed(ids_prev)[:, None].to(dtype))
        return torch.cat(parts, dim=-1)

    def _params(self, h: Tensor, y: Tensor, knots: Tensor | None) -> Tensor:
        """Head output: ``[..., D, num_flows, 3M+2]`` (mixture) or ``[..., D, bins]`` (spline)."""
        params = self.head(h, self._features(y, knots))
        return params if knots is not None else params.view(*y.shape, self.num_flows, self.transform.num_params)

    # -- the flow --------------------------------------------------------------
    def forward(self, z: Tensor, mask: Tensor | None = None, readout: Decoding | None = None, **cond) -> tuple[Tensor, Tensor]:
        """z ``[B, T, D]`` → base variable e ``[B, T, D]`` and log|det| per token ``[B, T]``."""
        knots = self.knots(readout)
        if self.actnorm is not None:
            y, log_det = self.actnorm(z, mask)
        else:
            y, log_det = z, torch.zeros_like(z[..., 0])
        h = self._encode(self._lstm_inputs(y, self._decoded(z, readout)), cond)
        params = self._params(h, y, knots)
        if knots is not None:
            y, ld = self.transform.forward(y, knots, params)
            return y, log_det + ld.sum(-1)
        for layer in range(self.num_flows):
            y, ld = self.transform.forward(y, params[..., layer, :])
            log_det = log_det + ld.sum(-1)
        return y, log_det

    def _invert_token(self, h: Tensor, e_t: Tensor, knots: Tensor | None) -> Tensor:
        """One token's y ``[n, D]`` from its LSTM output ``h [n, H]`` and base ``e_t [n, D]``,
        dimension by dimension (the masked head sees the dimensions already inverted)."""
        y = torch.zeros_like(e_t)
        for d in range(self.dim):
            params = self._params(h, y, knots)[:, d]
            if knots is not None:
                v = self.transform.inverse(e_t[:, d : d + 1], knots[d : d + 1], params[:, None])[:, 0]
            else:
                v = e_t[:, d]
                for layer in reversed(range(self.num_flows)):
                    v = self.transform.inverse(v, params[:, layer, :])
            y = torch.cat([y[:, :d], v[:, None], y[:, d + 1 :]], dim=1)
        return y

    def _to_z(self, y: Tensor) -> Tensor:
        return y if self.actnorm is None else self.actnorm.inverse(y)

    @torch.no_grad()
    def _autoregress(self, n: int, length: int, readout: Decoding | None, dtype, base, cond: dict | None = None) -> Tensor:
        """z ``[n, length, D]`` token by token, carrying the LSTM (and decoder) state: token t
        inverts ``base(t, h, knots) -> e_t [n, D]`` given its LSTM output ``h [n, H]``."""
        self._require_readout(readout)
        knots = self.knots(readout)
        state = decoder_state = y_t = ids = None
        out = []
        for t in range(length):
            h, state = self._encode_step(self._step_input(y_t, ids, n, dtype), state, t, cond or {})
            y_t = self._invert_token(h[:, 0], base(t, h[:, 0], knots), knots)
            if self.reads_tokens:
                tokens, decoder_state = readout.decode_step(self._to_z(y_t), decoder_state)
                ids = self._token_ids(tokens)
            out.append(y_t)
        return self._to_z(torch.stack(out, dim=1))

    def inverse(self, e: Tensor, mask: Tensor | None = None, readout: Decoding | None = None, **cond) -> Tensor:
        """e ``[n, T, D]`` → z, token by token with the LSTM (and decoder) state carried forward."""
        return self._autoregress(e.shape[0], e.shape[1], readout, e.dtype, lambda t, h, knots: e[:, t], cond)

    @torch.no_grad()
    def inverse_recomputing(self, e: Tensor, readout: Decoding | None = None, **cond) -> Tensor:
        """Reference sampler that re-runs the LSTM over the whole prefix for every
        token (O(T²) LSTM work, as the Argmax reference code does). For tests and
        benchmarks only; :meth:`inverse` is the one to use."""
        n, T, D = e.shape
        knots = self.knots(readout)
        y = torch.zeros(n, 1, D, dtype=e.dtype, device=e.device)  # a placeholder for the next token
        for t in range(T):
            ids = self._decoded(self._to_z(y), readout) if self.reads_tokens else None
            h = self._encode(self._lstm_inputs(y, ids), cond)
            y[:, -1] = self._invert_token(h[:, -1], e[:, t], knots)
            y = torch.cat([y, torch.zeros_like(y[:, :1])], dim=1)
        return self._to_z(y[:, :-1])

    # -- support mass ----------------------------------------------------------
    def _token_cdf(self, z: Tensor, params: Tensor, knots: Tensor | None) -> Tensor:
        """D = 1: the conditional CDF of one token at points ``z [n, m]`` given its
        head output ``params [n, P]`` (every point shares its row's parameters)."""
        y = z if self.actnorm is None else self.actnorm(z[..., None])[0][..., 0]
        m = z.shape[1]
        if knots is not None:
            e, _ = self.transform.forward(y[..., None], knots, params[:, None, None].expand(-1, m, 1, -1))
            return torch.sigmoid(e[..., 0])
        p = params[:, None].expand(-1, m, -1, -1)  # [n, m, num_flows, P]
        for layer in range(self.num_flows):
            y, _ = self.transform.forward(y, p[..., layer, :])
        return torch.sigmoid(y)

    @torch.no_grad()
    def log_support_mass(self, support: Support, length: int, num_samples: int, cond: dict | None = None) -> dict:
        """``log Z`` per token by sequential importance sampling when D = 1 and the support
        is fixed intervals (merged where they overlap): each token is drawn from its conditional restricted to
        the support, whose mass m_t is exact (CDF differences at the faces), and
        ``Ẑ = mean over sequences of Π_t m_t`` is unbiased with a finite estimate even where
        whole prior sequences almost never land in the support. Otherwise Monte Carlo."""
        readout = (cond or {}).get("readout")
        others = {k: v for k, v in (cond or {}).items() if k != "readout"}
        if self.dim != 1 or support.boxes is None or (self.reads_tokens and readout is None):
            return super().log_support_mass(support, length, num_samples, cond)
        lo, hi = union_of_intervals(*(b[:, 0].to(self.anchor.dtype).clamp(-50, 50) for b in support.boxes))
        n = num_samples
        faces = torch.cat([lo, hi])[None].expand(n, -1)
        log_w = torch.zeros(n, dtype=torch.float64, device=self.anchor.device)

        def restricted(t: int, h: Tensor, knots: Tensor | None) -> Tensor:
            """Token t's base variable drawn from its conditional restricted to the support;
            its mass m_t goes into the sequence's weight."""
            nonlocal log_w
            params = self._params(h, torch.zeros(n, 1, dtype=h.dtype, device=h.device), knots)[:, 0]
            f_lo, f_hi = self._token_cdf(faces, params, knots).double().chunk(2, dim=1)
            widths = (f_hi - f_lo).clamp_min(0)  # [n, intervals]
            mass = widths.sum(-1)
            log_w = log_w + mass.clamp_min(1e-300).log()
            k = torch.multinomial(widths + 1e-300, 1)  # an interval in proportion to its mass
            u = f_lo.gather(1, k)[:, 0] + torch.rand(n, dtype=torch.float64, device=h.device) * widths.gather(1, k)[:, 0]
            return torch.logit(u.clamp(1e-15, 1 - 1e-15)).to(h.dtype)[:, None]

        self._autoregress(n, length, readout, self.anchor.dtype, restricted, cycle_rows(others, n))
        log_z = (torch.logsumexp(log_w, 0) - math.log(n)).item()
        w = torch.exp(log_w - log_w.max())
        rel_se = (w.std() / (w.mean() * math.sqrt(n))).item() if n > 1 else float("nan")  # delta method: se of log Ẑ
        return {"log_Z": log_z / length, "stderr": rel_se / length,
                "estimator": f"sequential importance sampling ({n} sequences of {length} tokens, exact per-token masses)"}


def union_of_intervals(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Disjoint intervals ``[lo, hi]`` (sorted) covering the same set as the given ones
    (TRUFL's learned boxes may overlap slightly)."""
    order = torch.argsort(lo)
    merged: list[list[float]] = []
    for a, b in zip(lo[order].tolist(), hi[order].tolist()):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return lo.new_tensor([m[0] for m in merged]), lo.new_tensor([m[1] for m in merged])
