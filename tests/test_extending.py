"""The worked examples of docs/extending.md, run the way the page describes them: a
dequantiser added with its module, its config and one entry in the shared test table;
an encoder of the autoregressive prior added as one module."""

from __future__ import annotations

import json
import re
import subprocess
from functools import partial

import pytest
import torch
from torch import nn

from trufl.priors import AutoregressivePrior
from trufl.priors.reference import recomputing_inverse
from trufl.run import run
from trufl.support import Support

from .conftest import ROOT, tiny_text, toy
from .test_dequantisers import FACTORIES

#: every file that names the uniform dequantiser, as docs/extending.md lists them
UNIFORM_FILES = {
    "trufl/dequantisers/uniform.py", "trufl/dequantisers/__init__.py", "trufl/conf/flow/uniform.yaml",
    "tests/test_dequantisers.py", "tests/test_extending.py", "docs/extending.md",
}


def test_the_uniform_dequantiser_is_wired_through_exactly_the_documented_files():
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    naming = {f for f in tracked if (ROOT / f).is_file() and f.endswith((".py", ".yaml", ".md"))
              and re.search(r"UniformDequantiser|flow=uniform|trufl/conf/flow/uniform", (ROOT / f).read_text())}
    assert naming == UNIFORM_FILES
    assert "uniform" in FACTORIES  # so the shared dequantiser tests run on it


def test_the_uniform_dequantiser_trains_with_an_exact_decoder(make_cfg, tmp_path):
    """A few steps on text (the AR prior, spline knots at its interval faces): the metric
    contract holds, decoding is exact (determinism 1, recon 0) and log Z is an estimate."""
    metrics = run(make_cfg(*tiny_text("flow=uniform", "latent_dim=1")))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "finished"
    assert metrics["test/determinism"] == 1.0 and metrics["test/recon_bits"] == 0.0
    assert metrics["test/nll_bits"] == pytest.approx(metrics["test/kl_bits"], abs=1e-6)
    assert results["log_Z"]["log_Z"] < 0 and metrics["test/log_Z"] == pytest.approx(results["log_Z"]["log_Z"], rel=1e-6)


def test_a_model_with_nothing_to_learn_is_refused_by_name(make_cfg):
    """The uniform dequantiser under the toy's fixed prior has no parameter at all."""
    with pytest.raises(ValueError, match="no parameters to train.*UniformDequantiser.*StandardLogisticPrior"):
        run(make_cfg(*toy("flow=uniform", "trainer.max_steps=2")))


class GRUEncoder(nn.Module):
    """The extending guide's example encoder: a GRU over the prior's inputs."""

    def __init__(self, in_dim: int, hidden: int = 16):
        super().__init__()
        self.out_dim = hidden
        self.gru = nn.GRU(in_dim, hidden, batch_first=True)

    def forward(self, inputs, condition=None):
        return self.gru(inputs)[0]

    def step(self, input_t, state, t, condition=None):
        return self.gru(input_t, state)


def test_a_new_encoder_is_one_module_and_the_prior_inverts_with_it():
    torch.manual_seed(0)
    prior = AutoregressivePrior(Support.unbound(2), partial(GRUEncoder, hidden=16), inputs="latent",
                                transform="mixture", num_mixtures=3, head_hidden=16).double()
    with torch.no_grad():
        prior.head.out.weight.normal_(0, 0.3)
    prior.transform.actnorm.initialised.fill_(True)
    z = 2 * torch.randn(3, 6, 2, dtype=torch.float64)
    e, _ = prior(z)
    assert (prior.inverse(e) - z).abs().max().item() < 1e-5
    torch.testing.assert_close(prior.inverse(e), recomputing_inverse(prior, e), atol=1e-9, rtol=0)
