"""A resumed run is the run it would have been (docs/reliability.md, Resuming a run): stopped at
any step (SIGTERM: the exact step; SIGKILL: the last periodic save) and resumed from
``<run>/checkpoints/last.ckpt``, it ends with the uninterrupted run's weights, metrics, CSV log
and support history, bit for bit, in the same run directory."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

import trufl.run
from trufl.run import run

from .conftest import ROOT, tiny_text, toy

#: a short toy run: 8 batches an epoch (1800 / 256, the last one short), a save every 10
#: steps, a validation every 25: steps where a save, a validation or an epoch end meet, or not
TOY = toy("logger=csv", "dataset.train_size=1800", "trainer.max_steps=60", "trainer.val_check_interval=25",
          "callbacks.last.every_n_train_steps=10", "eval.iw_samples=2", "callbacks.support_history.every_n_steps=7")
TEXT = tiny_text("logger=csv", "trainer.max_steps=12", "trainer.val_check_interval=5", "callbacks.last.every_n_train_steps=4")


class StopAt(pl.Callback):
    """What a SIGTERM arriving during step ``step`` does (Lightning's own flag)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            trainer._signal_connector.received_sigterm = True


class SnapshotAt(pl.Callback):
    """What a SIGKILL during step ``step + 1`` leaves: the run directory as it is on disk then."""

    def __init__(self, steps: dict[int, Path], out: Path):
        self.steps, self.out = steps, out

    def on_train_batch_start(self, trainer, *args) -> None:
        if (dest := self.steps.get(trainer.global_step)) is not None:
            shutil.copytree(self.out, dest)


@pytest.fixture(scope="module")
def toy_reference(tmp_path_factory, data_dir) -> tuple[Path, dict]:
    """The uninterrupted :data:`TOY` run, shared by the tests that resume it: (run dir, metrics)."""
    from hydra import compose, initialize_config_dir

    from .conftest import CONF

    out = tmp_path_factory.mktemp("toy") / "reference"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.data_dir={data_dir}", f"paths.output_dir={out}",
                                           "trainer.enable_progress_bar=false", *TOY])
    torch.set_num_threads(1)
    return out, run(cfg)


