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


def test_a_two_trial_search_records_every_trial_and_presets_the_best(tmp_path, data_dir):
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
    values = [float(r["val/nll_bits"]) for r in rows]
    record = json.loads((tmp_path / "results" / "tuning_toy.json").read_text())
    chosen = record["flows"]["trufl"]["chosen"]
    assert chosen["val/nll_bits"] == min(values) and record["space"] == {"optim.lr": "tag(log, interval(1e-3, 3e-2))",
                                                                        "recon_weight": "choice(1, 10)"}
    optuna_best = yaml.safe_load((tmp_path / "runs" / "trufl" / "optimization_results.yaml").read_text())
    assert optuna_best["best_value"] == pytest.approx(min(values), rel=1e-6)
    preset = (tmp_path / "tuned" / "toy_trufl.yaml").read_text()
    body = yaml.safe_load(preset)
    assert "override /flow: trufl" in preset and body["configuration"] == "tuned"
    assert body["optim"]["lr"] == pytest.approx(float(chosen["optim.lr"])) and body["recon_weight"] == int(chosen["recon_weight"])
    with open(CONF / "hparams_search" / "text.yaml") as f:
        text = yaml.safe_load(f)["hydra"]["sweeper"]
    assert set(text["params"]) == {"optim.lr", "latent_dim", "prior.transform", "prior.inputs",
                                   "trainer.gradient_clip_val", "weighting"}  # the same space for every method
