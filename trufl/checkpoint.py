"""What a checkpoint carries besides Lightning's state, and finding and reading one
(docs/checkpoints.md).

Every ``.ckpt`` a run writes holds the run's resolved config as plain Python under
:data:`CONFIG_KEY` and the task's number of categories under :data:`CATEGORIES_KEY`
(:meth:`trufl.model.LikelihoodModule.on_save_checkpoint`), so the model can be rebuilt from
the file alone: no Hydra, no results.json, no data. Plain dicts, lists, strings and numbers
load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .builders import build
from .resume import run_dir_of as own_run_dir

#: the run's resolved config (``OmegaConf.to_container(cfg, resolve=True)``)
CONFIG_KEY = "trufl_config"
#: K of the task the model was built for (text vocabularies are known only once the data is read)
CATEGORIES_KEY = "trufl_num_categories"
#: the checkpoint of a run directory: the final (evaluated) state
LAST = Path("checkpoints") / "last.ckpt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read, rebuilt or resumed from; the message says what to do."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """No such file, or a directory without ``checkpoints/last.ckpt``."""


class CheckpointWithoutConfigError(CheckpointError, ValueError):
    """A checkpoint written before checkpoints carried their config."""


def checkpoint_file(path: str | Path) -> Path:
    """The ``.ckpt`` that ``path`` names: the file itself, or for a run directory its
    ``checkpoints/last.ckpt`` (a ``checkpoints/`` folder: its ``last.ckpt``; else the
    ``checkpoint`` its results.json names)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingCheckpointError(f"{path} does not exist: give a run directory (with {LAST}) or a .ckpt file")
    if path.is_file():
        return path
    named = _results(path / "results.json").get("checkpoint")  # elsewhere when callbacks.last.dirpath was changed
    for candidate in (path / LAST, path / LAST.name, *([Path(named)] if named else [])):
        if candidate.is_file():
            return candidate
    status = _results(path / "results.json").get("status")
    found = sorted(p.name for p in (path / "checkpoints").glob("*.ckpt")) if (path / "checkpoints").is_dir() else []
    raise MissingCheckpointError(
        f"{path} has no {LAST}" + (f" (results.json: status {status})" if status else "")
        + (f"; checkpoints there: {', '.join(found)} (name one)" if found else
           "; a run keeps one unless it ran with callbacks=none"))


def _results(path: Path) -> dict:
    """A run's results.json, or nothing when there is none (or it cannot be read)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def run_dir_of(ckpt: Path) -> Path:
    """The run directory of a checkpoint (``<run>/checkpoints/x.ckpt`` → ``<run>``), else its folder."""
    return own_run_dir(ckpt) or ckpt.parent


def read(path: Path, map_location="cpu", weights_only: bool = True) -> dict:
    """The checkpoint's dict. ``weights_only=True`` (the default) unpickles tensors and plain
    containers only, so an untrusted file cannot run code."""
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if not weights_only:
            raise
        raise CheckpointError(
            f"{path} holds objects that torch.load(weights_only=True) refuses ({str(err).splitlines()[0]}); "
            "if you trust the file, load it with weights_only=False") from err


def stored_config(checkpoint: dict, path: Path) -> tuple[dict, int | None]:
    """The config and K the checkpoint carries; a clear error for a checkpoint from before
    checkpoints carried them, saying how to rebuild it from the run's ``results.json``."""
    if CONFIG_KEY not in checkpoint:
        results = run_dir_of(path) / "results.json"
        raise CheckpointWithoutConfigError(
            f"{path} carries no config (no '{CONFIG_KEY}' key): it was written before checkpoints carried their "
            f"run's config. Rebuild the model from the run's results.json (its 'config'): "
            f"trufl.load('{path}', config='{results}') in Python, or --config {results} with trufl-eval and "
            "trufl-sample" + ("" if results.is_file() else f" ({results} is not there: give the run's results.json)"))
    return checkpoint[CONFIG_KEY], checkpoint.get(CATEGORIES_KEY)


def config_from(source: str | Path | Mapping | DictConfig) -> DictConfig:
    """A config given instead of the checkpoint's: a ``results.json`` (its ``config``), a
    dict or a DictConfig."""
    if isinstance(source, DictConfig):
        return source
    if isinstance(source, Mapping):
        return OmegaConf.create(dict(source))
    path = Path(source).expanduser()
    if not path.is_file():
        raise MissingCheckpointError(f"config={path} does not exist (a run's results.json)")
    found = json.loads(path.read_text())
    if "config" not in found:
        raise CheckpointError(f"{path} has no 'config' key: is it a run's results.json?")
    return OmegaConf.create(found["config"])


def num_categories(cfg: DictConfig) -> int:
    """K of ``cfg``'s task, for a checkpoint that does not carry it (reads the data)."""
    task = build(cfg.dataset)
    task.setup()
    return task.num_categories
