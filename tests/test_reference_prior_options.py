"""The autoregressive prior's options for the reference conditioners (CatNF's, Argmax flows'
copy of it): each does what it says, the prior stays a normalised density that inverts, and
every option at its default leaves the prior, the Argmax encoder and the CatNF model exactly
as they were."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from trufl.dequantisers import ArgmaxDequantiser, CatNFDequantiser
from trufl.distributions import soft_bounded
from trufl.latent import LatentVariableModel
from trufl.priors import AutoregressivePrior, LSTMEncoder
from trufl.priors.reference import recomputing_inverse
from trufl.priors.token_inputs import PositionEmbedding, drop_tokens
from trufl.support import Support

from .conftest import ar_prior
from .test_flows import REFERENCE, randomised

def reference_prior(dim: int, base: str = "unit_logistic", actnorm: bool = True) -> AutoregressivePrior:
    return ar_prior(dim, base=base, actnorm=actnorm, **REFERENCE)


def test_input_dropout_zeroes_whole_tokens_without_rescaling_and_only_in_training():
    torch.manual_seed(0)
    x = torch.rand(400, 50, 6) + 1
    dropped = drop_tokens(x, 0.25, training=True)
    kept = (dropped != 0).all(-1)
    assert torch.equal(kept, (dropped != 0).any(-1))  # a token is kept or zeroed whole
    assert torch.equal(dropped[kept], x[kept])  # not rescaled
    assert (1 - kept.float().mean()).item() == pytest.approx(0.25, abs=0.01)
    assert drop_tokens(x, 0.25, training=False) is x


def test_position_embedding_is_the_linear_map_of_the_one_hot_position_and_distance_to_the_end():
    torch.manual_seed(0)
    emb = PositionEmbedding(5, max_length=6)
    lengths = torch.tensor([6, 4])
    positions = torch.arange(6)
    onehot = torch.zeros(2, 6, 12)
    for b, n in enumerate(lengths.tolist()):
        for t in range(n):  # padded positions: no one-hot, the bias alone
            onehot[b, t, t] = onehot[b, t, 6 + n - 1 - t] = 1
    torch.testing.assert_close(emb(positions, lengths), emb.linear(onehot))
    with pytest.raises(ValueError, match="prior.time_max_length=6 is shorter than a sequence of 7"):
        emb(torch.arange(7), torch.tensor([7]))


def test_learned_soft_bound_starts_at_one_and_widens_with_its_log_bound():
    raw = torch.linspace(-50, 50, 101)
    assert soft_bounded(raw, torch.tensor(0.0)).abs().max() <= 1.0
    torch.testing.assert_close(soft_bounded(raw, torch.tensor(0.0)), torch.tanh(raw))
    wide = soft_bounded(raw, torch.tensor(math.log(4.0)))
    assert wide.abs().max().item() == pytest.approx(4.0, rel=1e-4)
    torch.testing.assert_close(wide, 4 * torch.tanh(raw / 4))


def test_catnf_options_build_the_reference_conditioners_shapes():
    """CatNF's text8 conditioner at H = 256, D = 3: its coupling has 536,517 parameters, plus
    ActNorm's 6 (the count the reference code builds)."""
    prior = ar_prior(3, hidden=256, out_layer=128, num_flows=1, num_mixtures=27, head_features="elu",
                     head_feature_embed=36, head_hidden=192, head_layers=1, head_blocks=True, head_init="default",
                     scale_bounds="learned", latent_embed=96, latent_embed_hidden=128, input_dropout=0.05, time_embed=32,
                     time_max_length=128, base="unit_logistic")
    assert sum(p.numel() for p in prior.parameters()) == 536_517 + 6
    assert prior.start is None  # the first position reads zeros, as the reference's shift


