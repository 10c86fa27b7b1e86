"""Draw generated objects of a finished constrained-generation run, constraint
violations in red: graph colourings (one per test graph, conditioned on it) or
Sudoku boards.

    python scripts/plot_samples.py multirun/experiments/graph_colouring_tiny/runs/0_trufl_graph_colouring_tiny
    python scripts/plot_samples.py <run dir> --num 12 --out colourings.png

Reads the run's checkpoint (last.ckpt, which carries the run's config; trufl.load), samples
with the same rejection rule as the test metrics (``eval.max_tries``) and writes
``<run dir>/samples.png`` unless --out is given.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..extras import require

matplotlib = require("matplotlib", "figures", "drawing samples")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import torch  # noqa: E402

from ..api import load  # noqa: E402
from ..checkpoint import CheckpointError, checkpoint_file, run_dir_of  # noqa: E402
from ..atomic import savefig_atomic  # noqa: E402
from ..condition import Condition  # noqa: E402
from ..sampling import sample_with_rejection  # noqa: E402

if TYPE_CHECKING:
    from ..data.base import Task
    from ..model import LikelihoodModule

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f", "#bab0ac"]


def load_run(run: Path, config: Path | None = None) -> tuple[Task, LikelihoodModule]:
    """The run's datamodule (set up) and trained model (eval mode, CPU), from the checkpoint
    alone (:func:`trufl.load`; ``config``: the run's results.json, for checkpoints written
    before they carried their config)."""
    try:
        loaded = load(run, config=config)
    except CheckpointError as err:
        sys.exit(str(err))
    loaded.task.setup()
    return loaded.task, loaded.module


def draw_graph(ax, colours: torch.Tensor, adjacency: torch.Tensor) -> None:
    n = len(colours)
    angle = torch.arange(n) * 2 * math.pi / n
    xy = torch.stack([angle.cos(), angle.sin()], -1)
    for i, j in adjacency.triu(1).nonzero().tolist():
        clash = colours[i] == colours[j] or colours[i] < 0
        ax.plot(*xy[[i, j]].T, color="#d62728" if clash else "#bbbbbb", lw=2.2 if clash else 1, zorder=1)
    face = [PALETTE[c] if c >= 0 else "black" for c in colours.tolist()]
    ax.scatter(*xy.T, c=face, s=90, edgecolors="black", zorder=2)


def draw_board(ax, board: torch.Tensor, adjacency: torch.Tensor) -> None:
    clash = ((board[:, None] == board[None, :]) & adjacency).any(-1) | (board < 0)
    for cell in range(81):
        r, c = divmod(cell, 9)
        if clash[cell]:
            ax.add_patch(plt.Rectangle((c, 8 - r), 1, 1, color="#f4a6a6"))
        ax.text(c + 0.5, 8.5 - r, str(int(board[cell]) + 1) if board[cell] >= 0 else "·", ha="center", va="center", fontsize=7)
    for k in range(10):
        ax.plot([0, 9], [k, k], color="black", lw=1.5 if k % 3 == 0 else 0.4)
        ax.plot([k, k], [0, 9], color="black", lw=1.5 if k % 3 == 0 else 0.4)
    ax.set_xlim(0, 9)
    ax.set_ylim(0, 9)


def sample(datamodule: Task, model: LikelihoodModule, num: int, seed: int) -> tuple[dict, Condition]:
    """Up to ``num`` objects of the first sampling group, drawn with the test metrics'
    rejection rule: the sampling info (``samples [num, length]``) and their condition."""
    torch.manual_seed(seed)
    num_group, length, condition = datamodule.sampling_groups(num)[0]
    num = min(num_group, num)
    if condition is None or condition.adjacency is None:
        sys.exit("drawing needs a graph-structured task (graph colouring or Sudoku)")
    condition = condition[:num]
    return sample_with_rejection(model.model, num, length, datamodule.is_valid, condition, model.evaluation.max_tries), condition


def draw_samples(objects: list[tuple[torch.Tensor, torch.Tensor]], valid: list[bool], sudoku: bool, title: str,
                 acceptance: float) -> Figure:
    """A grid of the drawn objects (``(tokens, adjacency)`` each; 4 a row), each titled valid or invalid."""
    num = len(objects)
    cols = min(num, 4)
    fig, axes = plt.subplots(math.ceil(num / cols), cols, figsize=(3 * cols, 3 * math.ceil(num / cols)), squeeze=False)
    draw = draw_board if sudoku else draw_graph
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < num:
            draw(ax, *objects[k])
            ax.set_title("valid" if valid[k] else "invalid", color="black" if valid[k] else "#d62728", fontsize=9)
    fig.suptitle(f"{title}: {sum(map(bool, valid))}/{num} valid (rejection, acceptance {acceptance:.2f})", fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished run directory (with checkpoints/last.ckpt) or a checkpoint")
    ap.add_argument("--num", type=int, default=8, help="objects to draw")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="image file (default: <run>/samples.png)")
    ap.add_argument("--config", type=Path, metavar="RESULTS_JSON",
                    help="the run's results.json, for checkpoints written before they carried their config")
    args = ap.parse_args(argv)
    datamodule, model = load_run(args.run, args.config)
    info, condition = sample(datamodule, model, args.num, args.seed)
    valid = datamodule.is_valid(info["samples"], condition).tolist()
    sudoku = info["samples"].shape[1] == 81 and datamodule.num_categories == 9
    objects = list(zip(info["samples"], condition.adjacency))
    run_dir = run_dir_of(checkpoint_file(args.run))
    fig = draw_samples(objects, valid, sudoku, run_dir.name, info["acceptance"])
    out = args.out or run_dir / "samples.png"
    savefig_atomic(fig, out, dpi=110, bbox_inches="tight")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
