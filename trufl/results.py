"""``results.json`` (docs/design.md#results-file): what a run found, how it was configured and
which code made it, plus the summary printed at the end. Tables, plots and checks
read these files, never the loggers' internals."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig

from . import __version__
from .atomic import write_json_atomic


def code_version() -> dict:
    """Package version plus the git commit (and whether the tree was dirty)."""
    root = Path(__file__).resolve().parent.parent
    info = {"trufl": __version__}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            info.update(commit=commit.stdout.strip(), dirty=bool(dirty.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def hydra_choices() -> dict:
    """The config groups' choices (``flow: trufl``…), and the launcher's."""
    if HydraConfig.initialized():
        return {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra/") or "launcher" in k}
    return {}


def hydra_overrides() -> list[str]:
    """The job's command-line overrides (what makes this run this row of a table)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def write(path: Path, results: dict) -> None:
    """``results`` as JSON at ``path``, atomically (a reader never sees half a file)."""
    write_json_atomic(path, results, default=_jsonable)


def _jsonable(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return str(obj)


def report(results: dict, path: Path) -> None:
    """The rich summary printed at the end of a run."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"trufl results ({path})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(results["metrics"].items()):
        table.add_row(k, f"{v:.4f}")
    for name in results.get("not_applicable", []):
        table.add_row(name, "n/a", style="dim")
    console = Console(file=sys.stdout, width=100)
    console.print(table)
    if "box_mass" in results["dequantiser"]:
        mass = " ".join(f"{w:.3f}" for w in results["dequantiser"]["box_mass"])
        console.print(f"box mass under a standard logistic, per category: {mass}", soft_wrap=True)
    for s in results["samples"][:2]:
        console.print("sample:", repr(s) if isinstance(s, str) else s)
    console.print(f"wall time {results['wall_time_s']:.1f} s, val/nll_bits = {results['metrics'].get('val/nll_bits', math.nan):.4f}")
