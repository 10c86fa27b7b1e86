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
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..support import Support
from .layers import ActNorm, MaskedHead
from .transforms import MixtureLogisticCDF, PiecewiseLinearCDF

TransformKind = Literal["mixture", "spline", "auto"]
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
        """Zero output weights (every token starts at the head's bias) and the components'
        means spread over [−2, 2] so they differ."""
        if self.head_init == "default":
            return
        M = self.cdf.M
        with torch.no_grad():
            head.out.weight.zero_()
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


#: the mixture's options at their defaults (a spline takes none of them)
MIXTURE_DEFAULTS = {"actnorm": True, "features": "plain", "scale_bounds": "fixed", "head_init": "spread"}


def make_transform(kind: TransformKind, support: Support, num_bins: int | None, num_mixtures: int,
                   num_flows: int, **mixture_options) -> MixtureTransform | SplineTransform:
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
    raise ValueError(f"prior.transform={kind!r} must be one of ('mixture', 'spline', 'auto')")
