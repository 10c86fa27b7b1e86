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

Every method's search starts from the same place: its trial 0 is the method's *shared*
configuration (the job with no overrides: the shared optimiser, the flow's own D, the prior
its support gives by default) in the search's keys, run at the search's budget; Optuna's
sampler (seeded) then proposes the other ``n_trials - 1``. So the chosen values are never worse
than the shared ones at the search's budget, for any method. (Trial 0 is not told to the
sampler: Optuna 2.10, the newest the Hydra sweeper allows, cannot open a SQLite study with
SQLAlchemy 2, which an enqueued trial would need.) A searched key that a flow does not have
(Argmax derives its D; the categorical model has no latent, prior or KL weight) is left out of
that flow's space, so its trials are not repeats. A search started again continues: finished
trials are not run again (``skip_finished``; the seeded sampler proposes the same trials).
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
from .runs import group_value, load, status, value

TUNED = config_dir() / "tuned"


def _compose(overrides: list[str]):
    """The job config (with Hydra's) that ``train.py <overrides>`` would run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    return cfg


def search_spec(search: str) -> dict:
    """The preset ``trufl/conf/hparams_search/<search>.yaml`` as composed (a preset may build on
    another): ``hydra.sweeper`` (space, trials, sampler), the budget (``trainer``) and
    ``optimized_metric``."""
    from omegaconf import OmegaConf

    path = config_dir() / "hparams_search" / f"{search}.yaml"
    if not path.is_file():
        sys.exit(f"no search preset {path.relative_to(ROOT)} (trufl/conf/hparams_search/ has "
                 f"{', '.join(p.stem for p in sorted(path.parent.glob('*.yaml')))})")
    cfg = _compose([f"hparams_search={search}"])
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=False)
    return {"hydra": {"sweeper": {k: sweeper[k] for k in ("direction", "n_trials", "sampler", "params")}},
            "trainer": {k: cfg.trainer[k] for k in ("max_steps", "val_check_interval")},
            "optimized_metric": cfg.optimized_metric}


#: searched keys a flow does not have: its trials would repeat each other
NOT_SEARCHED = {"argmax": {"latent_dim"},
                "categorical": {"latent_dim", "prior.transform", "prior.inputs", "weighting", "recon_weight", "kl_weight"}}


def flow_space(space: dict, flow: str) -> dict:
    """The search's keys that ``flow`` has (see :data:`NOT_SEARCHED`)."""
    return {k: v for k, v in space.items() if k not in NOT_SEARCHED.get(flow, set())}


def search_command(search: str, flow: str, runs: Path, extra: list[str], held: dict | None = None,
                   trials: int | None = None) -> list[str]:
    """The Hydra multirun of one flow's search under ``runs``: the keys the flow lacks ``held`` at
    their config values (the Optuna sweeper takes a plain override out of its space), ``trials``
    trials (default: the preset's)."""
    return [sys.executable, str(ROOT / "train.py"), "-m", f"hparams_search={search}", f"flow={flow}",
            f"hydra.sweep.dir={runs}", *(f"{k}={_override_value(v)}" for k, v in (held or {}).items()),
            *([f"hydra.sweeper.n_trials={trials}"] if trials is not None else []), *extra]


def _override_value(v) -> str:
    return "null" if v is None else str(v)


def start_command(search: str, flow: str, runs: Path, extra: list[str], point: dict) -> list[str]:
    """Trial 0: the search's budget and settings at ``point`` (the flow's shared configuration),
    one run in ``runs/start_<flow>``."""
    return [sys.executable, str(ROOT / "train.py"), f"hparams_search={search}", f"flow={flow}", "hydra.mode=RUN",
            f"hydra.run.dir={runs / f'start_{flow}'}", *(f"{k}={v}" for k, v in point.items()), *extra]


def shared_point(flow: str, keys: list[str], extra: list[str] = (), resolve: set[str] | None = None) -> dict:
    """The values the job ``flow=<flow>`` (no search, no tuned preset) runs with, for ``keys``:
    read from the composed config, and for the keys in ``resolve`` (default: all) where that says
    "each flow's own" (``latent_dim: null``, ``prior.inputs``/``prior.transform: auto``) from the
    model it builds."""
    from ..builders import build_likelihood
    from ..config import _num_categories
    from ..priors.elementwise import MixtureTransform, SplineTransform

    cfg = _compose([f"flow={flow}", *(o for o in extra if not o.startswith(("hydra.", "~hydra.", "+hydra.")))])
    resolve = set(keys) if resolve is None else resolve
    choices = cfg.hydra.runtime.choices
    model = None
    point = {}
    for key in keys:
        if key in choices:                        # a config group (weighting=constant)
            point[key] = choices[key]
            continue
        node, *path = cfg, *key.split(".")
        for part in path:
            node = node.get(part) if node is not None else None
        if key in resolve and (node is None or node == "auto"):
            model = model if model is not None else build_likelihood(cfg, _num_categories(cfg))
            if key == "latent_dim":
                node = int(model.dequantiser.dim)
            elif key == "prior.inputs":
                node = model.prior.inputs
            elif key == "prior.transform":
                kinds = {SplineTransform: "spline", MixtureTransform: "mixture"}
                node = kinds.get(type(model.prior.transform), type(model.prior.transform).__name__)
            else:
                raise ValueError(f"{key} is {node!r} in flow={flow}'s config: the search needs a value to start from")
        point[key] = node
    return point


