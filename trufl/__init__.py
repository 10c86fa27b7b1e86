"""trufl: learned dequantisers for categorical data — TRUFL, CatNF and Argmax flows."""

from importlib.metadata import PackageNotFoundError, version

try:
    # the one version source is pyproject.toml; the installed metadata carries it
    __version__ = version("trufl")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
