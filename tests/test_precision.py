"""Mixed precision (``trainer.precision=bf16-mixed``): under bf16 autocast the networks run in
bf16 but every flow computes in float32, so a prior still integrates to 1, its log-determinant
is still its Jacobian's, and it still inverts; a model's bound moves only by the networks' rounding."""

from __future__ import annotations

import pytest
import torch

from trufl.condition import Condition
from trufl.dequantisers import ArgmaxDequantiser
from trufl.precision import attention, flow_input, no_autocast
from trufl.priors.attention import causal_mask
from trufl.priors.conditioners import SetConditioner
from trufl.priors import GraphCouplingPrior, SetCouplingPrior
from trufl.support import Support

from .conftest import ar_prior
from .test_flows import GRAPH, REFERENCE, SMALL_COUPLING, randomised

bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731

PRIORS = {
    "ar_lstm_mixture": lambda: (ar_prior(3, hidden=16, head_hidden=16, num_mixtures=4), (2, 4, 3), None),
    "ar_lstm_spline": lambda: (ar_prior(2, hidden=16, head_hidden=16, transform="spline", num_bins=6), (2, 4, 2), None),
    "ar_lstm_catnf_reference": lambda: (ar_prior(3, **REFERENCE, base="unit_logistic"), (2, 4, 3), None),
    "ar_transformer": lambda: (ar_prior(2, "transformer", hidden=16, num_layers=1, heads=2, head_hidden=16, num_mixtures=3),
                               (2, 5, 2), None),
    "support_matched_argmax": lambda: (ar_prior(2, support=ArgmaxDequantiser(4).support(), transform="support", hidden=16,
                                                head_hidden=16), (2, 4, 2), None),
    "set_coupling_reference_shaped": lambda: (SetCouplingPrior(Support.unbound(4), mix_dims=True, actnorm="every", split="fixed",
                                                               block="catnf", scale_bounds="learned", base="unit_variance",
                                                               **SMALL_COUPLING), (2, 5, 4), None),
    "graph_coupling": lambda: (GraphCouplingPrior(Support.unbound(2), **SMALL_COUPLING), (1, 5, 2), Condition(adjacency=GRAPH)),
}


def float32(prior, std: float = 0.1):
    return randomised(prior, std).float()


@pytest.mark.parametrize("name", list(PRIORS))
def test_under_bf16_autocast_a_prior_runs_its_networks_in_bf16_and_its_flow_in_float32(name):
    torch.manual_seed(0)
    prior, shape, condition = PRIORS[name]()
    prior = float32(prior)
    z = torch.randn(*shape)
    with torch.no_grad():
        e32, ld32 = prior(z, None, condition)
        with bf16():
            e, ld = prior(z, None, condition)
    assert e.dtype == ld.dtype == torch.float32
    assert (e - e32).abs().max() > 1e-5  # the networks did run in bf16 ...
    assert (e - e32).abs().max() < 0.1 and (ld - ld32).abs().max() < 0.1  # ... and only rounded


INTEGRATED = {
    "ar_lstm_catnf_reference": lambda: ar_prior(2, **REFERENCE, base="unit_logistic"),
    "set_coupling_reference_shaped": lambda: SetCouplingPrior(Support.unbound(2), mix_dims=True, actnorm="every", split="fixed",
                                                              block="catnf", scale_bounds="learned", base="unit_variance",
                                                              **SMALL_COUPLING),
}


@pytest.mark.parametrize("name", list(INTEGRATED))
def test_under_bf16_autocast_a_prior_still_integrates_to_one(name):
    """One element of D = 2: a 2-D quadrature of exp(log p) in float32 with the networks in bf16
    (a flow in bf16 would miss 1 by about its 8-bit mantissa). (Autograd's Jacobian is no check
    here: its backward through bf16 networks rounds what later layers' own derivatives multiply.)"""
    torch.manual_seed(0)
    prior = float32(INTEGRATED[name](), 0.3 if name.startswith("ar") else 0.1)
    axis = torch.linspace(-14, 14, 561)
    z = torch.cartesian_prod(axis, axis).reshape(-1, 1, 2)
    with torch.no_grad(), bf16():
        log_p = prior.log_prob(z)
    assert log_p.dtype == torch.float32
    assert log_p.exp().double().sum().item() * (axis[1] - axis[0]).item() ** 2 == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("flow", ["trufl", "catnf", "argmax", "categorical"])
