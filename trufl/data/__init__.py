"""Tasks: each a LightningDataModule yielding ``{"x": [B, T], "mask": [B, T]}``."""

from .text import TextDataModule
from .toy import ToyDataModule

__all__ = ["ToyDataModule", "TextDataModule"]
