"""Nothing is lost when a run stops: checkpoints on SIGTERM/SIGKILL, DDP ranks,
failed jobs in sweeps, a corrupted data cache."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trufl.reporting.runs import load
from trufl.reporting.tables import UnknownMetricError, build_table
from trufl.run import run

from .conftest import ROOT, toy

#: toy runs on the command line: 79 steps per epoch (20000 / 256), a save every 20 steps
TOY_CLI = [*toy("logger=none", "trainer.enable_progress_bar=false", "eval.iw_samples=2", "trainer.max_steps=300",
                "trainer.val_check_interval=100", "callbacks.last.every_n_train_steps=20")]
STEPS_PER_EPOCH = 79


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def _start(out: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "train.py"), *TOY_CLI, f"paths.data_dir={data_dir}", f"paths.output_dir={out}", *extra]
    return subprocess.Popen(cmd, cwd=out.parent, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]


def _wait_for_checkpoint(proc: subprocess.Popen, ckpt: Path, min_step: int, timeout: float = 60) -> int:
    """Poll until ``ckpt`` holds a step >= ``min_step`` (saves are atomic: a read never sees half a file)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (code {proc.returncode}) before step {min_step}:\n{proc.stdout.read()[-3000:]}")
        if ckpt.is_file() and (step := _step(ckpt)) >= min_step:
            return step
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no checkpoint of step >= {min_step} within {timeout} s")


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _assert_checkpoint_is_the_final_state(out: Path, steps: int) -> dict:
    results = _results(out)
    assert results["status"] == "finished" and results["global_step"] == steps
    assert results["checkpoint"] == str(out / "checkpoints" / "last.ckpt")
    assert _step(Path(results["checkpoint"])) == steps  # the evaluated state is the named file
    assert results["best_checkpoint"] == str(out / "checkpoints" / "best.ckpt")
    return results


def test_last_checkpoint_holds_the_final_step_and_best_is_kept_apart(make_cfg, tmp_path):
    # 45 steps: saves at 20 and 40 are periodic, the end (45) is not on the interval;
    # validation at 15/30/45 picks the best
    run(make_cfg(*toy("trainer.max_steps=45", "trainer.val_check_interval=15", "callbacks.last.every_n_train_steps=20")))
    out = tmp_path / "run"
    _assert_checkpoint_is_the_final_state(out, 45)
    assert _step(out / "checkpoints" / "best.ckpt") in (15, 30, 45)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last-previous.ckpt", "last.ckpt"]
    assert _step(out / "checkpoints" / "last-previous.ckpt") == 40  # what the final save replaced


