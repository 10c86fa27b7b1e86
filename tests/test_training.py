"""End-to-end jobs: the toy targets, every flow×prior, loggers, sweeps, failure handling."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trufl.metrics import contract_keys
from trufl.objective import NonFiniteLossError
from trufl.run import run

from .conftest import ROOT, tiny_text, toy

PROBS = [0.1, 0.2, 0.3, 0.4]
ENTROPY = 1.8464


def toy_trufl(seed: int, *extra: str) -> list[str]:
    return toy("flow=trufl", "flow.dim=1", "recon_weight=10", f"seed={seed}", *extra)


def assert_toy_target(results: dict) -> None:
    m = results["metrics"]
    assert m["test/determinism"] >= 0.99, m
    assert m["test/nll_bits"] <= 1.90, m
    assert m["test/nll_bits"] >= ENTROPY - 0.05  # a bound, never below the entropy (up to sampling noise)
    mass = results["dequantiser"]["box_mass"]  # each box's prior mass: the learned category probability
    assert max(abs(w - p) for w, p in zip(mass, PROBS)) <= 0.03, mass


def test_trufl_toy_reaches_the_target(make_cfg, tmp_path):
    metrics = run(make_cfg(*toy_trufl(0)))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["metrics"] == metrics
    assert_toy_target(results)
    assert results["log_Z"]["estimator"].startswith("exact")
    assert -0.05 < results["metrics"]["test/log_Z"] <= 0.0  # the boxes cover (nearly) all prior mass
    assert results["metrics"]["test/iwbo_bits"] <= results["metrics"]["test/nll_bits"] + 1e-3
    # under the prior renormalised to the boxes it is still a bound: never below the entropy
    assert results["renormalised"]["test/nll_bits"] >= ENTROPY - 0.05, results["renormalised"]
    # rejection sampling on the trained model: always inside a box
    info = results["sampling"]
    assert info["validity_rejection"] == 1.0
    # one token per object: acceptance estimates Z, the prior mass inside the boxes
    z = math.exp(results["metrics"]["test/log_Z"])
    n = info["proposed"]
    assert abs(info["acceptance"] - z) <= 4 * math.sqrt(z * (1 - z) / n) + 1e-3, (info, z)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trufl_toy_reaches_the_target_for_three_seeds(make_cfg, tmp_path, seed):
    run(make_cfg(*toy_trufl(seed)))
    assert_toy_target(json.loads((tmp_path / "run" / "results.json").read_text()))


def test_plain_pathwise_gradient_stalls(make_cfg, tmp_path):
    """Shared base, no location/scale, no boundary gradient: boxes never separate."""
    metrics = run(make_cfg(*toy_trufl(0, "flow.boundary_gradient=none")))
    assert metrics["test/determinism"] < 0.5, metrics


@pytest.mark.parametrize("flow", ["trufl", "catnf", "argmax"])
@pytest.mark.parametrize("prior", ["ar_lstm", "standard"])
def test_every_flow_and_prior_trains_on_the_embedded_corpus(make_cfg, tmp_path, flow, prior):
    metrics = run(make_cfg(f"flow={flow}", *tiny_text(prior=prior)))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert_contract(metrics, results)
    finite = {k: v for k, v in metrics.items() if k != "test/log_Z"}
    assert all(torch.isfinite(torch.tensor(v)) for v in finite.values()), metrics
    assert results["dataset"]["num_categories"] == 27
    assert isinstance(results["samples"][0], str) and len(results["samples"][0]) == 16
    assert results["code_version"]["trufl"]


@pytest.mark.parametrize("flow", ["trufl", "catnf", "argmax"])
def test_causal_context_trains_and_generates(make_cfg, tmp_path, flow):
    metrics = run(make_cfg(f"flow={flow}", "context=causal_lstm", "context.hidden=16", "context.dim=8", *tiny_text()))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert_contract(metrics, results)
    assert torch.isfinite(torch.tensor(metrics["val/nll_bits"]))
    assert "monte carlo" in results["log_Z"]["estimator"] or flow == "catnf"
    assert len(results["samples"][0]) == 16


@pytest.mark.parametrize("flow", ["trufl", "catnf", "argmax"])
def test_set_tasks_log_validity_and_acceptance(make_cfg, tmp_path, flow):
    dim = [] if flow == "argmax" else ["flow.dim=2"]
    metrics = run(make_cfg(
        "dataset=sets_sum", "dataset.train_size=64", "dataset.val_size=16", "dataset.test_size=16",
        "dataset.batch_size=16", "prior=set_coupling", "prior.hidden=16", "prior.num_layers=2",
        "prior.transformer_layers=1", "prior.heads=2", f"flow={flow}", *dim, "trainer.max_steps=3",
        "trainer.val_check_interval=3", "eval.iw_samples=2", "eval.log_z_samples=16", "eval.max_tries=5",
        "eval.num_samples=16",
    ))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert_contract(metrics, results)
    info = results["sampling"]
    assert info["objects"] == 16 and 0 < info["acceptance"] <= 1
    # all 16 generated sets are in results.json: their validity, checked here by the task's
    # definition (16 numbers in 1..16 summing to 42; -1 = outside every support), is the reported one
    valid = [all(c >= 0 for c in s) and sum(c + 1 for c in s) == 42 for s in results["samples"]]
    assert len(valid) == 16 and info["validity_rejection"] == pytest.approx(sum(valid) / 16)
    assert results["dataset"]["optimum_bits"] == pytest.approx(2.2427, abs=1e-4)
    if "test/log_Z" in metrics:  # absent when no prior sample landed in the support
        assert results["renormalised"]["log_Z_estimator"] == results["log_Z"]["estimator"]
    else:
        assert results["renormalised"] == {}


def assert_contract(metrics: dict, results: dict) -> None:
    """Every contract metric, except a log Z that could not be estimated (Monte Carlo on
    long objects), which must then be absent with its reason in results.json."""
    assert set(metrics) | {"test/log_Z"} == contract_keys()
    assert ("test/log_Z" in metrics) != ("unavailable" in results["log_Z"]), results["log_Z"]


@pytest.mark.parametrize("prior", ["graph_coupling", "standard"])
def test_graph_colouring_conditions_on_each_test_graph(make_cfg, tmp_path, prior):
    small = ["prior.hidden=16", "prior.num_layers=2", "prior.transformer_layers=1", "prior.heads=2"] if prior != "standard" else []
    metrics = run(make_cfg(
        "dataset=graph_colouring_tiny", "dataset.train_size=40", "dataset.val_size=10", "dataset.test_size=10",
        "dataset.batch_size=8", "dataset.generation_workers=1", f"prior={prior}", *small, "flow=trufl", "flow.dim=2",
        "trainer.max_steps=3", "trainer.val_check_interval=3", "eval.iw_samples=2", "eval.log_z_samples=256",
    ))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert_contract(metrics, results)  # Z over every test graph, or no number and the reason
    assert results["sampling"]["objects"] == 10  # one colouring per test graph
    assert results["dataset"]["test_graphs"] == 10
    assert all(c in (0, 1, 2, -1) for row in results["samples"] for c in row)


def test_sudoku_trains_and_checks_board_validity(make_cfg, tmp_path):
    metrics = run(make_cfg(
        "dataset=sudoku", "dataset.train_size=32", "dataset.val_size=8", "dataset.test_size=8",
        "dataset.batch_size=8", "prior=graph_coupling", "prior.hidden=16", "prior.num_layers=2",
        "prior.transformer_layers=1", "prior.heads=2", "flow=trufl", "flow.dim=2",
        "trainer.max_steps=2", "trainer.val_check_interval=2", "eval.iw_samples=2", "eval.log_z_samples=8",
    ))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert_contract(metrics, results)
    assert results["sampling"]["objects"] == 8 and len(results["samples"][0]) == 81


@pytest.mark.parametrize("experiment,dataset,tiny", [
    ("sets", "sets_shuffle", ["dataset.train_size=64", "dataset.val_size=16", "dataset.test_size=16", "dataset.batch_size=16"]),
    ("graph_colouring", "graph_colouring_tiny", ["dataset.train_size=40", "dataset.val_size=10", "dataset.test_size=10",
                                                 "dataset.batch_size=8", "dataset.generation_workers=1"]),
    ("sudoku", "sudoku", ["dataset.train_size=32", "dataset.val_size=8", "dataset.test_size=8", "dataset.batch_size=8"]),
])
@pytest.mark.parametrize("flow", ["trufl", "catnf", "argmax"])
def test_constrained_presets_train_with_the_transformer_prior(make_cfg, tmp_path, experiment, dataset, tiny, flow):
    """Each constrained preset's default prior is the element-wise autoregressive Transformer,
    D = 1 for TRUFL/CatNF; a tiny run of every flow keeps the metric contract and samples
    objects of the task's size."""
    cfg = make_cfg(f"experiment={experiment}", f"flow={flow}", *tiny, "prior.encoder.hidden=16", "prior.encoder.num_layers=1",
                   "prior.encoder.heads=2", "prior.head_hidden=16", "prior.embed_dim=8", "trainer.max_steps=2",
                   "trainer.val_check_interval=2", "eval.iw_samples=2", "eval.log_z_samples=8", "eval.max_tries=3")
    assert cfg.prior.encoder._target_ == "trufl.priors.CausalTransformerEncoder" and cfg.dataset._target_.endswith(
        {"sets_shuffle": "SetDataModule", "graph_colouring_tiny": "GraphColouringDataModule", "sudoku": "SudokuDataModule"}[dataset])
    metrics = run(cfg)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert_contract(metrics, results)
    assert results["config"]["flow"]["dim"] == {"trufl": 1, "catnf": 1}.get(flow, results["config"]["flow"]["dim"])
    assert results["sampling"]["objects"] > 0


