"""Prior flows: invertibility, log-determinants, ActNorm and the stateful sampler."""

from __future__ import annotations

import pytest
import torch

from trufl.priors import AutoregressivePrior, StandardLogisticPrior
from trufl.priors.reference import recomputing_inverse
from trufl.support import Support
from trufl.priors.transforms import MixtureLogisticCDF

from .conftest import ar_prior


def random_prior(dim=3, dtype=torch.float64, seed=0, **kw) -> AutoregressivePrior:
    torch.manual_seed(seed)
    prior = ar_prior(dim, hidden=kw.pop("hidden", 16), head_hidden=16, num_mixtures=4, **kw).to(dtype)
    with torch.no_grad():  # off the identity: random head outputs
        prior.head.out.weight.normal_(0, 0.3)
        prior.transform.actnorm.bias.normal_(0, 0.5)
        prior.transform.actnorm.log_scale.normal_(0, 0.3)
    prior.transform.actnorm.initialised.fill_(True)
    return prior.eval()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_ar_lstm_prior_inverts(dtype, tol):
    prior = random_prior(dtype=dtype)
    z = 2 * torch.randn(5, 7, 3, dtype=dtype)
    e, _ = prior(z)
    torch.testing.assert_close(prior.inverse(e), z, atol=tol, rtol=0)
    e2 = torch.logit(torch.rand(5, 7, 3, dtype=dtype).clamp(1e-4, 1 - 1e-4))
    torch.testing.assert_close(prior(prior.inverse(e2))[0], e2, atol=tol * 10, rtol=0)


def test_ar_lstm_log_det_matches_autograd_jacobian():
    prior = random_prior(dim=2)
    z = torch.randn(1, 3, 2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: prior(v.view(1, 3, 2))[0].flatten(), z.flatten())
    assert torch.allclose(torch.triu(jac, diagonal=1), torch.zeros_like(jac)), "not autoregressive"
    _, log_det = prior(z)
    assert log_det.sum().item() == pytest.approx(torch.slogdet(jac)[1].item(), abs=1e-8)


def test_ar_lstm_log_prob_is_normalised_in_1d():
    prior = random_prior(dim=1)
    v = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000
    z = 6 * torch.logit(v)
    dz = 6 / (v * (1 - v)) / 100_000
    with torch.no_grad():
        density = prior.log_prob(z.view(-1, 1, 1)).exp().squeeze()
    assert (density * dz).sum().item() == pytest.approx(1.0, abs=1e-3)


def test_sampling_steps_the_lstm_once_per_token():
    prior = random_prior(dtype=torch.float32)
    calls = {"lstm": 0, "head": 0}
    prior.encoder.lstm.register_forward_hook(lambda *a: calls.__setitem__("lstm", calls["lstm"] + 1))
    prior.head.register_forward_hook(lambda *a: calls.__setitem__("head", calls["head"] + 1))
    for T in (5, 20):
        calls.update(lstm=0, head=0)
        prior.sample(4, T)
        assert calls["lstm"] == T, "sampling must carry the LSTM state, not re-run the sequence"
        assert calls["head"] == T * prior.dim


def test_stateful_sampler_equals_recomputing_sampler_in_float64():
    """Free-running samples agree in float64 (in float32 rounding is amplified)."""
    prior = random_prior()
    e = torch.logit(torch.rand(3, 6, 3, dtype=torch.float64).clamp(1e-3, 1 - 1e-3))
    torch.testing.assert_close(prior.inverse(e), recomputing_inverse(prior, e), atol=1e-9, rtol=0)
    calls = []
    prior.encoder.lstm.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[1]))
    recomputing_inverse(prior, e)
    assert calls == [1, 2, 3, 4, 5, 6]  # the reference really does recompute every prefix


def test_actnorm_data_dependent_initialisation():
    prior = ar_prior(3, hidden=8, head_hidden=8).train()
    z = 5 + 3 * torch.randn(64, 10, 3)
    prior.log_prob(z)
    y, _ = prior.transform.actnorm(z)
    assert y.reshape(-1, 3).mean(0).abs().max() < 1e-4
    assert (y.reshape(-1, 3).std(0) - 1).abs().max() < 1e-3


def test_mixture_cdf_inverse_is_precise_for_sharp_components():
    t = MixtureLogisticCDF(5)
    torch.manual_seed(0)
    p = torch.randn(1000, t.num_params, dtype=torch.float64) * 3
    y = torch.randn(1000, dtype=torch.float64) * 4
    out, _ = t.forward(y, p)
    torch.testing.assert_close(t.inverse(out, p), y, atol=1e-8, rtol=0)


def test_standard_prior_samples_match_its_density():
    prior = StandardLogisticPrior(Support.unbound(2))
    z = prior.sample(20_000, 3)
    assert z.shape == (20_000, 3, 2)
    frac = (z.abs() < 1).double().mean().item()
    assert frac == pytest.approx(2 * torch.sigmoid(torch.tensor(1.0)).item() - 1, abs=0.01)
