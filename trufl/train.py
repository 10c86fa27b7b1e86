"""Hydra entry point of an installed trufl: ``python -m trufl.train flow=trufl recon_weight=10``
or the console script ``trufl-train`` (the repository's ``train.py`` calls this)."""

import hydra
from omegaconf import DictConfig

from . import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float:
    """Train and evaluate one job; return the metric a sweeper optimises."""
    from .run import run  # imported here so --help and tab completion stay fast

    metrics = run(cfg)
    return metrics.get(cfg.get("optimized_metric", "val/nll_bits"), float("nan"))  # what sweepers optimise


if __name__ == "__main__":
    main()
