"""The work around a run: a rejected configuration leaves no directory, any Trainer argument
needs no ``+``, mistyped names get a did-you-mean, a dry run lists a sweep's jobs, and a sweep
started again on its directory runs only the jobs that did not finish."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from trufl.cli import open_trainer_overrides
from trufl.config import ConfigError, validate_config
from trufl.skip_finished import finished_in
from trufl.suggest import did_you_mean, install
from trufl.sweep_plan import main as plan_main
from trufl.sweep_plan import plan

from .conftest import CONF, ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def train(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_a_rejected_run_creates_no_directory_and_hints_the_close_names(tmp_path):
    bad = train("flow=categorical", "context=causal_lstm", "logger=none", "+flow.dimm=2", cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert "invalid configuration (with flow=categorical context=causal_lstm logger=none):" in bad.stderr
    assert not (tmp_path / "outputs").exists(), list(tmp_path.rglob("*"))
    typo = train("flow=trufI", "recon_wieght=2", cwd=tmp_path)
    assert typo.returncode == 1 and "Did you mean flow=trufl?" in typo.stderr, typo.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def hydra_conf():
    install()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def test_did_you_mean_names_the_closest_key_or_option(hydra_conf):
    assert did_you_mean("recon_wieght", ["recon_weight", "kl_weight", "seed"]) == "; did you mean recon_weight?"
    assert did_you_mean("zzz", ["recon_weight"]) == ""
    with pytest.raises(ConfigCompositionException, match=r"Did you mean recon_weight\?$"):
        compose("config", overrides=["recon_wieght=2"])
    with pytest.raises(ConfigCompositionException, match=r"Did you mean dataset\.seq_len or dataset\.eval_seq_len\?$"):
        compose("config", overrides=["dataset.seq_lem=2"])
    with pytest.raises(MissingConfigException, match=r"Did you mean prior=ar_lstm\?$"):
        compose("config", overrides=["prior=ar_lstn"])
    with pytest.raises(ConfigError, match=r"unknown key flow\.dimm; did you mean flow\.dim\? \(valid keys"):
        validate_config(compose("config", overrides=["logger=none", "+flow.dimm=2"]))


def test_trainer_arguments_that_conf_does_not_set_are_opened_and_the_rest_left_alone():
    assert open_trainer_overrides(["trainer.fast_dev_run=true", "trainer.gradient_clip_val=0.5", "trainer.max_steps=3",
                                   "trainer.fast_dev_rum=1", "trainer.logger=x", "seed=1"]) == [
        "++trainer.fast_dev_run=true", "++trainer.gradient_clip_val=0.5", "trainer.max_steps=3",
        "trainer.fast_dev_rum=1", "trainer.logger=x", "seed=1"]


def test_fast_dev_run_and_gradient_clip_val_work_without_plus(hydra_conf, tmp_path, data_dir):
    """The overrides as train.py hands them to Hydra (composed in-process: a subprocess costs 20 s of imports)."""
    from trufl.run import run

    args = ["experiment=toy", "trainer.fast_dev_run=true", "trainer.gradient_clip_val=0.5", "logger=none",
            "trainer.enable_progress_bar=false", f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path / 'run'}"]
    with pytest.raises(ConfigCompositionException, match="fast_dev_run"):
        compose("config", overrides=args)  # what Hydra alone does with them
    run(compose("config", overrides=open_trainer_overrides(args)))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["trainer"]["fast_dev_run"] is True and results["config"]["trainer"]["gradient_clip_val"] == 0.5
    assert results["status"] == "finished" and results["global_step"] == 1  # fast_dev_run: one batch


def _finished(directory: Path, overrides: list[str], status: str = "finished") -> None:
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps({"status": status, "overrides": overrides, "metrics": {}}))


def test_dry_run_lists_every_job_with_its_directory_and_what_would_run(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    _finished(sweep / "2_catnf_text", ["flow=catnf", "seed=0"])  # Hydra's hydra.* overrides are not the job's
    _finished(sweep / "3_catnf_text", ["flow=catnf", "seed=1"], status="interrupted")
    jobs, sweeper = plan(["-m", "flow=trufl,catnf", "seed=0,1", f"hydra.sweep.dir={sweep}"])
    assert sweeper == "BasicSweeper"
    assert [(j.num, j.overrides, j.directory, j.status) for j in jobs] == [
        (n, [f"flow={f}", f"seed={s}"], sweep / f"{n}_{f}_text", status)
        for n, (f, s, status) in enumerate([("trufl", 0, "run"), ("trufl", 1, "run"), ("catnf", 0, "finished"),
                                            ("catnf", 1, "run")])]
    assert not (sweep / "0_trufl_text").exists()  # nothing launched, nothing created


def test_dry_run_exits_non_zero_naming_each_invalid_job(tmp_path, capsys):
    code = plan_main(["-m", "seed=0,1", "trainer.max_steps=3,abc", f"hydra.sweep.dir={tmp_path / 's'}"])
    out = capsys.readouterr().out
    assert code == 1 and "2 to run, 0 finished already, 2 invalid" in out
    assert out.count("trainer.max_steps='abc' must be int") == 2 and "job #1 (seed=0 trainer.max_steps=abc" in out
    assert plan_main(["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}"]) == 0
    assert not (tmp_path / "s").exists()


def test_a_finished_job_is_recognised_only_for_its_own_overrides(tmp_path):
    _finished(tmp_path / "a", ["flow=catnf", "seed=0", "skip_finished=false"])
    assert finished_in(tmp_path / "a", ["flow=catnf", "seed=0"]) is not None  # how it was launched is not what it is
    assert finished_in(tmp_path / "a", ["flow=catnf", "seed=0", "ckpt_path=last"]) is not None  # nor where it resumed
    assert finished_in(tmp_path / "a", ["flow=catnf", "seed=0", "trainer.enable_progress_bar=false"]) is not None
    assert finished_in(tmp_path / "a", ["flow=catnf", "seed=1"]) is None
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text('{"status": "fini')  # a write cut short: run it again
    assert finished_in(tmp_path / "b", ["flow=catnf", "seed=0"]) is None


def _table(out: Path) -> list[dict[str, str]]:
    """table.csv's rows without the wall-time column (the one value two sweeps do not share)."""
    with open(out / "table.csv") as f:
        return [{k: v for k, v in row.items() if not k.startswith("wall")} for row in csv.DictReader(f)]


