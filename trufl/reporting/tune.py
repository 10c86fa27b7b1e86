"""One tuning protocol for every method: the same Optuna search (a ``trufl/conf/hparams_search/``
preset: its space, trials, sampler seed and budget) run once per method, every trial
recorded, the chosen values written as a preset of the ``tuned`` group so that a table's
``tuned`` block runs exactly them.

    python -m trufl.reporting.tune text --flows trufl catnf argmax categorical
    python -m trufl.reporting.tune text --flows trufl --table-only    # re-read finished trials

Writes ``experiments/results/tuning_<search>.csv`` (flow, trial, each searched key, the
optimised metric, status), ``experiments/results/tuning_<search>.json`` (the space, the
sampler, the budget, the command per flow, the chosen values) and
``trufl/conf/tuned/<search>_<flow>.yaml``. A method never reads another's trials.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .. import config_dir
from ..atomic import atomic_open, write_json_atomic, write_text_atomic

from .repository import RESULTS, ROOT, shown_command
from .runs import load, status, value

TUNED = config_dir() / "tuned"


def search_spec(search: str) -> dict:
    """The preset ``trufl/conf/hparams_search/<search>.yaml``: its sweeper (space, trials, sampler) and budget."""
    path = config_dir() / "hparams_search" / f"{search}.yaml"
    if not path.is_file():
        sys.exit(f"no search preset {path.relative_to(ROOT)} (trufl/conf/hparams_search/ has "
                 f"{', '.join(p.stem for p in sorted(path.parent.glob('*.yaml')))})")
    return yaml.safe_load(path.read_text())


def search_command(search: str, flow: str, runs: Path, extra: list[str]) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "-m", f"hparams_search={search}", f"flow={flow}",
            f"hydra.sweep.dir={runs}", *extra]


def trials(runs: Path, keys: list[str], metric: str) -> list[dict]:
    """Every trial under ``runs`` (job order): the values of the searched ``keys`` and ``metric``."""
    def job(r: dict) -> int:  # Hydra's job number, the start of the run directory's name
        name = Path(r.get("config", {}).get("paths", {}).get("output_dir", "0")).name
        return int(name.split("_", 1)[0]) if name.split("_", 1)[0].isdigit() else 0

    rows = []
    for r in sorted(load(runs), key=job):
        chosen = dict(o.split("=", 1) for o in r.get("overrides", []) if o.split("=", 1)[0] in keys)
        rows.append({"trial": len(rows), **{k: chosen.get(k, "") for k in keys},
                     metric: value(r, metric) if status(r) == "finished" else None, "status": status(r)})
    return rows


def best(rows: list[dict], metric: str) -> dict | None:
    done = [r for r in rows if r[metric] is not None]
    return min(done, key=lambda r: r[metric]) if done else None


def write_preset(search: str, flow: str, chosen: dict, keys: list[str], presets: Path = TUNED) -> Path:
    """``<presets>/<search>_<flow>.yaml``: the flow, its chosen values (a searched config group
    as an override of its defaults) and ``configuration: tuned``."""
    groups = {k: chosen[k] for k in keys if "." not in k and (config_dir() / k).is_dir()}
    values = {k: yaml.safe_load(str(chosen[k])) for k in keys if k not in groups and chosen[k] != ""}
    lines = ["# @package _global_",
             f"# The {flow} settings chosen by trufl/conf/hparams_search/{search}.yaml (python -m trufl.reporting.tune {search});",
             f"# every trial is in experiments/results/tuning_{search}.csv. Written by the tuning script: do not edit.",
             "defaults:", f"  - override /flow: {flow}", *(f"  - override /{g}: {v}" for g, v in groups.items()),
             "configuration: tuned"]
    nested: dict = {}
    for key, v in values.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = v
    text = "\n".join(lines) + "\n" + (yaml.safe_dump(nested, sort_keys=True) if nested else "")
    presets.mkdir(parents=True, exist_ok=True)
    path = presets / f"{search}_{flow}.yaml"
    write_text_atomic(path, text)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("search", help="a trufl/conf/hparams_search/ preset")
    ap.add_argument("--flows", nargs="+", required=True)
    ap.add_argument("--out", type=Path, help="where the trials run (default multirun/tuning/<search>)")
    ap.add_argument("--table-only", action="store_true", help="only read finished trials")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the trial table goes (default experiments/results)")
    ap.add_argument("--presets", type=Path, default=TUNED, help="where the chosen presets go (default trufl/conf/tuned)")
    ap.add_argument("overrides", nargs="*", help="extra overrides for every trial (e.g. num_threads=1)")
    args = ap.parse_intermixed_args(argv)
    spec = search_spec(args.search)
    sweeper = spec["hydra"]["sweeper"]
    keys, metric = list(sweeper["params"]), spec.get("optimized_metric", "val/nll_bits")
    out = (args.out or ROOT / "multirun" / "tuning" / args.search).resolve()
    record = {"search": f"trufl/conf/hparams_search/{args.search}.yaml", "space": sweeper["params"], "metric": metric,
              "direction": sweeper["direction"], "trials": sweeper["n_trials"], "sampler": sweeper["sampler"],
              "budget": spec.get("trainer", {}), "flows": {}}
    table = []
    for flow in args.flows:
        cmd = search_command(args.search, flow, out / flow, args.overrides)
        start = time.time()
        if not args.table_only:
            print("$", shlex.join(cmd), flush=True)
            subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), check=False)
        rows = trials(out / flow, keys, metric)
        chosen = best(rows, metric)
        table += [{"flow": flow, **r} for r in rows]
        record["flows"][flow] = {"command": shown_command(cmd), "wall_time_s": round(time.time() - start, 1),
                                 "chosen": chosen, "preset": None}
        if chosen is not None:
            preset = write_preset(args.search, flow, chosen, keys, args.presets)
            record["flows"][flow]["preset"] = shown_command([str(preset)])
        print(f"{flow}: {len(rows)} trials, chosen {chosen}")
    args.results.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.results / f"tuning_{args.search}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["flow", "trial", *keys, metric, "status"])
        writer.writeheader()
        writer.writerows(table)
    write_json_atomic(args.results / f"tuning_{args.search}.json", record)


if __name__ == "__main__":
    main()
