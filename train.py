"""Hydra entry point: ``python train.py flow=trufl recon_weight=10`` (see README)."""

import hydra
from omegaconf import DictConfig

import trufl  # noqa: F401 - registers the config resolvers (trufl_run_dir) before Hydra composes


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from trufl.run import run  # imported here so --help and tab completion stay fast

    metrics = run(cfg)
    return metrics.get(cfg.get("optimized_metric", "val/nll_bits"), float("nan"))  # what sweepers optimise


if __name__ == "__main__":
    main()
