"""The language-model recipes (``recipe=catnf_lm``, ``recipe=argmax_lm``): each builds its
reference code's model parameter for parameter, composes and validates at the paper's scale,
trains, and labels its runs paper or reference-optimiser."""

from __future__ import annotations

import json

import pytest

from trufl.build import build, build_likelihood
from trufl.config import validate_config
from trufl.run import run

#: the reference models' parameter counts (counted on the models the reference code builds:
#: CatNF 538,641 = encoder 2,118 + ActNorm 6 + coupling 536,517; Argmax 1,774,695)
REFERENCE_PARAMETERS = {"catnf_lm": 538_641, "argmax_lm": 1_774_695}

TINY = ["prior.encoder.hidden=16", "prior.encoder.out_layer=8", "prior.latent_embed=8", "prior.latent_embed_hidden=8",
        "prior.time_embed=4", "prior.head_hidden=16", "prior.head_feature_embed=4", "prior.num_mixtures=3",
        "dataset.seq_len=16", "dataset.batch_size=8", "trainer.max_steps=2", "trainer.val_check_interval=2",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "eval.iw_samples=2", "eval.log_z_samples=8",
        "eval.num_samples=1"]
TINY_FLOW = {"catnf_lm": ["flow.embed_dim=8"], "argmax_lm": ["flow.encoder_hidden=8", "flow.encoder_context=8"],
             "trufl_lm": []}


@pytest.mark.parametrize("recipe", sorted(REFERENCE_PARAMETERS))
def test_recipe_builds_exactly_the_reference_models_parameter_count(make_cfg, recipe):
    cfg = make_cfg(f"recipe={recipe}")
    validate_config(cfg)
    model = build_likelihood(cfg, 27)
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMETERS[recipe]


@pytest.mark.parametrize("recipe,optim,label", [
    ("catnf_lm", "catnf", "paper"), ("catnf_lm", "catnf_reference", "reference-optimiser"),
    ("argmax_lm", "argmax", "paper"), ("argmax_lm", "argmax_reference", "reference-optimiser"),
    ("trufl_lm", "trufl", "paper")])
def test_recipe_trains_two_tiny_steps_and_results_say_its_configuration(make_cfg, tmp_path, recipe, optim, label):
    metrics = run(make_cfg(f"recipe={recipe}", f"optim={optim}", *TINY, *TINY_FLOW[recipe]))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "finished" and results["global_step"] == 2
    assert results["configuration"] == label
    assert results["config"]["recipe_name"] == recipe
    assert 0 < metrics["val/nll_bits"] < 10 and 0 < metrics["test/nll_bits"] < 10
    if recipe == "argmax_lm":  # disjoint orthants: decoding is exact
        assert metrics["test/recon_bits"] == 0.0 and metrics["test/decode_acc"] == 1.0


@pytest.mark.parametrize("recipe,keys", [
    ("catnf_lm", {"dataset.batch_size": 128, "dataset.seq_len": 256, "prior.encoder.hidden": 1024,
                  "prior.encoder.num_layers": 2, "prior.input_dropout": 0.05, "trainer.max_steps": 100_000,
                  "prior.time_max_length": 256, "optim.preset": "catnf"}),
    ("argmax_lm", {"dataset.batch_size": 64, "dataset.seq_len": 256, "prior.encoder.hidden": 2048,
                   "prior.encoder.num_layers": 2, "flow.encoder_hidden": 512, "prior.input_dropout": 0.25,
                   "prior.time_max_length": 256, "optim.preset": "argmax"})])
def test_paper_scale_composes_and_validates_with_the_papers_sizes(make_cfg, recipe, keys):
    cfg = make_cfg(f"recipe={recipe}", "scale=paper")
    validate_config(cfg)
    for key, value in keys.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, key


def test_argmax_paper_scale_trains_its_40_epochs_as_steps_of_the_embedded_corpus(make_cfg):
    cfg = make_cfg("recipe=argmax_lm", "scale=paper")
    task = build(cfg.dataset)
    task.setup()
    assert cfg.trainer.max_steps == 40 * len(task.train_dataloader())
