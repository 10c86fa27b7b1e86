"""Run one table (or figure) of experiments/ and write it as markdown, CSV and LaTeX.

    python scripts/experiment.py experiments/sets.yaml             # sweep, then table
    python scripts/experiment.py experiments/sets.yaml --table-only  # table from finished runs
    python scripts/experiment.py experiments/sets.yaml seed=0,1,2    # extra overrides for the sweep
    python scripts/experiment.py experiments/sets.yaml --launcher slurm hydra.launcher.partition=cpu
    python scripts/experiment.py experiments/toy.yaml --publish experiments/results   # make reproduce EXP=toy
    python scripts/experiment.py experiments/toy.yaml --resume     # after an interruption: only what did not finish

The sweep is one ``python train.py -m`` multirun on ``--launcher`` (default ``local``:
joblib, 2 jobs, one torch thread each; ``slurm``: submitit, trufl/conf/hydra/launcher/slurm.yaml);
every value list in the file's ``sweep`` is an axis. The table is read from the runs'
``results.json`` only: one row per ``rows`` group (mean ± std over seeds; ``widths: true``
adds the learned boxes' mass against the toy's probabilities), then the file's published
rows, marked ``published``; a failed or interrupted run is counted in the row's ``status``
column, and a failed sweep still writes the table before exiting non-zero. Then each entry
of the file's ``figures`` runs: a command template (``{python}``, ``{out}``, ``{runs}``,
and ``{run_dirs}``: the finished run directories, one argument each), or
``{command: ..., where: {key: value}}`` to pass only the runs with those config values.

A sweep starts again on the same ``<out>/runs`` with ``--resume``: the jobs whose
``results.json`` says ``finished`` are skipped (``skip_finished``, :mod:`trufl.skip_finished`), the failed,
interrupted and missing ones run, each continuing from its own ``checkpoints/last.ckpt`` when it
has one (``ckpt_path=last``: a 10k-step curve run cut off at step 7000 loses at most 500 steps); ``--fresh`` deletes the earlier runs first; with neither, an
``<out>/runs`` that holds runs already is refused (a table must not mix two sweeps unknowingly), and a
table that finds one job in two run directories (an earlier version of the file's jobs) stops and names them.

Output under ``<out>`` (default multirun/experiments/<name>): ``table.md``, ``table.csv``,
``table.tex`` (booktabs), ``sweep.json`` (the sweep's command, as run from the repository root,
its launcher and wall time),
``curves.png``, ``curves.csv`` (their data) and ``figures/`` when the file asks (``curves``:
:mod:`trufl.reporting.curves`, which also adds the steps-to-target column); the runs are under
``<out>/runs``. ``--publish DIR`` copies them to ``DIR/<name>.{md,csv,tex,json}``, ``DIR/<name>_curves.{png,csv}``
and ``DIR/<name>_figures/`` (what scripts/results_section.py reads for docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from .formats import latex, markdown, without, write_csv
from ..atomic import write_text_atomic
from .curves import CurveSpec, add_steps_column, read_curves, target_value, write_curves_csv
from .plot_curves import plot_curves
from .repository import ROOT
from ..skip_finished import identity
from .runs import group_value, load, status
from .spec import read_spec
from .sweep import recorded_wall_time, run_sweep
from .tables import UnknownMetricError, build_table, row_keys


def refuse_repeated_jobs(runs: Path) -> None:
    """Stop when one job (the same overrides and seed) sits in more than one run directory: it is
    the same run twice, not two seeds. A file whose axes changed does this under ``--resume``: the
    job numbers in the directory names move, and the earlier version's directories stay beside the
    new ones, where the table would average them without a word."""
    dirs: dict[tuple, list[Path]] = {}
    for path in sorted(runs.rglob("results.json")):
        result = json.loads(path.read_text())
        if result.get("overrides"):
            key = (tuple(sorted(identity(result["overrides"]))), result.get("config", {}).get("seed"))
            dirs.setdefault(key, []).append(path.parent.relative_to(runs))
    twice = [" and ".join(map(str, d)) for d in dirs.values() if len(d) > 1]
    if twice:
        sys.exit(f"{runs}: the same job in more than one run directory ({'; '.join(twice)}): runs of an earlier "
                 "version of the experiment file? Delete the older directories (or start again with --fresh)")


def table(spec: dict, runs: Path) -> tuple[list[str], list[list[str]]]:
    """Measured rows from ``runs`` then the published rows; every column labelled."""
    refuse_repeated_jobs(runs)
    columns = spec["columns"]
    sources = [c["source"] for c in columns]
    digits = {c["source"]: c.get("digits", 3) for c in columns}
    header, rows = build_table(load(runs), spec["rows"], sources, widths=spec["widths"], digits=digits)
    group = row_keys(spec["rows"])
    keys = len(group) + 2  # row keys, seeds, status
    header = header[:keys] + [c["label"] for c in columns] + header[keys + len(columns):]  # then the widths' columns
    for pub in spec["published"]:
        row = [str(pub.get(k, "published" if k == "configuration" else "")) for k in group] + ["—", "published"]
        row += [f"{pub[c['label']]:.{c.get('digits', 3)}f}" if c["label"] in pub else "" for c in columns]
        rows.append(row + [""] * (len(header) - len(row)))
    curves = CurveSpec.read(spec.get("curves"))
    if curves is not None and curves.target is not None:  # who gets near the target, and how soon
        header, rows = add_steps_column(curves, read_curves(runs, curves.metric), group, header, rows)
    return header, rows


def write_table(spec: dict, out: Path, header: list[str], rows: list[list[str]]) -> str:
    """``table.md`` (with the sweep's wall time when recorded), ``table.csv`` and ``table.tex``
    under ``out``; returns the markdown."""
    short = without(header, rows, "overrides")  # every row's overrides are in the CSV
    text = f"**{spec['title']}**\n\n{markdown(*short)}\n"
    wall_time = recorded_wall_time(out)
    if wall_time is not None:  # None: a table made in parts (its sweep.json says why)
        resumed = json.loads((out / "sweep.json").read_text()).get("resumed")
        earlier = f" (resumed: the {resumed['finished_before']} runs finished before are not counted)" if resumed else ""
        text += f"\nSweep wall time: {wall_time / 60:.1f} min{earlier}.\n"
    if spec.get("note"):  # what a row is beyond its keys (e.g. a biased objective)
        text += f"\n{spec['note'].strip()}\n"
    write_text_atomic(out / "table.md", text)
    write_csv(out / "table.csv", header, rows)
    write_text_atomic(out / "table.tex", latex(*short, caption=spec["title"], label=f"tab:{spec['name']}"))
    return text


def figure_commands(spec: dict, runs: Path, out: Path) -> list[list[str]]:
    """The file's ``figures`` as argument lists: each template split like a shell line,
    ``{run_dirs}`` expanded to the finished runs (those matching ``where``, by
    :func:`~trufl.reporting.runs.group_value`) one argument each, ``{python}``/``{out}``/``{runs}`` filled in."""
    found = {f.parent: json.loads(f.read_text()) for f in sorted(runs.rglob("results.json"))}
    commands = []
    for i, entry in enumerate(spec["figures"]):
        entry = {"command": entry} if isinstance(entry, str) else entry
        if "command" not in entry:
            sys.exit(f"{spec['name']}: figures[{i}] needs a command (a string or {{command: ..., where: ...}})")
        where = entry.get("where") or {}
        chosen = [str(d) for d, r in found.items() if status(r) == "finished"
                  and all(str(group_value(r, k)) == str(v) for k, v in where.items())]
        if not chosen:
            sys.exit(f"{spec['name']}: figures[{i}]: no finished run under {runs} matches where={where}")
        fill = {"python": sys.executable, "out": str(out), "runs": str(runs)}
        cmd = []
        for token in shlex.split(entry["command"]):
            cmd += chosen if token == "{run_dirs}" else [token.format(**fill)]
        commands.append(cmd)
    return commands


def draw_figures(spec: dict, runs: Path, out: Path) -> list[str]:
    """The learning curves (when the file asks) and each figure command; returns the failed commands."""
    curves = CurveSpec.read(spec.get("curves"))
    if curves is not None:  # learning curves from the runs' CSV logs: the picture and its data
        found = read_curves(runs, curves.metric)
        target = target_value(curves, found)
        hlines = {} if target is None else {f"target {target:.3f}": target, f"target + {curves.delta:g}": target + curves.delta}
        print(f"written: {plot_curves(runs, curves.metric, spec['rows'][1:], out / 'curves.png', curves.log_steps, hlines)}")
        print(f"written: {write_curves_csv(found, row_keys(spec['rows']), curves.metric, out / 'curves.csv')}")
    failed = []
    for cmd in figure_commands(spec, runs, out):
        print("$", shlex.join(cmd), flush=True)
        if subprocess.run(cmd, cwd=ROOT, env=os.environ.copy()).returncode:
            failed.append(shlex.join(cmd))
    return failed


def publish(spec: dict, out: Path, target: Path) -> list[Path]:
    """Copy the outputs to ``target/<name>.*`` (replacing an earlier publication's figures)."""
    name = spec["name"]
    target.mkdir(parents=True, exist_ok=True)
    copies = {f"table.{ext}": f"{name}.{ext}" for ext in ("md", "csv", "tex")}
    copies.update({"sweep.json": f"{name}.json", "curves.png": f"{name}_curves.png", "curves.csv": f"{name}_curves.csv"})
    written = []
    for source, dest in copies.items():
        if (out / source).is_file():
            written.append(Path(shutil.copyfile(out / source, target / dest)))
    if (out / "figures").is_dir():
        shutil.rmtree(target / f"{name}_figures", ignore_errors=True)
        written.append(Path(shutil.copytree(out / "figures", target / f"{name}_figures")))
    return written


def prepare_runs(runs: Path, resume: bool, fresh: bool) -> None:
    """Refuse to sweep into a ``runs`` folder holding earlier runs unless told to keep them
    (``resume``: the finished ones are skipped) or to delete them (``fresh``)."""
    earlier = sorted(runs.rglob("results.json")) if runs.is_dir() else []
    if fresh and runs.is_dir():
        print(f"--fresh: deleting {len(earlier)} earlier run(s) under {runs}", flush=True)
        shutil.rmtree(runs)
    elif earlier and not resume:
        sys.exit(f"{runs} holds {len(earlier)} run(s) of an earlier sweep: --resume runs only the jobs that did not finish, "
                 f"--fresh deletes them first (or choose another --out)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path, help="an experiments/*.yaml file")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (e.g. seed=0,1,2)")
    ap.add_argument("--out", type=Path, help="output folder (default: multirun/experiments/<name>)")
    ap.add_argument("--tiny", action="store_true", help="apply the file's tiny overrides (tests)")
    ap.add_argument("--table-only", action="store_true", help="skip the sweep; tabulate the runs in <out>/runs")
    ap.add_argument("--launcher", default="local", help="trufl/conf/hydra/launcher option for the sweep (local, slurm, basic)")
    ap.add_argument("--publish", type=Path, help="also copy the outputs to this folder (e.g. experiments/results)")
    again = ap.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="keep the finished runs in <out>/runs; run the rest")
    again.add_argument("--fresh", action="store_true", help="delete the runs in <out>/runs first")
    args = ap.parse_intermixed_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    spec = read_spec(args.file)
    out = (args.out or ROOT / "multirun" / "experiments" / spec["name"]).resolve()
    runs = out / "runs"
    if not args.table_only:
        prepare_runs(runs, resume=args.resume, fresh=args.fresh)
    # --resume: an interrupted job continues from its own checkpoints/last.ckpt (saved every 500 steps and on
    # SIGTERM), so a long sweep cut off goes on where each run stopped; a job without one starts afresh
    overrides = [*args.overrides, "ckpt_path=last"] if args.resume else args.overrides
    returncode = 0 if args.table_only else run_sweep(spec, out, args.tiny, overrides, args.launcher, args.argv)
    try:
        header, rows = table(spec, runs)
    except UnknownMetricError as err:
        sys.exit(f"{args.file}: {err}")
    print(write_table(spec, out, header, rows))
    print(f"written: {out / 'table.md'}, {out / 'table.csv'}, {out / 'table.tex'}")
    failed_figures = draw_figures(spec, runs, out)
    if args.publish:
        print("published:", *publish(spec, out, args.publish.resolve()), sep="\n  ")
    if returncode:  # the table above keeps every run, failed ones marked
        sys.exit(f"the sweep failed (exit {returncode}); see the status column and the runs under {runs}")
    if failed_figures:
        sys.exit("figure command(s) failed:\n  " + "\n  ".join(failed_figures))


if __name__ == "__main__":
    main()
