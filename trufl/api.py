"""After a run, in Python: :func:`load` a run directory or a checkpoint as its trained
module, its config and its task (docs/checkpoints.md)::

    import trufl
    run = trufl.load("outputs/2026-01-01/12-00-00")   # or .../checkpoints/last.ckpt
    run.module, run.config.flow._target_, run.task     # the task is built, not set up
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import checkpoint as ckpt
from .atomic import write_json_atomic
from .builders import build
from .data.base import Task
from .model import LikelihoodModule


@dataclass
class LoadedRun:
    """A trained run: ``module`` (eval mode), ``config`` (the run's resolved config),
    ``task`` (its datamodule, built but not set up: ``task.setup()`` reads the data),
    ``checkpoint`` (the file read), ``run_dir`` and the checkpoint's ``global_step``."""

    module: LikelihoodModule
    config: DictConfig
    task: Task
    checkpoint: Path
    run_dir: Path
    global_step: int

    @property
    def results(self) -> dict | None:
        """The run's ``results.json`` (None when the run directory has none)."""
        path = self.run_dir / "results.json"
        return json.loads(path.read_text()) if path.is_file() else None


def load(path: str | Path, config: str | Path | Mapping | DictConfig | None = None, map_location="cpu",
         weights_only: bool = True) -> LoadedRun:
    """Load a run directory (its ``checkpoints/last.ckpt``) or a ``.ckpt`` file.

    Args:
        path: a run directory or a checkpoint file.
        config: instead of the config the checkpoint carries: a run's ``results.json``, a dict or
            a DictConfig (checkpoints written before they carried their config need it; the
            error for one says which file).
        map_location: where the weights go (``torch.load``'s; the CPU by default).
        weights_only: ``torch.load``'s; True refuses pickled code objects.

    Raises:
        MissingCheckpointError: no such path, or a directory without ``checkpoints/last.ckpt``.
        CheckpointWithoutConfigError: a checkpoint without its config and no ``config`` given.
    """
    file = ckpt.checkpoint_file(path)
    state = ckpt.read(file, map_location, weights_only)
    module = LikelihoodModule.from_checkpoint(state, file, config).eval()
    cfg = OmegaConf.create(module.config)
    return LoadedRun(module, cfg, build(cfg.dataset), file, ckpt.run_dir_of(file), int(state.get("global_step", 0)))


def write_json(path: Path, obj) -> None:
    """``obj`` as JSON, atomically (:func:`trufl.atomic.write_json_atomic`), its folder made first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)