"""The package a lab depends on: one version and one licence everywhere they are stated."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
import yaml

import trufl

from .conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_version_is_stated_once_and_agrees_with_citation_and_changelog():
    stated = pyproject()["project"]["version"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert citation["version"] == stated
    assert released[0] == stated, f"CHANGELOG.md's newest release is {released[0]}, pyproject says {stated}"
    assert stated not in (ROOT / "trufl" / "__init__.py").read_text(), "the package repeats the version"


def test_trufl_version_is_the_installed_metadata():
    assert trufl.__version__ == version("trufl")


def test_licence_is_mit_in_the_file_the_metadata_and_the_citation():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")
    assert pyproject()["project"]["license"] == "MIT"
    assert yaml.safe_load((ROOT / "CITATION.cff").read_text())["license"] == "MIT"
