"""scripts/bench_launcher.py: the two launcher settings are real configurations of the sweep it
times, and its table's ratio is the medians' ratio."""

from __future__ import annotations

import os
import sys

import pytest
from hydra import compose, initialize_config_dir

from trufl import config_dir

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import bench_launcher  # noqa: E402


@pytest.mark.parametrize("setting", list(bench_launcher.SETTINGS))
def test_each_launcher_setting_composes_with_the_timed_sweep(setting):
    overrides = [f"{k}={v[0] if isinstance(v, list) else v}" for k, v in bench_launcher.TASKS["sets"].items()]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *bench_launcher.setting_overrides(setting)], return_hydra_config=True)
    launcher = cfg.hydra.launcher._target_
    if "local" in setting:
        assert "joblib" in launcher.lower() and cfg.hydra.launcher.n_jobs == os.cpu_count() and not cfg.num_threads
    else:
        assert "basic" in launcher.lower() and cfg.num_threads == os.cpu_count()


def test_the_table_divides_each_settings_median_by_the_first():
    names = list(bench_launcher.SETTINGS)
    settings = {names[0]: {"median": 88.0, "min": 87.0, "max": 89.0}, names[1]: {"median": 103.0, "min": 98.0, "max": 107.0}}
    results = {"date": "d", "machine": "m", "torch": "t", "command": "c", "wall_s": 60.0,
               "args": {"task": "sets", "steps": 300, "rounds": 2}, "settings": settings}
    rows = [line for line in bench_launcher.render(results).splitlines() if line.startswith(f"| {names[1]}")]
    assert rows == [f"| {names[1]} | 103 (98–107) | 1.17 |"]
