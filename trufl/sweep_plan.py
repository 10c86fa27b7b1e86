"""A sweep's jobs, listed and validated without launching any:

    python train.py -m flow=trufl,catnf seed=0,1 --dry-run
    python -m trufl.sweep_plan flow=trufl,catnf seed=0,1 hydra.sweep.dir=multirun/mine

The jobs are expanded by Hydra's basic sweeper (:func:`trufl.multirun.sweep_jobs`), each
composed as the launcher will compose it and validated (:func:`trufl.config.validate_config`);
the table shows each job's overrides, its directory and whether it would run, is already
finished there (``skip_finished``: a sweep started again runs only the rest) or is invalid.
Exit status 0 when every job is valid, 1 otherwise. Other sweepers (Optuna) choose their
trials as they go: their master config is validated alone."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, open_dict

from .cli import CONF
from .config import ConfigError, validate_config
from .multirun import sweep_jobs
from .skip_finished import changed_configuration, finished_in


@dataclass
class PlannedJob:
    num: int
    overrides: list[str]
    directory: Path | None
    status: str  # "run", "finished", "invalid"
    error: str = ""


def _job_dir(job_cfg: DictConfig, num: int) -> Path:
    with open_dict(job_cfg):
        job_cfg.hydra.job.num, job_cfg.hydra.job.id = num, str(num)
    return Path(job_cfg.hydra.sweep.dir) / str(job_cfg.hydra.sweep.subdir)


def plan(overrides: list[str]) -> tuple[list[PlannedJob], str]:
    """The jobs of ``python train.py -m <overrides>`` and the sweeper's name."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    overrides = [o for o in overrides if o not in ("-m", "--multirun")]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("config", overrides, RunMode.MULTIRUN)
        sweeper = str(cfg.hydra.sweeper._target_).rsplit(".", 1)[-1]
        jobs = sweep_jobs(cfg, loader)
        if not jobs:  # the sweeper picks its jobs as it goes: the master config alone
            return [_checked(cfg, 0, [], None)], sweeper
        planned = []
        for num, job in enumerate(jobs):
            job_cfg = loader.load_sweep_config(cfg, list(job))
            planned.append(_checked(job_cfg, num, list(job), _job_dir(job_cfg, num)))
    return planned, sweeper


def _checked(cfg: DictConfig, num: int, overrides: list[str], directory: Path | None) -> PlannedJob:
    try:
        validate_config(cfg)
    except ConfigError as err:
        return PlannedJob(num, overrides, directory, "invalid", str(err).split("\n", 1)[1])
    done = directory is not None and cfg.get("skip_finished", True) and finished_in(directory, overrides)
    if done and changed_configuration(done, cfg):  # same overrides, another configuration: it runs again
        done = None
    return PlannedJob(num, overrides, directory, "finished" if done else "run")


def show(jobs: list[PlannedJob], sweeper: str) -> None:
    from rich.console import Console
    from rich.table import Table

    basic = sweeper == "BasicSweeper"
    title = f"{len(jobs)} job(s)" if basic else "it chooses its trials as it goes: the config they share is checked"
    table = Table(title=f"sweep plan ({sweeper}): {title}; none launched")
    for column in ("#", "overrides", "directory", "status"):
        table.add_column(column)
    style = {"run": "", "finished": "dim", "invalid": "bold red"}
    for job in jobs:
        shown = {"run": "would run", "finished": "finished: skipped", "invalid": "INVALID"}[job.status]
        table.add_row(str(job.num), " ".join(job.overrides) or "(chosen by the sweeper)", str(job.directory or "—"),
                      shown, style=style[job.status])
    console = Console(file=sys.stdout, width=160)
    console.print(table)
    for job in jobs:
        if job.error:
            console.print(f"job #{job.num} ({' '.join(job.overrides)}):\n{job.error}", soft_wrap=True, markup=False)
    counts = {s: sum(j.status == s for j in jobs) for s in ("run", "finished", "invalid")}
    console.print(f"{counts['run']} to run, {counts['finished']} finished already, {counts['invalid']} invalid")


def main(argv: list[str] | None = None) -> int:
    from .cli import open_trainer_overrides

    jobs, sweeper = plan(open_trainer_overrides(sys.argv[1:] if argv is None else argv))
    show(jobs, sweeper)
    return 1 if any(j.status == "invalid" for j in jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
