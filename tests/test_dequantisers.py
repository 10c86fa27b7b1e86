"""Unit tests of the dequantiser interface: densities, supports, decoders, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from trufl.dequantisers import ArgmaxDequantiser, CatNFDequantiser, TruflDequantiser, UniformDequantiser
from trufl.dequantisers.boundary import exact_recon_1d
from trufl.distributions import gather, logistic_log_pdf


def randomise(deq, seed: int = 0):
    """Random (overlapping, off-identity) parameters so no test passes by symmetry."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in deq.named_parameters():
            if name == "bound_logits":
                p.copy_(0.7 * torch.randn(p.shape, generator=g))
            elif name in ("mean",):
                p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.4 * torch.randn(p.shape, generator=g))
    return deq


#: the shared test table: every dequantiser, built for K categories and D dimensions (None where it
#: cannot be: the test then uses D = 1, or skips); a new dequantiser is one entry here
FACTORIES = {
    "trufl": lambda K, D: TruflDequantiser(K, D),
    "trufl_locscale": lambda K, D: TruflDequantiser(K, D, location_scale=True),
    "trufl_central_start": lambda K, D: TruflDequantiser(K, D, init="central"),
    "trufl_random_start": lambda K, D: TruflDequantiser(K, D, init="random"),
    "catnf": lambda K, D: CatNFDequantiser(K, D),
    "catnf_flows": lambda K, D: CatNFDequantiser(K, D, num_flows=2, hidden=8),
    "catnf_embedding": lambda K, D: CatNFDequantiser(K, D, parameterisation="embedding", embed_dim=8),
    "argmax_binary": lambda K, D: ArgmaxDequantiser(2**D),
    "argmax_onehot": lambda K, D: ArgmaxDequantiser(D, variant="onehot") if D >= 2 else None,
    "uniform": lambda K, D: UniformDequantiser(K) if D == 1 else None,
}


def grid(D: int, n: int, scale: float = 3.0):
    """Midpoint grid over R^D through z = scale·logit(v); returns z [n^D, D] and dz [n^D]."""
    v = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    z1 = scale * torch.logit(v)
    dz1 = scale / (v * (1 - v)) / n
    zs = torch.cartesian_prod(*[z1] * D).reshape(-1, D)
    dz = torch.cartesian_prod(*[dz1] * D).reshape(-1, D).prod(-1)
    return zs, dz


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("D,n,tol", [(1, 200_000, 2e-3), (2, 1500, 1e-2)])
def test_log_prob_all_integrates_to_one(name, D, n, tol):
    deq = FACTORIES[name](4, D)
    if deq is None:
        pytest.skip("one-hot needs D = K >= 2")
    deq = randomise(deq).double()
    z, dz = grid(D, n)
    with torch.no_grad():
        mass = torch.stack([(deq.log_prob_all(chunk).exp() * w[:, None]).sum(0) for chunk, w in zip(z.split(500_000), dz.split(500_000))]).sum(0)
    assert mass.shape == (deq.num_categories,)
    assert torch.allclose(mass, torch.ones_like(mass), atol=tol), mass


@pytest.mark.parametrize("name", list(FACTORIES))
def test_samples_lie_in_their_own_support_and_log_q_is_consistent(name):
    deq = randomise(FACTORIES[name](5, 3) or FACTORIES[name](5, 1), seed=1)
    x = torch.randint(0, deq.num_categories, (64, 9))
    z, log_q = deq.sample(x)
    assert z.shape == (64, 9, deq.dim)
    log_all = deq.log_prob_all(z)
    assert torch.isfinite(gather(log_all, x)).all(), "a sample fell outside its own support"
    assert deq.in_support(z).all()
    torch.testing.assert_close(gather(log_all, x), log_q, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_decoder_rows_sum_to_one(name):
    deq = randomise(FACTORIES[name](4, 2) or FACTORIES[name](4, 1) or FACTORIES["catnf"](4, 2), seed=2)
    x = torch.randint(0, deq.num_categories, (500,))
    z, _ = deq.sample(x)
    rows = deq.decoder_log_prob(z).exp().sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-5, rtol=0)


def test_trufl_disjoint_boxes_decode_with_probability_one():
    deq = TruflDequantiser(27, 3)  # partition initialisation: disjoint boxes
    x = torch.randint(0, 27, (4096,))
    z, _ = deq.sample(x)
    log_px = gather(deq.decoder_log_prob(z), x)
    assert (log_px == 0).all(), "p(x|z) must be exactly 1 where boxes are disjoint"
    assert (deq.recon_log_prob(x, z) == 0).all()
    assert (deq.decode(z) == x).all()
    lo, hi = torch.tensor(deq.summary()["box_lower"]), torch.tensor(deq.summary()["box_upper"])
    overlap = ((torch.minimum(hi[:, None], hi[None]) - torch.maximum(lo[:, None], lo[None])) > 0).all(-1)
    assert overlap.sum() == 27, "initial boxes overlap (only the diagonal may)"


