"""Tables from results.json files: one row per group of runs, mean ± std over seeds.

    python scripts/tables.py multirun/toy_table --group flow recon_weight \\
        --metrics test/nll_bits test/kl_bits test/recon_bits test/determinism --widths

Reads only results.json (never the loggers). Writes markdown to stdout and,
with --csv, a CSV file. ``seeds`` counts distinct seeds among a row's finished runs;
``status`` is ``ok`` or the count of failed/interrupted runs (their results.json
has no metrics) and of runs only ``started`` (still running, or killed outright). Unknown metric names are an error; a row that pools runs which
differ in a config key other than the seed is reported on stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..skip_finished import NOT_IDENTITY
from .formats import markdown, without, write_csv
from .runs import NOT_APPLICABLE, group_value, load, not_applicable, status, value

IGNORED_KEYS = {"seed", "ckpt_path"}  # what a row averages over, and where a run resumed from
WIDTH_COLUMNS = ["max |mass − p|", "box mass (seed mean)"]


def fmt(values: list, digits: int = 3) -> str:
    """One value, or mean ± std over seeds; ``—`` where a run lacks it."""
    if not values or any(not isinstance(v, (int, float)) or v != v for v in values):
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


class UnknownMetricError(ValueError):
    """A requested column that no finished run's results.json has."""


def check_metrics(finished: list[dict], metrics: list[str]) -> None:
    """Every requested metric must be in at least one finished run (a typo is an
    error, not a column of dashes)."""
    unknown = [m for m in metrics if finished and all(value(r, m) is None and not not_applicable(r, m) for r in finished)]
    if unknown:
        known = sorted({k for r in finished for k in r["metrics"]})
        raise UnknownMetricError(f"unknown metric(s) {', '.join(unknown)}: the finished runs have {', '.join(known)} "
                                 "(or a dotted path into results.json, e.g. sampling.validity_plain)")


