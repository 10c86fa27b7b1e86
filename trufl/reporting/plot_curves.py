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

from .runs import group_value
from ..atomic import savefig_atomic


def read_curve(run: Path, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``metric`` in a run's CSV log (rows without it skipped)."""
    steps, values = [], []
    with open(run / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get(metric):
                steps.append(int(row["step"]) + 1)  # logged after the step: count steps done
                values.append(float(row[metric]))
    return steps, values


def save_lines(lines: list[tuple[list[int], list[float], str, str]], ylabel: str, out: Path,
               figsize: tuple[float, float] = (6, 4), legend_size: float | None = None) -> Path:
    """One figure of ``(steps, values, label, line style)`` lines against the training step, saved to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    for steps, values, label, style in lines:
        ax.plot(steps, values, style, marker="o", label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    savefig_atomic(fig, out, dpi=120)
    plt.close(fig)
    return out


def plot_curves(root: Path, metric: str, group: list[str], out: Path) -> Path:
    """One line per run under ``root`` (labelled by ``group``), saved to ``out``."""
    runs = sorted(p.parent for p in root.rglob("results.json") if (p.parent / "csv" / "metrics.csv").is_file())
    if not runs:
        raise SystemExit(f"no run with results.json and csv/metrics.csv under {root} (run with logger=csv)")
    lines = []
    for run in runs:
        result = json.loads((run / "results.json").read_text())
        steps, values = read_curve(run, metric)
        label = " ".join(str(group_value(result, k)) for k in group)
        lines.append((steps, values, f"{label} ({values[-1]:.3f})" if values else label, "-"))
    return save_lines(lines, metric, out)


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
