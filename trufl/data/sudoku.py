"""Sudoku boards (DESIGN.md §5): valid 9×9 grids from randomised backtracking.

A board is 81 tokens (row-major), category k standing for digit k + 1.
"""

from __future__ import annotations

import numpy as np
import torch


def random_board(rng: np.random.Generator) -> np.ndarray:
    """A uniformly-seeded random valid board: fill cells in order, trying digits in
    a random order and backtracking on dead ends. Returns ``[9, 9]`` in 0..8."""
    board = np.full((9, 9), -1, dtype=np.int64)
    rows = np.zeros((9, 9), dtype=bool)
    cols = np.zeros((9, 9), dtype=bool)
    boxes = np.zeros((9, 9), dtype=bool)
    orders = [rng.permutation(9) for _ in range(81)]
    position = [0] * 81
    cell = 0
    while cell < 81:
        r, c = divmod(cell, 9)
        b = 3 * (r // 3) + c // 3
        if board[r, c] >= 0:  # coming back: free the digit we had placed
            d = board[r, c]
            rows[r, d] = cols[c, d] = boxes[b, d] = False
            board[r, c] = -1
        placed = False
        while position[cell] < 9:
            d = orders[cell][position[cell]]
            position[cell] += 1
            if not (rows[r, d] or cols[c, d] or boxes[b, d]):
                board[r, c] = d
                rows[r, d] = cols[c, d] = boxes[b, d] = True
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
    return board


def boards_are_valid(x: torch.Tensor) -> torch.Tensor:
    """``[n]`` bool for boards ``x [n, 81]`` (or ``[n, 9, 9]``): every row, column and
    3×3 box holds each digit exactly once."""
    grid = x.reshape(-1, 9, 9)
    if (grid < 0).any() or (grid > 8).any():
        ok = ((grid >= 0) & (grid <= 8)).flatten(1).all(-1)
        grid = grid.clamp(0, 8)
    else:
        ok = torch.ones(grid.shape[0], dtype=torch.bool, device=x.device)
    boxes = grid.reshape(-1, 3, 3, 3, 3).transpose(2, 3).reshape(-1, 9, 9)
    for units in (grid, grid.transpose(1, 2), boxes):
        counts = torch.nn.functional.one_hot(units, 9).sum(-2)  # [n, 9 units, 9 digits]
        ok &= (counts == 1).flatten(1).all(-1)
    return ok
