"""Sudoku boards (docs/design.md, Tasks): valid 9×9 grids from randomised backtracking.

A board is 81 tokens (row-major), category k standing for digit k + 1.
"""

from __future__ import annotations

import numpy as np
import torch

from ..condition import Condition, grid_units
from ..settings import Count, NonNegativeInt, Seed, checked
from .base import SamplingGroup, SplitDataModule
from .cache import cache_key, generate_in_chunks, load_or_build

#: each cell's row, column and box as unit ids (rows 0-8, columns 9-17, boxes 18-26)
UNITS = grid_units(9, 3)


def random_board(rng: np.random.Generator) -> np.ndarray:
    """A uniformly-seeded random valid board: fill cells in order, trying digits in
    a random order and backtracking on dead ends. Returns ``[9, 9]`` in 0..8."""
    board = np.full(81, -1, dtype=np.int64)
    used = np.zeros((27, 9), dtype=bool)  # [unit, digit]: the digit is in that row/column/box
    units = UNITS.numpy()
    orders = [rng.permutation(9) for _ in range(81)]
    position = [0] * 81
    cell = 0
    while cell < 81:
        if board[cell] >= 0:  # coming back: free the digit we had placed
            used[units[cell], board[cell]] = False
            board[cell] = -1
        placed = False
        while position[cell] < 9:
            d = orders[cell][position[cell]]
            position[cell] += 1
            if not used[units[cell], d].any():
                board[cell] = d
                used[units[cell], d] = True
                placed = True
                break
        if placed:
            cell += 1
        else:  # dead end: reshuffle this cell for later and step back
            orders[cell] = rng.permutation(9)
            position[cell] = 0
            cell -= 1
            if cell < 0:
                raise RuntimeError("backtracking exhausted (cannot happen for an empty 9×9 grid)")
    return board.reshape(9, 9)


def generate_boards(seed: int, count: int) -> list[np.ndarray]:
    """``count`` boards ``[81]`` from one seeded generator (a chunk of a split)."""
    rng = np.random.default_rng(seed)
    return [random_board(rng).reshape(-1) for _ in range(count)]


def boards_are_valid(x: torch.Tensor) -> torch.Tensor:
    """``[n]`` bool for boards ``x [n, 81]`` (or ``[n, 9, 9]``): every row, column and
    3×3 box holds each digit exactly once."""
    cells = x.reshape(-1, 81)
    ok = ((cells >= 0) & (cells <= 8)).all(-1)
    digits = torch.nn.functional.one_hot(cells.clamp(0, 8), 9).float()  # [n, 81, 9]
    members = torch.nn.functional.one_hot(UNITS.to(x.device), 27).sum(1).float().T  # [27 units, 81 cells]
    counts = members @ digits  # [n, 27 units, 9 digits]
    return ok & (counts == 1).flatten(1).all(-1)


def constraint_graph() -> torch.Tensor:
    """``[81, 81]`` bool: cells that share a row, a column or a 3×3 box.

    A Sudoku board is a 9-colouring of this graph, so the graph-attention
    coupling prior (``prior=graph_coupling``) models boards with no cell
    positions at all: only which cells constrain which."""
    same = (UNITS[:, None, :] == UNITS[None, :, :]).any(-1)
    return same & ~torch.eye(81, dtype=torch.bool)


class SudokuDataModule(SplitDataModule):
    """Valid 9×9 boards as 81 tokens (K = 9); every batch's condition holds the
    constraint graph as ``adjacency`` so a graph-aware prior can read it.

    Args:
        train_size, val_size, test_size: boards per split.
        num_workers: DataLoader worker processes (0: batches are loaded in the main process).
        generation_workers: processes generating boards (chunks are seeded, so the
            boards do not depend on it).
    """

    @checked("dataset")
    def __init__(
        self,
        train_size: Count = 10000,
        val_size: Count = 500,
        test_size: Count = 500,
        batch_size: Count = 32,
        data_dir: str = "~/.cache/trufl",
        num_workers: NonNegativeInt = 0,
        seed: Seed = 0,
        generation_workers: Count = 2,
    ):
        super().__init__(81, batch_size, data_dir, num_workers, seed)
        self.generation_workers = generation_workers
        self.num_categories = 9
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.adjacency = constraint_graph()

    def build(self) -> dict[str, np.ndarray]:
        key = cache_key(sizes=self.sizes, seed=self.seed, v=2)

        def generate():
            out = {}
            for i, (split, n) in enumerate(self.sizes.items()):
                boards = generate_in_chunks(generate_boards, n, self.seed * 10 + i, self.generation_workers, f"generating {n} {split} boards")
                out[split] = np.concatenate(boards) if boards else np.zeros(0, np.int64)
            return out

        return load_or_build(self.data_dir / "sudoku" / f"{key}.npz", generate)

    def collate(self, items: list[dict], generator=None) -> dict:
        batch = super().collate(items)
        batch["condition"] = Condition(adjacency=self.adjacency.expand(len(items), 81, 81))
        return batch

    def sampling_groups(self, num_samples: int = 0) -> list[SamplingGroup]:
        """One board per test board, all conditioned on the (fixed) constraint graph."""
        self.setup()
        n = len(self.splits["test"])
        return [SamplingGroup(n, 81, Condition(adjacency=self.adjacency.expand(n, 81, 81)))]

    def is_valid(self, x: torch.Tensor, condition: Condition | None = None) -> torch.Tensor:
        return boards_are_valid(x)
