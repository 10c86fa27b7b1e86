"""Language modelling (issue: parity with a plain LSTM): the AR prior's decoded-token
inputs and spline transform, and the categorical baseline."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch.nn import functional as F

from trufl.build import build_likelihood
from trufl.categorical import CategoricalLSTM
from trufl.metrics import LN2
from trufl.objective import bits_metrics
from trufl.priors.layers import ActNorm
from trufl.priors.reference import recomputing_inverse
from trufl.priors.support_mass import monte_carlo_support_mass
from trufl.run import run

from .conftest import tiny_text

K = 27  # the embedded corpus' alphabet
SMALL = ("prior.encoder.hidden=16", "prior.head_hidden=16", "prior.num_mixtures=3", "prior.num_bins=4", "prior.embed_dim=8")


def lm(make_cfg, *overrides, seed=0):
    """A float64 latent LM built as a run builds it, its prior moved off the identity."""
    torch.manual_seed(seed)
    model = build_likelihood(make_cfg(*SMALL, *overrides), K).double()
    with torch.no_grad():
        model.prior.head.out.weight.normal_(0, 0.5)
        model.prior.head.out.bias.normal_(0, 0.5)
    for m in model.modules():
        if isinstance(m, ActNorm):
            m.initialised.fill_(True)
    return model.eval()


def decoding_to_distinct_tokens(model, num: int = 3) -> list[torch.Tensor]:
    """``num`` latents ``[1, D]`` (D = 1) that decode to different categories."""
    grid = torch.linspace(-6, 6, 2001, dtype=torch.float64)[:, None]
    tokens = model.dequantiser.decode(grid)
    firsts = {}
    for i, k in enumerate(tokens.tolist()):
        if k >= 0:
            firsts.setdefault(k, i)
    picks = list(firsts.values())[:: max(1, len(firsts) // num)][:num]
    assert len(picks) == num
    return [grid[i : i + 1] for i in picks]


def in_box(model, k: int, n: int = 1) -> torch.Tensor:
    """Latents ``[n, D]`` of category k (draws of q(z|k))."""
    z, _ = model.dequantiser.sample(torch.full((n,), k))
    return z


VARIANTS = [
    ("latent_dim=1", "prior.inputs=decoded", "prior.transform=spline"),
    ("latent_dim=1", "prior.inputs=decoded", "prior.transform=mixture"),
    ("latent_dim=1", "prior.inputs=both", "prior.transform=spline"),
    ("latent_dim=1", "flow=catnf", "prior.inputs=decoded", "prior.transform=spline"),
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: "-".join(s.split("=")[1] for s in o[1:]))
def test_token_density_integrates_to_one_given_each_previous_category(make_cfg, overrides):
    """p(z_2 | z_1) over z_2 (D = 1, quadrature) is 1 whatever box z_1 lies in, and
    depends on that box: the conditioner reads the previous category."""
    model = lm(make_cfg, *overrides)
    n = 100_000
    v = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    z2 = 6 * torch.logit(v)  # z = 6 logit(v): tails out to |z| ≈ 73
    dz = 6 / (v * (1 - v)) / n
    totals, densities = [], []
    for z1 in decoding_to_distinct_tokens(model):
        z1 = z1.expand(n, 1)
        z = torch.stack([z1, z2[:, None]], dim=1)  # [n, 2, 1]
        with torch.no_grad():
            density = model.prior.log_prob(z)[:, 1].exp()
        totals.append((density * dz).sum().item())
        densities.append(density)
    assert totals == pytest.approx([1.0, 1.0, 1.0], abs=2e-3)
    assert (densities[0] - densities[1]).abs().max() > 1e-3  # the previous token matters


@pytest.mark.parametrize("overrides", [*VARIANTS, ("latent_dim=2", "prior.inputs=decoded", "prior.transform=spline"),
                                       ("flow=argmax", "prior.inputs=both", "prior.transform=spline")],
                         ids=lambda o: "-".join(s.split("=")[1] for s in o))
def test_prior_inverts_and_stateful_sampler_equals_recomputing(make_cfg, overrides):
    model = lm(make_cfg, *overrides)
    D = model.prior.dim
    e = torch.logit(torch.rand(4, 6, D, dtype=torch.float64).clamp(1e-4, 1 - 1e-4))
    z = model.prior.inverse(e)
    e_back, _ = model.prior(z)
    torch.testing.assert_close(e_back, e, atol=1e-5, rtol=0)
    torch.testing.assert_close(recomputing_inverse(model.prior, e), z, atol=1e-8, rtol=0)


@pytest.mark.parametrize("inputs", ["decoded", "both"])
def test_causality_previous_categories_matter_later_ones_do_not(make_cfg, inputs):
    """Moving token 2 into another box changes log p(z_t) for t = 3 only through
    decode(z_<t); tokens 0..2's own terms before it are untouched."""
    model = lm(make_cfg, "latent_dim=1", f"prior.inputs={inputs}", "prior.transform=spline")
    x = torch.tensor([3, 7, 1, 9, 4, 4])
    z = torch.stack([in_box(model, int(k))[0] for k in x])[None]  # [1, 6, 1]
    moved = z.clone()
    moved[0, 2] = in_box(model, 15)[0]
    with torch.no_grad():
        before, after = model.prior.log_prob(z), model.prior.log_prob(moved)
    torch.testing.assert_close(before[:, :2], after[:, :2], atol=0, rtol=0)  # x_{>=t} never read
    assert (before[:, 3:] - after[:, 3:]).abs().min() > 1e-6  # x_{<t} is
    if inputs == "decoded":  # a move inside the same box changes nothing downstream
        same = z.clone()
        same[0, 2] = in_box(model, 1)[0]
        with torch.no_grad():
            again = model.prior.log_prob(same)
        torch.testing.assert_close(again[:, 3:], before[:, 3:], atol=1e-12, rtol=0)


