"""The fault matrix (docs/reliability.md#fault-matrix): for each fault, what the user sees,
what is kept, and that resuming from what is kept reaches the final step.

Signals are sent by the process to itself at a seeded random point (tests/fault_runner.py):
a training step, a validation batch, or half-way through writing ``last.ckpt``. The other
faults are injected in-process at the seam where they happen (a loss term, a file write,
a DataLoader worker)."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import trufl.atomic
from trufl import results as res
from trufl.checkpoints import CheckpointError, checkpoint_problem
from trufl.model import LikelihoodModule
from trufl.objective import NonFiniteLossError, Terms
from trufl.reporting.runs import load
from trufl.reporting.tables import build_table
from trufl.run import run

from .conftest import ROOT, toy

STEPS, SAVE_EVERY, VAL_EVERY = 120, 20, 40
#: a toy run of 120 steps (79 a epoch), last.ckpt every 20 steps, validation every 40
FAULT_CLI = [*toy("logger=none", "trainer.enable_progress_bar=false", "eval.iw_samples=2", f"trainer.max_steps={STEPS}",
                  f"trainer.val_check_interval={VAL_EVERY}", f"callbacks.last.every_n_train_steps={SAVE_EVERY}",
                  "~callbacks.support_history")]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def _step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _resume_finishes(make_cfg, ckpt: Path, out: Path) -> dict:
    """Resume from ``ckpt`` into ``out``: the run finishes at the final step."""
    assert checkpoint_problem(ckpt) is None
    run(make_cfg(*FAULT_CLI, f"ckpt_path={ckpt}", out=out))
    resumed = _results(out)
    assert resumed["status"] == "finished" and resumed["global_step"] == STEPS
    assert _step(out / "checkpoints" / "last.ckpt") == STEPS
    return resumed


# --- signals at seeded random points -------------------------------------------------------------------------


def _point(where: str, seed: int) -> int:
    """The seeded point: a training step after the first save, a validation, or the k-th save (k >= 2)."""
    rng = random.Random(seed)
    if where == "step":
        return rng.randrange(SAVE_EVERY + 1, STEPS)
    if where == "validation":
        return rng.choice(range(VAL_EVERY, STEPS, VAL_EVERY))
    return rng.randrange(2, STEPS // SAVE_EVERY)  # the k-th save of last.ckpt, at step k * 20


def _signalled(tmp_path: Path, data_dir: Path, sig: signal.Signals, where: str, n: int) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "stopped"
    cmd = [sys.executable, str(ROOT / "tests" / "fault_runner.py"), sig.name, where, str(n), *FAULT_CLI,
           f"paths.data_dir={data_dir}", f"paths.output_dir={out}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert f"fault_runner: {sig.name} at {where} {n}" in done.stdout, (done.stdout + done.stderr)[-3000:]
    return done, out


SIGNAL_CASES = [pytest.param(sig, where, seed, id=f"{sig.name}-{where}-seed{seed}",
                             marks=[] if (sig, where) == (signal.SIGKILL, "save") else [pytest.mark.slow])
                for sig in (signal.SIGKILL, signal.SIGTERM) for where in ("step", "validation", "save") for seed in (0,)]


@pytest.mark.parametrize("sig, where, seed", SIGNAL_CASES)
def test_a_signal_at_a_seeded_point_keeps_a_whole_checkpoint_that_resumes_to_the_end(make_cfg, tmp_path, data_dir,
                                                                                      sig, where, seed):
    n = _point(where, seed)
    done, out = _signalled(tmp_path, data_dir, sig, where, n)
    last = out / "checkpoints" / "last.ckpt"
    assert checkpoint_problem(last) is None  # whole, whatever was being written when the signal came
    kept = _step(last)
    at = {"step": n, "validation": n, "save": n * SAVE_EVERY}[where]  # the global step when the signal came
    if sig == signal.SIGKILL:
        assert done.returncode == -signal.SIGKILL
        assert _results(out)["status"] == "started"  # no outcome written: tables count it as started
        # the latest save that completed: the periodic one at or before the step; during the k-th save, the (k-1)-th
        assert kept == (at - SAVE_EVERY if where == "save" else at // SAVE_EVERY * SAVE_EVERY)
        if where == "save":
            assert [p.name for p in last.parent.glob(".last.ckpt.*.tmp")]  # the half-written file, beside it
    else:
        assert done.returncode == 128 + signal.SIGTERM, (done.stdout + done.stderr)[-3000:]
        stopped = _results(out)
        assert stopped["status"] == "interrupted" and stopped["error"] == "SIGTERMException"
        assert stopped["resume"] == f"ckpt_path={last}"
        assert kept == stopped["global_step"] and at <= kept <= at + 1  # the state of the step where it stopped
    _resume_finishes(make_cfg, last, tmp_path / "resumed")


# --- a NaN in each loss term ---------------------------------------------------------------------------------


@pytest.mark.parametrize("term", [pytest.param("recon", marks=pytest.mark.slow), "log_p",
                                  pytest.param("log_q", marks=pytest.mark.slow)])  # one fast, all three with -m slow
def test_a_nan_in_a_loss_term_names_the_term_and_step_and_keeps_the_state_before_it(make_cfg, tmp_path, monkeypatch, term):
    at = random.Random(term).randrange(10, 40)
    terms = LikelihoodModule.terms

    def poisoned(self, batch):
        t, mask, condition = terms(self, batch)
        if self.trainer.training and self.global_step == at:
            value = getattr(t, term).clone()
            value[0, 0] = float("nan")
            t = t._replace(**{term: value})
        return t, mask, condition

    monkeypatch.setattr(LikelihoodModule, "terms", poisoned)
    with pytest.raises(NonFiniteLossError, match=rf"non-finite loss at step {at}: term\(s\) \['loss', '{term}'\]") as err:
        run(make_cfg(*FAULT_CLI))
    kept = tmp_path / "run" / "checkpoints" / f"nonfinite-step{at}.ckpt"
    assert f"checkpoint of the state before this step: {kept}" in err.value.__notes__
    failed = _results(tmp_path / "run")
    assert failed["status"] == "failed" and f"step {at}" in failed["error"] and term in failed["error"]
    assert _step(kept) == at and _step(tmp_path / "run" / "checkpoints" / "last.ckpt") == at
    monkeypatch.setattr(LikelihoodModule, "terms", terms)
    _resume_finishes(make_cfg, kept, tmp_path / "resumed")


# --- a full disk and a writer that fails half-way -------------------------------------------------------------


def _fail_half_way(monkeypatch, match: str, after: int = 0) -> list:
    """Make writes of files whose temporary name starts with ``.<match>.`` write half their bytes and
    raise ENOSPC, from the ``after``-th such write on (0: the first)."""
    write_chunks, seen = trufl.atomic._write_chunks, []

    def write(f, data):
        if Path(f.name).name.startswith(f".{match}."):
            seen.append(1)
            if len(seen) > after:
                f.write(data[: len(data) // 2])
                f.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f.name)
        write_chunks(f, data)

    monkeypatch.setattr(trufl.atomic, "_write_chunks", write)
    return seen


def test_a_full_disk_during_a_checkpoint_save_keeps_the_previous_last_ckpt_whole(make_cfg, tmp_path, monkeypatch, caplog):
    _fail_half_way(monkeypatch, "last.ckpt", after=1)  # the first save (step 20) succeeds, the second (40) fills the disk
    with pytest.raises(OSError, match="No space left on device") as err:
        run(make_cfg(*FAULT_CLI))
    ckpts = tmp_path / "run" / "checkpoints"
    assert any("resume from" in note and "(step 20)" in note for note in err.value.__notes__)
    assert checkpoint_problem(ckpts / "last.ckpt") is None and _step(ckpts / "last.ckpt") == SAVE_EVERY
    assert not list(ckpts.glob(".*.tmp"))  # the failed write removed its temporary file
    failed = _results(tmp_path / "run")
    assert failed["status"] == "failed" and "No space left on device" in failed["error"]
    assert failed["resume"] == f"ckpt_path={ckpts / 'last.ckpt'}"
    monkeypatch.undo()
    _resume_finishes(make_cfg, ckpts / "last.ckpt", tmp_path / "resumed")


def test_a_results_write_that_fails_half_way_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    previous = {"status": "finished", "metrics": {"test/nll_bits": 1.25}, "samples": list(range(2000))}
    res.write(path, previous)
    _fail_half_way(monkeypatch, "results.json")
    with pytest.raises(OSError, match="No space left on device"):
        res.write(path, {"status": "finished", "metrics": {"test/nll_bits": 9.0}, "samples": list(range(4000))})
    assert json.loads(path.read_text()) == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


# --- checkpoints given to resume from -------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", pytest.param("flip_byte", marks=pytest.mark.slow)])
def test_a_damaged_ckpt_path_is_refused_naming_the_previous_good_checkpoint_which_resumes(make_cfg, tmp_path, damage):
    run(make_cfg(*toy("trainer.max_steps=45", "trainer.val_check_interval=45", "callbacks.last.every_n_train_steps=20",
                      "eval.iw_samples=2", "~callbacks.support_history", "~callbacks.best")))
    ckpts = tmp_path / "run" / "checkpoints"
    assert (_step(ckpts / "last.ckpt"), _step(ckpts / "last-previous.ckpt")) == (45, 40)
    data = bytearray((ckpts / "last.ckpt").read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 0xFF
    (ckpts / "last.ckpt").write_bytes(bytes(data))
    reason = "truncated" if damage == "truncate" else "corrupted"
    with pytest.raises(CheckpointError, match=rf"ckpt_path={ckpts / 'last.ckpt'} cannot be resumed from: it is {reason}"
                       rf".*The previous good checkpoint is {ckpts / 'last-previous.ckpt'} \(step 40\)"):
        run(make_cfg(*FAULT_CLI, f"ckpt_path={ckpts / 'last.ckpt'}", out=tmp_path / "refused"))
    assert _results(tmp_path / "refused")["global_step"] == 0  # refused before any training
    assert not (tmp_path / "refused" / "checkpoints").exists()
    _resume_finishes(make_cfg, ckpts / "last-previous.ckpt", tmp_path / "resumed")


# --- the data cache, a DataLoader worker, a multirun launcher -----------------------------------------------


def test_a_data_cache_truncated_between_runs_is_rebuilt_and_the_run_finishes(make_cfg, tmp_path, caplog):
    data = tmp_path / "data"
    short = [*FAULT_CLI, f"paths.data_dir={data}", "trainer.max_steps=5", "trainer.val_check_interval=5"]
    run(make_cfg(*short, out=tmp_path / "first"))
    (cache,) = data.rglob("*.npz")
    first = dict(np.load(cache))
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="trufl.data.cache"):
        run(make_cfg(*short, out=tmp_path / "second"))
    assert f"data cache {cache} is corrupted or truncated" in caplog.text
    assert _results(tmp_path / "second")["status"] == "finished"
    assert all(np.array_equal(np.load(cache)[k], first[k]) for k in first)  # the same data, rebuilt


def test_a_killed_dataloader_worker_is_a_clear_error_and_the_checkpoint_resumes(make_cfg, tmp_path, monkeypatch):
    from trufl.data.base import SplitDataModule

    at = 30
    collate = SplitDataModule.collate

    def dying(self, items, generator=None):
        info = torch.utils.data.get_worker_info()
        if generator is not None and info is not None and self._batches_seen >= at:
            os.kill(os.getpid(), signal.SIGKILL)  # a worker killed (the OOM killer, a node's limit)
        if generator is not None and info is not None:
            self._batches_seen += info.num_workers  # each worker counts the batches the loader hands out
        return collate(self, items, generator)

    monkeypatch.setattr(SplitDataModule, "collate", dying)
    monkeypatch.setattr(SplitDataModule, "_batches_seen", 0, raising=False)
    with pytest.raises(RuntimeError, match=r"DataLoader worker \(pid.*\d+\) (is killed by signal|exited unexpectedly)"):
        run(make_cfg(*FAULT_CLI, "dataset.num_workers=2"))
    failed = _results(tmp_path / "run")
    assert failed["status"] == "failed" and "DataLoader worker" in failed["error"]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert failed["resume"] == f"ckpt_path={last}" and _step(last) == failed["global_step"] > 0
    monkeypatch.undo()
    _resume_finishes(make_cfg, last, tmp_path / "resumed")


@pytest.mark.slow
def test_a_killed_multirun_keeps_finished_jobs_and_marks_the_rest(make_cfg, tmp_path, data_dir):
    """The basic launcher runs jobs one after another in its own process: SIGKILL during the second job."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "tests" / "fault_runner.py"), "SIGKILL", "step", "30", "-m", *FAULT_CLI,
           "seed=0,1,2", f"paths.data_dir={data_dir}", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=tmp_path, env={**_env(), "FAULT_JOB": "2"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, (done.stdout + done.stderr)[-3000:]
    runs = {r["config"]["seed"]: r for r in load(sweep)}
    assert sorted(runs) == [0, 1]  # the third job never started: no directory, no file
    assert runs[0]["status"] == "finished" and runs[0]["global_step"] == STEPS
    assert runs[1]["status"] == "started"
    header, rows = build_table(list(runs.values()), ["flow"], ["test/nll_bits"])
    assert rows[0][header.index("status")] == "1 ok, 1 started"
    ckpt = Path(runs[1]["checkpoint_dir"]) / "last.ckpt"
    assert _step(ckpt) == 20
    _resume_finishes(make_cfg, ckpt, tmp_path / "resumed")


# --- the support history: appended line by line ---------------------------------------------------------------


def test_a_history_line_cut_short_by_a_kill_is_skipped_and_removed_before_the_next_append(tmp_path, caplog):
    from trufl.history_format import append, meta_record, read_history, val_record

    path = tmp_path / "support_history.jsonl"
    append(path, meta_record("TruflDequantiser", 4, 1, 1.0, None, [0.0, 1.0], 50, 100))
    append(path, val_record(10, {"kl_bits": 0.5}))
    whole = path.read_bytes()
    path.write_bytes(whole + json.dumps(val_record(20, {"kl_bits": 0.25})).encode()[:17])  # a kill mid-line
    with caplog.at_level("WARNING", logger="trufl.history_format"):
        assert [v["step"] for v in read_history(path)["val"]] == [10]
        assert "support_history.jsonl:3: incomplete line skipped" in caplog.text
        append(path, val_record(30, {"kl_bits": 0.125}))  # the resumed run's next record
        assert "an incomplete last line (17 bytes" in caplog.text
    assert path.read_bytes().startswith(whole) and path.read_bytes().count(b"\n") == 3
    assert [(v["step"], v["metrics"]["kl_bits"]) for v in read_history(path)["val"]] == [(10, 0.5), (30, 0.125)]


def test_an_atomic_write_keeps_the_usual_permissions_and_leaves_no_temporary_file(tmp_path):
    from trufl.atomic import atomic_open, write_text_atomic

    write_text_atomic(tmp_path / "table.md", "| a |\n")
    reference = tmp_path / "plain.md"
    reference.write_text("x")
    assert (tmp_path / "table.md").stat().st_mode == reference.stat().st_mode  # not mkstemp's 0600
    with pytest.raises(ValueError, match="boom"):
        with atomic_open(tmp_path / "table.md") as f:
            f.write("| half")
            raise ValueError("boom")
    assert (tmp_path / "table.md").read_text() == "| a |\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.md", "table.md"]
