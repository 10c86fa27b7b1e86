"""The multirun pre-check: every job's config is composed and validated
(:func:`trufl.config.validate_config`) before the sweeper launches any."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, validate_config


def sweep_jobs(config: DictConfig, config_loader) -> list[list[str]]:
    """Each job's overrides in a multirun of the basic sweeper (``a=1,2 b=3,4``: four jobs),
    expanded as the sweeper will; other sweepers choose jobs as they go: ``[]``."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if get_object(config.hydra.sweeper._target_) is not BasicSweeper:
        return []
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(params + list(task))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_slurm_tasks(config: DictConfig) -> None:
    """On the SLURM launcher, DDP runs one task per device: ``hydra.launcher.tasks_per_node``
    must resolve to ``trainer.devices``, a positive count (Lightning's SLURM environment
    refuses any other number of tasks), and ``gpus_per_node`` to a count. The launcher reads
    them from the multirun's own config, so ``trainer.devices`` cannot be a sweep axis."""
    launcher = config.hydra.get("launcher") or {}
    if not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
        return
    try:
        tasks, gpus = launcher.tasks_per_node, launcher.gpus_per_node
    except Exception as err:  # an interpolation that does not resolve
        raise ConfigError(f"invalid configuration:\nhydra.launcher (slurm): {err}") from None
    devices = OmegaConf.select(config, "trainer.devices")
    problems = []
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        problems.append(f"hydra.launcher.tasks_per_node={tasks!r}: one task per device needs a positive "
                        f"trainer.devices (e.g. trainer.devices=4), not {devices!r}")
    elif isinstance(devices, int) and tasks != devices:
        problems.append(f"hydra.launcher.tasks_per_node={tasks} but trainer.devices={devices}: Lightning on SLURM "
                        "needs one task per device (leave tasks_per_node to the preset)")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
        problems.append(f"hydra.launcher.gpus_per_node={gpus!r}: a GPU count (0 on a CPU partition)")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))


def validate_sweep(config: DictConfig, config_loader) -> int:
    """Compose and validate every job of the multirun ``config``; raise one
    :class:`ConfigError` naming each failing job, its overrides and keys. Returns the
    number of jobs checked (the master config alone when the sweeper is not the basic one)."""
    check_slurm_tasks(config)
    jobs = sweep_jobs(config, config_loader)
    problems = []
    for num, overrides in enumerate(jobs):
        try:
            validate_config(config_loader.load_sweep_config(config, list(overrides)))
        except ConfigError as err:
            detail = str(err).split("\n", 1)[1]
            problems.append(f"job #{num} ({' '.join(overrides)}):\n{detail}")
    if not jobs:
        with_hydra_removed = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        validate_config(with_hydra_removed)
    if problems:
        raise ConfigError(f"{len(problems)} of {len(jobs)} jobs have an invalid configuration; none was launched:\n"
                          + "\n".join(problems))
    return max(1, len(jobs))


def _exit_with(err: ConfigError) -> None:
    # Hydra turns a callback's exceptions into warnings and goes on; a usage error must
    # stop the run, so exit like Hydra does for one (status 1, the message alone).
    sys.stderr.write(f"{err}\n")
    raise SystemExit(1) from None


class ValidateJobs(Callback):
    """Hydra callback (``hydra.callbacks`` in ``trufl/conf/hydra/default.yaml``): a run validates its
    config, and a multirun every job's, before Hydra creates a directory (the run's
    ``outputs/<task>/<time>/.hydra``, the sweep's) or launches (or queues, on SLURM) a job."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            validate_config(config)  # its ``hydra`` node is not checked, only read for the choices
        except ConfigError as err:
            _exit_with(err)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        try:
            validate_sweep(config, GlobalHydra.instance().config_loader())
        except ConfigError as err:
            _exit_with(err)