def test_csv_metric_keys_are_exactly_the_contract(make_cfg, tmp_path):
    run(make_cfg(*toy("flow=trufl", "logger=csv", "trainer.max_steps=30", "trainer.val_check_interval=15", "trainer.log_every_n_steps=5")))
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        header = set(next(csv.reader(f)))
    # the toy samples too (support validity); besides the contract, only the learning rate
    # (callbacks.lr_monitor, named after the optimiser, AdamW)
    assert header - {"epoch", "step"} == contract_keys() | {"lr-AdamW"}


def test_nonfinite_loss_stops_with_step_term_and_checkpoint(make_cfg, tmp_path, monkeypatch):
    from trufl.priors import StandardLogisticPrior

    original = StandardLogisticPrior.log_prob
    calls = {"n": 0}

    def poisoned(self, z, mask=None, condition=None, support=None):
        calls["n"] += 1
        out = original(self, z, mask, condition, support)
        return out * float("nan") if calls["n"] == 4 else out

    monkeypatch.setattr(StandardLogisticPrior, "log_prob", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 3: term\(s\) \['loss', 'log_p'\]"):
        # without the support history, which evaluates the prior on its grid: the 4th call is step 3's
        run(make_cfg(*toy("trainer.max_steps=10", "~callbacks.support_history")))
    assert (tmp_path / "run" / "checkpoints" / "nonfinite-step3.ckpt").exists()


def test_ctrl_c_saves_the_current_step_and_resumes_from_it(make_cfg, tmp_path, monkeypatch):
    from trufl.model import LikelihoodModule

    original = LikelihoodModule.training_step

    def interrupted(self, batch, batch_idx):
        if self.global_step == 7:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(LikelihoodModule, "training_step", interrupted)
    with pytest.raises(SystemExit):  # Lightning's graceful shutdown, after our checkpoint
        run(make_cfg(*toy("trainer.max_steps=30", "trainer.val_check_interval=20"), out=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 7
    assert json.loads((tmp_path / "a" / "results.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(LikelihoodModule, "training_step", original)
    run(make_cfg(*toy("trainer.max_steps=30", "trainer.val_check_interval=20", f"ckpt_path={last}"), out=tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "results.json").read_text())["global_step"] == 30


def test_interrupted_run_resumes_from_last_checkpoint(make_cfg, tmp_path):
    run(make_cfg(*toy("trainer.max_steps=20", "trainer.val_check_interval=10"), out=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 20
    run(make_cfg(*toy("trainer.max_steps=40", "trainer.val_check_interval=10", f"ckpt_path={last}"), out=tmp_path / "second"))
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert results["global_step"] == 40  # continued, not restarted


def _train_cli(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    for key in ("WANDB_MODE", "WANDB_API_KEY"):  # exercise the "no key configured" default
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


SWEEP = ["-m", "flow=trufl,catnf,argmax", "experiment=toy", "trainer.max_steps=20", "trainer.val_check_interval=10",
         "trainer.enable_progress_bar=false", "eval.iw_samples=2"]


@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_multirun_writes_one_results_file_and_one_wandb_run_per_job(tmp_path, data_dir, launcher):
    proc = _train_cli(
        *SWEEP, f"hydra/launcher={launcher}", "logger=wandb", f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, env_extra={"HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted((tmp_path / "sweep").glob("*/results.json"))
    assert len(results) == 3
    flows = {json.loads(p.read_text())["choices"]["flow"] for p in results}
    assert flows == {"trufl", "catnf", "argmax"}
    runs = sorted((tmp_path / "sweep").glob("*/wandb/offline-run-*"))
    assert len(runs) == 3 and len({r.name.split("-")[-1] for r in runs}) == 3
    for run_dir in runs:  # the generated samples went to W&B as a table, as in results.json
        (table,) = run_dir.glob("files/media/table/samples_*.table.json")
        samples = json.loads((run_dir.parents[1] / "results.json").read_text())["samples"]
        assert [row[0] for row in json.loads(table.read_text())["data"]] == [s if isinstance(s, str) else str(s) for s in samples]
    # one group, the sweep (relative to the launch directory), each run named by its overrides;
    # the group choices in the config
    from .wandb_records import of_type

    headers = [of_type(r, "run")[0] for r in runs]
    assert {h.run_group for h in headers} == {"sweep"}
    overrides = [json.loads((r.parents[1] / "results.json").read_text())["choices"]["flow"] for r in runs]
    assert [h.display_name.split(",")[0] for h in headers] == [f"flow={f}" for f in overrides]
    assert all(f"hydra/launcher={launcher}" not in h.display_name and "experiment=toy" in h.display_name for h in headers)
    for run_dir, flow in zip(runs, overrides):
        (choices,) = [json.loads(i.value_json) for c in of_type(run_dir, "config") for i in c.update if i.key == "choices"]
        assert choices["flow"] == flow and choices["hydra/launcher"] == launcher
    sync = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", *map(str, runs)], capture_output=True, text=True,
        env={**os.environ, "HOME": str(tmp_path)}, timeout=120,
    )
    listed = sync.stdout + sync.stderr
    assert all(r.name in listed for r in runs), listed
