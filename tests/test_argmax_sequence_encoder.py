"""Argmax flows' sequence encoder (``flow.encoder=bilstm``): q(z_t | x) reads all of x, and is
still a normalised density on token t's own orthant, with exact decoding."""

from __future__ import annotations

import pytest
import torch

from trufl.dequantisers import ArgmaxDequantiser
from trufl.dequantisers.base import Dequantiser


def encoder(num_categories: int, seed: int = 0) -> ArgmaxDequantiser:
    """Small, float64, its weights moved off their initial values."""
    torch.manual_seed(seed)
    deq = ArgmaxDequantiser(num_categories, encoder="bilstm", encoder_hidden=8, encoder_context=6).double()
    with torch.no_grad():
        for p in deq.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return deq


@pytest.mark.parametrize("num_categories,dim", [(4, 2), (7, 3)])
def test_q_integrates_to_one_over_each_tokens_orthant_with_the_other_tokens_fixed(num_categories, dim):
    """Quadrature over token t's orthant, z_d = ±softplus(u_d) (dz_d = σ(u_d) du_d) on a grid
    of ±10 of the token's σ around its μ; the sequence x is the other tokens' categories and x_t."""
    deq = encoder(num_categories)
    assert deq.dim == dim
    x = torch.tensor([[num_categories - 1, 0, 2, 1]])
    z0, _ = deq.sample(x)
    mean, log_std = (t[0, :, 0] for t in deq._gaussian(None, x))  # [T, D]
    nodes = 240 if dim == 2 else 64
    for t in range(x.shape[1]):
        k = x[0, t]
        axes = [torch.linspace(m - 10 * s, m + 10 * s, nodes, dtype=torch.float64)
                for m, s in zip(mean[t].tolist(), log_std[t].exp().tolist())]
        u = torch.cartesian_prod(*axes).reshape(-1, dim)
        z = z0.expand(u.shape[0], -1, -1).clone()
        z[:, t] = deq.signs[k].double() * torch.nn.functional.softplus(u)
        with torch.no_grad():
            log_q = deq.log_prob_all(z)[:, t, k]
        du = torch.tensor([(a[1] - a[0]).item() for a in axes], dtype=torch.float64).prod()
        mass = (log_q.exp() * torch.sigmoid(u).prod(-1)).sum().item() * du.item()
        assert mass == pytest.approx(1.0, abs=1e-3), (t, mass)


def test_samples_stay_in_their_orthant_and_log_q_is_log_prob_all_at_their_category():
    deq = encoder(27, seed=1)
    x = torch.randint(0, 27, (64, 12))
    z, log_q = deq.sample(x)
    assert torch.equal(deq.decode(z), x)
    assert torch.equal(deq.code(z), x)  # the orthant of x's bits, coordinate by coordinate
    torch.testing.assert_close(deq.log_prob_all(z).gather(-1, x[..., None])[..., 0], log_q, atol=1e-10, rtol=0)
    others = deq.log_prob_all(z).scatter(-1, x[..., None], 0.0)
    assert torch.isneginf(others).sum() == others.numel() - x.numel()  # -inf at every other category


def test_q_of_a_token_depends_on_later_tokens_and_its_decoder_stays_exact():
    """Bidirectional: changing the last token moves the first token's Gaussian; the posterior read
    from z's code equals the Bayes posterior of log_prob_all."""
    deq = encoder(27, seed=2)
    x = torch.randint(0, 27, (8, 10))
    later = x.clone()
    later[:, -1] = (later[:, -1] + 1) % 27
    mean, _ = deq._gaussian(None, x)
    moved, _ = deq._gaussian(None, later)
    assert (mean[:, 0] - moved[:, 0]).abs().max() > 1e-4
    z, _ = deq.sample(x)
    torch.testing.assert_close(deq.decoder_log_prob(z), Dequantiser.decoder_log_prob(deq, z))
    outside = z.clone()
    outside[0, 3] = torch.ones(deq.dim, dtype=z.dtype)  # code 31 >= K: no category's region
    assert torch.isneginf(deq.decoder_log_prob(outside)[0, 3]).all() and deq.decode(outside)[0, 3] == deq.INVALID


def test_sequence_encoder_refuses_a_causal_context_and_a_lone_token():
    with pytest.raises(ValueError, match="use context=none"):
        ArgmaxDequantiser(27, encoder="bilstm", context_dim=8)
    with pytest.raises(ValueError, match=r"whole sequences \[B, T\]"):
        ArgmaxDequantiser(27, encoder="bilstm", encoder_hidden=8).sample(torch.tensor([3, 4]))