def trials(runs: Path, keys: list[str], metric: str, searched: list[str] | None = None) -> list[dict]:
    """Every trial under ``runs`` (job order): the values of ``keys`` ("" for those outside
    ``searched``, the flow's own space) and ``metric``."""
    searched = keys if searched is None else searched
    def job(r: dict) -> int:  # Hydra's job number, the start of the run directory's name
        name = Path(r.get("config", {}).get("paths", {}).get("output_dir", "0")).name
        if name.startswith("start_"):
            return -1  # trial 0, the shared configuration
        return int(name.split("_", 1)[0]) if name.split("_", 1)[0].isdigit() else 0

    rows = []
    for r in sorted(load(runs), key=job):
        rows.append({"configuration": "shared" if job(r) == -1 else "tuned",  # trial 0 is the shared configuration
                     "trial": len(rows), **{k: _recorded(r, k) if k in searched else "" for k in keys},
                     metric: value(r, metric) if status(r) == "finished" else None, "status": status(r),
                     "wall_time_s": round(r["wall_time_s"], 1) if r.get("wall_time_s") is not None else None})
    return rows


def _recorded(result: dict, key: str):
    """The value a run had for a searched key (a config group's choice or a config value; ""
    when it has none)."""
    try:
        v = group_value(result, key)
    except (KeyError, TypeError):
        return ""
    return "" if v is None else v


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


def split_flows(flows: list[str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """``--flows a b key=value …`` as a user types it: argparse's ``nargs="+"`` takes the overrides
    after the flows as flows too, so every ``key=value`` among them is an override; a flow name that
    is not in trufl/conf/flow/ is an error (not a search that fails at its first trial)."""
    known = sorted(p.stem for p in (config_dir() / "flow").glob("*.yaml"))
    names = [f for f in flows if "=" not in f]
    unknown = [f for f in names if f not in known]
    if unknown or not names:
        raise SystemExit(f"tune: unknown flow(s) {unknown or flows} (known: {', '.join(known)})")
    return names, [*(f for f in flows if "=" in f), *overrides]


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
    args.flows, args.overrides = split_flows(args.flows, args.overrides)
    spec = search_spec(args.search)
    sweeper = spec["hydra"]["sweeper"]
    keys, metric = list(sweeper["params"]), spec["optimized_metric"]
    out = (args.out or ROOT / "multirun" / "tuning" / args.search).resolve()
    # hydra.sweeper.n_trials=N among the overrides: N trials in all (trial 0 and N - 1 from the sampler)
    n_trials = int(sweeper["n_trials"])
    extra = []
    for o in args.overrides:
        if o.startswith("hydra.sweeper.n_trials="):
            n_trials = int(o.split("=", 1)[1])
        else:
            extra.append(o)
    record = {"search": f"trufl/conf/hparams_search/{args.search}.yaml", "space": sweeper["params"], "metric": metric,
              "direction": sweeper["direction"], "trials": n_trials, "sampler": sweeper["sampler"],
              "budget": spec["trainer"], "flows": {}}
    table = []
    for flow in args.flows:
        space = flow_space(sweeper["params"], flow)
        dropped = [k for k in keys if k not in space]
        values = shared_point(flow, keys, extra, resolve=set(space))  # the searched keys resolved, the held ones as configured
        start_point, held = {k: values[k] for k in space}, {k: values[k] for k in dropped}
        first = start_command(args.search, flow, out / flow, extra, start_point)
        cmd = search_command(args.search, flow, out / flow, extra, held, trials=n_trials - 1)
        start = time.time()
        if not args.table_only:  # a run already finished is not run again (skip_finished): a search started again continues
            print(f"{flow}: trial 0 is its shared configuration {start_point}", flush=True)
            for c in (first, cmd):
                print("$", shlex.join(c), flush=True)
                subprocess.run(c, cwd=ROOT, env=os.environ.copy(), check=False)
        rows = trials(out / flow, keys, metric, list(space))
        chosen = best(rows, metric)
        table += [{"flow": flow, **r} for r in rows]
        record["flows"][flow] = {"command": shown_command(cmd), "start_command": shown_command(first), "wall_time_s": round(time.time() - start, 1),
                                 "trials_wall_time_s": round(sum(r["wall_time_s"] or 0 for r in rows), 1),
                                 "space": space, "start": start_point, "chosen": chosen, "preset": None}
        if chosen is not None:
            preset = write_preset(args.search, flow, chosen, list(space), args.presets)
            record["flows"][flow]["preset"] = shown_command([str(preset)])
        print(f"{flow}: {len(rows)} trials, chosen {chosen}")
    args.results.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.results / f"tuning_{args.search}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["configuration", "flow", "trial", *keys, metric, "status", "wall_time_s"])
        writer.writeheader()
        writer.writerows(table)
    write_json_atomic(args.results / f"tuning_{args.search}.json", record)


if __name__ == "__main__":
    main()
