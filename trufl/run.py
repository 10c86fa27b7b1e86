"""The job function: ``run(cfg) -> metrics``, kept apart from ``@hydra.main`` so
tests and scripts call it directly."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from . import results as res
from .build import build, build_logger, build_model, build_trainer
from .callbacks import LastCheckpoint
from .checkpoints import check_resumable
from .config import ConfigError, to_container, validate_config
from .configuration import run_configuration
from .figures import run_figures
from .loggers import CSVLogger, close_loggers, log_figures, log_results_artifact, log_samples, log_summary
from .metrics import contract_keys
from .objective import renormalised_bound
from .resume import ResumeState, checkpoint_facts, run_dir_of

log = logging.getLogger(__name__)


class RankFailedError(RuntimeError):
    """Another DDP rank exited with an error after this one finished."""


def _set_threads(cfg: DictConfig) -> None:
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    elif HydraConfig.initialized() and "joblib" in str(HydraConfig.get().launcher.get("_target_", "")):
        torch.set_num_threads(1)  # parallel jobs share the cores: one thread each


def run(cfg: DictConfig) -> dict[str, float]:
    """Train, validate and test one configuration; write ``results.json`` (global rank 0).

    Returns the final metrics (contract names, docs/design.md#metrics). A run that fails (after
    its configuration was validated) or is interrupted (SIGTERM, Ctrl-C) still writes ``results.json``, with ``status`` =
    ``failed``/``interrupted``, the error and the checkpoint to resume from; SIGTERM
    then exits with 143 (128 + SIGTERM) so schedulers see that the job did not finish.
    """
    start = time.time()
    out = Path(cfg.paths.output_dir)
    state: dict = {"trainer": None}
    try:
        metrics = _run(cfg, out, start, state)
    except SystemExit as stop:  # Lightning's exit after Ctrl-C (code 1) or SIGTERM (SIGTERMException, no code)
        trainer = state["trainer"]
        if trainer is None or not trainer.interrupted:
            raise
        _write_stopped(cfg, out, start, trainer, "interrupted", stop)
        if not stop.code:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    except ConfigError:
        raise  # nothing is written before the configuration is valid
    except Exception as err:
        _write_stopped(cfg, out, start, state["trainer"], "failed", err)
        raise
    _wait_for_other_ranks(state["trainer"])
    return metrics


def _run(cfg: DictConfig, out: Path, start: float, state: dict) -> dict[str, float]:
    validate_config(cfg)
    ckpt_path = _checkpoint_to_resume(cfg)
    check_resumable(ckpt_path)  # a truncated or corrupted checkpoint is refused before any work
    _set_threads(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out.mkdir(parents=True, exist_ok=True)
    _write_started(cfg, out)

    task = build(cfg.dataset)
    task.setup()
    module = build_model(cfg, task.num_categories)
    resumes_a_file = ckpt_path is not None and Path(str(ckpt_path)).is_file()
    logger = _resumed_logger(cfg, ckpt_path, out) if resumes_a_file else build_logger(cfg)
    trainer = state["trainer"] = build_trainer(cfg, logger, out)
    if (resume_state := _resume_state(trainer)) is not None:
        resume_state.started = start  # a checkpoint's wall time counts from the job's start
    try:
        if logger is not None:  # the resolved config, nested, plus the group choices (flow: trufl, …)
            logger.log_hyperparams({**to_container(cfg), "choices": res.hydra_choices()})
        trainer.fit(module, datamodule=task, ckpt_path=ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        metrics.update(evaluate(trainer, module, task, cfg.seed))  # the final weights (= last.ckpt)
        metrics = {k: v for k, v in sorted(metrics.items()) if k in contract_keys()}
        if trainer.is_global_zero:
            results = _finished_results(cfg, start, trainer, module, task, metrics)
            res.write(out / "results.json", results)
            res.report(results, out / "results.json")
            _log_media(logger, results, out)
        return metrics
    finally:
        close_loggers([logger] if logger is not None else [])


def evaluate(trainer: pl.Trainer, module, task, seed: int, splits: tuple[str, ...] = ("val", "test")) -> dict[str, float]:
    """The final evaluation: Lightning's validate (``val``) and test (``test``) loops on
    ``module``. Each split starts from ``seed``: the bounds draw z ~ q(z|x), so this makes them
    a function of the weights alone, and ``trufl-eval`` on ``last.ckpt`` (trufl/evaluation.py, the
    same function) repeats the run's numbers."""
    loops = {"val": trainer.validate, "test": trainer.test}
    metrics: dict[str, float] = {}
    for split in splits:
        pl.seed_everything(seed, workers=True, verbose=False)
        for stage in loops[split](module, datamodule=task, verbose=False):  # each stage resets callback_metrics
            metrics.update({k: float(v) for k, v in stage.items()})
    return metrics


