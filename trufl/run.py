"""The job function: ``run(cfg) -> metrics``, kept apart from ``@hydra.main`` so
tests and scripts call it directly."""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import results as res
from .build import build, build_logger, build_model, build_trainer
from .config import to_container, validate_config
from .loggers import close_loggers, log_samples, log_summary
from .metrics import contract_keys
from .objective import renormalised_bound


def _set_threads(cfg: DictConfig) -> None:
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    elif HydraConfig.initialized() and "joblib" in str(HydraConfig.get().launcher.get("_target_", "")):
        torch.set_num_threads(1)  # parallel jobs share the cores: one thread each


def run(cfg: DictConfig) -> dict[str, float]:
    """Train, validate and test one configuration; write ``results.json``.

    Returns the final metrics (contract names, DESIGN.md §1).
    """
    validate_config(cfg)
    start = time.time()
    _set_threads(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    task = build(cfg.dataset)
    task.setup()
    module = build_model(cfg, task.num_categories)
    logger = build_logger(cfg)
    trainer = build_trainer(cfg, logger, out)
    try:
        if logger is not None:
            logger.log_hyperparams(to_container(cfg))
        try:
            trainer.fit(module, datamodule=task, ckpt_path=cfg.ckpt_path)
        except SystemExit:  # Lightning exits after Ctrl-C; CheckpointOnException has saved the state
            if trainer.interrupted:
                res.write(out / "results.json", {
                    "interrupted": True, "global_step": trainer.global_step,
                    "resume": f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}",
                    "config": to_container(cfg), "choices": res.hydra_choices(),
                })
            raise
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        for evaluate in (trainer.validate, trainer.test):  # each stage resets callback_metrics
            for stage in evaluate(module, datamodule=task, verbose=False):
                metrics.update({k: float(v) for k, v in stage.items()})
        metrics = {k: v for k, v in sorted(metrics.items()) if k in contract_keys()}
        generation = module.generation
        results = {
            "metrics": metrics,
            "not_applicable": list(module.model.not_applicable),
            "log_Z": generation.log_z,
            "renormalised": renormalised_bound(metrics, generation.log_z),
            "sampling": generation.sampling,
            "dequantiser": module.model.summary(),
            "dataset": task.describe(),
            "samples": generation.samples,
            "config": to_container(cfg),
            "choices": res.hydra_choices(),
            "wall_time_s": time.time() - start,
            "global_step": trainer.global_step,
            "checkpoint": str(getattr(trainer.checkpoint_callback, "last_model_path", "") or ""),
            "code_version": res.code_version(),
        }
        res.write(out / "results.json", results)
        res.report(results, out / "results.json")
        log_summary(logger, results)
        log_samples(logger, results["samples"])
        return metrics
    finally:
        close_loggers([logger] if logger is not None else [])
