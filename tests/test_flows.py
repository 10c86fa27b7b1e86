"""Every flow layer and every prior, one generic check (zuko-style): the inverse
undoes the forward to 1e-5 and the log-determinant equals autograd's.

A new layer or prior is covered by adding one entry to ``CASES``: a factory
returning ``(forward, inverse, x)`` with ``forward(x) -> (y, log|det| summed per
example)`` and ``inverse(y) -> x`` for an example input ``x [1, ...]`` in float64.
"""

from __future__ import annotations

import pytest
import torch

from trufl.support import Support

from trufl.dequantisers import ArgmaxDequantiser, CatNFDequantiser
from trufl.dequantisers.catnf import ConditionalAffineCoupling
from trufl.condition import Condition
from trufl.priors import GraphCouplingPrior, GridCouplingPrior, SetCouplingPrior, StandardLogisticPrior
from trufl.priors.layers import ActNorm, InvertibleLinear
from trufl.priors.transforms import MixtureLogisticCDF, PiecewiseLinearCDF

from .conftest import ar_prior

SMALL_COUPLING = dict(num_layers=3, hidden=16, heads=2, transformer_layers=1, num_mixtures=3)
# stacks of mixture-CDF couplings perturbed at std 0.3 reach log-determinants near -1000
# (maps flat to float64, which no inverse can undo to 1e-5); 0.1 keeps them conditioned
COUPLING_STD = 0.1


def randomised(module: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """Float64, off the identity: every parameter perturbed, ActNorm marked initialised."""
    torch.manual_seed(0)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn_like(p))
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.initialised.fill_(True)
    return module.eval()


def per_position(layer):
    """A layer whose log-det is per position ``[..., ]``: summed per example."""
    return lambda x: (lambda y, ld: (y, ld.reshape(x.shape[0], -1).sum(-1)))(*layer(x)), layer.inverse


def actnorm():
    return *per_position(randomised(ActNorm(3))), torch.randn(1, 4, 3, dtype=torch.float64)


def invertible_linear():
    return *per_position(randomised(InvertibleLinear(3))), torch.randn(1, 4, 3, dtype=torch.float64)


def mixture_cdf():
    torch.manual_seed(1)
    t = MixtureLogisticCDF(4)
    p = 2 * torch.randn(1, 6, t.num_params, dtype=torch.float64)
    forward = lambda x: (lambda y, ld: (y, ld.sum(-1)))(*t.forward(x, p))  # noqa: E731
    return forward, lambda y: t.inverse(y, p), 3 * torch.randn(1, 6, dtype=torch.float64)


def piecewise_linear_cdf():
    """Knots with repeats (zero-width bins), random heights, z out to the tails."""
    torch.manual_seed(2)
    t = PiecewiseLinearCDF()
    inner = torch.rand(2, 5, dtype=torch.float64)
    knots = torch.sort(torch.cat([torch.tensor([[0.0, 1.0]] * 2, dtype=torch.float64), inner, inner[:, :2]], 1), 1).values
    h = 2 * torch.randn(1, 3, 2, knots.shape[1] - 1, dtype=torch.float64)
    forward = lambda x: (lambda y, ld: (y, ld.sum((-1, -2))))(*t.forward(x, knots, h))  # noqa: E731
    return forward, lambda y: t.inverse(y, knots, h), 4 * torch.randn(1, 3, 2, dtype=torch.float64)


def catnf_coupling():
    layer = randomised(ConditionalAffineCoupling(3, 5, 8, parity=1, max_log_scale=3.0), std=0.5)
    h = torch.randn(1, 4, 5, dtype=torch.float64)
    forward = lambda x: (lambda y, ld: (y, ld.sum(-1)))(*layer(x, h))  # noqa: E731
    return forward, lambda y: layer.inverse(y, h)[0], torch.randn(1, 4, 3, dtype=torch.float64)


def prior_case(prior, shape, std: float = 0.3, condition: Condition | None = None):
    prior = randomised(prior, std)
    forward = lambda z: (lambda e, ld: (e, ld.sum(-1)))(*prior(z, None, condition))  # noqa: E731
    return forward, lambda e: prior.inverse(e, None, condition), torch.randn(*shape, dtype=torch.float64)


REFERENCE = dict(hidden=16, out_layer=8, num_flows=1, num_mixtures=4, head_features="elu", head_feature_embed=4,
                 head_hidden=12, head_layers=1, head_blocks=True, head_init="default", scale_bounds="learned", latent_embed=6,
                 latent_embed_hidden=8, input_dropout=0.25, time_embed=3, time_max_length=8)