@pytest.mark.parametrize("init", ["central", "random"])
def test_trufl_overlapping_starts_overlap_inside_the_unit_interval(init):
    torch.manual_seed(0)
    deq = TruflDequantiser(6, 2, init=init)
    lo, hi = torch.tensor(deq.summary()["box_lower"]), torch.tensor(deq.summary()["box_upper"])
    assert (lo > 0).all() and (hi < 1).all() and (hi - lo >= 0.3 - 1e-6).all()
    overlap = ((torch.minimum(hi[:, None], hi[None]) - torch.maximum(lo[:, None], lo[None])) > 0).all(-1)
    assert overlap.float().mean() >= (1.0 if init == "central" else 0.5), "most pairs of boxes must start overlapping"
    x = torch.randint(0, 6, (4096,))
    z, _ = deq.sample(x)
    assert (deq.decoder_log_prob(z).exp().amax(-1) < 1).float().mean() > 0.9, "overlapping boxes cannot decode exactly"


def test_trufl_central_start_is_one_interval_up_to_a_symmetry_breaking_shift():
    deq = TruflDequantiser(4, 1, init="central")
    lo, hi = torch.tensor(deq.summary()["box_lower"]), torch.tensor(deq.summary()["box_upper"])
    assert torch.allclose(lo, torch.full_like(lo, 0.25), atol=3e-3) and torch.allclose(hi - lo, torch.full_like(lo, 0.5), atol=1e-4)
    assert len(set(lo.flatten().tolist())) == 4, "identical boxes would get identical gradients"


def test_trufl_rejects_an_unknown_start():
    with pytest.raises(ValueError, match="init"):
        TruflDequantiser(4, 1, init="middle")


def test_trufl_partition_init_uses_distinct_grid_cells():
    for K, D in [(4, 1), (27, 3), (5, 2), (256, 3)]:
        deq = TruflDequantiser(K, D)
        centres = torch.tensor(deq.summary()["box_lower"]) + 0.5 * (torch.tensor(deq.summary()["box_upper"]) - torch.tensor(deq.summary()["box_lower"]))
        assert len({tuple(c) for c in centres.mul(1e4).round().tolist()}) == K


def test_argmax_decodes_exactly_and_flags_invalid_codes():
    deq = randomise(ArgmaxDequantiser(5), seed=3)  # D = 3: codes 5, 6, 7 are invalid
    assert deq.dim == 3
    x = torch.randint(0, 5, (2000,))
    z, _ = deq.sample(x)
    assert (deq.decode(z) == x).all()
    assert (gather(deq.decoder_log_prob(z), x) == 0).all()
    invalid = torch.tensor([[1.0, -1.0, 1.0], [-0.5, 1.0, 2.0], [3.0, 0.2, 0.7]])  # codes 5, 6, 7
    assert (deq.code(invalid) == torch.tensor([5, 6, 7])).all()
    assert not deq.in_support(invalid).any()
    assert (deq.decode(invalid) == deq.INVALID).all()
    assert torch.isinf(deq.log_prob_all(invalid)).all()


def test_argmax_rejects_wrong_dim():
    with pytest.raises(ValueError, match="flow.dim"):
        ArgmaxDequantiser(4, dim=1)


def _random_trufl(D, location_scale, mode, seed=3):
    torch.manual_seed(seed)
    deq = TruflDequantiser(4, D, location_scale=location_scale, boundary_gradient=mode).double()
    return randomise(deq, seed)


def _recon_and_grad(deq, n, seed=0):
    torch.manual_seed(seed)
    deq.zero_grad()
    x = torch.arange(4).repeat(n)
    z, _ = deq.sample(x)
    value = deq.recon_log_prob(x, z).mean()
    value.backward()
    return value.item(), torch.cat([p.grad.flatten() for p in deq.parameters()])


def test_exact_1d_recon_is_the_expectation_of_the_sampled_one():
    deq = _random_trufl(1, False, "none")  # "none": recon_log_prob is log p(x|z) at the sample
    box = deq.boxes()
    with torch.no_grad():
        exact = torch.cat([exact_recon_1d(torch.tensor([k]), box) for k in range(4)])
        torch.manual_seed(1)
        x = torch.arange(4).repeat(50_000)
        z, _ = deq.sample(x)
        sampled = deq.recon_log_prob(x, z).view(-1, 4)
    stderr = sampled.std(0) / math.sqrt(sampled.shape[0])
    assert (exact < -0.05).any(), "the random boxes should overlap"
    assert ((sampled.mean(0) - exact).abs() <= 4 * stderr + 1e-9).all(), (sampled.mean(0), exact)


def test_sampled_boundary_gradient_matches_exact_in_1d():
    _, g_exact = _recon_and_grad(_random_trufl(1, False, "exact"), 1)
    _, g_sampled = _recon_and_grad(_random_trufl(1, False, "sampled"), 100_000)
    _, g_plain = _recon_and_grad(_random_trufl(1, False, "none"), 100_000)
    assert g_exact.abs().max() > 0.05
    torch.testing.assert_close(g_sampled, g_exact, atol=0.01, rtol=0)
    # the plain pathwise gradient misses the face terms: it is nowhere near
    assert (g_plain - g_exact).abs().max() > 0.05


