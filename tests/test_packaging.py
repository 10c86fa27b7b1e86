"""The package a lab depends on: one version and one licence everywhere they are stated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest
import yaml
from omegaconf import OmegaConf

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


def test_the_module_entry_composes_the_same_job_as_train_py_from_another_directory(tmp_path, make_cfg):
    """``python -m trufl.train`` finds its configs through trufl.config_dir(), not the working
    directory: run from an empty folder, it prints the job ``train.py`` composes."""
    overrides = ["experiment=toy", "recon_weight=10", "logger=none"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    printed = subprocess.run([sys.executable, "-m", "trufl.train", *overrides, "--cfg", "job", "--resolve"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    job = yaml.safe_load(printed)
    composed = OmegaConf.to_container(make_cfg(*overrides), resolve=False)
    assert job["experiment_name"] == composed["experiment_name"] == "toy"
    assert job["recon_weight"] == 10 and job["trainer"]["max_steps"] == composed["trainer"]["max_steps"]
    assert job["flow"]["_target_"] == composed["flow"]["_target_"]
