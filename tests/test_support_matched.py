"""The support-matched prior: each token's latent a mixture of the dequantiser's own
conditionals, Σ_k π_k(h) q(z|k). It is a normalised density (quadrature, D = 1 and 2, one and
two tokens), puts every sample inside the support (log Z = 0), and for TRUFL equals the
box-face spline prior with one bin per box and empty gaps."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from trufl.dequantisers import ArgmaxDequantiser, CatNFDequantiser, TruflDequantiser
from trufl.latent import LatentVariableModel
from trufl.priors import AutoregressivePrior, LSTMEncoder

DEQUANTISERS = {
    "trufl": lambda D: TruflDequantiser(4, D),
    "trufl_locscale": lambda D: TruflDequantiser(4, D, location_scale=True),
    "catnf": lambda D: CatNFDequantiser(4, D),
    "argmax": lambda D: ArgmaxDequantiser(4) if D == 2 else ArgmaxDequantiser(2),
}


def matched(deq, seed: int = 0) -> AutoregressivePrior:
    """A support-matched prior for ``deq`` with random, off-uniform weights π (float64)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in deq.named_parameters():
            p.add_(0.3 * torch.randn_like(p))  # overlapping, off-initial supports
    deq = deq.double()
    prior = AutoregressivePrior(deq.support(), partial(LSTMEncoder, hidden=8), inputs="latent", transform="support",
                                head_hidden=8).double().eval()
    with torch.no_grad():
        prior.head.out.weight.normal_(0, 1.0)
        prior.head.out.bias.normal_(0, 1.0)
    return prior


def grid(D: int, n: int):
    v = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    z1, dz1 = 8 * torch.logit(v), 8 / (v * (1 - v)) / n
    return torch.cartesian_prod(*[z1] * D).reshape(-1, D), torch.cartesian_prod(*[dz1] * D).reshape(-1, D).prod(-1)


@pytest.mark.parametrize("name", list(DEQUANTISERS))
@pytest.mark.parametrize("D,n,tol", [(1, 200_000, 3e-3), (2, 1500, 1e-2)])  # D = 2: midpoint cells cut by box faces
def test_a_token_density_integrates_to_one(name, D, n, tol):
    prior = matched(DEQUANTISERS[name](D))
    z, dz = grid(prior.dim, n)
    with torch.no_grad():
        mass = sum((prior.log_prob(c[:, None, :]).exp()[:, 0] * w).sum() for c, w in zip(z.split(250_000), dz.split(250_000)))
    assert mass.item() == pytest.approx(1.0, abs=tol)


@pytest.mark.parametrize("name", ["trufl", "catnf"])
def test_the_second_tokens_conditional_integrates_to_one_whatever_the_first(name):
    prior = matched(DEQUANTISERS[name](1), seed=1)
    z, dz = grid(1, 100_000)
    for first in (-1.3, 0.2, 2.5):
        pair = torch.cat([torch.full_like(z, first), z], dim=1)[..., None]  # [n, 2 tokens, 1]
        with torch.no_grad():
            mass = (prior.log_prob(pair)[:, 1].exp() * dz).sum().item()
        assert mass == pytest.approx(1.0, abs=3e-3), first


@pytest.mark.parametrize("name", list(DEQUANTISERS))
def test_samples_stay_in_the_support_and_log_z_is_zero(name):
    prior = matched(DEQUANTISERS[name](2 if name == "argmax" else 1), seed=2)
    deq_support = prior.support
    z = prior.sample(64, 6)
    assert (deq_support.decode(z) >= 0).all()
    if prior.dim == 1 and deq_support.num_boxes:
        est = prior.log_support_mass(6, 32)
        assert abs(est["log_Z"]) < 1e-6 and "sequential" in est["estimator"]


