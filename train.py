"""Hydra entry point: ``python train.py flow=trufl recon_weight=10`` (see README).

``python train.py -m flow=trufl,catnf seed=0,1 --dry-run`` lists the sweep's jobs and
validates them without launching any (docs/sweeps.md)."""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from trufl.resume import finished_results
    from trufl.run import run  # imported here so --help and tab completion stay fast

    metric = cfg.get("optimized_metric", "val/nll_bits")
    done = finished_results(cfg)  # a sweep started again on its directory: this job already finished
    metrics = done["metrics"] if done is not None else run(cfg)
    return metrics.get(metric, float("nan"))  # what sweepers optimise


if __name__ == "__main__":
    from trufl.cli import open_trainer_overrides
    from trufl.suggest import install

    args = open_trainer_overrides(sys.argv[1:])
    if "--dry-run" in args:
        from trufl.sweep_plan import main as plan

        sys.exit(plan([a for a in args if a != "--dry-run"]))
    sys.argv[1:] = args
    install()  # did-you-mean lines in Hydra's composition errors
    main()