GRAPH = torch.tensor([[[0, 1, 1, 0, 0], [1, 0, 1, 0, 1], [1, 1, 0, 1, 0], [0, 0, 1, 0, 1], [0, 1, 0, 1, 0]]]).bool()


def graph_prior():
    return prior_case(GraphCouplingPrior(Support.unbound(2), **SMALL_COUPLING), (1, 5, 2), COUPLING_STD, Condition(adjacency=GRAPH))


CASES = {
    "actnorm": actnorm,
    "invertible_linear": invertible_linear,
    "mixture_logistic_cdf": mixture_cdf,
    "piecewise_linear_cdf": piecewise_linear_cdf,
    "catnf_conditional_affine_coupling": catnf_coupling,
    "prior_standard": lambda: prior_case(StandardLogisticPrior(Support.unbound(3)), (1, 4, 3)),
    "prior_ar_lstm": lambda: prior_case(ar_prior(3, hidden=16, head_hidden=16, num_mixtures=4), (1, 4, 3)),
    "prior_ar_lstm_spline": lambda: prior_case(ar_prior(2, hidden=16, head_hidden=16, transform="spline", num_bins=6), (1, 4, 2)),
    "prior_ar_lstm_linear_head": lambda: prior_case(ar_prior(3, hidden=16, head_hidden=8, head_layers=0, transform="spline", num_bins=6), (1, 4, 3)),
    # CatNF's reference conditioner (every option on) and Argmax flows' copy (no ActNorm, learned Gaussian base)
    "prior_ar_lstm_catnf_reference": lambda: prior_case(ar_prior(3, **REFERENCE, base="unit_logistic"), (1, 4, 3)),
    "prior_ar_lstm_argmax_reference": lambda: prior_case(ar_prior(3, **REFERENCE, actnorm=False, base="gaussian"), (1, 4, 3)),
    "prior_ar_transformer_degree_order": lambda: prior_case(
        ar_prior(2, "transformer", hidden=16, num_layers=1, heads=2, head_hidden=16, num_mixtures=3, positions="degree",
                 relations="adjacency", order="degree"), (1, 5, 2), COUPLING_STD, Condition(adjacency=GRAPH)),
    "prior_support_matched_catnf": lambda: prior_case(ar_prior(2, support=CatNFDequantiser(4, 2).double().support(),
                                                                transform="support", hidden=16, head_hidden=16), (1, 4, 2)),
    "prior_support_matched_argmax": lambda: prior_case(ar_prior(2, support=ArgmaxDequantiser(4).double().support(),
                                                                 transform="support", hidden=16, head_hidden=16), (1, 4, 2)),
    "prior_set_coupling": lambda: prior_case(SetCouplingPrior(Support.unbound(3), **SMALL_COUPLING), (1, 5, 3), COUPLING_STD),
    "prior_set_coupling_mix_dims": lambda: prior_case(SetCouplingPrior(Support.unbound(3), mix_dims=True, **SMALL_COUPLING), (1, 5, 3), COUPLING_STD),
    "prior_set_coupling_reference_shaped": lambda: prior_case(SetCouplingPrior(
        Support.unbound(4), mix_dims=True, actnorm="every", split="fixed", block="catnf", scale_bounds="learned",
        base="unit_variance", **SMALL_COUPLING), (1, 5, 4), COUPLING_STD),
    "prior_graph_coupling": graph_prior,
    "prior_grid_coupling": lambda: prior_case(GridCouplingPrior(Support.unbound(2), **SMALL_COUPLING), (1, 81, 2), COUPLING_STD),
}


@pytest.mark.parametrize("name", list(CASES))
def test_flow_inverts_and_log_det_matches_autograd(name):
    torch.manual_seed(0)  # the modules' initial weights: the same whatever ran before
    forward, inverse, x = CASES[name]()
    y, log_det = forward(x)
    assert y.shape == x.shape and log_det.shape == (1,)
    torch.testing.assert_close(inverse(y), x, atol=1e-5, rtol=0)
    jac = torch.autograd.functional.jacobian(lambda v: forward(v.view_as(x))[0].flatten(), x.flatten())
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign.item() != 0
    assert log_det.item() == pytest.approx(logabsdet.item(), abs=1e-6)
