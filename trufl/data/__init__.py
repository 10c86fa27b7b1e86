"""Tasks: each a LightningDataModule implementing :class:`~trufl.data.base.Task`, yielding
``{"x": [B, T], "mask": [B, T]}`` batches (plus ``"condition"``, a
:class:`~trufl.condition.Condition`, where objects come with a structure).

The names below are imported when first used, so the corpus readers
(:mod:`trufl.data.corpora`) and the caches load without torch and Lightning."""

from __future__ import annotations

import importlib

#: exported name -> the module defining it
_EXPORTS = {
    "Task": "base", "SamplingGroup": "base", "ToyDataModule": "toy", "TextDataModule": "text",
    "SetDataModule": "sets", "GraphColouringDataModule": "graphs", "SudokuDataModule": "sudoku",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
