"""Tables from results.json files: one row per group of runs, mean ± std over seeds.

    python scripts/tables.py multirun/toy_table --group flow recon_weight \
        --metrics test/nll_bits test/kl_bits test/recon_bits test/determinism --widths

Reads only results.json (never the loggers). Writes markdown to stdout and,
with --csv, a CSV file. ``seeds`` counts distinct seeds among a row's finished runs;
``status`` is ``ok`` or the count of failed/interrupted runs (their results.json
has no metrics). Unknown metric names are an error; a row that pools runs which
differ in a config key other than the seed is reported on stderr.
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


def status(result: dict) -> str:
    """``finished``, ``failed`` or ``interrupted`` (files from before ``status`` existed: by their content)."""
    return result.get("status") or ("finished" if "metrics" in result else "interrupted" if result.get("interrupted") else "failed")


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


IGNORED_KEYS = {"seed", "ckpt_path"}  # what a row averages over, and where a run resumed from


def _flat(node, prefix: str = ""):
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
    counts = {s: sum(status(r) == s for r in runs) for s in ("finished", "failed", "interrupted")}
    if counts["finished"] == len(runs):
        return "ok"
    return ", ".join(f"{n} {'ok' if s == 'finished' else s}" for s, n in counts.items() if n)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def build_table(
    results: list[dict], group: list[str], metrics: list[str], widths: bool = False, digits: dict | None = None
) -> tuple[list[str], list[list[str]]]:
    """One row per group: distinct seeds, status, then each metric's mean ± std over the
    group's finished runs (failed and interrupted runs are counted in ``status``)."""
    digits = digits or {}
    check_metrics([r for r in results if status(r) == "finished"], metrics)
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault(tuple(group_value(r, k) for k in group), []).append(r)
    header = [*group, "seeds", "status", *metrics] + (["max |mass − p|", "box mass (seed mean)"] if widths else [])
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        name = ", ".join(f"{k}={v}" for k, v in zip(group, key))
        differences = pooled_differences(runs)
        if differences:
            warn(f"row {name} pools runs that differ in " + "; ".join(f"{k} {v}" for k, v in differences.items())
                 + " (add the key to the grouping)")
        finished = [r for r in runs if status(r) == "finished"]
        if len(finished) > seeds(finished):
            warn(f"row {name} has {len(finished)} finished runs but {seeds(finished)} distinct seeds")
        row = [str(v) for v in key] + [str(seeds(finished)), status_cell(runs)]
        row += [NOT_APPLICABLE if finished and all(not_applicable(r, m) for r in finished)
                else fmt([value(r, m) for r in finished], digits.get(m, 3)) for m in metrics]
        if widths:
            w = [r["dequantiser"].get("box_mass") for r in finished]  # each box's mass under the standard logistic
            probs = finished[0]["dataset"].get("probs") if finished else None
            if w and all(w) and probs:
                worst = max(max(abs(a - p) for a, p in zip(ws, probs)) for ws in w)
                mean = [statistics.mean(col) for col in zip(*w)]
                row += [f"{worst:.3f}", " ".join(f"{m:.3f}" for m in mean)]
            else:
                row += ["—", "—"]
        rows.append(row)
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; a ``|`` inside a cell (``max |mass − p|``) is escaped so it stays one cell."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


#: LaTeX for the characters our cells and labels use (TeX specials escaped, symbols in math mode)
LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
         "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "−": r"$-$",
         "—": "---", "–": "--", "×": r"$\times$", "≤": r"$\le$", "≥": r"$\ge$", "|": r"\textbar{}"}


def tex(cell: str) -> str:
    return "".join(LATEX.get(ch, ch) for ch in cell)


def latex(header: list[str], rows: list[list[str]], caption: str = "", label: str = "") -> str:
    """A booktabs table (``\\usepackage{booktabs}``): the row keys left-aligned, numbers
    right-aligned; published rows (``status`` = ``published``) below a rule of their own."""
    status_col = header.index("status") if "status" in header else None
    keys = status_col - 1 if status_col else 1  # the grouping columns come before seeds, status
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{tex(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{'l' * keys}{'r' * (len(header) - keys)}}}", r"\toprule",
              " & ".join(tex(h) for h in header) + r" \\", r"\midrule"]
    ruled = False
    for row in rows:
        if status_col is not None and row[status_col] == "published" and not ruled:
            lines.append(r"\midrule")
            ruled = True
        lines.append(" & ".join(tex(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
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
    print(markdown(header, rows))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            csv.writer(f).writerows([header, *rows])


if __name__ == "__main__":
    main()
