"""log Z: the prior mass of the support, exact and Monte Carlo, and rejection sampling."""

from __future__ import annotations

import math

import pytest
import torch

from trufl.condition import Condition
from trufl.support import Support

from trufl.dequantisers import ArgmaxDequantiser, CatNFDequantiser, TruflDequantiser
from trufl.latent import LatentVariableModel
from trufl.priors import StandardLogisticPrior
from trufl.priors.support_mass import monte_carlo_support_mass, union_volume
from trufl.sampling import sample_with_rejection


def exact_and_monte_carlo(deq, length: int, num_samples: int):
    """The standard prior's exact per-token log Z and a Monte Carlo estimate of the same."""
    prior = StandardLogisticPrior(Support.unbound(deq.dim))
    exact = LatentVariableModel(deq, prior).log_support_mass(1, 0)
    mc = monte_carlo_support_mass(prior.sample, deq.decode, length, num_samples)
    return exact, mc


def test_union_volume_matches_monte_carlo():
    torch.manual_seed(0)
    lo = torch.rand(6, 3) * 0.6
    hi = lo + torch.rand(6, 3) * 0.4
    u = torch.rand(400_000, 3)
    inside = ((u[:, None] >= lo) & (u[:, None] <= hi)).all(-1).any(-1).double().mean().item()
    assert union_volume(lo, hi) == pytest.approx(inside, abs=3e-3)


@pytest.mark.parametrize("dim", [1, 2])
def test_monte_carlo_log_z_agrees_with_exact(dim):
    torch.manual_seed(0)
    deq = TruflDequantiser(4, dim, init_gap=0.1)  # 20% of each cell is a gap
    with torch.no_grad():
        deq.bound_logits.add_(0.3 * torch.randn_like(deq.bound_logits))
    exact, mc = exact_and_monte_carlo(deq, length=1, num_samples=20_000)
    assert exact["estimator"].startswith("exact") and exact["log_Z"] < -0.05
    assert mc["estimator"].startswith("monte carlo")
    assert abs(mc["log_Z"] - exact["log_Z"]) <= 3 * mc["stderr"]


def test_log_z_for_sequences_is_per_token():
    exact, mc = exact_and_monte_carlo(TruflDequantiser(4, 1, init_gap=0.1), length=3, num_samples=20_000)
    assert abs(mc["log_Z"] - exact["log_Z"]) <= 3 * mc["stderr"]


def test_full_support_and_argmax_invalid_codes():
    assert LatentVariableModel(CatNFDequantiser(4, 2), StandardLogisticPrior(Support.unbound(2))).log_support_mass(1, 0)["log_Z"] == 0.0
    # binary codes for K = 5 use 3 bits: 5 of 8 orthants are valid, each of logistic mass 1/8
    z = LatentVariableModel(ArgmaxDequantiser(5), StandardLogisticPrior(Support.unbound(3))).log_support_mass(1, 0)
    assert z["log_Z"] == pytest.approx(math.log(5 / 8), abs=1e-9)


def test_rejection_sampling_acceptance_matches_z_and_never_returns_outside_points():
    torch.manual_seed(0)
    deq = TruflDequantiser(4, 1, init_gap=0.2)  # each box keeps 60% of its cell: Z = 0.6 per token
    model = LatentVariableModel(deq, StandardLogisticPrior(Support.unbound(1)))
    returned = []

    def in_support(x, condition=None):
        returned.append(x)
        return (x >= 0).all(-1)

    info = sample_with_rejection(model, 2000, 3, in_support, max_tries=1000)
    assert (returned[1] >= 0).all(), "rejection returned an object with a token outside every support"
    z_object = math.exp(3 * model.log_support_mass(1, 0)["log_Z"])
    assert z_object == pytest.approx(0.6**3, rel=1e-4)
    stderr = math.sqrt(z_object * (1 - z_object) / info["proposed"])
    assert abs(info["acceptance"] - z_object) < 4 * stderr
    assert info["validity_rejection"] == 1.0 and info["validity_plain"] == pytest.approx(z_object, abs=0.05)


def test_conditional_log_z_covers_every_test_group_weighted_by_tokens():
    """Two groups of test objects (2 objects × 3 tokens with log Z −1 per token, 1 × 10
    with −2): the run's log Z per token is their token-weighted mean, not the first group's."""
    from trufl.data.base import SamplingGroup
    from trufl.sampling import EvalSettings, support_mass

    class PerGroup:  # stands in for a conditional model: log Z per token read off the condition
        def log_support_mass(self, length, num_samples, condition):
            return {"log_Z": -float(condition.adjacency.shape[1]), "stderr": 0.1, "estimator": "monte carlo"}

    level = lambda n, per_token: Condition(adjacency=torch.zeros(n, per_token, 1))  # noqa: E731  (log Z read off its shape)
    groups = [SamplingGroup(2, 3, level(2, 1)), SamplingGroup(1, 10, level(1, 2))]
    est = support_mass(PerGroup(), None, groups, EvalSettings())
    assert est["log_Z"] == pytest.approx((6 * -1 + 10 * -2) / 16)
    assert est["stderr"] == pytest.approx(math.sqrt((6 * 0.1) ** 2 + (10 * 0.1) ** 2) / 16)
    assert "2 groups" in est["conditioned_on"]


def test_an_impossible_log_z_is_no_number_and_says_why():
    from trufl.objective import renormalised_bound
    from trufl.priors.support_mass import monte_carlo_support_mass
    from trufl.sampling import Generation

    prior = StandardLogisticPrior(Support.unbound(1))
    never = lambda z: torch.full(z.shape[:-1], -1)  # noqa: E731  (a decoder with no support anywhere)
    est = monte_carlo_support_mass(prior.sample, never, 5, 64)
    assert "log_Z" not in est and "eval.log_z_samples" in est["unavailable"]
    assert Generation(est).metrics == {}
    assert renormalised_bound({"test/nll_bits": 2.0}, est) == {}


def test_a_log_z_of_zero_is_an_estimate():
    """CatNF's support is everything: log Z = 0 exactly is reported, and renormalising changes nothing."""
    from trufl.objective import renormalised_bound
    from trufl.sampling import Generation

    exact = {"log_Z": 0.0, "stderr": 0.0, "estimator": "exact (support is all of R^D)"}
    assert Generation(exact).metrics == {"test/log_Z": 0.0}
    assert renormalised_bound({"test/nll_bits": 2.5}, exact)["test/nll_bits"] == 2.5
