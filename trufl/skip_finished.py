"""Starting a sweep again on its directory: a job whose output directory already holds a
finished ``results.json`` of the same overrides and the same resolved configuration is not run
again (its metrics are what the sweeper gets); a failed or interrupted one, a new one, or one
whose overrides now mean another configuration (an edited preset, a changed default) runs. ``skip_finished=false`` runs
every job again."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from .config import to_container
from .results import hydra_overrides

#: overrides that choose how a sweep is launched, not what a job is (``ckpt_path=last``: a resumed
#: sweep's jobs continue from their own last.ckpt, scripts/experiment.py --resume)
NOT_IDENTITY = ("skip_finished", "ckpt_path", "trainer.enable_progress_bar")


def identity(overrides: list[str]) -> list[str]:
    """The overrides that make a job this job (``skip_finished``, ``ckpt_path`` and the progress
    bar's switch left out)."""
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
    changed = changed_configuration(results, cfg)
    if changed:  # the same overrides can mean another job: an edited preset (tuned=text_catnf), a changed default
        print(f"not skipped: {path} was run with the same overrides but another configuration "
              f"({', '.join(changed[:5])}{', …' if len(changed) > 5 else ''}): running it again", flush=True)
        return None
    print(f"skipped: {path} is finished (step {results.get('global_step')}); skip_finished=false runs it again", flush=True)
    return results


#: config keys that say where a job reads and writes or how it is launched, not what it computes
NOT_COMPARED = ("paths", *NOT_IDENTITY)
#: keys not compared at any depth (``dataset.data_dir``: where the data is cached, from paths.data_dir)
NOT_COMPARED_ANYWHERE = ("data_dir",)


def changed_keys(before: dict, now: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose resolved values differ between two configs (``NOT_COMPARED`` aside)."""
    changed = []
    for key in sorted(set(before) | set(now)):
        name = f"{prefix}{key}"
        if name in NOT_COMPARED or key in NOT_COMPARED_ANYWHERE:
            continue
        a, b = before.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_keys(a, b, f"{name}.")
        elif a != b:
            changed.append(name)
    return changed


def changed_configuration(results: dict, cfg: DictConfig) -> list[str]:
    """The keys in which ``cfg`` differs from the configuration ``results`` was run with (none
    when the file does not record it, or when ``cfg`` cannot be resolved outside its job)."""
    if not isinstance(results.get("config"), dict):
        return []
    try:
        now = to_container(cfg)
    except Exception:  # e.g. ${hydra:runtime.output_dir} in a dry run's job config
        return []
    return changed_keys(results["config"], now)


def finished_in(directory: Path, overrides: list[str]) -> dict | None:
    """``directory/results.json`` when it says ``finished`` for the same ``overrides``, else None."""
    try:
        results = json.loads((Path(directory) / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if results.get("status") != "finished" or identity(results.get("overrides") or []) != identity(overrides):
        return None
    return results
