"""The CatNF recipes of the constrained tasks (trufl/conf/recipe/catnf_sets.yaml, catnf_graphs.yaml,
catnf_graphs_large.yaml): each composes to the reference's model, validates, trains, and labels its
results with its configuration."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from trufl.config import validate_config
from trufl.run import run

GRAPHS = ["dataset.val_size=4", "dataset.test_size=4", "dataset.batch_size=4", "dataset.generation_workers=1"]
TINY = {
    "catnf_sets": ["dataset.train_size=32", "dataset.val_size=8", "dataset.test_size=8", "dataset.batch_size=8"],
    "catnf_graphs": ["dataset.train_size=16", *GRAPHS],
    "catnf_graphs_large": ["dataset.train_size=8", *GRAPHS],
}
TINY_PRIOR = ["prior.hidden=16", "prior.num_layers=2", "prior.transformer_layers=1", "prior.heads=2"]
FAST_EVAL = ["trainer.max_steps=2", "trainer.val_check_interval=2", "eval.iw_samples=2", "eval.log_z_samples=8"]


@pytest.mark.parametrize("recipe,optim,label", [
    ("catnf_sets", "catnf", "paper"), ("catnf_sets", "catnf_reference", "reference-optimiser"),
    ("catnf_graphs", "catnf", "paper"), ("catnf_graphs_large", "catnf_reference", "reference-optimiser")])
def test_each_recipe_trains_two_steps_at_a_tiny_size_and_labels_its_results(make_cfg, tmp_path, recipe, optim, label):
    run(make_cfg(f"recipe={recipe}", f"optim={optim}", *TINY[recipe], *TINY_PRIOR, *FAST_EVAL))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "finished" and results["global_step"] == 2
    assert results["configuration"] == label
    assert results["config"]["optim"]["preset"] == optim
    assert results["config"]["trainer"]["gradient_clip_val"] == 0.25
    assert results["config"]["optim"]["clip_steps"] == (None if optim == "catnf" else 1)  # the reference: step 1 only
    assert results["sampling"]["objects"] == 8 if recipe == "catnf_sets" else 4


REFERENCE_PRIOR = {"num_layers": 8, "heads": 4, "mix_dims": True, "actnorm": "every", "split": "fixed",
                   "block": "catnf", "scale_bounds": "learned", "base": "unit_variance"}


@pytest.mark.parametrize("recipe,scale,expected", [
    ("catnf_sets", "ours", {"latent_dim": 4, "prior.hidden": 256, "prior.transformer_layers": 2, "prior.num_mixtures": 8,
                            "dataset.fresh": True, "dataset.batch_size": 64, "trainer.max_steps": 1000}),
    ("catnf_sets", "paper", {"dataset.batch_size": 1024, "trainer.max_steps": 100_000, "prior.hidden": 256}),
    ("catnf_graphs", "ours", {"latent_dim": 2, "prior.num_mixtures": 8, "prior.transformer_layers": 4, "prior.hidden": 128,
                              "dataset.size": "tiny", "trainer.max_steps": 1000}),
    ("catnf_graphs", "paper", {"dataset.batch_size": 384, "prior.hidden": 384, "dataset.train_size": 192_000,
                               "trainer.max_steps": 200_000}),
    ("catnf_graphs_large", "paper", {"latent_dim": 6, "prior.num_mixtures": 16, "dataset.size": "large",
                                     "dataset.batch_size": 128, "prior.hidden": 384, "dataset.train_size": 450_000}),
])
def test_recipes_compose_to_the_reference_model_at_each_scale(make_cfg, recipe, scale, expected):
    cfg = make_cfg(f"recipe={recipe}", f"scale={scale}")
    validate_config(cfg)
    assert cfg.recipe_name == recipe and cfg.flow.parameterisation == "embedding"
    assert cfg.weighting.start == 2.0 and cfg.weighting.decay == pytest.approx(2 ** (-1 / 5000), rel=1e-9)
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.decay) == ("radam", 7.5e-4, 0.999975)
    assert {k: cfg.prior[k] for k in REFERENCE_PRIOR} == REFERENCE_PRIOR
    assert {k: OmegaConf.select(cfg, k) for k in expected} == expected
