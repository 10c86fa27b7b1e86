"""Dequantisers at their numerical extremes (property tests with hypothesis).

TRUFL boxes within 1e-6 of 0 or 1 and 1e-6 wide, CatNF/Argmax scales at their
clamps, |z| up to 50 and Argmax means far negative (where softplus underflows).
Whatever the parameters: a sample lies in its own category's support with a finite
log q equal to ``log_prob_all`` there; ``log_prob_all`` is finite inside a support and
exactly -inf outside (never NaN or +inf); gradients are finite.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trufl.dequantisers import ArgmaxDequantiser, CatNFDequantiser, TruflDequantiser

K, D, N = 3, 2, 64  # categories, latent dims, samples per category
SETTINGS = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# CDF-space bounds: (left gap a, width w) per (k, d), many at the extremes
EDGE = st.sampled_from([1e-6, 2e-6, 1e-5])
gap_and_width = st.one_of(
    st.tuples(EDGE, EDGE),  # a tiny box touching 0
    st.tuples(st.floats(0.01, 0.98), EDGE),  # a tiny box anywhere
    st.tuples(EDGE, st.floats(0.01, 0.99)),  # touching 0
    st.tuples(st.floats(0.01, 0.5), st.floats(0.01, 0.5)),  # ordinary
    st.builds(lambda w, r: (1 - w - r, w), st.floats(1e-6, 0.5), EDGE),  # touching 1 (right gap r)
)
#: raw log-scales: far past the clamp either way, or ordinary
raw_scale = st.one_of(st.sampled_from([-1e3, -50.0, 50.0, 1e3]), st.floats(-5, 5))
location = st.floats(-50, 50)


def grid(strategy, shape):
    return st.lists(strategy, min_size=math.prod(shape), max_size=math.prod(shape))


def set_(param: torch.nn.Parameter, values) -> None:
    with torch.no_grad():
        param.copy_(torch.as_tensor(values, dtype=param.dtype).reshape(param.shape))


def z_probe(seed: int, dim: int) -> torch.Tensor:
    """``[512, dim]`` points with |z| up to 50: uniform, near 0, exactly 0 and ±50."""
    g = torch.Generator().manual_seed(seed)
    z = torch.cat([100 * torch.rand(256, dim, generator=g) - 50, 1e-3 * torch.randn(192, dim, generator=g),
                   torch.zeros(32, dim), 50 * torch.sign(torch.randn(32, dim, generator=g))])
    return z


def sample_violations(deq, seed: int, atol: float = 1e-3) -> list[str]:
    """What is wrong with samples of every category (empty: nothing): each must lie in its
    own support with log q finite and equal to ``log_prob_all`` at z (to ``atol`` plus
    float32 rounding), and the gradients of log q must be finite."""
    torch.manual_seed(seed)
    x = torch.arange(deq.num_categories).repeat_interleave(N)
    z, log_q = deq.sample(x)
    if not (torch.isfinite(z).all() and torch.isfinite(log_q).all()):
        return [f"non-finite samples or log q: z={z[~torch.isfinite(z)][:3].tolist()}"]
    own = deq.log_prob_all(z).gather(-1, x.unsqueeze(-1)).squeeze(-1)
    outside = ~torch.isfinite(own)
    if outside.any():
        return [f"{int(outside.sum())} samples outside their own support, e.g. x={x[outside][:3].tolist()} z={z[outside][:3].tolist()}"]
    problems = []
    if not torch.allclose(own, log_q, rtol=1e-4, atol=atol + 1e-4 * log_q.abs().max().item()):
        problems.append(f"log q differs from log_prob_all by {(own - log_q).abs().max().item():.3g}")
    deq.zero_grad()
    log_q.sum().backward()
    bad = [n for n, p in deq.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return problems + ([f"non-finite gradients of log q for {bad}"] if bad else [])


def log_prob_violations(deq, z: torch.Tensor, inside: torch.Tensor) -> list[str]:
    """What is wrong with ``log_prob_all(z) [n, K]`` (empty: nothing): it must be finite where
    ``inside``, exactly -inf elsewhere, never NaN or +inf, with finite gradients."""
    z = z.clone().requires_grad_(True)
    log_q = deq.log_prob_all(z)
    problems = []
    if torch.isnan(log_q).any() or (log_q == math.inf).any():
        problems.append("NaN or +inf in log_prob_all")
    if not torch.isfinite(log_q[inside]).all():
        problems.append(f"-inf inside a support at z={z[(inside & ~torch.isfinite(log_q)).any(-1)][:3].tolist()}")
    if not (log_q[~inside] == -math.inf).all():
        problems.append(f"finite outside every support at z={z[(~inside & torch.isfinite(log_q)).any(-1)][:3].tolist()}")
    deq.zero_grad()
    torch.where(inside, log_q, torch.zeros_like(log_q)).sum().backward()
    if not (torch.isfinite(z.grad).all() and all(torch.isfinite(p.grad).all() for p in deq.parameters() if p.grad is not None)):
        problems.append("non-finite gradients")
    return problems


@SETTINGS
@given(bounds=grid(gap_and_width, (K, D)), location_scale=st.booleans(), loc=grid(location, (K, D)),
       scale=grid(raw_scale, (K, D)), seed=st.integers(0, 2**16))
def test_trufl_at_extreme_boxes_and_scales(bounds, location_scale, loc, scale, seed):
    deq = TruflDequantiser(K, dim=D, location_scale=location_scale)
    a = torch.tensor([g for g, _ in bounds], dtype=torch.float64)
    w = torch.tensor([w for _, w in bounds], dtype=torch.float64)
    right = (1 - a - w).clamp_min(1e-7)
    set_(deq.bound_logits, torch.stack([a, w, right], -1).log().reshape(K, D, 3))
    if location_scale:
        set_(deq.loc, loc)
        set_(deq.raw_log_scale, scale)
    problems = sample_violations(deq, seed)
    assert not problems, problems
    box = deq.boxes()
    z = torch.cat([z_probe(seed, D), box.zlo.reshape(-1, D), box.zhi.reshape(-1, D)]).detach()
    zk = z.unsqueeze(-2).double()  # membership, computed here in float64 from the reported bounds
    inside = ((zk >= box.zlo.double()) & (zk <= box.zhi.double())).all(-1)
    problems = log_prob_violations(deq, z, inside)
    assert not problems, problems


@SETTINGS
@given(loc=grid(location, (K, D)), scale=grid(raw_scale, (K, D)), seed=st.integers(0, 2**16))
def test_catnf_at_scale_clamps_and_far_locations(loc, scale, seed):
    deq = CatNFDequantiser(K, dim=D)
    set_(deq.loc, loc)
    set_(deq.raw_log_scale, scale)
    problems = sample_violations(deq, seed)
    assert not problems, problems
    z = z_probe(seed, D)
    problems = log_prob_violations(deq, z, torch.ones(len(z), K, dtype=torch.bool))  # support: all of R^D
    assert not problems, problems


@SETTINGS
@given(variant=st.sampled_from(["binary", "onehot"]), k=st.sampled_from([3, 4, 5]),
       mean=st.one_of(st.sampled_from([-1e3, -200.0, -120.0, -90.0, -20.0]), st.floats(-50, 50)),
       spread=st.floats(0, 5), scale=raw_scale, seed=st.integers(0, 2**16))
def test_argmax_with_far_negative_means_and_scale_clamps(variant, k, mean, spread, scale, seed):
    """Means far negative: softplus(u) underflows to 0 in float32 for u < -104, which must
    not put a binary sample on a face of its orthant, nor tie a one-hot sample's argmax."""
    deq = ArgmaxDequantiser(k, variant=variant)
    g = torch.Generator().manual_seed(seed)
    set_(deq.mean, mean + spread * torch.randn(deq.mean.shape, generator=g))
    set_(deq.raw_log_std, torch.full(deq.raw_log_std.shape, scale))
    # one-hot: the gaps top - z_j are rounded at top's float32 spacing (6e-5 at |u| = 1000),
    # a relative error of 1% on a gap of softplus(-5): log q agrees to ~1e-4·|mean| there
    problems = sample_violations(deq, seed, atol=1e-3 + 1e-4 * abs(mean))
    assert not problems, problems
    z = z_probe(seed, deq.dim)
    code = deq.code(z)
    own = torch.nn.functional.one_hot(code.clamp_max(k - 1), k).bool() & (code < k).unsqueeze(-1)
    problems = log_prob_violations(deq, z, own)
    assert not problems, problems


def test_trufl_sample_at_a_box_touching_one_stays_below_one():
    """A 1e-6-wide box against CDF 1: logit(a + w·u) must not round to +inf."""
    deq = TruflDequantiser(2, dim=1)
    set_(deq.bound_logits, torch.tensor([[[0.5, 0.5 - 1e-6, 1e-6]], [[1 - 2e-6, 1e-6, 1e-6]]]).log())
    problems = sample_violations(deq, 0)
    assert not problems, problems
    assert torch.isfinite(deq.boxes().zhi).all()


@pytest.mark.parametrize("u", [-90.0, -110.0, -200.0])
def test_argmax_binary_code_survives_softplus_underflow(u):
    """A mean of -200 with the smallest std: every sample keeps x's sign pattern."""
    deq = ArgmaxDequantiser(4, variant="binary")
    set_(deq.mean, torch.full((4, 2), u))
    set_(deq.raw_log_std, torch.full((4, 2), -1e3))
    problems = sample_violations(deq, 0)
    assert not problems, problems
    x = torch.arange(4).repeat_interleave(N)
    assert (deq.decode(deq.sample(x)[0]) == x).all()
