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

from .repository import ROOT, shown_command


def sweep_overrides(spec: dict, replaced: set[str] = frozenset()) -> list[str]:
    """``key=a,b,c`` per sweep axis (a scalar is a fixed override), except the
    axes in ``replaced`` (given again on the command line)."""
    out = []
    for key, values in spec["sweep"].items():
        if key in replaced:
            continue
        values = values if isinstance(values, list) else [values]
        out.append(f"{key}={','.join(str(v) for v in values)}")
    return out


def sweep_command(spec: dict, runs: Path, tiny: bool, extra: list[str], launcher: str = "local") -> list[str]:
    """The multirun command on ``launcher`` (a conf/hydra/launcher option); an extra
    override of a sweep axis (``seed=0,1,2``) replaces the file's values for it."""
    if not (ROOT / "conf" / "hydra" / "launcher" / f"{launcher}.yaml").is_file():
        sys.exit(f"--launcher {launcher}: no conf/hydra/launcher/{launcher}.yaml")
    replaced = {o.split("=", 1)[0].lstrip("+~") for o in extra if "=" in o}
    return [
        sys.executable, str(ROOT / "train.py"), "-m", f"hydra/launcher={launcher}", f"hydra.sweep.dir={runs}",
        *sweep_overrides(spec, replaced), *(spec["tiny"] if tiny else []), *extra,
    ]


def run_sweep(spec: dict, out: Path, tiny: bool, overrides: list[str], launcher: str, argv: list[str]) -> int:
    """Run the sweep into ``<out>/runs``; ``<out>/sweep.json`` records it, ``argv`` (the
    experiment's own arguments) as the command that reproduces it. Returns its exit code."""
    cmd = sweep_command(spec, out / "runs", tiny, overrides, launcher)
    out.mkdir(parents=True, exist_ok=True)
    print("$", shlex.join(cmd), flush=True)
    start = time.time()
    done = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy())
    record = {
        "reproduce": shown_command(["python", "scripts/experiment.py", *argv]),
        "command": shown_command(cmd), "launcher": launcher, "tiny": tiny,
        "wall_time_s": round(time.time() - start, 1), "returncode": done.returncode,
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }
    (out / "sweep.json").write_text(json.dumps(record, indent=2) + "\n")
    return done.returncode


def recorded_wall_time(out: Path) -> float | None:
    """The wall time ``<out>/sweep.json`` records; None without one (or for a table made in parts)."""
    record = out / "sweep.json"
    return json.loads(record.read_text()).get("wall_time_s") if record.is_file() else None
