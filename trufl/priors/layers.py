"""Flow building blocks: ActNorm, an invertible linear map and masked (MADE) layers.

Every transform returns its output and its log-determinant contribution; inverses
are explicit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..precision import flow_input, no_autocast



class ActNorm(nn.Module):
    """Per-dimension affine ``y = (z + bias) · exp(log_scale)`` with data-dependent init.

    The first call in training mode sets bias and scale so that the batch's
    output has zero mean and unit variance per dimension (Glow). Shapes:
    z ``[..., D]``; log-determinant per position ``[...]``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def initialise(self, z: Tensor, mask: Tensor | None = None) -> None:
        """Mean and std per dimension over the rows of ``z`` ``[..., D]`` (those in
        ``mask``), pooled over every process under distributed training, so that all
        replicas start from the same parameters."""
        flat = z.reshape(-1, z.shape[-1]) if mask is None else z[mask]
        count_and_sum = _sum_over_processes(torch.cat([flat.new_tensor([flat.shape[0]]), flat.sum(0)]))
        count, mean = count_and_sum[0], count_and_sum[1:] / count_and_sum[0].clamp_min(1)
        if count < 2:  # the same decision on every rank: the count is global
            return
        std = (_sum_over_processes((flat - mean).square().sum(0)) / (count - 1)).sqrt()
        self.bias.copy_(-mean)
        self.log_scale.copy_(-std.clamp_min(1e-3).log())
        self.initialised.fill_(True)

    def forward(self, z: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialised:
            self.initialise(z.detach(), mask)
        y = (z + self.bias) * self.log_scale.exp()
        return y, self.log_scale.sum().expand(z.shape[:-1])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) - self.bias


def _sum_over_processes(x: Tensor) -> Tensor:
    """``x`` summed over the processes of a distributed run (all must call this), else ``x``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(x)
    return x


class InvertibleLinear(nn.Module):
    """``y = z Wᵀ`` mixing the latent dimensions (Glow's 1×1 convolution), W
    initialised to a random rotation. Shapes: z ``[..., D]``; log-determinant
    per position ``[...]``. D is small, so W is kept whole (no LU)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(dim, dim))[0])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        with no_autocast():  # part of the flow: float32 under bf16 autocast
            return z @ self.weight.T, torch.linalg.slogdet(self.weight)[1].expand(z.shape[:-1])

    def inverse(self, y: Tensor) -> Tensor:
        with no_autocast():
            return torch.linalg.solve(self.weight, y.unsqueeze(-1)).squeeze(-1)


class MaskedLinear(nn.Linear):
    """Linear layer with a fixed connectivity mask (MADE); the mask is applied
    functionally in ``forward``, never by editing the weights in place."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.float())
        self.dense = bool(mask.all())  # e.g. every layer when D = 1: skip the product

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight if self.dense else self.weight * self.mask, self.bias)


class MaskedHead(nn.Module):
    """Parameters for each latent dimension d from a context h and features of ``z[..., :d]``.

    Input: h ``[..., H]`` and per-dimension features ``[..., D, F]`` (``F`` =
    ``features_per_dim``; plain z is ``F = 1``); output ``[..., D, P]``: the output
    for dimension d sees the context and the features of dimensions ``< d`` only, so
    the last dimension's features are never read (and not taken: with D = 1 the
    features may be None). ``layers`` masked GELU layers of width ``hidden`` (the second
    and later with a residual) before the masked output layer; 0 is a linear readout
    (like a categorical model's softmax layer).
    ``zero_out``: zero output weights (the output starts at the bias for every input; no
    gradient reaches the context until they move), else nn.Linear's small random ones.
    ``feature_embed > 0``: each earlier dimension's features first pass through their own
    linear map to that width and a GELU; ``blocks``: dimension d's output reads only the last
    hidden units of degree d (CatNF's masked feed-forward has both).
    """

    def __init__(self, context: int, dim: int, hidden: int, params_per_dim: int, features_per_dim: int = 1,
                 zero_out: bool = True, layers: int = 2, feature_embed: int = 0, blocks: bool = False):
        super().__init__()
        if hidden < 1 or layers < 0 or feature_embed < 0:
            raise ValueError(f"head width must be >= 1, its layers and feature embedding >= 0, got width {hidden}, "
                             f"layers {layers}, feature embedding {feature_embed}")
        self.dim, self.params_per_dim = dim, params_per_dim
        self.embed = None
        if feature_embed and dim > 1:  # block-diagonal: dimension j's features to its own E units
            block = torch.arange(dim - 1)
            self.embed = MaskedLinear((dim - 1) * features_per_dim, (dim - 1) * feature_embed,
                                      block.repeat_interleave(feature_embed)[:, None] == block.repeat_interleave(features_per_dim)[None, :])
            features_per_dim = feature_embed
        feature_deg = torch.arange(1, dim).repeat_interleave(features_per_dim)  # dims 1..D-1 (the last is never read)
        in_deg = torch.cat([torch.zeros(context), feature_deg])  # context: degree 0
        out_deg = torch.arange(dim).repeat_interleave(params_per_dim) + 1  # dim d has degree d+1
        hid_deg = torch.arange(hidden) % max(dim, 1)  # degrees 0..D-1
        self.inp = MaskedLinear(context + (dim - 1) * features_per_dim, hidden, hid_deg[:, None] >= in_deg[None, :]) if layers else None
        self.mid = nn.ModuleList(MaskedLinear(hidden, hidden, hid_deg[:, None] >= hid_deg[None, :]) for _ in range(layers - 1))
        last_deg = hid_deg if layers else in_deg
        reads = out_deg[:, None] == last_deg[None, :] + 1 if blocks and layers else out_deg[:, None] > last_deg[None, :]
        self.out = MaskedLinear(last_deg.numel(), dim * params_per_dim, reads)
        if zero_out:  # the output is the bias alone until the weights move
            nn.init.zeros_(self.out.weight)

    def forward(self, h: Tensor, features: Tensor | None) -> Tensor:
        """h ``[..., H]``, features ``[..., D]`` or ``[..., D, F]`` (None if D = 1) → ``[..., D, P]``."""
        lead = h.shape[:-1]
        a = h
        if self.dim > 1:
            features = features if features.dim() > h.dim() else features.unsqueeze(-1)  # [..., D, F]
            earlier = features[..., : self.dim - 1, :].reshape(*lead, -1)
            a = torch.cat([h, F.gelu(self.embed(earlier)) if self.embed is not None else earlier], dim=-1)
        if self.inp is not None:
            a = F.gelu(self.inp(a))
        for layer in self.mid:
            a = F.gelu(layer(a)) + a
        return flow_input(self.out(a)).view(*lead, self.dim, self.params_per_dim)
