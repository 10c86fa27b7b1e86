"""Hydra entry point: ``python train.py flow=trufl recon_weight=10`` (see README). The job is
:func:`trufl.train.main`; an installed trufl runs the same as ``python -m trufl.train`` or
``trufl-train``.

``python train.py -m flow=trufl,catnf seed=0,1 --dry-run`` lists the sweep's jobs and
validates them without launching any (docs/sweeps.md)."""

from trufl.train import cli

if __name__ == "__main__":
    cli()