def _experiment(out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "experiment.py"), str(ROOT / "experiments" / "toy.yaml"), "--tiny",
            "--launcher", "basic", "--out", str(out), "flow.dim=1", "recon_weight=1,10", "seed=0",
            f"paths.data_dir={data_dir}", "trainer.enable_progress_bar=false", *extra]


@pytest.mark.slow
def test_an_interrupted_sweep_started_again_runs_only_the_missing_jobs_and_gives_the_same_table(tmp_path, data_dir):
    """Four jobs; SIGTERM to the launcher (the basic launcher runs the jobs in it) once two have
    finished; ``--resume`` runs the other two and the table equals an uninterrupted sweep's."""
    reference = subprocess.run(_experiment(tmp_path / "ref", data_dir), cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "resumed"
    first = subprocess.Popen(_experiment(out, data_dir), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline and len(finished := [p for p in out.glob("runs/*/results.json")
                                                      if json.loads(p.read_text())["status"] == "finished"]) < 2:
        time.sleep(0.2)
    launcher = subprocess.run(["pgrep", "-P", str(first.pid), "-f", "train.py"], capture_output=True, text=True).stdout.split()
    assert len(finished) == 2 and launcher, "the sweep did not reach two finished jobs"
    os.kill(int(launcher[0]), signal.SIGTERM)
    first.wait(timeout=300)
    assert first.returncode != 0
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    statuses = sorted(json.loads(p.read_text())["status"] for p in out.glob("runs/*/results.json"))
    assert statuses in (["finished", "finished"], ["finished", "finished", "interrupted"]), statuses
    refused = subprocess.run(_experiment(out, data_dir), cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert refused.returncode != 0 and "--resume runs only the jobs that did not finish" in refused.stderr
    again = subprocess.run(_experiment(out, data_dir, "--resume"), cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("skipped: ") == 2 and {p: p.stat().st_mtime_ns for p in finished} == stamps
    assert json.loads((out / "sweep.json").read_text())["resumed"] == {"finished_before": 2}
    assert sorted(json.loads(p.read_text())["status"] for p in out.glob("runs/*/results.json")) == ["finished"] * 4
    assert _table(out) == _table(tmp_path / "ref") and len(_table(out)) == 4


def test_the_wandb_sweep_drives_train_py_with_valid_overrides(hydra_conf):
    """Every value of every parameter of experiments/wandb/toy_sweep.yaml is an override that
    composes and validates (as ``wandb agent`` passes it: ``key=value``, no dashes)."""
    spec = yaml.safe_load((ROOT / "experiments" / "wandb" / "toy_sweep.yaml").read_text())
    assert spec["program"] == "train.py" and "${args_no_hyphens}" in spec["command"]
    assert spec["metric"] == {"name": "val/nll_bits", "goal": "minimize"} and spec["method"] == "bayes"
    fixed = [a for a in spec["command"] if "=" in a and not a.startswith("$")]
    for key, param in spec["parameters"].items():
        values = param.get("values") or [param["min"], param["max"]]
        for value in values:
            cfg = compose("config", overrides=[*fixed, f"{key}={value}"], return_hydra_config=True)
            validate_config(cfg)
            choices = cfg.hydra.runtime.choices
            assert (choices[key] if key in choices else OmegaConf.select(cfg, key)) == value, (key, value)


def test_a_finished_job_whose_overrides_now_mean_another_configuration_runs_again(hydra_conf, tmp_path, capsys):
    """The same overrides are not the same job when what they compose to changed (an edited
    tuned preset, a changed default): a cache keyed by overrides alone would go stale."""
    from trufl.config import to_container
    from trufl.skip_finished import finished_results

    out = tmp_path / "job"
    cfg = compose("config", overrides=[f"paths.output_dir={out}", "seed=3"])
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"status": "finished", "overrides": ["seed=3"], "metrics": {},
                                                  "config": to_container(cfg)}))
    assert finished_results(cfg, overrides=["seed=3"]) is not None  # the same configuration: skipped
    elsewhere = compose("config", overrides=[f"paths.output_dir={out}", "seed=3", "paths.data_dir=/elsewhere"])
    assert finished_results(elsewhere, overrides=["seed=3"]) is not None  # where data is cached is not the job
    quiet = compose("config", overrides=[f"paths.output_dir={out}", "seed=3", "trainer.enable_progress_bar=false"])
    assert finished_results(quiet, overrides=["seed=3", "trainer.enable_progress_bar=false"]) is not None
    edited = compose("config", overrides=[f"paths.output_dir={out}", "seed=3", "optim.lr=0.001"])
    assert finished_results(edited, overrides=["seed=3"]) is None  # as if the preset behind seed=3 had changed
    assert "another configuration (optim.lr): running it again" in capsys.readouterr().out


def test_a_finished_job_is_skipped_unless_skip_finished_is_false(hydra_conf, tmp_path):
    from trufl.skip_finished import finished_results

    _finished(tmp_path / "job", ["seed=3"])
    cfg = compose("config", overrides=[f"paths.output_dir={tmp_path / 'job'}", "seed=3"])
    assert finished_results(cfg, overrides=["seed=3"]) == {"status": "finished", "overrides": ["seed=3"], "metrics": {}}
    off = compose("config", overrides=[f"paths.output_dir={tmp_path / 'job'}", "seed=3", "skip_finished=false"])
    assert finished_results(off, overrides=["seed=3", "skip_finished=false"]) is None


def test_an_experiment_refuses_earlier_runs_unless_resumed_or_fresh(tmp_path):
    from trufl.reporting.experiment import prepare_runs

    runs = tmp_path / "runs"
    prepare_runs(runs, resume=False, fresh=False)  # nothing there yet: nothing to decide
    _finished(runs / "0_trufl_toy", ["seed=0"])
    with pytest.raises(SystemExit, match=r"holds 1 run\(s\) of an earlier sweep: --resume .* --fresh"):
        prepare_runs(runs, resume=False, fresh=False)
    prepare_runs(runs, resume=True, fresh=False)
    assert (runs / "0_trufl_toy" / "results.json").is_file()
    prepare_runs(runs, resume=False, fresh=True)
    assert not runs.exists()


def test_the_expected_wall_time_spreads_the_published_runs_over_the_launchers_jobs(tmp_path):
    from trufl.reporting.sweep import expected_wall_time, parallel_jobs

    (tmp_path / "t.csv").write_text("configuration,flow,seeds,wall s\nshared,a,3,100 ± 5\nshared,b,1,500\n"
                                    "published,c,—,\n")
    assert parallel_jobs("local") == 2 and parallel_jobs("basic") == 1
    assert expected_wall_time("t", "basic", tmp_path) == 800.0  # 3 × 100 + 500, one at a time
    assert expected_wall_time("t", "local", tmp_path) == 500.0  # 800 / 2 = 400, but the longest run takes 500
    assert expected_wall_time("missing", "local", tmp_path) is None