def _flat(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _flat(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node


def pooled_differences(runs: list[dict]) -> dict[str, list]:
    """Config keys, other than the seed, whose values differ between ``runs``; a job's
    own paths (its output directory and what is derived from it) are not differences."""
    values: dict[str, set] = {}
    for r in runs:
        own = str(r["config"].get("paths", {}).get("output_dir", "\0"))
        for key, v in _flat(r["config"]):
            if key in IGNORED_KEYS or (isinstance(v, str) and own in v):
                continue
            values.setdefault(key, set()).add(json.dumps(v, sort_keys=True))
    return {k: sorted(json.loads(v) for v in vs) for k, vs in values.items() if len(vs) > 1}


def seeds(runs: list[dict]) -> int:
    return len({r["config"].get("seed") for r in runs})


def status_cell(runs: list[dict]) -> str:
    """``ok`` when every run finished, else the counts (``2 ok, 1 failed``)."""
    counts = {s: sum(status(r) == s for r in runs) for s in ("finished", "failed", "interrupted", "started")}
    if counts["finished"] == len(runs):
        return "ok"
    return ", ".join(f"{n} {'ok' if s == 'finished' else s}" for s, n in counts.items() if n)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def warn_about_pooling(name: str, runs: list[dict], finished: list[dict]) -> None:
    """Say on stderr when a row averages over more than seeds, or over repeated seeds."""
    differences = pooled_differences(runs)
    if differences:
        warn(f"row {name} pools runs that differ in " + "; ".join(f"{k} {v}" for k, v in differences.items())
             + " (add the key to the grouping)")
    if len(finished) > seeds(finished):
        warn(f"row {name} has {len(finished)} finished runs but {seeds(finished)} distinct seeds")


def metric_cells(finished: list[dict], metrics: list[str], digits: dict[str, int]) -> list[str]:
    """Each metric's mean ± std over ``finished``; ``n/a`` where no run's model has it."""
    return [NOT_APPLICABLE if finished and all(not_applicable(r, m) for r in finished)
            else fmt([value(r, m) for r in finished], digits.get(m, 3)) for m in metrics]


def width_cells(finished: list[dict]) -> list[str]:
    """The worst learned box mass's distance from ``dataset.probs`` and the seeds' mean masses."""
    w = [r["dequantiser"].get("box_mass") for r in finished]  # each box's mass under the standard logistic
    probs = finished[0]["dataset"].get("probs") if finished else None
    if not (w and all(w) and probs):
        return ["—", "—"]
    worst = max(max(abs(a - p) for a, p in zip(ws, probs)) for ws in w)
    mean = [statistics.mean(col) for col in zip(*w)]
    return [f"{worst:.3f}", " ".join(f"{m:.3f}" for m in mean)]


def row_keys(group: list[str]) -> list[str]:
    """What a row is grouped by: its ``configuration`` first (every table says which
    configuration each row is), then ``group``."""
    return ["configuration", *(k for k in group if k != "configuration")]


#: overrides that say where a run ran or what it averages over, not what it is
MACHINE_OVERRIDES = ("seed=", "paths.", "hydra.", "logger=", "num_threads=", *(f"{key}=" for key in NOT_IDENTITY))


def overrides_cell(runs: list[dict]) -> str:
    """The command-line overrides of a row's runs, seeds and machine paths aside (distinct
    lists joined by ``|``)."""
    lists = {" ".join(o for o in r.get("overrides", []) if not o.startswith(MACHINE_OVERRIDES)) for r in runs}
    return " | ".join(sorted(lists))


def row_value(result: dict, key: str, results: list[dict]) -> Any:
    """``group_value``, or ``—`` for a key that this run's config lacks but another run's has
    (e.g. ``flow.init``, TRUFL's option, on a CatNF row); a key no run has is an error."""
    try:
        return group_value(result, key)
    except KeyError:
        for other in results:
            try:
                group_value(other, key)
            except KeyError:
                continue
            return "—"
        raise KeyError(f"no run has {key!r} (a config key or group) to group its rows by") from None


def build_table(
    results: list[dict], group: list[str], metrics: list[str], widths: bool = False, digits: dict | None = None
) -> tuple[list[str], list[list[str]]]:
    """One row per ``configuration`` and group: distinct seeds, status, then each metric's
    mean ± std over the group's finished runs (failed and interrupted runs are counted in
    ``status``), then the runs' overrides."""
    digits, group = digits or {}, row_keys(group)
    check_metrics([r for r in results if status(r) == "finished"], metrics)
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault(tuple(row_value(r, k, results) for k in group), []).append(r)
    header = [*group, "seeds", "status", *metrics] + (WIDTH_COLUMNS if widths else []) + ["overrides"]
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        finished = [r for r in runs if status(r) == "finished"]
        warn_about_pooling(", ".join(f"{k}={v}" for k, v in zip(group, key)), runs, finished)
        row = [str(v) for v in key] + [str(seeds(finished)), status_cell(runs), *metric_cells(finished, metrics, digits)]
        rows.append(row + (width_cells(finished) if widths else []) + [overrides_cell(runs)])
    return header, rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder searched recursively for results.json")
    ap.add_argument("--group", nargs="+", default=["flow", "recon_weight"], help="config keys (or 'flow') to group by")
    ap.add_argument("--metrics", nargs="+", default=["test/nll_bits", "test/kl_bits", "test/recon_bits", "test/determinism"])
    ap.add_argument("--widths", action="store_true", help="add each learned box's prior mass vs dataset.probs")
    ap.add_argument("--csv", type=Path, help="also write the table as CSV")
    args = ap.parse_args(argv)
    try:
        header, rows = build_table(load(args.root), args.group, args.metrics, args.widths)
    except UnknownMetricError as err:
        sys.exit(str(err))
    print(markdown(*without(header, rows, "overrides")))
    if args.csv:
        write_csv(args.csv, header, rows)


if __name__ == "__main__":
    main()
