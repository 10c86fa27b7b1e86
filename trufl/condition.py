"""What a task tells the prior about each object besides its tokens, and the board
geometry that the Sudoku task and the grid-aware priors share.

A batch is ``{"x": [B, T], "mask": [B, T], "condition": Condition}`` (the condition is
absent for unconditional tasks). Priors that read a field say so in their docstring
and fail by name when it is missing; every other prior models z unconditionally.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class Condition:
    """Per-object conditioning, every field ``[B, ...]`` (rows = objects).

    adjacency: ``[B, T, T]`` bool, elements that constrain each other (a graph's edges;
        a Sudoku's cells sharing a row, column or box).
    """

    adjacency: Tensor | None = None

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @property
    def num_rows(self) -> int | None:
        """Objects the condition describes (None when it holds nothing)."""
        tensors = self._tensors()
        return next(iter(tensors.values())).shape[0] if tensors else None

    def __getitem__(self, rows: Tensor | slice) -> Condition:
        """The condition of objects ``rows`` (an index tensor, mask or slice)."""
        return replace(self, **{k: v[rows] for k, v in self._tensors().items()})

    def cycle(self, num: int) -> Condition:
        """``num`` rows, the objects repeated in order (for ``num`` prior samples)."""
        n = self.num_rows
        if n is None:
            return self
        return self[torch.arange(num, device=next(iter(self._tensors().values())).device) % n]

    def to(self, device, **kwargs) -> Condition:
        """On ``device`` (Lightning moves batches with this)."""
        return replace(self, **{k: v.to(device, **kwargs) for k, v in self._tensors().items()})

    def require_adjacency(self, who: str) -> Tensor:
        if self.adjacency is None:
            raise ValueError(f"{who} reads the batch's graph: the task must give a Condition with 'adjacency' "
                             "(graph colouring, Sudoku)")
        return self.adjacency


def adjacency_of(condition: Condition | None, who: str) -> Tensor:
    """``condition.adjacency``, or a clear error naming ``who`` needs it."""
    return (condition or Condition()).require_adjacency(who)


def grid_units(side: int, box: int) -> Tensor:
    """``[side², 3]`` long: each cell's row, column and box as unit ids in ``0..3·side``
    (rows ``0..side-1``, columns ``side..2·side-1``, boxes after), cells in row-major order.

    The one place the board's geometry is written: the Sudoku task (validity, constraint
    graph) and the priors that are told each cell's row, column and box all read it."""
    if side % box:
        raise ValueError(f"box={box} must divide side={side}")
    cell = torch.arange(side * side)
    row, col = cell // side, cell % side
    boxes = (row // box) * (side // box) + col // box
    return torch.stack([row, side + col, 2 * side + boxes], dim=-1)
