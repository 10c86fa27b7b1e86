"""trufl: learned dequantisers for categorical data — TRUFL, CatNF and Argmax flows."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import LoadedRun


def load(path, **kwargs) -> LoadedRun:
    """A finished run's module, config and task from a run directory or a checkpoint:
    ``trufl.load("<run dir>")`` (:func:`trufl.api.load` has the options; docs/checkpoints.md)."""
    from .api import load as _load  # here, so `import trufl` stays light

    return _load(path, **kwargs)