@pytest.mark.parametrize("location_scale", [False, True])
def test_sampled_boundary_gradient_matches_finite_differences_in_2d(location_scale):
    deq = _random_trufl(2, location_scale, "sampled")
    _, grad = _recon_and_grad(deq, 100_000)
    params = deq.bound_logits
    fd = []
    for i in range(4):
        values = []
        for step in (1e-2, -2e-2, 1e-2):
            with torch.no_grad():
                params.view(-1)[i] += step
            values.append(_recon_and_grad(deq, 100_000, seed=7)[0])
        fd.append((values[0] - values[1]) / 2e-2)
    fd = torch.tensor(fd, dtype=grad.dtype)
    assert fd.abs().max() > 0.05
    torch.testing.assert_close(grad[:4], fd, atol=0.02, rtol=0.1)


def _trufl_exact_log_px(deq, n=400_000):
    """log p(x) = log ∫ p(z) p(x|z) dz under a standard logistic prior, D = 1, in CDF space."""
    v = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    with torch.no_grad():
        post = deq.decoder_log_prob(torch.logit(v)[:, None]).exp()  # [n, K]
    return torch.log(post.sum(0) / n)  # outside every box p(x|z) = 0


def test_elbo_never_exceeds_exact_log_likelihood_trufl():
    deq = _random_trufl(1, False, "exact")
    log_px = _trufl_exact_log_px(deq)
    assert log_px.exp().sum() <= 1 + 1e-6  # mass in the gaps is lost, never created
    box = deq.boxes()
    for k in range(4):
        x = torch.tensor([k])
        # ELBO = E[log p(x|z)] + E[log p(z) - log q(z|x)] = exact recon + log w_x (standard prior)
        elbo = exact_recon_1d(x, box).item() + box.log_w[k, 0].item()
        assert elbo <= log_px[k].item() + 1e-6, (k, elbo, log_px[k].item())


def test_elbo_never_exceeds_exact_log_likelihood_catnf():
    deq = randomise(CatNFDequantiser(4, 1), seed=5).double()
    z, dz = grid(1, 200_000)
    with torch.no_grad():
        log_px = torch.log((deq.decoder_log_prob(z).exp() * (logistic_log_pdf(z[:, 0]).exp() * dz)[:, None]).sum(0))
        assert log_px.exp().sum().item() == pytest.approx(1.0, abs=1e-4)
        x = torch.arange(4).repeat(50_000)
        zs, log_q = deq.sample(x)
        elbo = (gather(deq.decoder_log_prob(zs), x) + logistic_log_pdf(zs[..., 0]) - log_q).view(-1, 4)
    mean, stderr = elbo.mean(0), elbo.std(0) / math.sqrt(elbo.shape[0])
    assert (mean <= log_px + 3 * stderr).all(), (mean, log_px)
    assert (mean < log_px).any()  # the gap (KL to the posterior) is real here


def test_context_moves_the_boxes_and_keeps_the_boundary_gradient_exact():
    """With a per-token context the sampled estimator still matches the exact 1-D gradient."""
    torch.manual_seed(0)
    ctx = torch.randn(2, 4)

    def grads(mode, n):
        deq = randomise(TruflDequantiser(4, 1, boundary_gradient=mode, context_dim=4), seed=4).double()
        torch.manual_seed(0)
        x = torch.arange(4).repeat(n)
        c = ctx.double().repeat_interleave(1, 0)[torch.arange(4 * n) % 2]
        value = deq.recon_log_prob(x, deq.sample(x, c)[0], c).mean()
        value.backward()
        return deq, deq.context_net.weight.grad.clone()

    deq, g_exact = grads("exact", 1)
    _, g_sampled = grads("sampled", 100_000)
    box = deq.boxes(ctx.double())
    assert (box.a[0] - box.a[1]).abs().max() > 0.01, "context should move the boxes"
    assert g_exact.abs().max() > 0.01
    torch.testing.assert_close(g_sampled, g_exact, atol=0.01, rtol=0)


@pytest.mark.parametrize("K,D", [(16, 1), (9, 2), (3, 1)])
def test_catnf_grid_initialisation_starts_with_separate_categories(K, D):
    """init=grid: samples of every category decode to it (accuracy >= 0.98; 16 categories in 1-D: 0.985) before any training,
    as TRUFL's boxes start disjoint; the random initialisation overlaps (the failure it fixes)."""
    from trufl.dequantisers import CatNFDequantiser

    torch.manual_seed(0)
    x = torch.arange(K).repeat(2000)
    accuracy = {}
    for init in ("grid", "random"):
        deq = CatNFDequantiser(K, dim=D, init=init)
        with torch.no_grad():
            z, _ = deq.sample(x)
            accuracy[init] = (deq.log_prob_all(z).argmax(-1) == x).float().mean().item()
    assert accuracy["grid"] >= 0.98
    if K > 3:
        assert accuracy["random"] < 0.8
