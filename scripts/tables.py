"""Tables from results.json files: one row per group of runs, mean ± std over seeds.

    python scripts/tables.py multirun/toy_table --group flow recon_weight \
        --metrics test/nll_bits test/kl_bits test/recon_bits test/determinism --widths

Reads only results.json (never the loggers). Writes markdown to stdout and,
with --csv, a CSV file.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path



def load(root: Path) -> list[dict]:
    files = sorted(root.rglob("results.json"))
    if not files:
        sys.exit(f"no results.json under {root}")
    return [json.loads(f.read_text()) for f in files]


def group_value(result: dict, key: str):
    """A config group's choice (``flow``, ``dataset``: the option's name) or a config value."""
    if key in result.get("choices", {}):
        return result["choices"][key]
    node = result["config"]
    for part in key.split("."):
        node = node[part]
    return node.get("_target_", "").rsplit(".", 1)[-1] if isinstance(node, dict) else node


def value(result: dict, source: str):
    """A number from results.json: ``test/nll_bits`` (a metric) or a dotted path such
    as ``sampling.validity_plain``, ``dataset.optimum_bits``, ``renormalised.test/nll_bits``."""
    if "." not in source:
        return result["metrics"].get(source, result.get(source))
    node = result
    for part in source.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


NOT_APPLICABLE = "n/a"


def not_applicable(result: dict, source: str) -> bool:
    """The model has no such quantity (the categorical baseline's KL, IWBO, log Z…)."""
    name = source.rsplit("/", 1)[-1]
    return name in result.get("not_applicable", []) or (source.startswith("renormalised.") and "log_Z" in result.get("not_applicable", []))


def fmt(values: list, digits: int = 3) -> str:
    """One value, or mean ± std over seeds; ``—`` where a run lacks it."""
    if not values or any(not isinstance(v, (int, float)) or v != v for v in values):
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def build_table(
    results: list[dict], group: list[str], metrics: list[str], widths: bool = False, digits: dict | None = None
) -> tuple[list[str], list[list[str]]]:
    digits = digits or {}
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault(tuple(group_value(r, k) for k in group), []).append(r)
    header = [*group, "seeds", *metrics] + (["max |mass − p|", "box mass (seed mean)"] if widths else [])
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        row = [str(v) for v in key] + [str(len(runs))]
        row += [NOT_APPLICABLE if all(not_applicable(r, m) for r in runs) else fmt([value(r, m) for r in runs], digits.get(m, 3))
                for m in metrics]
        if widths:
            w = [r["dequantiser"].get("box_mass") for r in runs]  # each box's mass under the standard logistic
            probs = runs[0]["dataset"].get("probs")
            if all(w) and probs:
                worst = max(max(abs(a - p) for a, p in zip(ws, probs)) for ws in w)
                mean = [statistics.mean(col) for col in zip(*w)]
                row += [f"{worst:.3f}", " ".join(f"{m:.3f}" for m in mean)]
            else:
                row += ["—", "—"]
        rows.append(row)
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder searched recursively for results.json")
    ap.add_argument("--group", nargs="+", default=["flow", "recon_weight"], help="config keys (or 'flow') to group by")
    ap.add_argument("--metrics", nargs="+", default=["test/nll_bits", "test/kl_bits", "test/recon_bits", "test/determinism"])
    ap.add_argument("--widths", action="store_true", help="add each learned box's prior mass vs dataset.probs")
    ap.add_argument("--csv", type=Path, help="also write the table as CSV")
    args = ap.parse_args(argv)
    header, rows = build_table(load(args.root), args.group, args.metrics, args.widths)
    print(markdown(header, rows))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])


if __name__ == "__main__":
    main()
