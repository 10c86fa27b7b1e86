"""The job function: ``run(cfg) -> metrics``, kept apart from ``@hydra.main`` so
tests and scripts call it directly."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar

from . import __version__
from .callbacks import CheckpointOnInterrupt
from .config import to_container, validate_config
from .data.text import HubUnavailableError
from .loggers import close_loggers
from .metrics import LN2, contract_keys
from .model import DequantisationModel

log = logging.getLogger(__name__)


def code_version() -> dict:
    """Package version plus the git commit (and whether the tree was dirty)."""
    root = Path(__file__).resolve().parent.parent
    info = {"trufl": __version__}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            info.update(commit=commit.stdout.strip(), dirty=bool(dirty.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def hydra_choices() -> dict:
    if HydraConfig.initialized():
        return {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra/") or "launcher" in k}
    return {}


def _set_threads(cfg: DictConfig) -> None:
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    elif HydraConfig.initialized() and "joblib" in str(HydraConfig.get().launcher.get("_target_", "")):
        torch.set_num_threads(1)  # parallel jobs share the cores: one thread each


def build(node: DictConfig, **kwargs):
    """``instantiate`` that surfaces our own clear errors (bad values, missing
    files, offline hub) instead of Hydra's wrapper around them."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, (ValueError, OSError, HubUnavailableError)):
            raise err.__cause__ from None
        raise


def build_model(cfg: DictConfig, num_categories: int) -> DequantisationModel:
    context = build(cfg.context, num_categories=num_categories) if cfg.get("context") else None
    deq = build(cfg.flow, num_categories=num_categories, context_dim=context.dim if context is not None else 0)
    prior = build(cfg.prior, dim=deq.dim)
    return DequantisationModel(
        deq, prior, build(cfg.weighting), cfg.recon_weight, cfg.kl_weight,
        lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, schedule=cfg.optim.get("schedule", "constant"),
        warmup_steps=cfg.optim.get("warmup_steps", 0), max_steps=cfg.trainer.get("max_steps"), iw_samples=cfg.eval.iw_samples,
        log_z_samples=cfg.eval.log_z_samples, max_tries=cfg.eval.max_tries,
        check_finite_every=cfg.check_finite_every, context_encoder=context,
    )


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

    datamodule = build(cfg.dataset)
    datamodule.setup()
    model = build_model(cfg, datamodule.num_categories)
    logger = instantiate(cfg.logger) if cfg.get("logger") else None
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", save_last=True, monitor="val/nll_bits", mode="min")
    callbacks = [checkpoint, CheckpointOnInterrupt(out / "checkpoints")]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(refresh_rate=50))
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=logger if logger is not None else False, callbacks=callbacks,
        default_root_dir=str(out),
    )
    try:
        if logger is not None:
            logger.log_hyperparams(to_container(cfg))
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        except SystemExit:  # Lightning exits after Ctrl-C; CheckpointOnInterrupt has saved the state
            if trainer.interrupted:
                resume = out / "checkpoints" / "last.ckpt"
                (out / "results.json").write_text(json.dumps(
                    {"interrupted": True, "global_step": trainer.global_step, "resume": f"ckpt_path={resume}",
                     "config": to_container(cfg), "choices": hydra_choices()}, indent=2))
            raise
        wanted = contract_keys(constrained=hasattr(datamodule, "is_valid"))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        for evaluate in (trainer.validate, trainer.test):  # each stage resets callback_metrics
            for stage in evaluate(model, datamodule=datamodule, verbose=False):
                metrics.update({k: float(v) for k, v in stage.items()})
        metrics = {k: v for k, v in sorted(metrics.items()) if k in wanted}
        results = {
            "metrics": metrics,
            "log_Z": model.log_z_info,
            "renormalised": _renormalised(metrics, model.log_z_info),
            "sampling": model.sampling_info,
            "dequantiser": model.dequantiser.summary(),
            "dataset": datamodule.describe(),
            "samples": _samples(model, datamodule, cfg.eval.num_samples),
            "config": to_container(cfg),
            "choices": hydra_choices(),
            "wall_time_s": time.time() - start,
            "global_step": trainer.global_step,
            "checkpoint": str(checkpoint.last_model_path or ""),
            "code_version": code_version(),
        }
        (out / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable))
        _report(results, out)
        _log_summary(logger, results)
        return metrics
    finally:
        close_loggers([logger] if logger is not None else [])


def _samples(model: DequantisationModel, datamodule, num: int) -> list:
    if num <= 0:
        return []
    length, cond = datamodule.seq_len, None
    if hasattr(datamodule, "sampling_groups"):  # e.g. colourings of the first test graphs
        group_num, length, cond = datamodule.sampling_groups()[0]
        num = min(num, group_num)
        cond = {k: v[:num].to(model.device) for k, v in cond.items()}
    x, _ = model.generate(num, length, cond)
    decode = getattr(datamodule, "decode_text", None)
    return [decode(row.tolist()) if decode else row.tolist() for row in x.cpu()]


def _renormalised(metrics: dict, log_z: dict) -> dict:
    """The bound under the prior renormalised to the support, ``ELBO − log Z``.

    q(z|x) lives inside the support S, so ``p̃(z) = p(z)·1[z ∈ S]/Z`` gives a valid,
    tighter bound. With a Monte Carlo Z it is an estimate (biased optimistic,
    since E[log Ẑ] ≤ log Z); the estimator is named beside it.
    """
    if "test/nll_bits" not in metrics or not math.isfinite(log_z.get("log_Z", math.nan)):
        return {}
    return {
        "test/nll_bits": metrics["test/nll_bits"] + log_z["log_Z"] / LN2,
        "log_Z_estimator": log_z["estimator"],
    }


def _log_summary(logger, results: dict) -> None:
    """Learned box widths etc. into the W&B summary (not as step metrics)."""
    exp = getattr(logger, "experiment", None)
    if exp is not None and hasattr(exp, "summary"):
        for k, v in results["dequantiser"].items():
            exp.summary[f"dequantiser/{k}"] = v


def _report(results: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"trufl results ({out / 'results.json'})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(results["metrics"].items()):
        table.add_row(k, f"{v:.4f}")
    console = Console(file=sys.stdout, width=100)
    console.print(table)
    if "box_widths" in results["dequantiser"]:
        widths = " ".join(f"{w:.3f}" for w in results["dequantiser"]["box_widths"])
        console.print(f"box widths (prior mass per category): {widths}", soft_wrap=True)
    for s in results["samples"][:2]:
        console.print("sample:", repr(s) if isinstance(s, str) else s)
    console.print(f"wall time {results['wall_time_s']:.1f} s, val/nll_bits = {results['metrics'].get('val/nll_bits', math.nan):.4f}")


def _jsonable(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


