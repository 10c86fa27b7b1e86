"""Hydra entry point: ``python train.py flow=trufl recon_weight=10`` (see README). The job is
:func:`trufl.train.main`; an installed trufl runs the same as ``python -m trufl.train`` or
``trufl-train``."""

from trufl.train import cli

if __name__ == "__main__":
    cli()
