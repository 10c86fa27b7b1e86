"""Animations of each category's support over training, drawn from runs' support
histories (``callbacks.support_history``, on for ``experiment=toy``); no model needed.

    python scripts/animate_toy.py outputs/2026-11-24/12-00-00 [RUN_DIR ...] --out experiments/results/toy

Per run: ``<name>.gif`` (one frame per recorded step) and ``<name>.png`` (the last
frame). Without ``--out`` they go into the run directory as ``support.gif/png``; with
it, ``<name>`` says what the run is: ``trufl_d1_r10`` (dequantiser, flow.dim, recon_weight).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from trufl.animation import animate, flow_name  # noqa: E402
from trufl.history import read_history  # noqa: E402

def run_name(meta: dict) -> str:
    """``trufl_d1_r10``: dequantiser, latent dimensions and recon_weight of a history's run."""
    return f"{flow_name(meta).lower()}_d{meta['dim']}_r{meta['recon_weight']:g}"


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
        if args.out is None:
            out, name = run, "support"
        else:
            out, name = args.out, run_name(meta)
            base, n = name, 1
            while name in taken:  # e.g. seeds of one setting: keep every run's pictures
                n += 1
                name = f"{base}_{n}"
            taken.add(name)
        gif, png = animate(run, out, name, fps=args.fps)
        print(f"{run}: {gif} ({gif.stat().st_size / 1e6:.2f} MB), {png}")
        written.append((gif, png))
    return written


if __name__ == "__main__":
    main()
