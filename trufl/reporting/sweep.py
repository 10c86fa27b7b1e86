"""An experiment's sweep: one ``python train.py -m`` multirun on a Hydra launcher, and
``sweep.json``, the record of how it ran (its command as run from the repository root,
the launcher, the wall time, the exit code)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import config_dir
from .repository import ROOT, shown_command
from ..atomic import write_json_atomic


def sweeps(spec: dict) -> list[tuple[str, dict]]:
    """The file's multiruns: ``sweep`` (its runs under ``runs/``) and each of ``blocks``
    (under ``runs/<block>/``): a block is a whole sweep of its own, e.g. the baselines'
    recipes (``configuration=paper``) beside the shared rows."""
    return [("", spec["sweep"]), *(spec.get("blocks") or {}).items()]


def sweep_overrides(spec: dict, replaced: set[str] = frozenset(), sweep: dict | None = None) -> list[str]:
    """``key=a,b,c`` per axis of ``sweep`` (default: the file's ``sweep``; a scalar is a
    fixed override), except the axes in ``replaced`` (given again on the command line)."""
    out = []
    for key, values in (spec["sweep"] if sweep is None else sweep).items():
        if key in replaced:
            continue
        values = values if isinstance(values, list) else [values]
        out.append(f"{key}={','.join(str(v) for v in values)}")
    return out


def sweep_command(spec: dict, runs: Path, tiny: bool, extra: list[str], launcher: str = "local",
                  sweep: dict | None = None) -> list[str]:
    """The multirun command of ``sweep`` (default: the file's ``sweep``) on ``launcher`` (a
    trufl/conf/hydra/launcher option); an extra override of a sweep axis (``seed=0,1,2``)
    replaces the file's values for it."""
    if launcher != "basic" and not (config_dir() / "hydra" / "launcher" / f"{launcher}.yaml").is_file():  # basic: Hydra's own
        sys.exit(f"--launcher {launcher}: no trufl/conf/hydra/launcher/{launcher}.yaml")
    replaced = {o.split("=", 1)[0].lstrip("+~") for o in extra if "=" in o}
    return [
        sys.executable, str(ROOT / "train.py"), "-m", f"hydra/launcher={launcher}", f"hydra.sweep.dir={runs}",
        *sweep_overrides(spec, replaced, sweep), *(spec["tiny"] if tiny else []), *extra,
    ]


def run_sweep(spec: dict, out: Path, tiny: bool, overrides: list[str], launcher: str, argv: list[str]) -> int:
    """Run the sweeps (:func:`sweeps`) into ``<out>/runs``; ``<out>/sweep.json`` records them,
    ``argv`` (the experiment's own arguments) as the command that reproduces it. Returns the
    worst exit code."""
    out.mkdir(parents=True, exist_ok=True)
    finished_before = finished_runs(out / "runs")
    expected = None if tiny else expected_wall_time(spec.get("name", ""), launcher)
    if expected is not None:
        print(f"expected wall time: about {expected / 60:.0f} min (the published table's runs, "
              f"{parallel_jobs(launcher)} at a time{'; the finished ones are skipped' if finished_before else ''})", flush=True)
    start, commands, codes = time.time(), [], []
    for name, sweep in sweeps(spec):
        cmd = sweep_command(spec, out / "runs" / name if name else out / "runs", tiny, overrides, launcher, sweep)
        print("$", shlex.join(cmd), flush=True)
        codes.append(subprocess.run(cmd, cwd=ROOT, env=os.environ.copy()).returncode)
        commands.append(shown_command(cmd))
    record = {
        "reproduce": shown_command(["python", "scripts/experiment.py", *argv]),
        "command": commands[0], **({"block_commands": commands[1:]} if len(commands) > 1 else {}),
        "launcher": launcher, "tiny": tiny, "wall_time_s": round(time.time() - start, 1), "returncode": next((c for c in codes if c), 0),
        **({"expected_wall_time_s": round(expected, 1)} if expected is not None else {}),
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        **({"resumed": {"finished_before": finished_before}} if finished_before else {}),
    }
    write_json_atomic(out / "sweep.json", record)
    return next((c for c in codes if c), 0)


def parallel_jobs(launcher: str) -> int:
    """How many jobs ``launcher`` runs at a time (its ``n_jobs``; 1 for Hydra's basic launcher)."""
    path = config_dir() / "hydra" / "launcher" / f"{launcher}.yaml"
    if not path.is_file():
        return 1
    import yaml

    return int((yaml.safe_load(path.read_text()) or {}).get("n_jobs") or 1)


def expected_wall_time(name: str, launcher: str, results: Path | None = None) -> float | None:
    """Seconds the sweep should take, from the published table's measured ``wall s`` column
    (``experiments/results/<name>.csv``: each row's runs in all) spread over the launcher's
    parallel jobs, never below its longest run; None without a published table. A cluster
    launcher (``slurm``) runs every job at once, so its estimate is the longest run."""
    from .repository import RESULTS
    from .results_section import wall_time_column

    column = wall_time_column((results or RESULTS) / f"{name}.csv")
    if column is None:
        return None
    total, longest = column
    return longest if launcher == "slurm" else max(total / parallel_jobs(launcher), longest)


def finished_runs(runs: Path) -> int:
    """How many runs under ``runs`` say ``finished`` (a resumed sweep skips them)."""
    count = 0
    for path in runs.rglob("results.json") if runs.is_dir() else []:
        try:
            count += json.loads(path.read_text()).get("status") == "finished"
        except (OSError, json.JSONDecodeError):
            pass
    return count


def recorded_wall_time(out: Path) -> float | None:
    """The wall time ``<out>/sweep.json`` records; None without one (or for a table made in parts)."""
    record = out / "sweep.json"
    return json.loads(record.read_text()).get("wall_time_s") if record.is_file() else None
