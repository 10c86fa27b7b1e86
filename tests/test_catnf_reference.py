"""CatNF as its reference code runs it: the embedding encoder's bounded scales and initial
spread, and the reconstruction weight β = 1 + 2^(−t/5000)."""

from __future__ import annotations

import math

import pytest
import torch

from trufl.dequantisers import CatNFDequantiser
from trufl.dequantisers.catnf import LOG_UNIT_VARIANCE
from trufl.weighting import ExponentialDecay


@pytest.mark.parametrize("std,strict", [(0.3, True), (50.0, False)])
def test_embedding_encoder_keeps_every_log_scale_inside_one_whatever_its_weights(std, strict):
    """|log-scale| = |tanh(s)| < 1 (at extreme weights tanh rounds to exactly 1 in float32)."""
    torch.manual_seed(0)
    deq = CatNFDequantiser(27, 3, parameterisation="embedding")
    with torch.no_grad():
        for p in deq.parameters():
            p.normal_(0, std)
    t = (deq._loc_scale(None)[1] + LOG_UNIT_VARIANCE).abs()
    assert (t.max().item() < 1.0) if strict else (t.max().item() <= 1.0 and t.max().item() > 0.99)


@pytest.mark.parametrize("dim", [1, 3, 4])
def test_embedding_encoder_starts_with_location_spread_sqrt_16_over_3d_and_unit_scales(dim):
    """b_d = Σ_j W_dj e_j, W ~ U(±1/8)·4/√D, e ~ N(0, 1) over 64 inputs: given W the locations
    have std ‖W_d‖ across categories, and E‖W_d‖² = 64·(1/192)·(16/D) = 16/(3D)."""
    torch.manual_seed(1)
    deq = CatNFDequantiser(20_000, dim, parameterisation="embedding")
    loc, log_s = deq._loc_scale(None)
    norms = deq.encoder_linear.weight[:dim].norm(dim=1)
    torch.testing.assert_close(loc.std(0), norms, rtol=0.03, atol=0)
    assert torch.allclose(log_s, torch.full_like(log_s, -LOG_UNIT_VARIANCE))  # tanh(0) = 0: ε's own scale
    squares = torch.cat([CatNFDequantiser(2, dim, parameterisation="embedding").encoder_linear.weight[:dim].square().sum(1)
                         for _ in range(400)])
    assert squares.mean().item() == pytest.approx(16 / (3 * dim), rel=0.03)


def test_embedding_encoder_draws_the_unit_variance_logistic_of_the_reference():
    torch.manual_seed(2)
    deq = CatNFDequantiser(3, 1, parameterisation="embedding")
    z, _ = deq.sample(torch.zeros(200_000, dtype=torch.long))
    loc, _ = deq._loc_scale(None)
    assert z[:, 0].mean().item() == pytest.approx(loc[0, 0].item(), abs=0.01)
    assert z[:, 0].var().item() == pytest.approx((math.pi**2 / 3) / 1.81**2, rel=0.02)  # ≈ 1.004


def test_catnf_beta_is_one_plus_two_to_the_minus_t_over_5000():
    beta = ExponentialDecay(start=2.0, decay=2 ** (-1 / 5000))
    for t in (0, 1000, 5000, 10_000, 100_000):
        assert beta(t)[0] == pytest.approx(1 + 2 ** (-t / 5000), rel=1e-12)
        assert beta(t)[1] == 1.0  # the KL is not weighted
