"""Hydra entry point of an installed trufl: ``python -m trufl.train flow=trufl recon_weight=10``
or the console script ``trufl-train`` (the repository's ``train.py`` calls this)."""

import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

from . import config_dir
from .extras import MissingExtraError, require

#: command-line choices that need a Hydra plugin from an extra: (override prefix, plugin module, extra)
PLUGIN_CHOICES = (
    ("hydra/launcher=local", "hydra_plugins.hydra_joblib_launcher", "launchers"),
    ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher", "launchers"),
    ("hparams_search=", "hydra_plugins.hydra_optuna_sweeper", "search"),
)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float:
    """Train and evaluate one job (or, in a sweep started again on its directory, take the
    metrics of a job that already finished); return the metric a sweeper optimises."""
    from .skip_finished import finished_results
    from .run import run  # imported here so --help and tab completion stay fast

    done = finished_results(cfg)
    metrics = done["metrics"] if done is not None else run(cfg)
    return metrics.get(cfg.get("optimized_metric", "val/nll_bits"), float("nan"))  # what sweepers optimise


def require_plugins(args: Sequence[str]) -> None:
    """Fail with the extra to install when ``args`` choose a launcher or sweeper whose Hydra
    plugin is missing (Hydra itself would only say it cannot find the config)."""
    for prefix, plugin, extra in PLUGIN_CHOICES:
        chosen = next((a for a in args if a.startswith(prefix) and a != "hparams_search=null"), None)
        if chosen:
            require(plugin, extra, chosen)


def cli() -> None:
    """``trufl-train`` / ``python -m trufl.train`` / ``python train.py``: Hydra's command line,
    plus any Trainer argument without ``+`` and ``--dry-run`` (list and validate a sweep's jobs)."""
    from .cli import open_trainer_overrides
    from .suggest import install

    args = open_trainer_overrides(sys.argv[1:])
    try:
        require_plugins(args)
    except MissingExtraError as err:  # a usage error: the message alone, status 1, as Hydra exits
        sys.exit(str(err))
    if "--dry-run" in args:
        from .sweep_plan import main as plan

        sys.exit(plan([a for a in args if a != "--dry-run"]))
    sys.argv[1:] = args
    install()  # did-you-mean lines in Hydra's composition errors
    main()


if __name__ == "__main__":
    cli()
