"""Optional dependencies: the minimal install trains on the embedded corpus; the rest comes
with an extra (``pip install "trufl[<extra>]"``, docs/installation.md). Code that needs an
optional package imports it through :func:`require`, when it is needed, so a missing one
fails with the extra to install instead of a bare ``ModuleNotFoundError``."""

from __future__ import annotations

import importlib
from types import ModuleType

#: extra -> the import names it provides (pyproject.toml's [project.optional-dependencies])
EXTRAS = {
    "hub": ("datasets",),
    "graphs": ("ortools",),
    "figures": ("matplotlib",),
    "wandb": ("wandb", "matplotlib"),
    "launchers": ("hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher"),
    "search": ("hydra_plugins.hydra_optuna_sweeper",),
}


class MissingExtraError(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or raise :class:`MissingExtraError` saying that ``purpose`` needs
    it and which extra installs it."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; one of {sorted(EXTRAS)}")
    try:
        importlib.import_module(module.split(".")[0])  # the package first: a submodule may be cached without it
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        missing = err.name or module
        raise MissingExtraError(
            f"{purpose} needs the optional package '{missing}', which is not installed: "
            f'pip install "trufl[{extra}]" (or "trufl[all]"; docs/installation.md)', name=missing,
        ) from err