def test_sigterm_mid_epoch_saves_the_exact_step_and_resumes_to_the_end(make_cfg, tmp_path, data_dir):
    out = tmp_path / "a"
    proc = _start(out, data_dir)
    _wait_for_checkpoint(proc, out / "checkpoints" / "last.ckpt", 20)
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, log[-3000:]
    stopped = _results(out)
    assert stopped["status"] == "interrupted" and stopped["error"] == "SIGTERMException"
    step = stopped["global_step"]
    assert 20 <= step < STEPS_PER_EPOCH  # mid-epoch
    assert _step(out / "checkpoints" / "last.ckpt") == step  # the exact step, not the last periodic save
    assert stopped["resume"] == f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"

    run(make_cfg(*TOY_CLI, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", out=tmp_path / "b"))
    _assert_checkpoint_is_the_final_state(tmp_path / "b", 300)


def test_sigkill_loses_at_most_one_interval_and_resumes_to_the_same_results(make_cfg, tmp_path, data_dir):
    out = tmp_path / "a"
    proc = _start(out, data_dir)
    seen = _wait_for_checkpoint(proc, out / "checkpoints" / "last.ckpt", 40)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert _results(out)["status"] == "started"  # killed before it could write an outcome
    kept = _step(out / "checkpoints" / "last.ckpt")
    assert kept == seen and kept % 20 == 0  # the periodic save: at most 20 steps lost

    # resumed on the command line with the checkpoint alone: it continues in its own run directory
    runs_before = sorted(tmp_path.glob("outputs/*/*"))  # Hydra's directory of the first run (given paths.output_dir)
    cmd = [sys.executable, str(ROOT / "train.py"), *TOY_CLI, f"paths.data_dir={data_dir}",
           f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert sorted(tmp_path.glob("outputs/*/*")) == runs_before  # no new outputs/train/<time>/
    assert (out / ".hydra" / "overrides.yaml").is_file() and (out / "train.log").is_file()
    resumed = _assert_checkpoint_is_the_final_state(out, 300)
    rows = (out / "csv" / "metrics.csv").read_text() if (out / "csv").exists() else ""
    assert "not resumable" not in done.stdout + done.stderr

    # the same 300 steps uninterrupted, on one thread as the command-line runs (OMP_NUM_THREADS=1)
    run(make_cfg(*TOY_CLI, "num_threads=1", out=tmp_path / "uninterrupted"))
    uninterrupted = _results(tmp_path / "uninterrupted")
    assert uninterrupted["global_step"] == resumed["global_step"] == 300
    assert resumed["metrics"] == uninterrupted["metrics"]  # every value, exactly
    ours = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    theirs = torch.load(tmp_path / "uninterrupted" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert rows == ""  # logger=none: no CSV log


# --- DDP -----------------------------------------------------------------------------------------------------

DDP_CLI = [*toy("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "logger=csv", "trainer.enable_progress_bar=false",
                "trainer.max_steps=20", "trainer.val_check_interval=10", "eval.iw_samples=2")]
#: run on rank 1 only (LOCAL_RANK=1) at interpreter start: it fails after the last collective
FAIL_ON_RANK_1 = """
import os
if os.environ.get("LOCAL_RANK") == "1":
    import trufl.run
    def broken(loggers):
        raise RuntimeError("rank 1 fails after training")
    trufl.run.close_loggers = broken
"""


def _ddp(tmp_path: Path, data_dir: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {**_env(), "PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, ROOT]))}
    cmd = [sys.executable, str(ROOT / "train.py"), *DDP_CLI, f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path / 'run'}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_ddp_on_two_cpu_processes_writes_one_results_file(tmp_path, data_dir):
    done = _ddp(tmp_path, data_dir, [])
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "Traceback" not in log
    assert len(re.findall(r"wall time [\d.]+ s, val/nll_bits", log)) == 1  # one printed summary
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("results.json")] == [Path("run/results.json")]
    results = _results(tmp_path / "run")
    assert results["status"] == "finished" and results["global_step"] == 20
    assert _step(Path(results["checkpoint"])) == 20


@pytest.mark.slow
def test_ddp_exits_nonzero_when_another_rank_fails(tmp_path, data_dir):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(FAIL_ON_RANK_1)
    done = _ddp(tmp_path, data_dir, [tmp_path / "site"])
    log = done.stdout + done.stderr
    assert done.returncode != 0, log[-3000:]
    assert "RuntimeError: rank 1 fails after training" in log and "rank 1 exited with code 1" in log
    assert _results(tmp_path / "run")["status"] == "finished"  # rank 0's results are kept


def test_actnorm_initialisation_is_pooled_over_ddp_replicas(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from .ddp_replica import actnorm_replica  # a light module: spawned processes import only it

    mp.spawn(actnorm_replica, args=(2, port, tmp_path), nprocs=2)  # spawn, not fork: pytest's threads
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    both = torch.cat([r0["z"], r1["z"]])
    assert not torch.allclose(r0["z"].mean(0), r1["z"].mean(0), atol=1.0)  # each rank's own init would differ
    for replica in (r0, r1):
        torch.testing.assert_close(replica["initial"]["bias"], -both.mean(0))
        torch.testing.assert_close(replica["initial"]["log_scale"], -both.std(0).log())
    for name in ("bias", "log_scale"):
        assert torch.equal(r0["stepped"][name], r1["stepped"][name])
        assert not torch.equal(r0["stepped"][name], r0["initial"][name])  # the step moved them


# --- the shared data cache --------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_a_damaged_cache_file_is_detected_and_rebuilt(tmp_path, caplog, damage):
    from trufl.data.cache import load_or_build

    builds = []

    def builder():
        builds.append(1)
        return {"x": np.arange(1000) % 7, "y": np.linspace(0, 1, 50)}

    path = tmp_path / "toy" / "abc.npz"
    first = load_or_build(path, builder)
    assert load_or_build(path, builder)["x"].tolist() == first["x"].tolist() and len(builds) == 1  # a hit
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="trufl.data.cache"):
        again = load_or_build(path, builder)
    assert len(builds) == 2  # rebuilt, with a message naming the file
    assert f"data cache {path} is corrupted or truncated" in caplog.text
    assert all(np.array_equal(again[k], first[k]) for k in first)
    assert load_or_build(path, builder) and len(builds) == 2  # the rebuilt file is a hit again


def test_a_cache_file_without_a_checksum_is_rebuilt_only_if_it_does_not_load(tmp_path, caplog):
    from trufl.data.cache import load_or_build

    path = tmp_path / "old.npz"
    np.savez_compressed(path, x=np.arange(10))  # cached before checksums were kept
    assert load_or_build(path, lambda: pytest.fail("rebuilt a good file"))["x"].tolist() == list(range(10))
    assert path.with_name("old.npz.sha256").exists()
    path.with_name("old.npz.sha256").unlink()
    path.write_bytes(path.read_bytes()[:20])
    with caplog.at_level("WARNING", logger="trufl.data.cache"):
        assert load_or_build(path, lambda: {"x": np.arange(3)})["x"].tolist() == [0, 1, 2]
    assert "is unreadable (BadZipFile" in caplog.text


# --- sweeps and tables ------------------------------------------------------------------------------------------


def test_a_failing_job_keeps_the_others_results_and_its_row_is_marked_failed(tmp_path, data_dir):
    """A job that fails after it started (a learning rate of 1e30 passes validation and makes
    the loss non-finite at step 2) fails the sweep loudly; the other job's results stay and
    the table marks the failed row."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", *toy("logger=none", "trainer.enable_progress_bar=false",
           "trainer.max_steps=10", "trainer.val_check_interval=10", "eval.iw_samples=2", "flow.location_scale=true",
           "optim.lr=0.003,1e30"), f"paths.data_dir={data_dir}", f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0  # the sweep fails loudly
    assert "non-finite loss at step 2" in done.stderr
    key = "optim.lr"
    runs = {r["config"]["optim"]["lr"]: r for r in map(json.loads, map(Path.read_text, sweep.rglob("results.json")))}
    assert runs[0.003]["status"] == "finished" and runs[0.003]["global_step"] == 10
    assert runs[1e30]["status"] == "failed" and "NonFiniteLossError" in runs[1e30]["error"]

    header, rows = build_table(load(sweep), [key], ["test/nll_bits"])
    assert header == ["configuration", key, "seeds", "status", "test/nll_bits", "overrides"]
    assert rows[0][:4] == ["shared", "0.003", "1", "ok"]
    assert rows[1][:5] == ["shared", "1e+30", "0", "1 failed", "—"]
    assert float(rows[0][4]) == pytest.approx(runs[0.003]["metrics"]["test/nll_bits"], abs=1e-3)
    assert "optim.lr=0.003" in rows[0][5] and "flow.location_scale=True" in rows[0][5] and "paths." not in rows[0][5]
    with pytest.raises(UnknownMetricError, match="test/nll_bit:"):
        build_table(load(sweep), [key], ["test/nll_bit"])

def _result(seed: int, recon_weight: float = 1.0, nll: float = 2.0, status: str = "finished", out: str = "") -> dict:
    config = {"seed": seed, "recon_weight": recon_weight, "paths": {"output_dir": out or f"/runs/{seed}-{recon_weight}"},
              "callbacks": {"last": {"dirpath": f"{out or f'/runs/{seed}-{recon_weight}'}/checkpoints"}}}
    result = {"status": status, "config": config, "choices": {"flow": "trufl"}}
    return {**result, "metrics": {"test/nll_bits": nll}} if status == "finished" else result


def test_tables_count_distinct_seeds_and_warn_about_pooled_keys(capsys):
    runs = [_result(0, nll=2.0), _result(1, nll=3.0), _result(1, recon_weight=10.0, nll=5.0), _result(2, status="interrupted")]
    header, rows = build_table(runs, ["flow"], ["test/nll_bits"])
    assert rows == [["shared", "trufl", "2", "3 ok, 1 interrupted", "3.333 ± 1.528", ""]]  # 3 finished runs, seeds {0, 1}
    err = capsys.readouterr().err
    assert "row configuration=shared, flow=trufl pools runs that differ in recon_weight [1.0, 10.0]" in err
    assert "3 finished runs but 2 distinct seeds" in err
    assert "output_dir" not in err and "dirpath" not in err  # a job's own paths are not a swept key

    header, rows = build_table(runs, ["flow", "recon_weight"], ["test/nll_bits"])
    assert rows == [["shared", "trufl", "1.0", "2", "2 ok, 1 interrupted", "2.500 ± 0.707", ""],
                    ["shared", "trufl", "10.0", "1", "ok", "5.000", ""]]
    assert capsys.readouterr().err == ""
