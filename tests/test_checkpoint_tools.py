"""After a run (docs/checkpoints.md): checkpoints that carry their config, ``trufl.load``,
``trufl-eval`` and ``trufl-sample``, on a 20-step toy run (and tiny text and set runs)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import trufl
from trufl import checkpoint as ckpt
from trufl.build import build, build_model
from trufl.run import run

from .conftest import CONF, ROOT, tiny_text, toy

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
TOY = toy("trainer.max_steps=20", "trainer.val_check_interval=10", "dataset.train_size=2000", "dataset.val_size=500",
          "dataset.test_size=500")


def compose_run(out: Path, data_dir: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["logger=none", f"paths.data_dir={data_dir}", f"paths.output_dir={out}",
                                            "trainer.enable_progress_bar=false", *overrides])


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, data_dir) -> Path:
    """A finished 20-step toy run directory (results.json, checkpoints/last.ckpt)."""
    out = tmp_path_factory.mktemp("toy") / "run"
    run(compose_run(out, data_dir, *TOY))
    return out


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_checkpoint_carries_the_runs_resolved_config_and_loads_with_weights_only(toy_run):
    state = torch.load(toy_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state[ckpt.CONFIG_KEY] == results_of(toy_run)["config"]
    assert state[ckpt.CATEGORIES_KEY] == 4


def test_eval_of_last_checkpoint_repeats_the_runs_test_metrics(toy_run):
    from trufl.eval import main

    before = (toy_run / "results.json").read_bytes()
    main([str(toy_run)])
    found = json.loads((toy_run / "eval" / "test.json").read_text())
    ours = results_of(toy_run)["metrics"]
    assert found["metrics"]["test/nll_bits"] == pytest.approx(ours["test/nll_bits"], abs=1e-6)
    for key, value in found["metrics"].items():  # the IWBO, log Z and sampling too: the same loop from the same seed
        assert value == pytest.approx(ours[key], abs=1e-6), key
    assert set(found["metrics"]) == {k for k in ours if k.startswith(("test/", "sample/"))}
    assert (toy_run / "results.json").read_bytes() == before  # the training results are left alone


def test_eval_on_val_split_with_override_repeats_val_nll_and_records_the_override(toy_run):
    from trufl.evaluation import run_eval

    found = run_eval(toy_run, "val", ["eval.iw_samples=3"])  # iw_samples acts on test only: val is unchanged
    assert Path(found["file"]) == toy_run / "eval" / "val-eval.iw_samples=3.json"
    written = json.loads(Path(found["file"]).read_text())
    assert written["eval"]["iw_samples"] == 3 and written["overrides"] == ["eval.iw_samples=3"]
    assert written["metrics"]["val/nll_bits"] == pytest.approx(results_of(toy_run)["metrics"]["val/nll_bits"], abs=1e-6)


def test_eval_refuses_overrides_that_change_the_model_or_do_not_exist(toy_run, capsys):
    from trufl.eval import main

    with pytest.raises(SystemExit) as stop:
        main([str(toy_run), "flow.dim=2", "--split", "test", "eval.no_such_key=1"])
    assert "flow.dim cannot change at evaluation" in str(stop.value.code)
    assert "eval.no_such_key is not a key of the run's config" in str(stop.value.code)


def test_load_from_checkpoint_without_hydra_gives_the_original_log_likelihood(toy_run, tmp_path):
    """The module rebuilt in a fresh interpreter (no Hydra, not in the repository) weighs a batch
    as the trained weights do when built the old way (results.json's config + the state dict)."""
    last = toy_run / "checkpoints" / "last.ckpt"
    cfg = OmegaConf.create(results_of(toy_run)["config"])
    task = build(cfg.dataset)
    task.setup()
    original = build_model(cfg, task.num_categories)
    original.load_state_dict(torch.load(last, map_location="cpu", weights_only=True)["state_dict"])
    x = torch.tensor([[0], [1], [2], [3]])
    mask = torch.ones_like(x, dtype=torch.bool)
    torch.manual_seed(7)
    expected = original.eval().model.log_weight(x, mask).tolist()
    code = (
        "import json, sys, torch\n"
        "from trufl.model import LikelihoodModule\n"
        "from hydra.core.global_hydra import GlobalHydra\n"
        f"m = LikelihoodModule.load_from_checkpoint({str(last)!r}).eval()\n"
        "torch.manual_seed(7)\n"
        "w = m.model.log_weight(torch.tensor([[0], [1], [2], [3]]), torch.ones(4, 1, dtype=torch.bool))\n"
        "print(json.dumps({'w': w.tolist(), 'hydra': GlobalHydra.instance().is_initialized()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["hydra"] is False
    assert found["w"] == pytest.approx(expected, abs=1e-6)
    assert len(set(found["w"])) == 4  # four different tokens, four different weights: not a constant


def test_trufl_load_gives_eval_module_config_and_a_task_not_yet_set_up(toy_run):
    loaded = trufl.load(toy_run)
    assert loaded.checkpoint == toy_run / "checkpoints" / "last.ckpt"
    assert loaded.config.flow._target_ == results_of(toy_run)["config"]["flow"]["_target_"]
    assert loaded.global_step == 20 and not loaded.module.training
    assert loaded.task.splits == {} and loaded.task.num_categories == 4
    assert loaded.results["metrics"]["test/nll_bits"] == results_of(toy_run)["metrics"]["test/nll_bits"]


def test_load_errors_name_the_missing_path_and_the_run_without_checkpoint(tmp_path):
    with pytest.raises(ckpt.MissingCheckpointError, match=r"nowhere does not exist"):
        trufl.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.json").write_text(json.dumps({"status": "failed"}))
    with pytest.raises(ckpt.MissingCheckpointError, match=r"empty has no checkpoints/last.ckpt \(results.json: status failed\)"):
        trufl.load(tmp_path / "empty")


def test_run_dir_without_last_ckpt_uses_the_checkpoint_its_results_json_names(toy_run, tmp_path):
    elsewhere = toy_run / "checkpoints" / "best.ckpt"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"status": "finished", "checkpoint": str(elsewhere)}))
    assert ckpt.checkpoint_file(tmp_path / "run") == elsewhere


