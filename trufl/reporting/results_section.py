"""The generated ``Results`` section of docs/results.md, from the committed outputs under
experiments/results/ (written there by ``make reproduce EXP=<name>``).

    python scripts/results_section.py                        # rewrite docs/results.md's results block
    python scripts/results_section.py --check                # exit 1 when the page is out of date
    python scripts/results_section.py --results DIR --readme PATH

One subsection per experiments/*.yaml file: its table (``<name>.md``), the figures
(``<name>_curves.png``, ``<name>_figures/*.png``), the command that made it and the sweep's
wall time on this machine, from ``<name>.json`` (written when the sweep ran). For a table
published before that file existed: the wall time the table itself states, else the sum and
maximum of its runs' ``wall s`` column, else "not recorded". Nothing is estimated.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from pathlib import Path

import yaml

from .readme import block, replace_block
from ..atomic import write_text_atomic
from .repository import EXPERIMENTS, RESULTS, RESULTS_PAGE

BLOCK = "results"
STATED_WALL_TIME = re.compile(r"^Sweep wall time: ([0-9.]+) min\.$", re.M)
MACHINE = "this 2-core CPU"


def title_and_table(md: str) -> tuple[str | None, str]:
    """``(title, table)`` of a published ``<name>.md``: the bold first line and the markdown
    table (the wall-time line is reported separately)."""
    lines = md.strip().splitlines()
    title = lines[0].strip("*") if lines and lines[0].startswith("**") else None
    return title, "\n".join(line for line in lines if line.startswith("|"))


def wall_time_column(path: Path) -> tuple[float, float] | None:
    """``(sum, max)`` in seconds of the measured rows' ``wall s`` cells (mean × seeds per row:
    a row's runs in total), or None without such a column."""
    if not path.is_file():
        return None
    with open(path) as f:
        header, *rows = list(csv.reader(f))
    if "wall s" not in header:
        return None
    col, seeds = header.index("wall s"), header.index("seeds")
    measured = [(float(r[col].split(" ± ")[0]), int(r[seeds])) for r in rows if r[seeds].isdigit() and r[col] not in ("", "—")]
    if not measured:
        return None
    return sum(mean * n for mean, n in measured), max(mean for mean, _ in measured)


def provenance(name: str, results: Path, md: str) -> list[str]:
    """The lines naming the command and the wall time (recorded, stated or summed; never estimated)."""
    record = results / f"{name}.json"
    if record.is_file():
        sweep = json.loads(record.read_text())
        if sweep.get("wall_time_s") is None:  # made in parts: no one sweep's wall time to state
            summed = wall_time_column(results / f"{name}.csv")
            line = f"Command: `{sweep['reproduce']}`. {sweep['note']}"
            return [line + (f" The runs' own wall times sum to {summed[0] / 60:.1f} min." if summed else "")]
        return [f"Command: `{sweep['reproduce']}` (sweep on the `{sweep['launcher']}` launcher, finished "
                f"{sweep['finished_utc']} UTC). Sweep wall time on {MACHINE}: {sweep['wall_time_s'] / 60:.1f} min."
                + (f" {sweep['note']}" if sweep.get("note") else "")]  # e.g. what else the machine was running
    lines = [f"Command: not recorded (made before `make reproduce`); `make reproduce EXP={name}` re-runs it."]
    stated = STATED_WALL_TIME.search(md)
    summed = wall_time_column(results / f"{name}.csv")
    if stated:
        lines.append(f"Sweep wall time on {MACHINE}: {float(stated.group(1)):.1f} min (as the table states).")
    elif summed:
        lines.append(f"Sweep wall time: not recorded; the runs' own wall times sum to {summed[0] / 60:.1f} min "
                     f"(longest row {summed[1] / 60:.1f} min).")
    else:
        lines.append("Sweep wall time: not recorded.")
    return lines


def figures(name: str, results: Path, readme_dir: Path) -> list[str]:
    """The experiment's published figures, linked relative to docs/results.md: its curves at full
    width, then the per-run figures as one line of thumbnails (each opening its animation
    when there is one)."""
    rel = lambda p: Path(os.path.relpath(p, readme_dir)).as_posix()  # noqa: E731
    curves = results / f"{name}_curves.png"
    out = [f"![{curves.stem}]({rel(curves)})"] if curves.is_file() else []
    thumbs = []
    for png in sorted((results / f"{name}_figures").glob("*.png")):
        gif = png.with_suffix(".gif")
        img = f'<img src="{rel(png)}" width="220" alt="{png.stem}" title="{png.stem}">'
        thumbs.append(f'<a href="{rel(gif)}">{img}</a>' if gif.is_file() else img)
    if thumbs:
        out.append(" ".join(thumbs))
    return out


def subsection(spec_path: Path, results: Path, readme_dir: Path) -> str:
    name = spec_path.stem
    spec = yaml.safe_load(spec_path.read_text())
    md_path = results / f"{name}.md"
    if not md_path.is_file():
        return f"### {spec['title']}\n\nNot run yet: `make reproduce EXP={name}`.\n"
    md = md_path.read_text()
    title, table = title_and_table(md)
    parts = [f"### {title or spec['title']}", table, *provenance(name, results, md)]
    drawn = figures(name, results, readme_dir)
    if spec.get("figures") and not (results / f"{name}_figures").is_dir():  # asked for, never published
        drawn.append(f"Figures: none published yet (the `figures` of `experiments/{name}.yaml`; "
                     f"`make reproduce EXP={name}` draws them).")
    parts += drawn
    return "\n\n".join(parts) + "\n"


def section(results: Path = RESULTS, experiments: Path = EXPERIMENTS, readme: Path = RESULTS_PAGE) -> str:
    """The body of docs/results.md's results block: one subsection per experiments/*.yaml."""
    intro = (f"Generated by `python scripts/results_section.py` from `{Path(os.path.relpath(results, readme.parent)).as_posix()}/` "
             "(`make reproduce EXP=<name>` runs a sweep, publishes its table there and rewrites this section). "
             "Rows: mean ± std over seeds; rows marked `published` are the papers' numbers.")
    return "\n".join([intro, "", *(subsection(p, results, readme.parent) for p in sorted(experiments.glob("*.yaml")))])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS, help="the published outputs (default experiments/results)")
    ap.add_argument("--experiments", type=Path, default=EXPERIMENTS, help="the experiment files")
    ap.add_argument("--readme", type=Path, default=RESULTS_PAGE)
    ap.add_argument("--check", action="store_true", help="only compare: exit 1 when the page's block differs")
    args = ap.parse_args(argv)
    body = section(args.results.resolve(), args.experiments.resolve(), args.readme.resolve())
    text = args.readme.read_text()
    if args.check:
        same = block(text, BLOCK) == (body if body.endswith("\n") else body + "\n")
        print("docs/results.md results section is up to date" if same else "docs/results.md results section is out of date")
        sys.exit(0 if same else 1)
    new = replace_block(text, BLOCK, body)
    if new != text:
        write_text_atomic(args.readme, new)
    print(f"{args.readme}: results section {'rewritten' if new != text else 'unchanged'}")


if __name__ == "__main__":
    main()