def test_a_models_per_token_bound_under_bf16_autocast_is_float32_and_moves_only_by_rounding(flow, make_cfg):
    from trufl.build import build, build_model

    cfg = make_cfg(f"flow={flow}", "dataset.seq_len=32", "dataset.batch_size=4", "prior.encoder.hidden=32", "prior.head_hidden=32")
    task = build(cfg.dataset)
    task.setup()
    torch.manual_seed(0)
    model = build_model(cfg, task.num_categories).model.eval()
    batch = next(iter(task.val_dataloader()))
    with torch.no_grad():
        torch.manual_seed(1)
        t32 = model.terms(batch["x"], batch["mask"])
        torch.manual_seed(1)
        with bf16():
            t16 = model.terms(batch["x"], batch["mask"])
    for name in ("recon", "log_p", "log_q"):
        a, b = getattr(t32, name), getattr(t16, name)
        if a is None or not torch.is_tensor(a):
            continue
        assert b.dtype == torch.float32, name
        assert (a - b)[batch["mask"]].abs().mean() < 0.05, name


def test_flow_input_casts_only_half_precision_and_no_autocast_switches_it_off():
    assert flow_input(torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert flow_input(torch.ones(2, dtype=torch.float64)).dtype == torch.float64
    a = torch.randn(4, 4)
    with bf16():
        assert (a @ a).dtype == torch.bfloat16
        with no_autocast():
            assert (a @ a).dtype == torch.float32


def test_cpu_attention_on_bf16_inputs_is_float32_attention_of_those_inputs():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 8).bfloat16() for _ in range(3))
    mask = causal_mask(6, torch.bfloat16)
    with bf16():
        out = attention(q, k, v, mask)
    exact = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask.float())
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, exact.bfloat16())  # float32 attention, rounded once at the end
    fused_bf16 = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (fused_bf16.float() - exact).abs().max() > 0  # the bf16 kernel is a different computation


def test_set_conditioner_under_cpu_autocast_takes_the_composed_attention_kernel_and_only_rounds():
    torch.manual_seed(0)
    net = SetConditioner(4, 3, hidden=32, heads=4, layers=2, block="catnf")
    h = torch.randn(5, 7, 4)
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[0, 5:] = False
    with torch.no_grad():
        out32 = net(h, mask)
        with bf16(), torch.profiler.profile() as prof:
            out = net(h, mask)
    ops = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" not in ops and "aten::bmm" in ops
    assert out.dtype == torch.bfloat16
    err = (out.float() - out32).abs().max()
    assert 0 < err < 0.1 * out32.abs().max()


def test_bf16_mixed_trains_in_bf16_and_reports_float32_numbers(make_cfg, tmp_path):
    """trainer.precision=bf16-mixed: the weights it trains differ from float32 training's (the
    steps ran under autocast), but its reported val bound is the float32 evaluation of its own
    weights (evaluating its checkpoint again at precision 32 gives the same number)."""
    import json

    from trufl.evaluation import run_eval
    from trufl.run import run

    from .conftest import tiny_text

    runs = {}
    for precision in ("bf16-mixed", "32"):
        out = tmp_path / precision
        run(make_cfg(*tiny_text(f"trainer.precision={precision}", "trainer.max_steps=4"), out=out))
        runs[precision] = out
    ckpts = {p: torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"] for p, d in runs.items()}
    assert any(not torch.equal(ckpts["bf16-mixed"][k], ckpts["32"][k]) for k in ckpts["32"])
    reported = json.loads((runs["bf16-mixed"] / "results.json").read_text())["metrics"]["val/nll_bits"]
    again = run_eval(runs["bf16-mixed"], "val", ["trainer.precision=32"])["metrics"]["val/nll_bits"]
    assert reported == pytest.approx(again, abs=1e-6)
