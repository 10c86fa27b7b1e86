"""An experiment's learning curves beyond the picture: their data as CSV, and how many steps
each row takes to come within δ of a target (who learns faster, apart from who ends lower).

The experiment file's ``curves`` is a metric name (``curves: val/nll_bits``: the plot only) or

.. code-block:: yaml

    curves:
      metric: val/nll_bits
      log_steps: true                       # log-scaled step axis
      target: {where: {flow: categorical}}  # the final value of those runs (mean over seeds), or
      # target: {source: dataset.optimum_bits}   a number every run's results.json holds
      delta: 0.05                           # "within δ": value <= target + delta

With a target the table gains the column ``steps to target + δ``: per row, the first logged
step at which each seed's curve is within δ of the target (median, min–max over seeds), or
``not by N`` (N: the last logged step) for seeds that never get there.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..atomic import atomic_open
from .plot_curves import read_curve
from .runs import group_value, status, value
from .tables import row_value

COLUMN = "steps to target + δ"


@dataclass(frozen=True)
class CurveSpec:
    """The file's ``curves`` (see the module docstring)."""

    metric: str
    log_steps: bool = False
    target: dict | None = None
    delta: float = 0.05

    @classmethod
    def read(cls, node: Any, where: str = "curves") -> CurveSpec | None:
        """``None`` (no curves), a metric name, or a mapping of the fields; unknown keys and a
        target that is neither ``where`` nor ``source`` are refused by name."""
        if node is None:
            return None
        if isinstance(node, str):
            return cls(node)
        if not isinstance(node, dict) or "metric" not in node:
            raise ValueError(f"{where}: a metric name or a mapping with 'metric' (got {node!r})")
        unknown = set(node) - {"metric", "log_steps", "target", "delta"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: metric, log_steps, target, delta")
        target = node.get("target")
        if target is not None and (not isinstance(target, dict) or len(target) != 1 or not {"where", "source"} & set(target)):
            raise ValueError(f"{where}.target: one of {{where: {{key: value}}}} or {{source: <results.json path>}} (got {target!r})")
        delta = float(node.get("delta", 0.05))
        if delta < 0:
            raise ValueError(f"{where}.delta must be >= 0 (got {delta})")
        return cls(node["metric"], bool(node.get("log_steps", False)), target, delta)


class Curve(NamedTuple):
    """One finished run's curve: its directory, its results.json, and ``metric`` per logged step."""

    run: Path
    result: dict
    steps: list[int]
    values: list[float]


def read_curves(root: Path, metric: str) -> list[Curve]:
    """The curves of every finished run under ``root`` that has a CSV log (``logger=csv``)."""
    curves = []
    for path in sorted(root.rglob("results.json")):
        result = json.loads(path.read_text())
        if status(result) == "finished" and (path.parent / "csv" / "metrics.csv").is_file():
            curves.append(Curve(path.parent, result, *read_curve(path.parent, metric)))
    return curves


def target_value(spec: CurveSpec, curves: list[Curve]) -> float | None:
    """The target: the mean final value of the runs matching ``target.where``, or the mean of
    ``target.source`` over the runs; None without a target. An unmatched target is an error."""
    if spec.target is None:
        return None
    if "source" in spec.target:
        found = [v for c in curves if (v := value(c.result, spec.target["source"])) is not None]
        if not found:
            raise ValueError(f"curves.target: no run's results.json has {spec.target['source']!r}")
        return statistics.mean(float(v) for v in found)
    where = spec.target["where"]
    finals = [c.values[-1] for c in curves if c.values
              and all(str(group_value(c.result, k)) == str(v) for k, v in where.items())]
    if not finals:
        raise ValueError(f"curves.target: no finished run with a {spec.metric} curve matches where={where}")
    return statistics.mean(finals)


def first_step_within(steps: list[int], values: list[float], bound: float) -> int | None:
    """The first logged step whose value is <= ``bound`` (None: never)."""
    return next((s for s, v in zip(steps, values) if v <= bound), None)


def steps_cell(curves: list[Curve], bound: float) -> str:
    """``median (min–max)`` of the seeds' first steps within ``bound``; seeds that never get
    there are counted as ``not by N``."""
    reached = [first_step_within(c.steps, c.values, bound) for c in curves if c.steps]
    if not reached:
        return "—"
    hit = sorted(s for s in reached if s is not None)
    missed = len(reached) - len(hit)
    last = max(c.steps[-1] for c in curves if c.steps)
    if not hit:
        return f"not by {last}"
    cell = f"{statistics.median(hit):.0f}" + (f" ({hit[0]}–{hit[-1]})" if len(hit) > 1 else "")
    return cell + (f"; {missed} of {len(reached)} seeds not by {last}" if missed else "")


def write_curves_csv(curves: list[Curve], group: list[str], metric: str, out: Path) -> Path:
    """Every curve's points as rows: the row keys, the seed, the step and ``metric``."""
    with atomic_open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*group, "seed", "step", metric])
        results = [c.result for c in curves]
        for c in curves:
            keys = [str(row_value(c.result, k, results)) for k in group]
            seed = c.result.get("config", {}).get("seed")
            w.writerows([*keys, seed, s, f"{v:.6g}"] for s, v in zip(c.steps, c.values))
    return out


def add_steps_column(spec: CurveSpec, curves: list[Curve], group: list[str], header: list[str],
                     rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The table with ``steps to <target> + δ`` before its ``overrides`` column: each measured
    row's cell from the curves of its runs (rows are matched on their ``group`` keys; published
    rows, which have no curves, get an empty cell)."""
    target = target_value(spec, curves)
    if target is None:
        return header, rows
    results = [c.result for c in curves]
    by_key: dict[tuple, list[Curve]] = {}
    for c in curves:
        by_key.setdefault(tuple(str(row_value(c.result, k, results)) for k in group), []).append(c)
    at = header.index("overrides") if "overrides" in header else len(header)
    label = f"steps to {target:.3f} + {spec.delta:g}"
    out = []
    for row in rows:
        mine = by_key.get(tuple(row[:len(group)]))
        out.append([*row[:at], steps_cell(mine, target + spec.delta) if mine else "", *row[at:]])
    return [*header[:at], label, *header[at:]], out
