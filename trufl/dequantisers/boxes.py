"""TRUFL's boxes: the parameters of q(z|k) as bounds in the logistic's CDF space and the
per-dimension maths the dequantiser and its boundary gradient share."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..distributions import logistic_log_pdf
from .base import select_rows


class Boxes(NamedTuple):
    """TRUFL's boxes, each field ``[K, D]`` (``[..., K, D]`` with a context, ``[..., D]``
    after :meth:`select`): the CDF-space lower bound ``a`` and log width ``log_w``,
    the per-category location ``loc`` and log-scale ``log_s``, and the box in z-space
    ``[zlo, zhi]``. Membership tests and samples both use ``zlo/zhi`` so a sample is
    always inside its own box."""

    a: Tensor
    log_w: Tensor
    loc: Tensor
    log_s: Tensor
    zlo: Tensor
    zhi: Tensor

    @property
    def b(self) -> Tensor:
        """Upper CDF-space bound."""
        return self.a + self.log_w.exp()

    def select(self, x: Tensor) -> Boxes:
        """The boxes of categories ``x [...]``: every field ``[..., D]``."""
        return Boxes(*(select_rows(v, x) for v in self))

    def per_dim(self, z: Tensor, location_scale: bool) -> tuple[Tensor, Tensor]:
        """Finite per-dimension log densities of q(z|k) and memberships of ``z [..., D]`` in
        every box, each ``[..., K, D]``. ``location_scale``: the boxes have their own
        location and scale (else a shared base: one logistic density per token)."""
        zk = z.unsqueeze(-2)
        if location_scale:
            log_d = logistic_log_pdf((zk - self.loc) * torch.exp(-self.log_s)) - self.log_s - self.log_w
        else:
            log_d = logistic_log_pdf(zk) - self.log_w
        member = (zk >= self.zlo) & (zk <= self.zhi)
        return log_d, member


def grid_partition(num_categories: int, dim: int, gap: float) -> tuple[Tensor, Tensor]:
    """Disjoint initial boxes: ``n`` intervals per dimension with ``n^D >= K``.

    Category k sits on the cell whose base-n digits are k's, so no two boxes
    share a cell (Argmax's binary code is the n = 2 case). Each cell is shrunk
    by ``gap`` (a fraction of its width) on both sides. Returns ``a, w [K, D]``.
    """
    n = 1
    while n**dim < num_categories:
        n += 1
    k = torch.arange(num_categories)
    digits = torch.stack([(k // n**d) % n for d in range(dim)], dim=-1).double()  # [K, D]
    a = (digits + gap) / n
    w = torch.full_like(a, (1 - 2 * gap) / n)
    return a, w


def overlapping_boxes(num_categories: int, dim: int, kind: str, generator: torch.Generator | None = None
                      ) -> tuple[Tensor, Tensor]:
    """Overlapping initial boxes, the start from which TRUFL must *learn* its truncations
    (the grid starts them already apart). Returns ``a, w [K, D]``.

    * ``central``: every box on the same central interval [0.25, 0.75] of every dimension,
      shifted per category by at most 1% of its width (exactly equal boxes would receive
      exactly equal gradients from a category-symmetric prior);
    * ``random``: a random interval per box and dimension, width U(0.3, 0.7) and its
      lower bound uniform in what is left, drawn from ``generator`` (the seeded global one
      by default), so that most pairs overlap.
    """
    k = torch.arange(num_categories, dtype=torch.float64)
    if kind == "central":
        a = 0.25 + 0.005 * (k / max(num_categories - 1, 1) - 0.5)
        return a[:, None].expand(num_categories, dim).clone(), torch.full((num_categories, dim), 0.5, dtype=torch.float64)
    if kind == "random":
        w = 0.3 + 0.4 * torch.rand(num_categories, dim, generator=generator, dtype=torch.float64)
        a = (1 - w) * torch.rand(num_categories, dim, generator=generator, dtype=torch.float64)
        return a, w
    raise ValueError(f"unknown overlapping initialisation {kind!r}: central | random")
