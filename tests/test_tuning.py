"""One tuning protocol for every method: a two-trial Optuna search on the toy through the
search preset, every trial recorded, and the chosen values written as a tuned preset."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from .conftest import CONF, ROOT


def _composed(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


def test_a_two_trial_search_starts_from_the_shared_configuration_records_every_trial_and_presets_the_best(tmp_path, data_dir):
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "trufl.reporting.tune", "toy", "--flows", "trufl", "--out", str(tmp_path / "runs"),
           "--results", str(tmp_path / "results"), "--presets", str(tmp_path / "tuned"),
           "experiment=toy", "hydra.sweeper.n_trials=2", "trainer.max_steps=20", "trainer.val_check_interval=10",
           "eval.iw_samples=0", "logger=none", "num_threads=1", "~callbacks.support_history",
           "trainer.enable_progress_bar=false", f"paths.data_dir={data_dir}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "results" / "tuning_toy.csv").open()))
    assert [r["trial"] for r in rows] == ["0", "1"] and {r["status"] for r in rows} == {"finished"}
    assert [r["configuration"] for r in rows] == ["shared", "tuned"]
    values = [float(r["val/nll_bits"]) for r in rows]
    record = json.loads((tmp_path / "results" / "tuning_toy.json").read_text())
    # trial 0 is the job without a search: experiment=toy's lr, recon_weight 1
    toy = _composed(["experiment=toy", "flow=trufl"])
    assert record["flows"]["trufl"]["start"] == {"optim.lr": toy.optim.lr, "recon_weight": toy.recon_weight}
    assert float(rows[0]["optim.lr"]) == toy.optim.lr and float(rows[0]["recon_weight"]) == toy.recon_weight
    chosen = record["flows"]["trufl"]["chosen"]
    assert chosen["val/nll_bits"] == min(values) and record["space"] == {"optim.lr": "tag(log, interval(1e-3, 3e-2))",
                                                                        "recon_weight": "choice(1, 10)"}
    optuna_best = yaml.safe_load((tmp_path / "runs" / "trufl" / "optimization_results.yaml").read_text())
    assert optuna_best["best_value"] == pytest.approx(values[1], rel=1e-6)  # the sampler's own trial
    preset = (tmp_path / "tuned" / "toy_trufl.yaml").read_text()
    body = yaml.safe_load(preset)
    assert "override /flow: trufl" in preset and body["configuration"] == "tuned"
    assert body["optim"]["lr"] == pytest.approx(float(chosen["optim.lr"])) and body["recon_weight"] == int(float(chosen["recon_weight"]))
    # started again: both trials are finished, nothing runs again
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    rows_again = list(csv.DictReader((tmp_path / "results" / "tuning_toy.csv").open()))
    assert [float(r["val/nll_bits"]) for r in rows_again] == values
    assert len(list((tmp_path / "runs" / "trufl").rglob("results.json"))) == 2


def test_the_text_and_sets_searches_are_one_protocol():
    """One space, trial count and sampler on both tasks; each budget is its table's (the LM table's
    1500 steps with validation every 250, the sets table's 1000 with validation every 500)."""
    from trufl.reporting.tune import search_spec

    text, sets = search_spec("text"), search_spec("sets")
    assert set(text["hydra"]["sweeper"]["params"]) == {"optim.lr", "latent_dim", "prior.transform", "prior.inputs",
                                                       "trainer.gradient_clip_val", "weighting"}
    for key in ("params", "n_trials", "sampler", "direction"):
        assert text["hydra"]["sweeper"][key] == sets["hydra"]["sweeper"][key], key
    assert text["optimized_metric"] == sets["optimized_metric"] == "val/nll_bits"
    lm = yaml.safe_load((ROOT / "experiments" / "language_modelling.yaml").read_text())
    assert text["trainer"] == {"max_steps": 1500, "val_check_interval": lm["sweep"]["trainer.val_check_interval"]}
    sets_preset = yaml.safe_load((CONF / "experiment" / "sets.yaml").read_text())
    assert sets["trainer"] == sets_preset["trainer"]


@pytest.mark.parametrize("flow", ["trufl", "catnf", "argmax", "categorical"])
def test_trial_zero_builds_the_same_model_as_the_job_without_overrides(flow):
    """The shared point, given as overrides, changes nothing: the same parameters (names, shapes,
    values from the same seed) and the same optimiser settings as ``flow=<flow>`` alone."""
    import torch

    from trufl.builders import build_likelihood
    from trufl.config import _num_categories
    from trufl.reporting.tune import flow_space, search_spec, shared_point

    space = flow_space(search_spec("text")["hydra"]["sweeper"]["params"], flow)
    point = shared_point(flow, list(space))
    assert set(point) == set(space)

    def built(overrides):
        cfg = _composed([f"flow={flow}", *overrides])
        torch.manual_seed(0)
        return cfg, build_likelihood(cfg, _num_categories(cfg)).state_dict()

    cfg0, plain = built([])
    cfg1, pointed = built([f"{k}={v}" for k, v in point.items()])
    assert list(plain) == list(pointed)
    assert all(torch.equal(plain[k], pointed[k]) for k in plain)
    assert cfg0.optim == cfg1.optim and cfg0.trainer.gradient_clip_val == cfg1.trainer.gradient_clip_val
    assert cfg0.get("weighting") == cfg1.get("weighting")
    if flow in ("trufl", "catnf"):
        assert point["latent_dim"] == {"trufl": 1, "catnf": 3}[flow]


def test_overrides_typed_after_the_flows_reach_every_trial_and_an_unknown_flow_is_refused():
    from trufl.reporting.tune import split_flows

    flows, overrides = split_flows(["trufl", "catnf", "experiment=sets", "num_threads=1"], ["seed=1"])
    assert flows == ["trufl", "catnf"] and overrides == ["experiment=sets", "num_threads=1", "seed=1"]
    with pytest.raises(SystemExit, match="unknown flow.*'trufll'"):
        split_flows(["trufll", "catnf"], [])
    with pytest.raises(SystemExit, match="unknown flow"):
        split_flows(["experiment=sets"], [])
