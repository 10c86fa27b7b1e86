"""Tasks: each a LightningDataModule yielding ``{"x": [B, T], "mask": [B, T]}``."""

from .graphs import GraphColouringDataModule
from .sets import SetDataModule
from .sudoku import SudokuDataModule
from .text import TextDataModule
from .toy import ToyDataModule

__all__ = ["ToyDataModule", "TextDataModule", "SetDataModule", "GraphColouringDataModule", "SudokuDataModule"]
