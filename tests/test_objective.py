"""The reported metrics on cases with a known answer: determinism and decoding
accuracy, the importance-weighted bound against the exact log p(x) of the toy, and
bounds that do not depend on the loss weights."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from trufl.support import Support

from trufl.build import build, build_model
from trufl.dequantisers import ArgmaxDequantiser, CatNFDequantiser, TruflDequantiser
from trufl.latent import LatentVariableModel
from trufl.metrics import LN2
from trufl.objective import bits_metrics, iwbo
from trufl.priors import StandardLogisticPrior

from .conftest import toy

K = 4


def tokens(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Every category equally often ``x [n/K, K]`` and its all-True mask."""
    x = torch.arange(K).repeat(n // K, 1)
    return x, torch.ones_like(x, dtype=torch.bool)


@pytest.mark.parametrize("deq", [
    lambda: TruflDequantiser(K, dim=1, init_gap=0.05),  # disjoint boxes: z ~ q(z|x) is in x's box only
    lambda: TruflDequantiser(K, dim=2, location_scale=True),
    lambda: ArgmaxDequantiser(K, variant="binary"),  # z's sign pattern is x's code
    lambda: ArgmaxDequantiser(K, variant="onehot"),  # z's argmax is x
])
def test_partitioning_dequantisers_decode_every_token_exactly(deq):
    torch.manual_seed(0)
    d = deq()
    model = LatentVariableModel(d, StandardLogisticPrior(Support.unbound(d.dim)))
    x, mask = tokens()
    m = bits_metrics(model.terms(x, mask), mask)
    assert m["determinism"].item() == 1.0 and m["decode_acc"].item() == 1.0
    assert m["recon_bits"].item() == pytest.approx(0.0, abs=1e-6)


def test_identical_encoders_decode_at_chance_with_no_determinism():
    """CatNF with the same location and scale for every category: p(k|z) = 1/K for every z,
    so determinism is 0, the argmax is category 0 (the first of equal values) and
    recon = log K per token."""
    torch.manual_seed(0)
    d = CatNFDequantiser(K, dim=2)
    with torch.no_grad():
        d.loc.copy_(d.loc[:1].expand_as(d.loc))
    model = LatentVariableModel(d, StandardLogisticPrior(Support.unbound(2)))
    x, mask = tokens()
    m = bits_metrics(model.terms(x, mask), mask)
    assert m["determinism"].item() == 0.0
    assert m["decode_acc"].item() == pytest.approx(1 / K)
    assert m["recon_bits"].item() == pytest.approx(math.log2(K), abs=1e-5)


def exact_log_px(deq) -> torch.Tensor:
    """``log p(x=k) [K]`` for a D=1 model under the standard logistic prior, by quadrature in
    the prior's CDF space: p(x=k) = ∫₀¹ p(k | z=logit(u)) du (midpoints, 200k cells)."""
    n = 200_000
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    with torch.no_grad():
        log_post = deq.decoder_log_prob(torch.logit(u).float().unsqueeze(-1))  # [n, K]
    return (torch.logsumexp(log_post.double(), dim=0) - math.log(n)).float()


@pytest.mark.parametrize("deq", [
    lambda: TruflDequantiser(K, dim=1, location_scale=True),
    lambda: CatNFDequantiser(K, dim=1),
])
def test_iwbo_approaches_the_exact_log_likelihood_from_below(deq):
    """D=1 under a fixed standard logistic prior, where log p(x) is a 1-D integral: the IWBO
    with k samples never exceeds it, does not decrease with k (up to Monte Carlo error)
    and closes in on it."""
    torch.manual_seed(0)
    d = deq()
    with torch.no_grad():  # move q(z|x) away from the prior restricted to x's region
        for p in d.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model = LatentVariableModel(d, StandardLogisticPrior(Support.unbound(1)))
    exact = exact_log_px(d)
    x, mask = torch.arange(K).repeat(2000, 1).reshape(-1, 1), torch.ones(2000 * K, 1, dtype=torch.bool)
    per_k = {}
    for k in (1, 4, 16, 128):
        bound = iwbo(model, x, mask, k)  # [N] nats, one token each
        per_k[k] = torch.stack([bound[x[:, 0] == c].mean() for c in range(K)])
    gaps = {k: (exact - b).tolist() for k, b in per_k.items()}
    assert all(g > -3e-3 for k in per_k for g in gaps[k]), gaps  # a lower bound on log p(x)
    assert all((per_k[b] >= per_k[a] - 3e-3).all() for a, b in ((1, 4), (4, 16), (16, 128))), gaps
    assert (exact - per_k[1] > 0.02).any(), f"q must leave a gap at k=1, or the test proves nothing: {gaps}"
    assert ((exact - per_k[128]) <= (exact - per_k[1]) / 2 + 3e-3).all(), gaps  # and closes in


def test_reported_nll_does_not_depend_on_recon_weight_but_the_loss_does(make_cfg):
    """One training step of CatNF on the toy from the same initialisation and data:
    the reported bound (weights 1) is the same for recon_weight 1 and 10, the loss is
    −(w·recon + kl-term), i.e. nll + (w − 1)·recon_bits in nats."""
    seen = {}
    for weight in (1.0, 10.0):
        cfg = make_cfg(*toy("flow=catnf", f"recon_weight={weight}", "trainer.max_steps=1"))
        pl.seed_everything(0, verbose=False)
        task = build(cfg.dataset)
        task.setup()
        module = build_model(cfg, task.num_categories)
        trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, datamodule=task)
        seen[weight] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    one, ten = seen[1.0], seen[10.0]
    assert one["train/nll_bits"] == pytest.approx(ten["train/nll_bits"], abs=1e-6)
    assert one["train/recon_bits"] > 0.05  # CatNF's overlapping encoders: the weight matters
    assert one["loss"] == pytest.approx(one["train/nll_bits"] * LN2, abs=1e-5)
    assert ten["loss"] == pytest.approx((ten["train/nll_bits"] + 9 * ten["train/recon_bits"]) * LN2, abs=1e-4)
