"""Starting a sweep again on its directory: a job whose output directory already holds a
finished ``results.json`` of the same overrides is not run again (its metrics are what the
sweeper gets); a failed or interrupted one, or a new one, runs. ``skip_finished=false`` runs
every job again."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from .results import hydra_overrides

#: overrides that choose how a sweep is launched, not what a job is (``ckpt_path=last``: a resumed
#: sweep's jobs continue from their own last.ckpt, scripts/experiment.py --resume)
NOT_IDENTITY = ("skip_finished", "ckpt_path")


def identity(overrides: list[str]) -> list[str]:
    """The overrides that make a job this job (``skip_finished=…``, ``ckpt_path=…`` left out)."""
    return [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in NOT_IDENTITY]


def finished_results(cfg: DictConfig, overrides: list[str] | None = None) -> dict | None:
    """The job's own ``<paths.output_dir>/results.json`` when it says ``finished`` for the same
    overrides (default: the job's, from HydraConfig) and ``cfg.skip_finished``; else None.
    An unreadable file (a write cut short) counts as not finished."""
    if not cfg.get("skip_finished", True):
        return None
    path = Path(cfg.paths.output_dir) / "results.json"
    results = finished_in(path.parent, hydra_overrides() if overrides is None else overrides)
    if results is None:
        return None
    print(f"skipped: {path} is finished (step {results.get('global_step')}); skip_finished=false runs it again", flush=True)
    return results


def finished_in(directory: Path, overrides: list[str]) -> dict | None:
    """``directory/results.json`` when it says ``finished`` for the same ``overrides``, else None."""
    try:
        results = json.loads((Path(directory) / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if results.get("status") != "finished" or identity(results.get("overrides") or []) != identity(overrides):
        return None
    return results