def _checkpoint_to_resume(cfg: DictConfig) -> str | None:
    """``cfg.ckpt_path``, with ``last`` (a requeued cluster job's setting) made this run's own
    ``last.ckpt`` when it exists, and None (a fresh start) when it does not; other names
    (``best``, ``hpc``, URLs) are Lightning's to resolve."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path != "last":
        return ckpt_path
    last = cfg.get("callbacks", {}).get("last")
    candidate = Path(last.dirpath if last is not None else Path(cfg.paths.output_dir) / "checkpoints") / "last.ckpt"
    if candidate.is_file():
        log.info("ckpt_path=last: resuming from %s", candidate)
        return str(candidate)
    log.info("ckpt_path=last: no %s yet, starting afresh", candidate)
    return None


def _resumed_logger(cfg: DictConfig, ckpt_path: str, out: Path):
    """The logger of a run resumed from ``ckpt_path``: the same W&B run (the id the
    checkpoint keeps, unless ``logger.id`` is set), the CSV log continued after the rows
    logged before the checkpoint's step when the run resumes in its own directory."""
    facts = checkpoint_facts(ckpt_path)
    own_dir = run_dir_of(ckpt_path)
    if own_dir is not None and own_dir.resolve() != out.resolve():
        log.warning("resuming %s into %s, not its own run directory %s: its logs start anew there",
                    ckpt_path, out, own_dir)
    overrides = {}
    is_wandb = cfg.get("logger") and str(cfg.logger.get("_target_", "")).endswith("wandb_logger")
    if is_wandb and cfg.logger.get("id") is None and facts["wandb_run_id"]:
        overrides = {"id": facts["wandb_run_id"], "resume": cfg.logger.get("resume") or "allow"}
    logger = build_logger(cfg, **overrides)
    if isinstance(logger, CSVLogger) and own_dir is not None and own_dir.resolve() == out.resolve():
        logger.continue_before(facts["global_step"])
    return logger


def _wandb_run_id(trainer: pl.Trainer | None) -> dict:
    """``wandb_run_id`` for results.json, with a W&B logger (what a resume continues)."""
    loggers = [lg for lg in (trainer.loggers if trainer is not None else []) if isinstance(lg, WandbLogger)]
    return {"wandb_run_id": loggers[0].version} if loggers else {}


def _log_media(logger, results: dict, out: Path) -> None:
    """What W&B shows beyond curves: the summary, the samples table, the run's figures
    (drawn only for W&B) and results.json as an artifact."""
    if not isinstance(logger, WandbLogger):
        return
    log_summary(logger, results)
    log_samples(logger, results["samples"])
    log_figures(logger, run_figures(results, out / "figures"))
    log_results_artifact(logger, out / "results.json")


def _checkpoints(trainer: pl.Trainer | None) -> dict:
    """``checkpoint``: ``last.ckpt`` (the latest state: the one evaluated and the one to
    resume from), when written; ``best_checkpoint``: the best validation score's."""
    found = {}
    for callback in trainer.checkpoint_callbacks if trainer is not None else []:
        if isinstance(callback, LastCheckpoint):
            if callback.path.is_file():
                found["checkpoint"] = str(callback.path)
        elif isinstance(callback, pl.callbacks.ModelCheckpoint) and callback.best_model_path:
            found["best_checkpoint"] = callback.best_model_path
    return found


def _finished_results(cfg, start, trainer, module, task, metrics) -> dict:
    generation = module.generation
    return {
        "status": "finished",
        "configuration": run_configuration(cfg),
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
        "overrides": res.hydra_overrides(),
        **_wall_time(trainer, start),
        "global_step": trainer.global_step,
        **_checkpoints(trainer),
        **_wandb_run_id(trainer),
        "code_version": res.code_version(),
    }


def _resume_state(trainer) -> ResumeState | None:
    return next((c for c in getattr(trainer, "callbacks", None) or [] if isinstance(c, ResumeState)), None)


def _wall_time(trainer, start: float) -> dict:
    """``wall_time_s``: what the run has cost in all, the segments before a resume included
    (:class:`~trufl.resume.ResumeState` carries them in the checkpoint); a resumed run also says
    how much of it came before (``wall_time_before_resume_s``)."""
    state = _resume_state(trainer)
    earlier = state.earlier_wall_time_s if state is not None else 0.0
    return {"wall_time_s": earlier + time.time() - start, **({"wall_time_before_resume_s": earlier} if earlier else {})}


@rank_zero_only
def _write_started(cfg: DictConfig, out: Path) -> None:
    """``results.json`` with ``status: started`` until the run writes its outcome: a job killed
    outright (SIGKILL, a lost node, a killed multirun launcher) keeps this mark in tables."""
    res.write(out / "results.json", {
        "status": "started",
        "configuration": run_configuration(cfg),
        "config": to_container(cfg),
        "choices": res.hydra_choices(),
        "overrides": res.hydra_overrides(),
        "checkpoint_dir": str(cfg.callbacks.last.dirpath) if cfg.get("callbacks") and cfg.callbacks.get("last") else None,
        "code_version": res.code_version(),
    })


@rank_zero_only
def _write_stopped(cfg, out: Path, start: float, trainer, status: str, error: BaseException) -> None:
    """``results.json`` of a run that did not finish: no metrics, the error, and where to resume."""
    found = _checkpoints(trainer)
    results = {
        "status": status,
        "configuration": run_configuration(cfg),
        "error": f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
        "global_step": trainer.global_step if trainer is not None else 0,
        **found,
        "resume": f"ckpt_path={found['checkpoint']}" if "checkpoint" in found else None,
        **_wandb_run_id(trainer),
        "config": to_container(cfg),
        "choices": res.hydra_choices(),
        **_wall_time(trainer, start),
        "code_version": res.code_version(),
    }
    out.mkdir(parents=True, exist_ok=True)
    res.write(out / "results.json", results)


def _wait_for_other_ranks(trainer: pl.Trainer | None) -> None:
    """On the launching process of a DDP run: wait for the ranks it started and fail
    if one did (Lightning does not, so a rank crashing after the last collective
    would otherwise leave an exit code of 0)."""
    launcher = trainer.strategy.launcher if trainer is not None else None
    if not isinstance(launcher, _SubprocessScriptLauncher):
        return
    failed = [(rank, proc.wait()) for rank, proc in enumerate(launcher.procs, start=1)]
    failed = [(rank, code) for rank, code in failed if code != 0]
    if failed:
        raise RankFailedError("; ".join(f"rank {rank} exited with code {code}" for rank, code in failed)
                              + " (its error is printed above)")
