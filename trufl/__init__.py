"""trufl: learned dequantisers for categorical data — TRUFL, CatNF and Argmax flows."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

try:
    # the one version source is pyproject.toml; the installed metadata carries it
    __version__ = version("trufl")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from .api import LoadedRun


def config_dir() -> Path:
    """The folder of trufl's Hydra configs (``config.yaml`` and its groups): what
    ``python -m trufl.train``, ``train.py``, the tests and the reporting tools compose from."""
    return Path(__file__).resolve().parent / "conf"


def load(path, **kwargs) -> LoadedRun:
    """A finished run's module, config and task from a run directory or a checkpoint:
    ``trufl.load("<run dir>")`` (:func:`trufl.api.load` has the options; docs/checkpoints.md)."""
    from .api import load as _load  # here, so `import trufl` stays light

    return _load(path, **kwargs)


def _register_resolvers() -> None:
    """``${trufl_run_dir:<ckpt_path>,<default>}`` (trufl/conf/hydra/default.yaml): a run resumed from
    ``<run dir>/checkpoints/<name>.ckpt`` continues in that run directory. Skipped where
    omegaconf is not importable (the modules that need no config, e.g. in a worker)."""
    try:
        from omegaconf import OmegaConf
    except ImportError:
        return

    def run_dir(ckpt_path, default: str) -> str:
        path = Path(str(ckpt_path)) if ckpt_path else None
        return str(path.parent.parent) if path is not None and path.parent.name == "checkpoints" else default

    if not OmegaConf.has_resolver("trufl_run_dir"):
        OmegaConf.register_new_resolver("trufl_run_dir", run_dir)


_register_resolvers()