def test_catnf_bound_reads_decoded_latents_not_the_data(make_cfg):
    """CatNF's decoder is not exact, so decode(z) differs from x on some tokens: the
    prior term of the bound must be the one conditioned on decode(z)."""
    model = lm(make_cfg, "flow=catnf", "prior.inputs=decoded", "prior.transform=spline")
    x = torch.randint(0, K, (8, 12))
    mask = torch.ones_like(x, dtype=torch.bool)
    torch.manual_seed(3)
    terms = model.terms(x, mask)
    torch.manual_seed(3)
    z, _ = model.dequantiser.sample(x)  # the same draw terms() made
    assert (model.decode(z) != x).any(), "the check needs tokens whose decoding is not x"
    with torch.no_grad():
        honest = model.prior.log_prob(z, mask)

        leak = dataclasses.replace(model.support, decode_fn=lambda _z: x)  # hands the prior the data, not decode(z)
        leaked = model.prior.log_prob(z, mask, None, leak)
    torch.testing.assert_close(terms.log_p, honest, atol=1e-12, rtol=0)
    assert (terms.log_p - leaked).abs().max() > 1e-3


def test_spline_knots_at_faces_make_the_bound_categorical(make_cfg):
    """With heights log(π_k / w_k) on box k's bins, log p(z) − log q(z|x) = log π_x for
    every z ~ q(z|x): the TRUFL bound equals a categorical model's (D = 1)."""
    model = lm(make_cfg, "latent_dim=1", "prior.inputs=decoded", "prior.transform=spline")
    prior, deq = model.prior, model.dequantiser
    knots = prior.transform.current(model.support).knots[0]
    mids = torch.logit((0.5 * (knots[1:] + knots[:-1])).clamp(1e-12, 1 - 1e-12))
    box_of_bin = deq.decode(mids[:, None])
    box = deq.boxes()
    width = (box.b - box.a)[:, 0].double()
    pi = torch.softmax(torch.randn(K, dtype=torch.float64), 0)
    heights = torch.where(box_of_bin >= 0, (pi / width)[box_of_bin.clamp_min(0)].log(), torch.full_like(mids, -60.0))
    with torch.no_grad():
        prior.head.out.weight.zero_()
        prior.head.out.bias.copy_(heights)
    x = torch.randint(0, K, (4, 10))
    z, log_q = deq.sample(x)
    with torch.no_grad():
        log_p = prior.log_prob(z)
    torch.testing.assert_close(log_p - log_q, pi.log()[x], atol=1e-6, rtol=0)


