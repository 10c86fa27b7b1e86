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

from ..extras import require
from .runs import group_value
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


def save_lines(lines: list[tuple[list[int], list[float], str, str]], ylabel: str, out: Path,
               figsize: tuple[float, float] = (6, 4), legend_size: float | None = None,
               log_steps: bool = False, hlines: dict[str, float] | None = None) -> Path:
    """One figure of ``(steps, values, label, line style)`` lines against the training step, saved
    to ``out``; ``log_steps``: a log-scaled step axis; ``hlines``: labelled horizontal lines
    (a target)."""
    matplotlib = require("matplotlib", "figures", "drawing learning curves")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for steps, values, label, style in lines:
        ax.plot(steps, values, style, marker="o", label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, color="grey", ls=":", lw=1, label=label)
    if log_steps:
        ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    savefig_atomic(fig, out, dpi=120)
    plt.close(fig)
    return out


def plot_curves(root: Path, metric: str, group: list[str], out: Path, log_steps: bool = False,
                hlines: dict[str, float] | None = None) -> Path:
    """One line per run under ``root`` (labelled by ``group``), saved to ``out`` (``log_steps``,
    ``hlines``: see :func:`save_lines`)."""
    runs = sorted(p.parent for p in root.rglob("results.json") if (p.parent / "csv" / "metrics.csv").is_file())
    if not runs:
        raise SystemExit(f"no run with results.json and csv/metrics.csv under {root} (run with logger=csv)")
    lines = []
    for run in runs:
        result = json.loads((run / "results.json").read_text())
        steps, values = read_curve(run, metric)
        label = " ".join(str(group_value(result, k)) for k in group)
        lines.append((steps, values, f"{label} ({values[-1]:.3f})" if values else label, "-"))
    return save_lines(lines, metric, out, log_steps=log_steps, hlines=hlines)


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