@pytest.fixture
def with_callbacks(monkeypatch):
    """``with_callbacks(*callbacks)``: the next run's trainer also gets these callbacks."""
    build = trufl.run.build_trainer

    def _set(*callbacks: pl.Callback) -> None:
        def patched(cfg, logger, root):
            trainer = build(cfg, logger, root)
            trainer.callbacks[:0] = callbacks
            return trainer

        monkeypatch.setattr(trufl.run, "build_trainer", patched)

    return _set


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def _csv_rows(out: Path) -> list[dict]:
    with (out / "csv" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _assert_same_run(resumed: Path, reference: Path, metrics: dict, reference_metrics: dict) -> None:
    assert metrics == reference_metrics  # every final metric, exactly
    assert json.loads((resumed / "results.json").read_text())["metrics"] == reference_metrics
    ours, theirs = _weights(resumed), _weights(reference)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    rows = _csv_rows(resumed)
    assert rows == _csv_rows(reference)  # no row lost, none twice, every value the same
    keyed = [(r["step"], tuple(k for k, v in r.items() if v and k not in ("step", "epoch"))) for r in rows]
    assert len(keyed) == len(set(keyed))
    train_steps = [int(r["step"]) for r in rows if not r.get("test/nll_bits")]
    assert train_steps == sorted(train_steps)  # monotone
    history = resumed / "support_history.jsonl"
    if history.exists():
        assert history.read_text() == (reference / "support_history.jsonl").read_text()


def _stop_and_resume(make_cfg, with_callbacks, overrides: list[str], out: Path, step: int) -> dict:
    with_callbacks(StopAt(step))
    with pytest.raises(SystemExit) as stop:
        run(make_cfg(*overrides, out=out))
    assert stop.value.code == 143
    stopped = json.loads((out / "results.json").read_text())
    assert stopped["status"] == "interrupted" and stopped["global_step"] == step
    with_callbacks()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = run(make_cfg(*overrides, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", out=out))
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "not resumable" in m or "not bit for bit" in m], messages
    return metrics


def _three_random_stops(make_cfg, with_callbacks, tmp_path: Path, overrides: list[str], steps: int, seed: str,
                        reference: Path, reference_metrics: dict) -> list[dict]:
    """Stop the run at 3 seeded random steps, resume each; the resumed runs' final metrics."""
    assert reference_metrics["test/nll_bits"] > 0
    stops = sorted(random.Random(seed).sample(range(1, steps), 3))
    resumed = []
    for step in stops:
        out = tmp_path / f"stopped-{step}"
        resumed.append(_stop_and_resume(make_cfg, with_callbacks, overrides, out, step))
        _assert_same_run(out, reference, resumed[-1], reference_metrics)
    # one directory per run: the resumed runs wrote into their own
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("stopped")) == sorted(f"stopped-{s}" for s in stops)
    return resumed


def test_a_toy_run_stopped_at_three_random_steps_resumes_to_the_uninterrupted_run(
        make_cfg, with_callbacks, tmp_path, toy_reference):
    resumed = _three_random_stops(make_cfg, with_callbacks, tmp_path, TOY, 60, "toy", *toy_reference)
    assert len(resumed) == 3 and all(m == toy_reference[1] for m in resumed)  # every final metric, exactly


def test_a_text_run_stopped_at_three_random_steps_resumes_to_the_uninterrupted_run(make_cfg, with_callbacks, tmp_path):
    torch.set_num_threads(1)
    reference_metrics = run(make_cfg(*TEXT, out=tmp_path / "reference"))
    resumed = _three_random_stops(make_cfg, with_callbacks, tmp_path, TEXT, 12, "text", tmp_path / "reference", reference_metrics)
    assert len(resumed) == 3 and all(m["test/nll_bits"] == reference_metrics["test/nll_bits"] and m == reference_metrics for m in resumed)


@pytest.mark.parametrize("step", [8, 24, 25, 40, 50])
def test_stopped_where_an_epoch_ends_or_a_validation_or_a_save_falls_a_toy_run_resumes_exactly(
        make_cfg, with_callbacks, tmp_path, toy_reference, step):
    # 8, 24, 40: epoch ends (40 also a save); 25, 50: validations (50 also a save)
    reference, reference_metrics = toy_reference
    metrics = _stop_and_resume(make_cfg, with_callbacks, TOY, tmp_path / "stopped", step)
    _assert_same_run(tmp_path / "stopped", reference, metrics, reference_metrics)


def test_killed_a_toy_run_resumes_from_its_last_periodic_save_to_the_uninterrupted_run(make_cfg, with_callbacks, tmp_path):
    """The run directory as a SIGKILL leaves it at three steps (after the saves at 10, 40 and 50:
    an interval's end, an epoch's end, a validation's step), each resumed."""
    torch.set_num_threads(1)
    kills = {13: tmp_path / "killed-13", 41: tmp_path / "killed-41", 55: tmp_path / "killed-55"}
    with_callbacks(SnapshotAt(kills, tmp_path / "reference"))
    reference_metrics = run(make_cfg(*TOY, out=tmp_path / "reference"))
    with_callbacks()
    for kill, out in kills.items():
        assert json.loads((out / "results.json").read_text())["status"] == "started"  # what a SIGKILL leaves
        saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
        assert saved == kill // 10 * 10
        metrics = run(make_cfg(*TOY, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", out=out))
        _assert_same_run(out, tmp_path / "reference", metrics, reference_metrics)


def test_resuming_with_another_batch_size_warns_that_it_is_not_the_same_run(make_cfg, with_callbacks, tmp_path):
    out = tmp_path / "run"
    with_callbacks(StopAt(12))
    with pytest.raises(SystemExit):
        run(make_cfg(*TOY, out=out))
    with_callbacks()
    with pytest.warns(UserWarning, match=r"batch_size 256 -> 128.*not bit for bit the run it would have been"):
        run(make_cfg(*TOY, "dataset.batch_size=128", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", out=out))
    assert json.loads((out / "results.json").read_text())["global_step"] == 60


def test_a_resumed_run_reports_its_wall_time_in_all_segments(make_cfg, with_callbacks, tmp_path):
    """The checkpoint carries the time spent until its save; the resumed run's ``wall_time_s`` is
    that plus its own segment, and ``wall_time_before_resume_s`` says how much came before."""
    from trufl.resume import CHECKPOINT_KEY

    out = tmp_path / "run"
    with_callbacks(StopAt(12))
    with pytest.raises(SystemExit):
        run(make_cfg(*TOY, out=out))
    stopped = json.loads((out / "results.json").read_text())
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)[CHECKPOINT_KEY]["wall_time_s"]
    assert 0 < saved <= stopped["wall_time_s"]
    with_callbacks()
    run(make_cfg(*TOY, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", out=out))
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["wall_time_before_resume_s"] == pytest.approx(saved, rel=1e-12)
    assert resumed["wall_time_s"] > saved and resumed["global_step"] == 60
    fresh = tmp_path / "fresh"
    run(make_cfg(*TOY, out=fresh))
    assert "wall_time_before_resume_s" not in json.loads((fresh / "results.json").read_text())


def test_a_resumed_run_continues_in_the_run_directory_of_its_checkpoint():
    import trufl  # noqa: F401 - registers the resolver

    node = OmegaConf.create({"ckpt_path": None, "dir": "${trufl_run_dir:${ckpt_path},outputs/new}"})
    assert node.dir == "outputs/new"
    node.ckpt_path = "outputs/train/2026-01-01_00-00-00/checkpoints/last.ckpt"
    assert node.dir == "outputs/train/2026-01-01_00-00-00"
    node.ckpt_path = "elsewhere/weights.ckpt"  # not a run's checkpoint: a new directory
    assert node.dir == "outputs/new"
    assert "trufl_run_dir:${ckpt_path}" in (trufl.config_dir() / "hydra" / "default.yaml").read_text()


def test_a_resumed_run_continues_its_wandb_run(make_cfg, with_callbacks, tmp_path, monkeypatch):
    import wandb

    from .wandb_records import of_type

    monkeypatch.setenv("WANDB_MODE", "offline")  # W&B's staging and settings under tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    overrides = toy("logger=wandb", "logger.notes=resume test", "logger.job_type=train", "trainer.max_steps=20",
                    "trainer.val_check_interval=10", "eval.iw_samples=2", "callbacks.support_history.render=false")
    out = tmp_path / "run"
    with_callbacks(StopAt(7))
    with pytest.raises(SystemExit):
        run(make_cfg(*overrides, out=out))
    run_id = json.loads((out / "results.json").read_text())["wandb_run_id"]
    assert run_id and torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["trufl_resume"]["wandb_run_id"] == run_id
    with_callbacks()
    run(make_cfg(*overrides, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", out=out))
    wandb.teardown()  # the W&B service writes the session's records out
    assert json.loads((out / "results.json").read_text())["wandb_run_id"] == run_id
    first, second = sorted((out / "wandb").glob("offline-run-*"))  # W&B's two sessions of one run
    for part in (first, second):
        (record,) = of_type(part, "run")
        assert record.run_id == run_id and record.notes == "resume test" and record.job_type == "train"


# --- subprocesses: real signals --------------------------------------------------------------------------------

SOAK = toy("logger=csv", "trainer.enable_progress_bar=false", "eval.iw_samples=2", "trainer.max_steps=300",
           "trainer.val_check_interval=100", "callbacks.last.every_n_train_steps=20")


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def _saved_step(ckpt: Path) -> int:
    try:
        return torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    except (FileNotFoundError, RuntimeError, EOFError):  # not there yet, or being written
        return -1


def _interrupt(cmd: list[str], cwd: Path, ckpt: Path, after_step: int, sig: int, group: bool = False) -> None:
    """Start ``cmd``; once ``ckpt`` holds a step >= ``after_step``, a few steps later, send ``sig``."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=group)
    deadline = time.time() + 300
    while _saved_step(ckpt) < after_step:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint of step >= {after_step} (code {proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.02)
    time.sleep(0.05)  # somewhere in the next interval
    if group:
        os.killpg(proc.pid, sig)  # every DDP rank
    else:
        proc.send_signal(sig)
    log, _ = proc.communicate(timeout=120)
    expected = 128 + signal.SIGTERM if sig == signal.SIGTERM else -sig
    assert proc.returncode == expected, log[-3000:]


@pytest.mark.slow
def test_a_toy_run_interrupted_five_times_by_sigterm_and_sigkill_ends_as_the_uninterrupted_run(tmp_path, data_dir):
    out = tmp_path / "run"
    base = [sys.executable, str(ROOT / "train.py"), *SOAK, f"paths.data_dir={data_dir}"]
    ckpt = out / "checkpoints" / "last.ckpt"
    for i, after in enumerate((30, 80, 130, 180, 230)):
        start = [*base, f"paths.output_dir={out}"] if i == 0 else [*base, f"ckpt_path={ckpt}"]
        _interrupt(start, tmp_path, ckpt, after, signal.SIGTERM if i % 2 == 0 else signal.SIGKILL)
    done = subprocess.run([*base, f"ckpt_path={ckpt}"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    reference = tmp_path / "reference"
    done = subprocess.run([*base, f"paths.output_dir={reference}"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    ours, theirs = (json.loads((d / "results.json").read_text()) for d in (out, reference))
    _assert_same_run(out, reference, ours["metrics"], theirs["metrics"])


DDP = toy("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "logger=csv", "trainer.enable_progress_bar=false",
          "trainer.max_steps=60", "trainer.val_check_interval=25", "callbacks.last.every_n_train_steps=10", "eval.iw_samples=2")


@pytest.mark.slow
def test_a_two_process_ddp_run_killed_once_resumes_to_the_uninterrupted_run(tmp_path, data_dir):
    base = [sys.executable, str(ROOT / "train.py"), *DDP, f"paths.data_dir={data_dir}"]
    out, reference = tmp_path / "run", tmp_path / "reference"
    ckpt = out / "checkpoints" / "last.ckpt"
    _interrupt([*base, f"paths.output_dir={out}"], tmp_path, ckpt, 30, signal.SIGKILL, group=True)
    for cmd in ([*base, f"ckpt_path={ckpt}"], [*base, f"paths.output_dir={reference}"]):
        done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    ours, theirs = (json.loads((d / "results.json").read_text()) for d in (out, reference))
    _assert_same_run(out, reference, ours["metrics"], theirs["metrics"])
