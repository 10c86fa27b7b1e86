"""Animations of each category's support over training, drawn from runs' support
histories (``callbacks.support_history``, on for ``experiment=toy``); no model needed.

    python scripts/animate_toy.py outputs/2026-11-24/12-00-00 [RUN_DIR ...] --out experiments/results/toy

Per run: ``<name>.gif`` (one frame per recorded step) and ``<name>.png`` (the last
frame). Without ``--out`` they go into the run directory as ``support.gif/png``; with
it, ``<name>`` says what the run is: ``trufl_d1_r10`` (dequantiser, flow.dim, recon_weight;
``trufl_d1_r10_central`` for an overlapping start, flow.init).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..history_format import read_history
from .animation import animate, flow_name


def run_name(meta: dict) -> str:
    """``trufl_d1_r10``: dequantiser, latent dimensions and recon_weight of a history's run, then
    the boxes' start when it is not the grid (``trufl_d1_r10_central``)."""
    start = meta.get("init")
    return f"{flow_name(meta).lower()}_d{meta['dim']}_r{meta['recon_weight']:g}" + (f"_{start}" if start not in (None, "grid") else "")


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``… when taken (e.g. seeds of one setting: keep every run's pictures)."""
    base, n = name, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def main(argv: list[str] | None = None) -> list[tuple[Path, Path]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding support_history.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="one folder for all (named by run); default: each run's own")
    parser.add_argument("--fps", type=int, default=4)
    args = parser.parse_args(argv)
    written, taken = [], set()
    for run in args.runs:
        try:
            meta = read_history(run)["meta"]
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"{run}: {err}") from None
        out, name = (run, "support") if args.out is None else (args.out, unique_name(run_name(meta), taken))
        gif, png = animate(run, out, name, fps=args.fps)
        print(f"{run}: {gif} ({gif.stat().st_size / 1e6:.2f} MB), {png}")
        written.append((gif, png))
    return written

if __name__ == "__main__":
    main()
