"""Run one table of experiments/ and write it as markdown and CSV.

    python scripts/experiment.py experiments/sets.yaml             # sweep, then table
    python scripts/experiment.py experiments/sets.yaml --table-only  # table from finished runs
    python scripts/experiment.py experiments/sets.yaml seed=0,1,2    # extra overrides for the sweep

The sweep is one ``python train.py -m`` multirun on the local parallel launcher
(``hydra/launcher=local``: joblib, 2 jobs, one torch thread each); every value
list in the file's ``sweep`` is an axis. The table is read from the runs'
``results.json`` only: one row per ``rows`` group (mean ± std over seeds), then
the file's published rows; a failed or interrupted run is counted in the row's
``status`` column, and a failed sweep still writes the table before exiting
non-zero. Output: ``<out>/table.md``, ``<out>/table.csv``,
``<out>/command.txt``; the runs are under ``<out>/runs``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tables import UnknownMetricError, build_table, load, markdown

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("title", "sweep", "rows", "columns")


def read_spec(path: Path) -> dict:
    """The experiment file, checked: a clear error for a missing file or key."""
    if not path.is_file():
        sys.exit(f"no experiment file {path} (see {ROOT / 'experiments'})")
    spec = yaml.safe_load(path.read_text())
    missing = [k for k in REQUIRED if k not in (spec or {})]
    if missing:
        sys.exit(f"{path}: missing {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    spec.setdefault("published", [])
    spec.setdefault("tiny", [])
    spec["name"] = path.stem
    return spec


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


def sweep_command(spec: dict, runs: Path, tiny: bool, extra: list[str]) -> list[str]:
    """The multirun command; an extra override of a sweep axis (``seed=0,1,2``)
    replaces the file's values for it."""
    replaced = {o.split("=", 1)[0].lstrip("+~") for o in extra if "=" in o}
    return [
        sys.executable, str(ROOT / "train.py"), "-m", "hydra/launcher=local", f"hydra.sweep.dir={runs}",
        *sweep_overrides(spec, replaced), *(spec["tiny"] if tiny else []), *extra,
    ]


def table(spec: dict, runs: Path) -> tuple[list[str], list[list[str]]]:
    """Measured rows from ``runs`` then the published rows; every column labelled."""
    columns = spec["columns"]
    sources = [c["source"] for c in columns]
    digits = {c["source"]: c.get("digits", 3) for c in columns}
    header, rows = build_table(load(runs), spec["rows"], sources, digits=digits)
    header = header[: len(spec["rows"]) + 2] + [c["label"] for c in columns]  # rows, seeds, status, columns
    for pub in spec["published"]:
        row = [str(pub.get(k, "")) for k in spec["rows"]] + ["—", "published"]
        row += [f"{pub[c['label']]:.{c.get('digits', 3)}f}" if c["label"] in pub else "" for c in columns]
        rows.append(row)
    return header, rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path, help="an experiments/*.yaml file")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (e.g. seed=0,1,2)")
    ap.add_argument("--out", type=Path, help="output folder (default: multirun/experiments/<name>)")
    ap.add_argument("--tiny", action="store_true", help="apply the file's tiny overrides (tests)")
    ap.add_argument("--table-only", action="store_true", help="skip the sweep; tabulate the runs in <out>/runs")
    args = ap.parse_intermixed_args(argv)
    spec = read_spec(args.file)
    out = (args.out or ROOT / "multirun" / "experiments" / spec["name"]).resolve()
    runs = out / "runs"
    if not args.table_only:
        cmd = sweep_command(spec, runs, args.tiny, args.overrides)
        out.mkdir(parents=True, exist_ok=True)
        (out / "command.txt").write_text(shlex.join(cmd) + "\n")
        print("$", shlex.join(cmd), flush=True)
        start = time.time()
        done = subprocess.run(cmd, cwd=ROOT, env=os.environ.copy())
        (out / "sweep_time.json").write_text(json.dumps({"wall_time_s": time.time() - start}))
    try:
        header, rows = table(spec, runs)
    except UnknownMetricError as err:
        sys.exit(f"{args.file}: {err}")
    text = f"**{spec['title']}**\n\n{markdown(header, rows)}\n"
    timing = out / "sweep_time.json"
    if timing.is_file():
        text += f"\nSweep wall time: {json.loads(timing.read_text())['wall_time_s'] / 60:.1f} min.\n"
    (out / "table.md").write_text(text)
    with open(out / "table.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    print(text)
    print(f"written: {out / 'table.md'}, {out / 'table.csv'}")
    if spec.get("curves"):  # learning curves from the runs' CSV logs
        from plot_curves import plot_curves

        print(f"written: {plot_curves(runs, spec['curves'], spec['rows'][1:], out / 'curves.png')}")
    if not args.table_only and done.returncode:  # the table above keeps every run, failed ones marked
        sys.exit(f"the sweep failed (exit {done.returncode}); see the status column and the runs under {runs}")


if __name__ == "__main__":
    main()