def test_categorical_nll_is_the_cross_entropy_by_hand():
    torch.manual_seed(0)
    model = CategoricalLSTM(5, hidden=8, embed_dim=4)
    x = torch.tensor([[1, 4, 0, 2], [3, 3, 1, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    nll = bits_metrics(model.terms(x, mask), mask)["nll_bits"]
    # by hand: step the LSTM one token at a time, softmax, pick the target
    total, count = 0.0, 0
    for b in range(2):
        prev, state = None, None
        for t in range(4):
            logits, state = model.net.step(prev, state, batch=1)
            if mask[b, t]:
                total -= F.log_softmax(logits[0], -1)[x[b, t]].item()
                count += 1
            prev = x[b, t : t + 1]
    assert nll.item() == pytest.approx(total / count / LN2, abs=1e-6)


def test_categorical_baseline_run_reports_only_what_it_has(make_cfg, tmp_path):
    cfg = make_cfg(*tiny_text("flow=categorical"), out=tmp_path / "cat")
    metrics = run(cfg)
    results = json.loads((tmp_path / "cat" / "results.json").read_text())
    assert {k.split("/")[1] for k in metrics if k.count("/") and not k.startswith("sample")} == {"nll_bits"}
    assert set(results["not_applicable"]) == {"recon_bits", "kl_bits", "determinism", "decode_acc", "iwbo_bits", "log_Z"}
    assert "log_Z" not in results["log_Z"] and results["renormalised"] == {}
    assert 0 < metrics["val/nll_bits"] < math.log2(K) + 0.5
    # the same size as the prior it is compared with: hidden follows prior.encoder.hidden (16 here)
    assert results["dequantiser"]["parameters"] == sum(p.numel() for p in CategoricalLSTM(K, 16, 64).parameters())
    assert all(set(s) <= set(" abcdefghijklmnopqrstuvwxyz") for s in results["samples"])


def test_categorical_baseline_refuses_a_context(make_cfg):
    with pytest.raises(ValueError, match="context=none"):
        build_likelihood(make_cfg("flow=categorical", "context=causal_lstm"), K)


@pytest.mark.parametrize("overrides", [("prior.inputs=decoded", "prior.transform=spline"),
                                       ("prior.inputs=latent", "prior.transform=mixture")], ids=["decoded-spline", "latent-mixture"])
def test_sequential_log_z_agrees_with_plain_monte_carlo(make_cfg, overrides):
    """T = 1, 2, 3, D = 1: the sequential estimator is within 3 standard errors of a
    40 000-sequence Monte Carlo estimate of the same Z."""
    model = lm(make_cfg, "latent_dim=1", "flow.init_gap=0.15", *overrides)  # wide gaps: Z far from 1

    for T in (1, 2, 3):
        torch.manual_seed(T)
        seq = model.log_support_mass(T, 2000)
        mc = monte_carlo_support_mass(model.prior.sample, model.decode, T, 40_000)
        assert seq["estimator"].startswith("sequential")
        assert abs(seq["log_Z"] - mc["log_Z"]) < 3 * math.hypot(seq["stderr"], mc["stderr"]), (T, seq, mc)
        assert seq["log_Z"] < -0.05  # the check has teeth: far from log 1


def test_sequential_log_z_is_finite_where_whole_sequences_miss(make_cfg):
    """The untrained default text model, 128 tokens: plain Monte Carlo sees (almost) no
    sequence inside the support; the sequential estimate is finite with a small error."""
    torch.manual_seed(0)
    model = build_likelihood(make_cfg("latent_dim=1", "prior.inputs=decoded", "prior.transform=spline", "flow.init_gap=0.1"), K).eval()
    est = model.log_support_mass(128, 64)
    assert math.isfinite(est["log_Z"]) and est["log_Z"] < 0 and est["stderr"] < 0.01


def test_union_of_overlapping_intervals():
    from trufl.priors.support_mass import union_of_intervals

    lo, hi = union_of_intervals(torch.tensor([0.5, -1.0, 0.0, 3.0]), torch.tensor([1.0, 0.1, 0.6, 4.0]))
    assert lo.tolist() == [-1.0, 3.0] and hi.tolist() == [1.0, 4.0]


@pytest.mark.parametrize("flow", ["trufl", "catnf", "argmax"])
def test_prior_sees_the_same_decoded_tokens_from_the_terms_posterior(make_cfg, flow):
    """The terms hand the prior decode(z) from the posterior they computed: it must equal
    decoding z afresh (outside every support included) and give the same log p(z)."""
    model = lm(make_cfg, f"flow={flow}", "prior.inputs=decoded", "prior.transform=spline")
    z = 8 * torch.randn(3, 7, model.prior.dim, dtype=torch.float64)  # far out: some z in no support
    log_post = model.dequantiser.decoder_log_prob(z)
    told = model._support_of(z, log_post)
    assert torch.equal(told.decode(z), model.decode(z))
    assert flow == "catnf" or (model.decode(z) == -1).any()  # the invalid row is exercised
    torch.testing.assert_close(model.prior.log_prob(z, None, None, told), model.prior.log_prob(z), rtol=0, atol=0)
