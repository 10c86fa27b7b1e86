"""What ``trufl-eval`` does (the command and its --help: trufl/eval.py): a checkpoint evaluated
on a split by the training job's own loop (:func:`trufl.run.evaluate`, from the same seed), with
overrides of the keys that leave the model as it is, written beside the run (docs/checkpoints.md)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, OmegaConf

from . import checkpoint as ckpt
from .api import write_json
from .build import build, build_trainer
from .config import ConfigError, to_container, validate_config
from .metrics import contract_keys
from .model import LikelihoodModule
from .objective import renormalised_bound
from .results import code_version
from .run import evaluate

#: what an override may change: settings of the evaluation, not of the model
EVAL_KEYS = ("eval.", "trainer.", "dataset.batch_size", "dataset.num_workers", "dataset.data_dir", "seed", "num_threads")


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """``cfg`` with Hydra-syntax overrides (``key=value``) of existing keys in :data:`EVAL_KEYS`;
    a :class:`~trufl.config.ConfigError` naming every key that is unknown or may not change."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise ConfigError(f"cannot parse the overrides {overrides}: {err}") from None
    cfg = cfg.copy()
    errors = []
    for o in parsed:
        key = o.key_or_group
        if o.is_delete() or o.is_add() or o.is_sweep_override():
            errors.append(f"{o.input_line}: only key=value overrides of existing keys (no +, ~ or sweeps)")
        elif not any(key == k or key.startswith(k) for k in EVAL_KEYS):
            errors.append(f"{key} cannot change at evaluation (it would not fit the checkpoint's weights); "
                          f"allowed: {', '.join(k + ('*' if k.endswith('.') else '') for k in EVAL_KEYS)}")
        elif OmegaConf.select(cfg, key, default=KeyError) is KeyError:
            errors.append(f"{key} is not a key of the run's config")
        else:
            OmegaConf.update(cfg, key, o.value(), merge=False)
    if errors:
        raise ConfigError("invalid overrides:\n" + "\n".join(f"  - {e}" for e in errors))
    validate_config(cfg)
    return cfg


def eval_config(stored: DictConfig, overrides: list[str]) -> DictConfig:
    """The config to evaluate with: the run's, on one device without checkpoint callbacks
    (evaluation writes no checkpoints), then the overrides."""
    cfg = stored.copy()
    cfg.trainer.devices, cfg.trainer.num_nodes = 1, 1
    cfg.trainer.pop("strategy", None)
    cfg.callbacks = {}
    cfg.logger = None
    return apply_overrides(cfg, overrides)


def result_path(run_dir: Path, split: str, overrides: list[str]) -> Path:
    """``<run>/eval/<split>[-<overrides>].json``, the overrides joined by commas (characters a
    file name should not hold replaced by ``_``)."""
    name = split + ("-" + ",".join(overrides) if overrides else "")
    return run_dir / "eval" / (re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)[:200] + ".json")


def run_eval(path: str | Path, split: str = "test", overrides: list[str] | None = None,
             config: str | Path | None = None, out: Path | None = None, weights_only: bool = True) -> dict:
    """Evaluate the checkpoint ``path`` (or a run directory's last.ckpt) on ``split``; write and
    return the result (``metrics`` with the contract's names, ``file`` where it went)."""
    start = time.time()
    overrides = list(overrides or [])
    file = ckpt.checkpoint_file(path)
    state = ckpt.read(file, "cpu", weights_only)
    stored = ckpt.config_from(config) if config is not None else OmegaConf.create(ckpt.stored_config(state, file)[0])
    cfg = eval_config(stored, overrides)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    module = LikelihoodModule.from_checkpoint(state, file, cfg)
    task = build(cfg.dataset)
    task.setup()
    run_dir = ckpt.run_dir_of(file)
    target = out or result_path(run_dir, split, overrides)
    trainer = build_trainer(cfg, None, target.parent)
    metrics = evaluate(trainer, module, task, cfg.seed, (split,))
    metrics = {k: v for k, v in sorted(metrics.items()) if k in contract_keys((split,))}
    result = {
        "checkpoint": str(file), "split": split, "overrides": overrides,
        "global_step": int(state.get("global_step", 0)), "metrics": metrics,
        "not_applicable": list(module.model.not_applicable),
    }
    if split == "test" and module.generation is not None:
        generation = module.generation
        result.update(log_Z=generation.log_z, renormalised=renormalised_bound(metrics, generation.log_z),
                      sampling=generation.sampling, samples=generation.samples)
    result.update(eval=to_container(cfg.eval), seed=cfg.seed, wall_time_s=time.time() - start, code_version=code_version())
    write_json(target, result)
    return {**result, "file": str(target)}


def report(result: dict, run_results: dict | None) -> None:
    """The metrics beside the run's own (results.json), printed with rich."""
    from rich.console import Console
    from rich.table import Table

    theirs = (run_results or {}).get("metrics", {})
    table = Table(title=f"trufl-eval {result['split']} ({result['checkpoint']}, step {result['global_step']})")
    for name, justify in (("metric", "left"), ("this evaluation", "right"), ("run's results.json", "right")):
        table.add_column(name, justify=justify)
    for k, v in result["metrics"].items():
        table.add_row(k, f"{v:.6f}", f"{theirs[k]:.6f}" if k in theirs else "")
    console = Console(file=sys.stdout, width=110)
    console.print(table)
    console.print(f"written: {result['file']}", soft_wrap=True)


def quiet_lightning() -> None:
    """Lightning's start-up notes (accelerators, tips, limit_*_batches) drown a command's own output."""
    import logging
    import warnings

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"pytorch_lightning\..*")
