"""TRUFL's boundary gradient: what the pathwise derivative of ``E_q[log p(x|z)]``
misses at the faces of the boxes (docs/design.md, Dequantisers).

Inside an overlap the Bayes posterior p(x|z) is constant in z, so moving a box
changes the expectation only through the jump of the integrand where the
sample crosses another box's face. Two ways to get that derivative:

* :func:`exact_recon_1d` — D = 1 and a shared base: the expectation itself, in
  closed form over the cells cut by the faces (exact value and derivative);
* :func:`face_surrogate` — any D: a zero-valued term whose gradient is an
  unbiased estimate of the face-crossing part.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ..distributions import NEG_INF, logistic_log_pdf
from .base import select_rows
from .boxes import Boxes


def exact_recon_1d(x: Tensor, box: Boxes) -> Tensor:
    """``E_{q(z|x)}[log p(x|z)]`` exactly, D = 1 and a shared base. Returns ``[...]``.

    In CDF space every q(·|k) is uniform on [a_k, b_k], so p(x|v) is
    constant on the cells between sorted box faces. Gradients flow through
    the cell lengths (the faces) and the densities 1/w_k.
    """
    if box.a.dim() == 2 and x.numel() > box.a.shape[0]:
        # context-free boxes: the expectation depends on the category only, so compute
        # it once per category and gather (the [B, T, 2K-1] cells were ~10% of a step)
        per_category = exact_recon_1d(torch.arange(box.a.shape[0], device=x.device), box)  # [K]
        return per_category[x.long()]
    a, log_w = box.a[..., 0], box.log_w[..., 0]  # [K] or [..., K]
    b = a + log_w.exp()
    faces, _ = torch.sort(torch.cat([a, b], dim=-1), dim=-1)  # [..., 2K]
    lo, hi = faces[..., :-1], faces[..., 1:]  # [..., 2K-1] cells
    mid = (0.5 * (lo + hi)).detach()
    member = (mid.unsqueeze(-1) >= a.unsqueeze(-2)) & (mid.unsqueeze(-1) <= b.unsqueeze(-2))  # [..., C, K]
    log_norm = torch.logsumexp(torch.where(member, -log_w.unsqueeze(-2), NEG_INF), dim=-1)  # [..., C]
    a_x, b_x, log_w_x = (select_rows(t.unsqueeze(-1), x).squeeze(-1) for t in (a, b, log_w))  # [...]
    x_in = select_rows(member.transpose(-1, -2), x)  # [..., C]: cell inside box x
    lo_c = torch.minimum(torch.maximum(lo, a_x.unsqueeze(-1)), b_x.unsqueeze(-1))
    hi_c = torch.minimum(torch.maximum(hi, a_x.unsqueeze(-1)), b_x.unsqueeze(-1))
    log_post = torch.where(x_in, -log_w_x.unsqueeze(-1) - log_norm, torch.zeros_like(lo_c))
    return ((hi_c - lo_c) * log_post).sum(-1) * torch.exp(-log_w_x)


def face_surrogate(x: Tensor, z: Tensor, box: Boxes, location_scale: bool) -> Tensor:
    """Zero-valued term whose gradient is the face-crossing part of ∂E[log p(x|z)].

    In the unit cube of box x (coordinates u), the face of another box j
    at z_d = c sits at u_d = φ(c). Moving φ changes the integral by the jump
    of log p(x|z) across the face, integrated over the face; the sample's
    other coordinates give a one-point Monte Carlo estimate of that
    integral, so the estimator is unbiased for any D. The jump across the
    face of j is ``softplus(log q(z*|j) - log S)``, S the summed density of
    the *other* boxes containing the face point z* (z with z_d = c).

    q(z*|k) factorises into the density in dimension d at the face (per
    box, not per token) times the density in the other dimensions (per
    token, not per face), so S is one small matmul per dimension.
    Returns ``[...]``.
    """
    K, D = box.a.shape[-2:]
    log_d, member = box.per_dim(z, location_scale)  # [..., K, D]
    faces = torch.stack([box.zlo, box.zhi], dim=-1).transpose(-3, -2)  # [(...), D, J, 2]
    bx = box.select(x)
    bx = type(bx)(*(v[..., None, None] for v in bx))  # [..., D, 1, 1]
    phi = (torch.sigmoid((faces - bx.loc) * torch.exp(-bx.log_s)) - bx.a) * torch.exp(-bx.log_w)

    with torch.no_grad():  # the jump only scales φ's gradient
        kd = lambda t: t.transpose(-1, -2)[..., None, None]  # noqa: E731  [..., D, K, 1, 1]
        cf = faces.detach().unsqueeze(-3)  # [(...), D, 1, J, 2]
        e = (cf - kd(box.loc)) * torch.exp(-kd(box.log_s))
        log_f = (logistic_log_pdf(e) - kd(box.log_s) - kd(box.log_w)).double()  # [(...), D, K, J, 2]
        in_f = (cf >= kd(box.zlo)) & (cf <= kd(box.zhi))
        not_j = ~torch.eye(K, dtype=torch.bool, device=z.device)[:, :, None]  # [K, J, 1]: j's own density is the jump
        face_density = torch.where(in_f & not_j, log_f.exp(), 0.0).flatten(-2)  # [(...), D, K, 2J]
        log_other = (log_d.sum(-1, keepdim=True) - log_d).transpose(-1, -2).double()  # [..., D, K]
        in_other = ((member.sum(-1, keepdim=True) - member.long()) == D - 1).transpose(-1, -2)  # [..., D, K]
        other_density = torch.where(in_other, log_other.exp(), 0.0)
        if face_density.dim() == 3:  # context-free boxes: one [K, 2J] matrix per dimension
            rest = torch.einsum("...dk,dkm->...dm", other_density, face_density)
        else:
            rest = (other_density.unsqueeze(-2) @ face_density).squeeze(-2)
        rest = rest.unflatten(-1, (K, 2))  # [..., D, J, 2]
        log_j = log_other.unsqueeze(-1) + torch.diagonal(log_f, dim1=-3, dim2=-2).movedim(-1, -2)
        not_x = (F.one_hot(x.long(), K) == 0)[..., None, :, None]  # [..., 1, J, 1]
        valid = in_other.unsqueeze(-1) & not_x & (phi > 0) & (phi < 1) & (rest > 0)
        jump = F.softplus(log_j - rest.log()).to(phi.dtype)
        sign = torch.tensor([1.0, -1.0], dtype=phi.dtype, device=z.device)  # enter j at its lower face, leave at its upper
        weight = torch.where(valid, sign * jump, torch.zeros_like(jump))
    return (weight * phi).sum(dim=(-3, -2, -1))
