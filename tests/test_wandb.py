"""W&B as a researcher reads it: an offline toy run's directory holds the samples table,
the figures, results.json as an artifact, the learning rate and the nested config once."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trufl.loggers import log_figures, sweep_identity
from trufl.run import run

from .conftest import toy
from .wandb_records import config_keys, history_keys, of_type, records


def md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """W&B offline, its staging and settings under tmp_path (the suite runs with it disabled).

    W&B reads its environment once per session (and its service process inherits it): a session
    an earlier test started (e.g. tests/test_animations.py's) would keep its HOME and WANDB_MODE
    and warn that the changes are ignored. So the session is torn down before and after."""
    import wandb

    wandb.teardown()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    yield
    wandb.teardown()


def finished_records(run_dir: Path) -> list:
    """The offline run's records once W&B's service has exited: ``wandb.teardown`` waits for it to
    write out and close every run's file (``wandb.finish`` returns once the run is marked finished)."""
    import wandb

    wandb.teardown()
    return list(records(run_dir))


def test_offline_toy_run_leaves_samples_figures_results_artifact_and_lr(make_cfg, tmp_path, offline):
    cfg = make_cfg(*toy("flow=trufl", "flow.dim=1", "trainer.max_steps=20", "trainer.val_check_interval=10",
                        "trainer.log_every_n_steps=5", "eval.iw_samples=2", "logger=wandb"))
    run(cfg)
    out = tmp_path / "run"
    results = json.loads((out / "results.json").read_text())
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    files = run_dir / "files"
    # the samples as a wandb.Table, row for row as in results.json
    (table,) = files.glob("media/table/samples_*.table.json")
    assert [row[0] for row in json.loads(table.read_text())["data"]] == [str(s) for s in results["samples"]]
    # the toy's figure: the same PNG as the one written next to results.json
    (figure,) = files.glob("media/images/figures/box_mass_*.png")
    assert figure.read_bytes() == (out / "figures" / "box_mass.png").read_bytes()
    # results.json as an artifact of type results, its content hash that of the file
    kinds = [r.WhichOneof("record_type") for r in finished_records(run_dir)]
    artifacts = [a for a in of_type(run_dir, "artifact") if a.type == "results"]
    assert len(artifacts) == 1, f"{len(artifacts)} results artifacts among the run's records {kinds}"
    (artifact,) = artifacts
    assert [(e.path, e.digest) for e in artifact.manifest.contents] == [("results.json", md5_b64(out / "results.json"))]
    # the learning rate (LearningRateMonitor, optimiser AdamW) and the figure are in the history
    assert {"lr-AdamW", "figures/box_mass", "samples"} <= history_keys(run_dir)
    # the config once, nested: the composed top-level keys plus the group choices, no flat duplicates
    keys = config_keys(run_dir)
    assert sorted(keys) == sorted([*cfg.keys(), "choices"])
    sync = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(run_dir)], capture_output=True,
                          text=True, env={**os.environ}, timeout=120)
    assert run_dir.name in sync.stdout + sync.stderr, sync.stdout + sync.stderr


def test_log_figures_rejects_a_missing_or_unknown_file(tmp_path, offline):
    from trufl.loggers import wandb_logger

    logger = wandb_logger(save_dir=str(tmp_path), mode="offline")
    try:
        (tmp_path / "notes.txt").write_text("x")
        with pytest.raises(FileNotFoundError, match="figure 'a'"):
            log_figures(logger, {"a": tmp_path / "missing.png"})
        with pytest.raises(ValueError, match="figure 'b'.*not an image"):
            log_figures(logger, {"b": tmp_path / "notes.txt"})
    finally:
        logger.experiment.finish()


def test_a_single_run_has_no_sweep_group():
    assert sweep_identity() == (None, None)  # outside a Hydra multirun: W&B's own name, no group


def test_callbacks_group_adds_early_stopping_and_drops_the_lr_monitor_without_a_logger(make_cfg, tmp_path):
    from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor

    from trufl.build import build_trainer

    default = build_trainer(make_cfg(*toy()), None, str(tmp_path))
    assert not any(isinstance(c, (LearningRateMonitor, EarlyStopping)) for c in default.callbacks)
    # early stopping on request: no improvement by 100 bits counts as none, so with patience 1 the
    # run stops at its second validation (step 2 x 5), not at max_steps
    cfg = make_cfg(*toy("trainer.max_steps=50", "trainer.val_check_interval=5", "eval.iw_samples=2",
                        "callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=1",
                        "callbacks.early_stopping.min_delta=100"))
    run(cfg)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["global_step"] == 10


def test_log_figures_keeps_an_animation_animated(tmp_path, offline):
    """A GIF (the toy's support animations) goes to W&B as an image with all its frames."""
    from PIL import Image

    from trufl.loggers import wandb_logger

    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(5)]
    frames[0].save(tmp_path / "support.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    logger = wandb_logger(save_dir=str(tmp_path), mode="offline")
    log_figures(logger, {"animations/support": tmp_path / "support.gif"})
    logger.experiment.finish()
    (logged,) = (tmp_path / "wandb").glob("offline-run-*/files/media/images/animations/support_*.gif")
    assert Image.open(logged).n_frames == 5