@pytest.mark.parametrize("base,actnorm", [("unit_logistic", True), ("gaussian", False)])
def test_prior_with_every_reference_option_integrates_to_one_and_its_samplers_agree(base, actnorm):
    """One token of D = 2 (dimension 1 reads dimension 0's [y, elu(y), elu(-y)]): a 2-D
    quadrature of exp(log p); the stateful sampler equals the recomputing one."""
    prior = randomised(reference_prior(2, base, actnorm))
    axis = torch.linspace(-14, 14, 561, dtype=torch.float64)
    z = torch.cartesian_prod(axis, axis).reshape(-1, 1, 2)
    with torch.no_grad():
        mass = prior.log_prob(z).exp().sum().item() * (axis[1] - axis[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=2e-3)
    e = prior.sample_base((3, 7, 2))
    torch.testing.assert_close(prior.inverse(e), recomputing_inverse(prior, e), atol=1e-9, rtol=0)


def test_learned_gaussian_base_is_the_normal_of_its_mean_and_scale():
    prior = randomised(reference_prior(3, "gaussian", actnorm=False))
    e = torch.randn(4, 5, 3, dtype=torch.float64)
    normal = torch.distributions.Normal(prior.base_loc, prior.base_log_scale.exp())
    torch.testing.assert_close(prior.base_log_prob(e), normal.log_prob(e))
    torch.manual_seed(0)
    draws = prior.sample_base((100_000, 1, 3))
    torch.testing.assert_close(draws.mean((0, 1)), prior.base_loc.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(draws.std((0, 1)), prior.base_log_scale.exp().detach(), atol=0.02, rtol=0)


def test_input_dropout_acts_in_training_only():
    prior = reference_prior(3)
    z = torch.randn(4, 7, 3)
    prior.eval()
    assert torch.equal(prior.log_prob(z), prior.log_prob(z))
    prior.train()
    prior.transform.actnorm.initialised.fill_(True)
    torch.manual_seed(1)
    assert not torch.equal(prior.log_prob(z), prior.log_prob(z))


def test_spline_refuses_the_mixtures_options():
    with pytest.raises(ValueError, match="prior.transform=spline takes none of the mixture's options"):
        ar_prior(2, transform="spline", head_features="elu", hidden=8, head_hidden=8)


# -- the defaults: the same numbers as before the options existed ------------------
#: computed with the code before these options (main 585dcd5; the mixture at f1b3ddd, after its head
#: started with random output weights like the spline's), CPU float32
BEFORE = {"mixture": (-70.16120910644531, -70.16120910644531, 40.090023040771484),
          "spline": (-48.25599670410156, -48.25599670410156, -15.271746635437012),
          "argmax": (-3.0634536743164062, -33.32107925415039), "catnf_decoded": (-80.86923217773438, -72.21526336669922)}


@pytest.mark.parametrize("kind", ["mixture", "spline"])
def test_prior_options_at_their_defaults_leave_its_numbers_as_before(kind):
    torch.manual_seed(0)
    prior = AutoregressivePrior(Support.unbound(3), partial(LSTMEncoder, hidden=16), inputs="latent", transform=kind,
                                head_hidden=16)
    z = torch.randn(2, 5, 3)
    prior.train()
    trained = prior.log_prob(z).sum().item()  # the first training call initialises ActNorm
    got = (trained, prior.log_prob(z).sum().item(), prior.sample(2, 4).sum().item())
    assert got == pytest.approx(BEFORE[kind], rel=1e-6)


def test_argmax_and_catnf_at_their_defaults_leave_their_numbers_as_before():
    torch.manual_seed(0)
    deq = ArgmaxDequantiser(27)
    x = torch.randint(0, 27, (2, 6))
    z, log_q = deq.sample(x)
    assert (z.sum().item(), log_q.sum().item()) == pytest.approx(BEFORE["argmax"], rel=1e-6)
    torch.manual_seed(0)
    deq = CatNFDequantiser(27, 3)
    prior = AutoregressivePrior(deq.support(), partial(LSTMEncoder, hidden=16), inputs="decoded", transform="spline",
                                head_hidden=16)
    t = LatentVariableModel(deq, prior).terms(x, torch.ones_like(x, dtype=torch.bool))
    assert (t.log_p.sum().item(), t.log_q.sum().item()) == pytest.approx(BEFORE["catnf_decoded"], rel=1e-6)
