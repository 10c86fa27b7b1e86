"""Learning curves of a sweep: a metric against the training step, one line per run,
read from each run's CSV log (``logger=csv``: ``<run>/csv/metrics.csv``).

    python scripts/plot_curves.py multirun/experiments/language_modelling/runs \\
        --metric val/nll_bits --group flow --out curves.png
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import NamedTuple

from ..extras import require
from .runs import group_value, status
from ..atomic import savefig_atomic


def read_curve(run: Path, metric: str) -> tuple[list[int], list[float]]:
    """(steps done, values) of ``metric`` in a run's CSV log (rows without it skipped). Inside
    fit a row is logged at the index of the step just done (steps done − 1); the final
    evaluation after fit logs at the number of steps done, so it counts at the run's
    ``global_step`` (results.json), and only where no validation inside fit holds that step
    (the same weights: the in-fit value is the curve's, as the reference code logs it)."""
    results = run / "results.json"
    done = json.loads(results.read_text()).get("global_step") if results.is_file() else None
    curve: dict[int, float] = {}
    with open(run / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get(metric):
                step = int(row["step"]) + 1
                if done and step > done:  # the evaluation after fit
                    curve.setdefault(done, float(row[metric]))
                else:
                    curve[step] = float(row[metric])
    return list(curve), list(curve.values())


#: line style per configuration (colour is per flow, so one method's configurations share a colour)
CONFIGURATION_STYLES = {"tuned": "-", "shared": "-", "paper": "--", "support-matched": ":"}


class Line(NamedTuple):
    """One curve of a figure: its points, legend label, line style and colour (None: the cycle's)."""

    steps: list[int]
    values: list[float]
    label: str
    style: str = "-"
    color: str | None = None


def tail_limits(lines: list[Line], hlines: dict[str, float]) -> tuple[float, float]:
    """The zoomed panel's value range: from just under the lowest value to a little above the
    highest target line, so the last decade's differences (hundredths of a bit) are visible."""
    low = min([min(line.values) for line in lines if line.values] + list(hlines.values()))
    high = max(hlines.values())
    pad = max(0.02, 0.1 * (high - low))
    return low - pad, high + 3 * pad


def save_lines(lines: list[Line], ylabel: str, out: Path,
               figsize: tuple[float, float] = (6, 4), legend_size: float | None = None,
               log_steps: bool = False, hlines: dict[str, float] | None = None) -> Path:
    """One figure of :class:`Line` s against the training step, saved to ``out``; ``log_steps``:
    a log-scaled step axis; ``hlines``: labelled horizontal lines (a target), with a second panel
    zoomed onto them."""
    matplotlib = require("matplotlib", "figures", "drawing learning curves")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if hlines else 1
    fig, axes = plt.subplots(1, panels, figsize=(figsize[0] * (1.8 if panels == 2 else 1), figsize[1]), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes[0]):
        for line in lines:
            ax.plot(line.steps, line.values, line.style, color=line.color, marker="o", markersize=2.5,
                    label=line.label if i == 0 else None)
        for label, y in (hlines or {}).items():
            ax.axhline(y, color="grey", ls=":", lw=1, label=label if i == 0 else None)
        if log_steps:
            ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    if hlines:
        axes[0][1].set_ylim(*tail_limits(lines, hlines))
        axes[0][1].set_title("near the target", fontsize=9)
    fig.legend(fontsize=legend_size or 7, loc="outside right upper") if panels == 2 else axes[0][0].legend(fontsize=legend_size)
    savefig_atomic(fig, out, dpi=120)
    plt.close(fig)
    return out


def run_lines(runs: list[Path], metric: str, group: list[str]) -> list[Line]:
    """One line per run, labelled by ``group`` (prefixed by the run's configuration when the runs
    have more than one): colour per flow, style per configuration; an unfinished run's label says
    where it stopped."""
    results = [json.loads((run / "results.json").read_text()) for run in runs]
    configurations = {group_value(r, "configuration") for r in results}
    keys = (["configuration"] if len(configurations) > 1 and "configuration" not in group else []) + list(group)
    flows = sorted({str(group_value(r, "flow")) for r in results})
    colours = {flow: f"C{i % 10}" for i, flow in enumerate(flows)}
    lines = []
    for run, result in zip(runs, results):
        steps, values = read_curve(run, metric)
        configuration = str(group_value(result, "configuration"))
        label = " ".join(str(group_value(result, k)) for k in keys)
        if values:
            label += f" ({values[-1]:.3f}" + ("" if status(result) == "finished" else f" at {steps[-1]}, {status(result)}") + ")"
        else:
            label += f" (no validation yet, {status(result)})"
        lines.append(Line(steps, values, label, CONFIGURATION_STYLES.get(configuration, "-"), colours[str(group_value(result, "flow"))]))
    return lines


def plot_curves(root: Path, metric: str, group: list[str], out: Path, log_steps: bool = False,
                hlines: dict[str, float] | None = None) -> Path:
    """One line per run under ``root`` (see :func:`run_lines`), saved to ``out`` (``log_steps``,
    ``hlines``: see :func:`save_lines`)."""
    runs = sorted(p.parent for p in root.rglob("results.json") if (p.parent / "csv" / "metrics.csv").is_file())
    if not runs:
        raise SystemExit(f"no run with results.json and csv/metrics.csv under {root} (run with logger=csv)")
    return save_lines(run_lines(runs, metric, group), metric, out, log_steps=log_steps, hlines=hlines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path)
    ap.add_argument("--metric", default="val/nll_bits")
    ap.add_argument("--group", nargs="+", default=["flow"])
    ap.add_argument("--out", type=Path, default=Path("curves.png"))
    args = ap.parse_args(argv)
    print(f"written: {plot_curves(args.root, args.metric, args.group, args.out)}")


if __name__ == "__main__":
    main()
