"""A recipe's validation curve against its reference code's (docs/baselines.md): the curve of a run
as a CSV of ``step,val_bits``, and a plot of several such CSVs.

    python -m trufl.reporting.baseline_curves export outputs/train/<run> \\
        experiments/results/baseline_curves/catnf_sets_reference_optimiser.csv
    python -m trufl.reporting.baseline_curves plot experiments/results/baseline_curves/sets.png \\
        "CatNF reference code=experiments/results/baseline_curves/reference_catnf_sets.csv" \\
        "recipe=catnf_sets=experiments/results/baseline_curves/catnf_sets_reference_optimiser.csv"
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from ..atomic import atomic_open

from .plot_curves import Line, read_curve, save_lines


def export_curve(run: Path, out: Path, metric: str = "val/nll_bits") -> list[tuple[int, float]]:
    """The run's ``metric`` at each validation during training (``<run>/csv/metrics.csv``; the
    final re-validation of the same weights after training is left out), written to ``out``."""
    last = json.loads((run / "results.json").read_text())["global_step"]
    points = [(s, v) for s, v in zip(*read_curve(run, metric)) if s <= last]
    with atomic_open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "val_bits"])
        writer.writerows([s, f"{v:.4f}"] for s, v in points)
    return points


def read_points(path: Path) -> tuple[list[int], list[float]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [float(r["val_bits"]) for r in rows]


def plot(curves: dict[str, Path], out: Path, ylabel: str = "validation −ELBO (bits per token)") -> Path:
    """One line per ``label -> CSV`` (dashed where the label names the reference code), saved to ``out``."""
    lines = []
    for label, path in curves.items():
        steps, values = read_points(path)
        style = "--" if "reference code" in label else "-"
        lines.append(Line(steps, values, f"{label} ({values[-1]:.3f} at {steps[-1]})", style))
    return save_lines(lines, ylabel, out, figsize=(7, 4.5), legend_size=7)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="a run's validation curve as step,val_bits")
    exp.add_argument("run", type=Path)
    exp.add_argument("out", type=Path)
    pl = sub.add_parser("plot", help="curves (label=CSV ...) in one figure")
    pl.add_argument("out", type=Path)
    pl.add_argument("curves", nargs="+", help="label=path.csv (a label naming the 'reference code' is drawn dashed)")
    args = ap.parse_args(argv)
    if args.command == "export":
        print(export_curve(args.run, args.out))
    else:
        print(plot(dict(c.rsplit("=", 1) for c in args.curves), args.out))  # labels may hold "="


if __name__ == "__main__":
    main()
