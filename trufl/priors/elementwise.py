"""The elementwise transform of an autoregressive prior, behind one signature.

Per token, each latent dimension is mapped to the logistic base by a monotone map
whose parameters come from the prior's conditioner (``params [..., D, P]``). A prior
uses a transform in two steps:

    y, log_det = transform.normalise(z, mask)      # z-space → the transform's input (ActNorm or identity)
    now = transform.current(support)               # what the support fixes for this pass (spline knots)
    e, log_det_d = now.forward(y, params)          # all dimensions: e, log|de/dy| [..., D]
    e_d, log_det_d = now.forward_dim(y_d, params_d, d)    # one dimension (params_d [..., P])
    y_d = now.inverse_dim(e_d, params_d, d)
    features = now.features(y)                     # what the head reads of a token's earlier dims

* :class:`MixtureTransform` — ActNorm, then ``num_flows`` mixture-of-logistics CDF layers
  (Flow++ / CatNF), inverted by bracketed Newton.
* :class:`SplineTransform` — one piecewise-linear CDF in the logistic's CDF coordinate
  with knots at the support's box faces plus a uniform grid (:class:`PiecewiseLinearCDF`);
  it can be uniform on every box, as TRUFL's q is, and inverts in closed form.
* :class:`SupportMixture` — the support-matched prior: the token's latent is a mixture of
  the dequantiser's own conditionals, ``Σ_k π_k q(z|k)``, with weights π from the encoder
  (a prior built for each dequantiser's support, as the spline is for TRUFL's).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..support import Support
from .layers import ActNorm, MaskedHead
from .transforms import MixtureLogisticCDF, PiecewiseLinearCDF

TransformKind = Literal["mixture", "spline", "support", "auto"]
HeadFeatures = Literal["plain", "elu"]
ScaleBounds = Literal["fixed", "learned"]
HeadInit = Literal["spread", "default"]


class MixtureTransform(nn.Module):
    """ActNorm + ``num_flows`` mixture-of-logistics CDF layers of ``num_mixtures`` components
    per dimension; the head's output for a dimension holds every layer's parameters.

    Options (defaults: this repository's; the others CatNF's reference prior):
    ``actnorm`` — the data-initialised ActNorm first (False: the layers read z itself);
    ``features`` — what the head reads of earlier dimensions: ``plain`` y, or ``elu``
    [y, elu(y), elu(−y)]; ``scale_bounds`` — ``fixed`` (α in ±3, log-scales in ±6) or
    ``learned`` (CatNF's, :class:`~trufl.priors.transforms.MixtureLogisticCDF`);
    ``head_init`` — ``spread`` (:meth:`init_head`) or ``default`` (nn.Linear's throughout)."""

    def __init__(self, dim: int, num_mixtures: int, num_flows: int, actnorm: bool = True, features: HeadFeatures = "plain",
                 scale_bounds: ScaleBounds = "fixed", head_init: HeadInit = "spread"):
        super().__init__()
        if num_flows < 1 or num_mixtures < 1:
            raise ValueError(f"prior.num_flows and prior.num_mixtures must be >= 1, got {num_flows}, {num_mixtures}")
        self.dim, self.num_flows = dim, num_flows
        self.actnorm = ActNorm(dim) if actnorm else None
        self.cdf = MixtureLogisticCDF(num_mixtures)
        self.features_kind, self.head_init = features, head_init
        self.params_per_dim, self.features_per_dim = num_flows * self.cdf.num_params, 3 if features == "elu" else 1
        if scale_bounds == "learned":  # log-bounds of α per dimension and of each component's log-scale
            self.alpha_log_bound = nn.Parameter(torch.zeros(num_flows, dim))
            self.scale_log_bound = nn.Parameter(torch.zeros(num_flows, dim, num_mixtures))
        else:
            self.alpha_log_bound = self.scale_log_bound = None

    def normalise(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.actnorm(z, mask) if self.actnorm is not None else (z, torch.zeros_like(z[..., 0]))

    def denormalise(self, y: Tensor) -> Tensor:
        return self.actnorm.inverse(y) if self.actnorm is not None else y

    def _bounds(self, layer: int, d: int | None) -> tuple[Tensor, Tensor] | None:
        """Layer ``layer``'s learned log-bounds for dimension ``d`` (None: every dimension)."""
        if self.alpha_log_bound is None:
            return None
        at = (layer,) if d is None else (layer, d)
        return self.alpha_log_bound[at], self.scale_log_bound[at]

    def current(self, support: Support) -> MixtureTransform:
        return self  # nothing depends on the support

    def init_head(self, head: MaskedHead) -> None:
        """As the spline's head: small random output weights (nn.Linear's), so the encoder
        gets a gradient from the first step, and a bias with the components' means spread
        over [−2, 2] (the rest 0) so the components differ. ``head_init=default``: nn.Linear's
        init untouched (CatNF's reference)."""
        if self.head_init == "default":
            return
        M = self.cdf.M
        with torch.no_grad():
            head.out.bias.zero_()
            bias = head.out.bias.view(self.dim, self.num_flows, self.cdf.num_params)
            bias[..., M : 2 * M] = torch.linspace(-2, 2, M)

    def _layers(self, params: Tensor) -> Tensor:
        return params.view(*params.shape[:-1], self.num_flows, self.cdf.num_params)

    def forward_dim(self, y: Tensor, params: Tensor, d: int | None = 0) -> tuple[Tensor, Tensor]:
        """``y [...]``, ``params [..., P]`` → ``e [...]``, log|de/dy| ``[...]`` (dimension ``d``;
        None: ``y [..., D]`` and ``params [..., D, P]``, every dimension)."""
        p = self._layers(params)
        log_det = torch.zeros_like(y)
        for layer in range(self.num_flows):
            y, ld = self.cdf.forward(y, p[..., layer, :], self._bounds(layer, d))
            log_det = log_det + ld
        return y, log_det

    def forward(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``y [..., D]``, ``params [..., D, P]`` → ``e [..., D]``, log|de/dy| ``[..., D]``."""
        return self.forward_dim(y, params, None)

    def inverse_dim(self, e: Tensor, params: Tensor, d: int = 0) -> Tensor:
        p = self._layers(params)
        for layer in reversed(range(self.num_flows)):
            e = self.cdf.inverse(e, p[..., layer, :], self._bounds(layer, d))
        return e

    def features(self, y: Tensor) -> Tensor | None:
        if self.dim == 1:
            return None
        return torch.stack([y, F.elu(y), F.elu(-y)], dim=-1) if self.features_kind == "elu" else y


class SplineTransform(nn.Module):
    """A piecewise-linear CDF in σ(z) with knots at the support's ``num_faces`` box faces
    per dimension plus ``num_bins`` uniform bins; no ActNorm (the knots live in z's own
    coordinates). The head's output for a dimension is one height per bin; what it reads
    of an earlier dimension is that coordinate's bin, one-hot (a box is a product of bins).

    ``num_bins=None``: 1 when q is uniform on its boxes (TRUFL), so each bin is a box or a
    gap and the prior is a categorical distribution over boxes with q's shape inside each
    (measured best), else 16."""

    def __init__(self, dim: int, support: Support, num_bins: int | None = None):
        super().__init__()
        if num_bins is None:
            num_bins = 1 if support.uniform and support.num_faces else 16
        if num_bins < 1:
            raise ValueError(f"prior.num_bins must be >= 1, got {num_bins}")
        self.dim, self.num_bins, self.num_faces = dim, num_bins, support.num_faces
        self.cdf = PiecewiseLinearCDF()
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # the knots' device and dtype
        self.params_per_dim = self.features_per_dim = num_bins + support.num_faces

    def normalise(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z, torch.zeros_like(z[..., 0])

    def denormalise(self, y: Tensor) -> Tensor:
        return y

    def init_head(self, head: MaskedHead) -> None:
        """Small random output weights (nn.Linear's) and a zero bias: near the standard
        logistic, and the encoder learns from the first step (zero weights cut its
        gradient: val 1.640 vs 1.576 bits/char after 1500 steps of the default job)."""
        nn.init.zeros_(head.out.bias)

    def current(self, support: Support) -> SplineAt:
        """The spline at the support's current faces: knots ``[D, num_bins + num_faces + 1]``."""
        grid = torch.linspace(0, 1, self.num_bins + 1, device=self.anchor.device, dtype=self.anchor.dtype)
        grid = grid.expand(self.dim, -1)
        if self.num_faces == 0:
            return SplineAt(self, grid)
        faces = support.faces()
        if faces is None or faces.shape != (self.dim, self.num_faces):
            got = None if faces is None else tuple(faces.shape)
            raise ValueError(f"prior.transform=spline was built for {self.num_faces} box faces per dimension, got {got}")
        return SplineAt(self, torch.sort(torch.cat([grid, faces.to(grid.dtype).clamp(0, 1)], dim=1), dim=1).values)


class SplineAt:
    """A :class:`SplineTransform` at fixed knots (one pass)."""

    def __init__(self, spline: SplineTransform, knots: Tensor):
        self.spline, self.knots = spline, knots

    def forward(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self.spline.cdf.forward(y, self.knots, params)

    def forward_dim(self, y: Tensor, params: Tensor, d: int = 0) -> tuple[Tensor, Tensor]:
        e, log_det = self.spline.cdf.forward(y[..., None], self.knots[d : d + 1], params[..., None, :])
        return e[..., 0], log_det[..., 0]

    def inverse_dim(self, e: Tensor, params: Tensor, d: int = 0) -> Tensor:
        return self.spline.cdf.inverse(e[..., None], self.knots[d : d + 1], params[..., None, :])[..., 0]

    def features(self, y: Tensor) -> Tensor | None:
        if self.spline.dim == 1:
            return None
        return F.one_hot(self.spline.cdf.bin_index(y, self.knots), self.knots.shape[1] - 1).to(y.dtype)


class SupportMixture(nn.Module):
    """``p(z_t | h) = Σ_k π_k(h) q(z_t|k)``: a mixture of the dequantiser's conditionals (which
    must factorise over dimensions: ``Support.conditionals_fn``), its weights from the head's
    first dimension (K logits). As a flow, dimension d maps through its conditional CDF given
    the earlier ones, ``F_d = Σ_k w_kd Q_kd(z_d)`` with ``w_kd ∝ π_k Π_{d'<d} q(z_d'|k)``, so
    the density is exactly the mixture and every prior sample lies in the support (log Z = 0).
    For TRUFL it is the box-face spline with one bin per box and no mass in the gaps."""

    inverts_tokens = True

    def __init__(self, dim: int, support: Support):
        super().__init__()
        if support.conditionals_fn is None:
            raise ValueError("prior.transform=support needs a dequantiser whose q(z|k) factorises over dimensions "
                             "without a context (TRUFL, CatNF without linear flows, Argmax binary, uniform)")
        self.dim = dim
        self.params_per_dim, self.features_per_dim = support.num_categories, 1

    def normalise(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z, torch.zeros_like(z[..., 0])

    def denormalise(self, y: Tensor) -> Tensor:
        return y

    def init_head(self, head: MaskedHead) -> None:
        """Random output weights as the other transforms' heads, zero bias: uniform weights π."""
        nn.init.zeros_(head.out.bias)

    def current(self, support: Support) -> SupportMixtureAt:
        return SupportMixtureAt(self.dim, support.conditionals_fn, cancel_gradients=self.training)


class SupportMixtureAt:
    """A :class:`SupportMixture` with the dequantiser's current conditionals (one pass)."""

    inverts_tokens = True  # later dimensions' weights follow from the earlier ones, not from the head

    def __init__(self, dim: int, conditionals, cancel_gradients: bool = False):
        self.dim, self.conditionals, self.cancel_gradients = dim, conditionals, cancel_gradients

    def _flow(self, y: Tensor, log_pi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``y [..., D]``, ``log_pi [..., K]`` → ``logit F_d``, ``log p(y_d | y_<d)`` and
        ``log F_d + log(1 − F_d)``, each ``[..., D]`` (the first is ±inf below/above every
        support and constant across a gap between supports, so it stays monotone)."""
        log_pdf, log_cdf, log_sf = self.conditionals(y)  # [..., K, D]
        earlier = torch.cat([torch.zeros_like(log_pdf[..., :1]), torch.cumsum(log_pdf, dim=-1)[..., :-1]], dim=-1)
        log_w = torch.log_softmax(log_pi.unsqueeze(-1) + earlier, dim=-2)  # w_kd ∝ π_k Π_{d'<d} q(y_d'|k)
        log_w = torch.nan_to_num(log_w, nan=float("-inf"))  # earlier dims outside every support: no weight
        log_dens, log_f, log_s = (torch.logsumexp(log_w + t, dim=-2) for t in (log_pdf, log_cdf, log_sf))
        return log_f - log_s, log_dens, log_f + log_s

    def _finite(self, y: Tensor, log_pi: Tensor) -> tuple[Tensor, Tensor]:
        """e and log|de/dy|; outside every support the density is 0: e = 0 and log|det| = −inf."""
        e, log_dens, log_fs = self._flow(y, log_pi)
        # On the logistic base (the only one allowed), log p(e) = log F + log(1 − F) = log_fs, so the prior's
        # log density is log_dens exactly. Near a support's edge (F → 0 or 1) e and log_fs are each unbounded
        # and cancel; in training their gradients went NaN (every parameter NaN after 34 steps of the TRUFL
        # text job), so there they are taken out: values unchanged, the gradient is log_dens's. In eval the
        # map stays a flow with its own Jacobian (tests/test_flows.py).
        if self.cancel_gradients:
            e, log_fs = e.detach(), log_fs.detach()
        inside = torch.isfinite(log_dens)
        return torch.where(inside, e, torch.zeros_like(e)), torch.where(inside, log_dens - log_fs, log_dens)

    def forward(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._finite(y, params[..., 0, :])

    def forward_dim(self, y: Tensor, params: Tensor, d: int = 0) -> tuple[Tensor, Tensor]:
        """D = 1 (the conditional CDF the support-mass estimator reads: e stays monotone, ±inf outside)."""
        if d or self.dim != 1:
            raise ValueError("the support-matched transform evaluates one dimension alone only for D = 1")
        e, log_dens, log_fs = self._flow(y[..., None], params)
        return e[..., 0], (log_dens - log_fs)[..., 0]

    def features(self, y: Tensor) -> Tensor | None:
        return None if self.dim == 1 else torch.zeros_like(y)[..., None]  # π reads the encoder alone

    @torch.no_grad()
    def inverse_token(self, e: Tensor, params: Tensor, iterations: int = 120) -> Tensor:
        """``e [n, D]`` → ``y [n, D]``, dimension by dimension, by bisection in float64 on each
        monotone conditional CDF (bracket ±60 in z, resolved to 1e-34)."""
        log_pi = params[:, 0].double()
        y = torch.zeros_like(e, dtype=torch.float64)
        for d in range(self.dim):
            lo = torch.full_like(e[:, d], -60.0, dtype=torch.float64)
            hi = torch.full_like(lo, 60.0)
            for _ in range(iterations):
                mid = 0.5 * (lo + hi)
                trial = torch.cat([y[:, :d], mid[:, None], y[:, d + 1:]], dim=1)
                above = self._flow(trial, log_pi)[0][:, d] > e[:, d].double()  # logit F_d is monotone in y_d
                hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
            y[:, d] = 0.5 * (lo + hi)
        return y.to(e.dtype)


#: the mixture's options at their defaults (a spline takes none of them)
MIXTURE_DEFAULTS = {"actnorm": True, "features": "plain", "scale_bounds": "fixed", "head_init": "spread"}


def make_transform(kind: TransformKind, support: Support, num_bins: int | None, num_mixtures: int,
                   num_flows: int, **mixture_options) -> MixtureTransform | SplineTransform | SupportMixture:
    """``auto``: a spline when the support has box faces (TRUFL, Argmax), else a mixture
    (CatNF: a spline with uniform bins in CDF space cannot follow its narrow logistic
    bumps; sets_shuffle, CatNF D=1, 1000 steps: 3.79 bits spline vs 3.44 mixture).
    ``mixture_options``: :class:`MixtureTransform`'s (keys of :data:`MIXTURE_DEFAULTS`)."""
    if kind == "auto":
        kind = "spline" if support.num_faces else "mixture"
    if kind == "spline":
        changed = sorted(k for k, v in mixture_options.items() if v != MIXTURE_DEFAULTS[k])
        if changed:
            raise ValueError(f"prior.transform=spline takes none of the mixture's options, got {changed}")
        return SplineTransform(support.dim, support, num_bins)
    if kind == "mixture":
        return MixtureTransform(support.dim, num_mixtures, num_flows, **mixture_options)
    if kind == "support":
        changed = sorted(k for k, v in mixture_options.items() if v != MIXTURE_DEFAULTS[k])
        if changed:
            raise ValueError(f"prior.transform=support takes none of the mixture's options, got {changed}")
        return SupportMixture(support.dim, support)
    raise ValueError(f"prior.transform={kind!r} must be one of ('mixture', 'spline', 'support', 'auto')")
