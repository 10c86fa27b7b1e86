"""trufl: learned dequantisers for categorical data — TRUFL, CatNF and Argmax flows."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    # the one version source is pyproject.toml; the installed metadata carries it
    __version__ = version("trufl")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def config_dir() -> Path:
    """The folder of trufl's Hydra configs (``config.yaml`` and its groups): what
    ``python -m trufl.train``, ``train.py``, the tests and the reporting tools compose from."""
    return Path(__file__).resolve().parent / "conf"
