"""Tasks: each a LightningDataModule implementing :class:`~trufl.data.base.Task`, yielding
``{"x": [B, T], "mask": [B, T]}`` batches (plus ``"condition"``, a
:class:`~trufl.condition.Condition`, where objects come with a structure)."""

from .base import SamplingGroup, Task
from .graphs import GraphColouringDataModule
from .sets import SetDataModule
from .sudoku import SudokuDataModule
from .text import TextDataModule
from .toy import ToyDataModule

__all__ = ["Task", "SamplingGroup", "ToyDataModule", "TextDataModule", "SetDataModule", "GraphColouringDataModule", "SudokuDataModule"]
