"""Evaluate a checkpoint on a split, with ``eval.*`` (and a few other) overrides:

    trufl-eval <run dir>                               # = python -m trufl.eval; the test split
    trufl-eval <run dir>/checkpoints/best.ckpt --split val
    trufl-eval <run dir> eval.iw_samples=256 eval.log_z_samples=4096

Runs the same Lightning test (or validate) loop as the training job, from the same seed
(trufl.run.evaluate), so ``last.ckpt`` without overrides repeats the run's own numbers.
Writes ``<run>/eval/<split>[-<overrides>].json`` (or --out); the run's results.json is
left as it is. Overrides use Hydra's syntax; only keys that leave the model as it is can
change: eval.*, trainer.*, dataset.batch_size / num_workers / data_dir, seed, num_threads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# the work (torch, Lightning, the tasks) is imported in main(), so --help answers at once


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="trufl-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a run directory (its checkpoints/last.ckpt) or a .ckpt file")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. eval.iw_samples=64 (Hydra syntax)")
    ap.add_argument("--split", choices=("val", "test"), default="test", help="default: test")
    ap.add_argument("--out", type=Path, help="result file (default: <run>/eval/<split>[-<overrides>].json)")
    ap.add_argument("--config", type=Path, metavar="RESULTS_JSON",
                    help="the run's results.json, for checkpoints written before they carried their config")
    ap.add_argument("--trust", action="store_true", help="load with weights_only=False (a checkpoint you trust)")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_intermixed_args(argv)  # options before, between or after the overrides
    from .checkpoint import CheckpointError, run_dir_of
    from .config import ConfigError
    from .evaluation import quiet_lightning, report, run_eval

    quiet_lightning()
    try:
        result = run_eval(args.checkpoint, args.split, args.overrides, args.config, args.out, weights_only=not args.trust)
    except (CheckpointError, ConfigError) as err:
        sys.exit(f"trufl-eval: {err}")
    report(result, _read_json(run_dir_of(Path(result["checkpoint"])) / "results.json"))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # no results.json (a bare checkpoint) or a half-written one: nothing to compare
        return None


if __name__ == "__main__":
    main()
