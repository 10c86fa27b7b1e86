"""The task protocol and the loader plumbing every task shares.

A task is a LightningDataModule that also implements :class:`Task`: the model,
the metrics and generation talk to tasks only through it.
"""

from __future__ import annotations

import abc
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ..condition import Condition
from ..resume import LoaderPosition, ResumableLoader
from ..settings import Count, NonNegativeInt, Seed, checked


class SamplingGroup(NamedTuple):
    """Objects generated together at test time: ``num`` objects of ``length`` tokens,
    conditioned on ``condition`` (``num`` rows, e.g. each test graph's adjacency; None
    for unconditional tasks)."""

    num: int
    length: int
    condition: Condition | None = None


class Task(abc.ABC):
    """What a task provides besides Lightning's loaders (docs/design.md, Tasks).

    Batches are ``{"x": [B, T] categories, "mask": [B, T] bool}``, plus
    ``"condition"`` (a :class:`~trufl.condition.Condition`) for tasks whose objects
    come with a structure the prior is told (graphs, boards).
    """

    #: K, the number of categories
    num_categories: int
    #: tokens per object (the largest, for tasks with objects of several sizes)
    seq_len: int

    def sampling_groups(self, num_samples: int) -> list[SamplingGroup]:
        """What to generate at test time. Default: ``num_samples`` unconditional
        sequences of ``seq_len``; constrained tasks generate one object per test
        object instead (and ignore ``num_samples``)."""
        return [SamplingGroup(num_samples, self.seq_len)] if num_samples > 0 else []

    def is_valid(self, x: Tensor, condition: Condition | None = None) -> Tensor:
        """``[n]`` bool for generated objects ``x [n, T]`` (−1 marks a token outside every
        support). Default: every token decodes to a category; constrained tasks
        add their constraints."""
        return (x >= 0).all(-1)

    def render(self, tokens: list[int]) -> str | list[int]:
        """One generated object for ``results.json`` (text tasks return a string)."""
        return tokens

    @abc.abstractmethod
    def describe(self) -> dict:
        """Facts about the data for ``results.json`` (sizes, optimum, source)."""


class TokenWindows(Dataset):
    """Fixed-length windows over a token array; the last partial window is
    padded and masked rather than dropped, so every token is counted once.

    Items: ``{"x": LongTensor [T], "mask": BoolTensor [T]}``.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int):
        n = len(tokens)
        num = -(-n // seq_len)
        padded = np.zeros(num * seq_len, dtype=np.int64)
        padded[:n] = tokens
        mask = np.zeros(num * seq_len, dtype=bool)
        mask[:n] = True
        self.x = torch.from_numpy(padded.reshape(num, seq_len))
        self.mask = torch.from_numpy(mask.reshape(num, seq_len))

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "mask": self.mask[i]}

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())


class SplitDataModule(pl.LightningDataModule, Task):
    """Train/val/test datasets built once by :meth:`build_splits` and served by the
    same loaders. Token tasks implement :meth:`build` (token arrays, windowed by
    :class:`TokenWindows`); tasks with objects of several sizes override
    :meth:`build_splits`, :meth:`batch_sampler` and :meth:`collate`."""

    num_categories: int

    @checked("dataset")
    def __init__(self, seq_len: Count, batch_size: Count, data_dir: str, num_workers: NonNegativeInt = 0, seed: Seed = 0):
        super().__init__()
        self.seq_len, self.batch_size, self.num_workers, self.seed = seq_len, batch_size, num_workers, seed
        self.data_dir = Path(data_dir).expanduser()
        self.splits: dict[str, Dataset] = {}
        self._train_position: LoaderPosition | None = None  # the training stream's place (trufl.resume)
        self._restored_position: dict | None = None

    def build(self) -> dict[str, np.ndarray]:
        """Token arrays for ``train``, ``val`` and ``test`` (cached by subclasses)."""
        raise NotImplementedError

    def build_splits(self) -> dict[str, Dataset]:
        return {name: TokenWindows(tokens, self.seq_len) for name, tokens in self.build().items()}

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.build_splits()

    def batch_sampler(self, split: str, shuffle: bool) -> Sampler | None:
        """A sampler of whole batches (e.g. grouped by object size), or None for
        plain batches of ``batch_size``."""
        return None

    def collate(self, items: list, generator: torch.Generator | None = None) -> dict:
        """Stack items into a batch (subclasses add conditioning, e.g. a graph);
        ``generator`` is the seeded training generator, None for evaluation."""
        return default_collate(items)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Evaluation loaders are plain; the training loader is a :class:`~trufl.resume.ResumableLoader`
        with its own seeded generator (shuffling, collation, worker seeds), so no training draw
        comes from the global stream and its place is saved in checkpoints."""
        self.setup()
        batches = self.batch_sampler(split, shuffle)
        if not shuffle:
            common = dict(num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          collate_fn=partial(self.collate, generator=None))
            if batches is not None:
                return DataLoader(self.splits[split], batch_sampler=batches, **common)
            return DataLoader(self.splits[split], batch_size=self.batch_size, **common)
        if self._train_position is None:
            self._train_position = LoaderPosition(torch.Generator().manual_seed(self.seed))
        position = self._train_position
        if self._restored_position is not None:  # a resume at an epoch's end: Lightning does not restore loaders
            position.load_state_dict(self._restored_position)
            self._restored_position = None
        common = dict(num_workers=self.num_workers, persistent_workers=self.num_workers > 0, generator=position.generator,
                      collate_fn=partial(self.collate, generator=position.generator), position=position)
        if batches is not None:
            return ResumableLoader(self.splits[split], batch_sampler=batches, **common)
        return ResumableLoader(self.splits[split], batch_size=self.batch_size, shuffle=True, **common)

    def state_dict(self) -> dict:
        return {"train_position": self._train_position.state_dict()} if self._train_position is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored_position = state_dict.get("train_position")

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def describe(self) -> dict:
        self.setup()
        return {"num_categories": self.num_categories, **{f"{k}_tokens": v.num_tokens for k, v in self.splits.items()}}
