"""The SLURM preset (trufl/conf/hydra/launcher/slurm.yaml): DDP with one task and one GPU per
device, requeued on preemption and timeout, each requeued job resuming with ckpt_path=last."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig

from trufl.config import ConfigError
from trufl.multirun import validate_sweep
from trufl.run import run

from .conftest import CONF, toy

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='the launchers extra: pip install "trufl[launchers]"')

DDP4 = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "trainer=ddp", "trainer.devices=4", "ckpt_path=last"]


def multirun_config(*overrides: str) -> tuple[DictConfig, object]:
    """The master config of ``python train.py -m <overrides>`` and its loader."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return loader.load_configuration("config", list(overrides), RunMode.MULTIRUN), loader


def test_slurm_preset_resolves_one_task_and_one_gpu_per_device_for_devices_4(tmp_path):
    config, loader = multirun_config(*DDP4, f"hydra.sweep.dir={tmp_path}", "seed=0,1")
    launcher = config.hydra.launcher
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 1)
    assert launcher.max_num_timeout == 3 and launcher.signal_delay_s == 120
    assert config.trainer.strategy == "ddp" and config.ckpt_path == "last"
    assert validate_sweep(config, loader) == 2  # both jobs compose and validate


def test_slurm_preset_writes_an_sbatch_script_with_a_task_and_gpu_per_device(tmp_path, monkeypatch):
    """Through the real launcher and submitit (sbatch itself replaced): the script asks for
    4 tasks and 4 GPUs on one node, the warning signal before the limit, and 3 timeout requeues."""
    import submitit

    fake_bin = tmp_path / "bin"  # submitit refuses to build a SLURM executor without srun on PATH
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    seen = {}

    def submit(executor, fn, *args):  # what launch() would hand to sbatch
        seen["script"] = executor._executor._make_submission_file_text("python -m submitit", "uid")
        seen["timeouts"] = executor._executor.max_num_timeout
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", submit)
    config, _ = multirun_config(*DDP4, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    launcher = instantiate(config.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=config)
    launcher.launch([["seed=0"]], 0)
    script = seen["script"].splitlines()
    for line in ("#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4", "#SBATCH --nodes=1",
                 "#SBATCH --partition=gpu", "#SBATCH --signal=USR2@120", "#SBATCH --time=240"):
        assert line in script
    assert seen["timeouts"] == 3


@pytest.mark.parametrize("overrides, message", [
    (["trainer=ddp"], r"tasks_per_node=-1: one task per device needs a positive trainer.devices"),
    (["trainer.devices=2", "hydra.launcher.tasks_per_node=1"], r"tasks_per_node=1 but trainer.devices=2"),
])
def test_slurm_preset_refuses_a_task_count_lightning_would_reject(tmp_path, overrides, message):
    config, loader = multirun_config("hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}", *overrides)
    with pytest.raises(ConfigError, match=message):
        validate_sweep(config, loader)


def test_ckpt_path_last_starts_fresh_then_resumes_from_the_runs_own_last_checkpoint(make_cfg, tmp_path, caplog):
    """What a requeued job does: the same command in the same directory. With no checkpoint
    yet it trains from step 0; run again, it restores checkpoints/last.ckpt and goes on."""
    out = tmp_path / "job"
    short = toy("logger=none", "trainer.enable_progress_bar=false", "eval.iw_samples=2", "trainer.val_check_interval=10",
                "ckpt_path=last")
    caplog.set_level(logging.INFO)
    run(make_cfg(*short, "trainer.max_steps=10", out=out))
    assert "Restoring states" not in caplog.text and json.loads((out / "results.json").read_text())["global_step"] == 10
    caplog.clear()
    run(make_cfg(*short, "trainer.max_steps=20", out=out))
    assert f"ckpt_path=last: resuming from {out / 'checkpoints' / 'last.ckpt'}" in caplog.text  # the run's own, made concrete
    assert json.loads((out / "results.json").read_text())["global_step"] == 20
