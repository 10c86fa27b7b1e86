"""Draw samples from a trained model, for any task:

    trufl-sample <run dir> -n 16                      # = python -m trufl.sample
    trufl-sample <run dir>/checkpoints/best.ckpt -n 8 --seed 1 --out samples/

Objects are drawn from the prior with the test metrics' rejection rule (a draw with a token
outside every support is redrawn, up to eval.max_tries draws per object; trufl.sampling) and
checked by the task: decoded text for language models, the toy's categories, sets,
colourings of test graphs (conditioned on each graph), Sudoku boards. Writes
``samples-n<N>-seed<S>.json`` (objects, validity, the rejection statistics) to
``<run>/samples/`` or --out, and for graphs and boards a picture beside it (``.png``;
constraint violations in red).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# the work (torch, Lightning, the tasks) is imported in main(), so --help answers at once


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="trufl-sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a run directory (its checkpoints/last.ckpt) or a .ckpt file")
    ap.add_argument("-n", "--num", type=int, required=True, help="objects to draw")
    ap.add_argument("--out", type=Path, help="folder for the files (default: <run>/samples/)")
    ap.add_argument("--seed", type=int, default=0, help="default: 0")
    ap.add_argument("--max-tries", type=int, help="draws per object at most (default: the run's eval.max_tries)")
    ap.add_argument("--no-image", action="store_true", help="no picture for graphs and boards")
    ap.add_argument("--config", type=Path, metavar="RESULTS_JSON",
                    help="the run's results.json, for checkpoints written before they carried their config")
    ap.add_argument("--trust", action="store_true", help="load with weights_only=False (a checkpoint you trust)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.num < 1 or (args.max_tries is not None and args.max_tries < 1):
        sys.exit("trufl-sample: -n and --max-tries must be at least 1")
    from .checkpoint import CheckpointError
    from .evaluation import quiet_lightning
    from .samples import report, run_sample

    quiet_lightning()
    try:
        result = run_sample(args.checkpoint, args.num, args.seed, args.out, args.max_tries, args.config,
                            image=not args.no_image, weights_only=not args.trust)
    except CheckpointError as err:
        sys.exit(f"trufl-sample: {err}")
    report(result)


if __name__ == "__main__":
    main()