def test_checkpoint_without_config_says_to_rebuild_from_results_json_and_that_works(toy_run, tmp_path):
    legacy_dir = tmp_path / "legacy" / "checkpoints"
    legacy_dir.mkdir(parents=True)
    state = torch.load(toy_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for key in (ckpt.CONFIG_KEY, ckpt.CATEGORIES_KEY):
        del state[key]
    torch.save(state, legacy_dir / "last.ckpt")
    (tmp_path / "legacy" / "results.json").write_text((toy_run / "results.json").read_text())
    with pytest.raises(ckpt.CheckpointWithoutConfigError) as err:
        trufl.load(tmp_path / "legacy")
    results = tmp_path / "legacy" / "results.json"
    assert f"config='{results}'" in str(err.value) and f"--config {results}" in str(err.value)
    rebuilt = trufl.load(tmp_path / "legacy", config=results)  # what the message says
    weights = rebuilt.module.state_dict()
    assert weights.keys() == state["state_dict"].keys()
    assert all(torch.equal(weights[k], state["state_dict"][k]) for k in weights)


def sampled(run_dir: Path, num: int, *extra: str) -> dict:
    from trufl.sample import main

    main([str(run_dir), "-n", str(num), *extra])
    return json.loads((run_dir / "samples" / f"samples-n{num}-seed0.json").read_text())


def test_sample_writes_n_toy_categories_with_rejection_statistics(toy_run):
    found = sampled(toy_run, 6)
    assert found["num"] == 6 and len(found["samples"]) == 6
    assert all(len(s["object"]) == 1 and 0 <= s["object"][0] < 4 for s in found["samples"] if s["valid"])
    assert found["sampling"]["objects"] == 6 and found["sampling"]["proposed"] >= 6
    assert sum(found["category_frequencies"]) == pytest.approx(1.0)
    assert found["sampling"]["validity_rejection"] == sum(s["valid"] for s in found["samples"]) / 6


def test_sample_from_one_seed_draws_the_same_objects(toy_run):
    from trufl.samples import draw

    loaded = trufl.load(toy_run)
    first, second = draw(loaded, 20, seed=3)[0], draw(loaded, 20, seed=3)[0]
    assert [s["object"] for s in first["samples"]] == [s["object"] for s in second["samples"]]
    assert [s["object"] for s in first["samples"]] != [s["object"] for s in draw(loaded, 20, seed=4)[0]["samples"]]


def test_sample_writes_decoded_text_for_a_language_model(make_cfg, tmp_path):
    run(make_cfg(*tiny_text(), out=tmp_path / "text"))
    found = sampled(tmp_path / "text", 3, "--out", str(tmp_path / "text" / "samples"))
    assert len(found["samples"]) == 3
    assert all(isinstance(s["object"], str) and len(s["object"]) == 16 for s in found["samples"])


#: a two-step run of a constrained task (sets, graphs) with the Transformer prior at a tiny width
SMALL_CONSTRAINED = ["dataset.train_size=64", "dataset.val_size=8", "dataset.test_size=8", "dataset.batch_size=8",
                     "trainer.max_steps=2", "trainer.val_check_interval=2", "eval.iw_samples=2", "eval.log_z_samples=8",
                     "prior.embed_dim=16", "prior.head_hidden=16", "trainer.accelerator=cpu"]


def test_sample_writes_sets_with_their_validity(make_cfg, tmp_path):
    run(make_cfg("experiment=sets", *SMALL_CONSTRAINED, out=tmp_path / "sets"))
    found = sampled(tmp_path / "sets", 5)
    assert found["num"] == 5 and found["task"] == "SetDataModule"
    for s in found["samples"]:  # a valid shuffle set holds each of the 16 elements once
        assert s["valid"] == (sorted(s["object"]) == list(range(16)))


@pytest.mark.slow
def test_sample_draws_graph_colourings_with_their_edges_and_a_picture(make_cfg, tmp_path):
    run(make_cfg("experiment=graph_colouring", *SMALL_CONSTRAINED, out=tmp_path / "graph"))
    found = sampled(tmp_path / "graph", 4)
    assert (tmp_path / "graph" / "samples" / "samples-n4-seed0.png").stat().st_size > 0
    for s in found["samples"]:  # valid: coloured, and no edge joins two nodes of one colour
        colours, edges = s["object"]["colours"], s["object"]["edges"]
        assert s["valid"] == (min(colours) >= 0 and all(colours[i] != colours[j] for i, j in edges))


@pytest.mark.parametrize("module", ["trufl.eval", "trufl.sample"])
def test_help_of_each_command_exits_0_and_is_a_console_script(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: trufl-" in done.stdout
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    target, _, function = scripts[module.replace(".", "-")].partition(":")
    assert (target, function) == (module, "main") and callable(getattr(importlib.import_module(module), function))