def test_for_trufl_it_is_the_box_face_spline_with_one_bin_per_box_and_empty_gaps():
    """Spline heights log(π_k / w_k) on box k's bin and empty gap bins give the same log p(z) on a
    fixed batch as the mixture with weights π (D = 1, the initial disjoint boxes)."""
    torch.manual_seed(3)
    deq = TruflDequantiser(5, 1).double()
    support = deq.support()
    spline = AutoregressivePrior(support, partial(LSTMEncoder, hidden=8), inputs="decoded", transform="spline").double()
    mixture = AutoregressivePrior(support, partial(LSTMEncoder, hidden=8), inputs="decoded", transform="support").double()
    mixture.encoder.load_state_dict(spline.encoder.state_dict())  # the same encoder and token embedding
    mixture.embed.load_state_dict(spline.embed.state_dict())
    knots = spline.transform.current(support).knots[0]
    mids = torch.logit((0.5 * (knots[1:] + knots[:-1])).clamp(1e-12, 1 - 1e-12))
    box_of_bin = deq.decode(mids[:, None])
    box = deq.boxes()
    width = (box.b - box.a)[:, 0]
    pi = torch.softmax(torch.randn(5, dtype=torch.float64), 0)
    with torch.no_grad():
        spline.head.out.weight.zero_()
        spline.head.out.bias.copy_(torch.where(box_of_bin >= 0, (pi / width)[box_of_bin.clamp_min(0)].log(),
                                               torch.full_like(mids, -1e4)))
        mixture.head.out.weight.zero_()
        mixture.head.out.bias.copy_(pi.log())
    x = torch.randint(0, 5, (4, 9))
    z, _ = deq.sample(x)
    with torch.no_grad():
        torch.testing.assert_close(mixture.log_prob(z), spline.log_prob(z), atol=1e-6, rtol=0)


def test_a_dequantiser_that_does_not_factorise_is_refused_by_name():
    with pytest.raises(ValueError, match="prior.transform=support needs a dequantiser whose q"):
        AutoregressivePrior(CatNFDequantiser(4, 2, num_flows=1).support(), partial(LSTMEncoder, hidden=8), transform="support")


def test_the_model_with_a_matched_prior_has_an_exact_zero_log_z_and_a_finite_bound():
    deq = TruflDequantiser(4, 1)
    model = LatentVariableModel(deq, AutoregressivePrior(deq.support(), partial(LSTMEncoder, hidden=8), transform="support"))
    x = torch.randint(0, 4, (3, 7))
    t = model.terms(x, torch.ones_like(x, dtype=torch.bool))
    assert torch.isfinite(t.log_p).all() and abs(model.log_support_mass(7, 16)["log_Z"]) < 1e-6


def test_gradients_are_the_mixture_densitys_by_finite_differences():
    """The transform's e and log F(1 − F) (unbounded near a box face, cancelling in the density)
    carry no gradient; what remains must be the exact gradient of log p: checked against central
    differences in float64, for z and for every parameter along a random direction."""
    prior = matched(TruflDequantiser(4, 1), seed=2).train()
    z = torch.tensor([[[-0.7], [0.3], [1.9]], [[2.4], [-1.2], [0.05]]], dtype=torch.float64, requires_grad=True)
    prior.zero_grad()
    prior.log_prob(z).sum().backward()
    h = 1e-6
    with torch.no_grad():
        for index in [(0, 0, 0), (0, 2, 0), (1, 1, 0)]:
            up, down = z.detach().clone(), z.detach().clone()
            up[index] += h
            down[index] -= h
            numeric = (prior.log_prob(up).sum() - prior.log_prob(down).sum()) / (2 * h)
            assert z.grad[index].item() == pytest.approx(numeric.item(), rel=1e-5, abs=1e-7)
        params = [p for p in prior.parameters() if p.grad is not None]
        direction = [torch.randn_like(p) for p in params]
        analytic = sum((p.grad * v).sum() for p, v in zip(params, direction))
        for p, v in zip(params, direction):
            p.add_(h * v)
        up = prior.log_prob(z.detach()).sum()
        for p, v in zip(params, direction):
            p.sub_(2 * h * v)
        down = prior.log_prob(z.detach()).sum()
    assert analytic.item() == pytest.approx(((up - down) / (2 * h)).item(), rel=1e-5, abs=1e-7)


def test_the_support_matched_prior_refuses_another_base():
    with pytest.raises(ValueError, match="prior.transform=support maps onto the standard logistic base"):
        AutoregressivePrior(TruflDequantiser(4, 1).support(), partial(LSTMEncoder, hidden=8), transform="support",
                            base="unit_logistic", head_hidden=8)
