"""A table (a header and rows of cells, all strings) as markdown, LaTeX (booktabs) or CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from ..atomic import atomic_open


def without(header: list[str], rows: list[list[str]], column: str) -> tuple[list[str], list[list[str]]]:
    """The table without ``column`` (the long ``overrides`` stay in the CSV only)."""
    if column not in header:
        return header, rows
    i = header.index(column)
    return header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows]


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


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with atomic_open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
