"""Shared data plumbing: token windows with masks, cache paths, loaders."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset, default_collate


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


class SplitDataModule(pl.LightningDataModule):
    """A datamodule over three :class:`TokenWindows` splits built by :meth:`build`."""

    num_categories: int

    def __init__(self, seq_len: int, batch_size: int, data_dir: str, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if seq_len < 1:
            raise ValueError(f"dataset.seq_len must be >= 1, got {seq_len}")
        if batch_size < 1:
            raise ValueError(f"dataset.batch_size must be >= 1, got {batch_size}")
        self.seq_len, self.batch_size, self.num_workers, self.seed = seq_len, batch_size, num_workers, seed
        self.data_dir = Path(data_dir).expanduser()
        self.splits: dict[str, TokenWindows] = {}

    def build(self) -> dict[str, np.ndarray]:
        """Token arrays for ``train``, ``val`` and ``test`` (cached by subclasses)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = {name: TokenWindows(tokens, self.seq_len) for name, tokens in self.build().items()}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.splits[split], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
            generator=generator if shuffle else None, persistent_workers=self.num_workers > 0,
            collate_fn=self.collate,
        )

    def collate(self, items: list[dict]) -> dict:
        """Stack items into a batch (subclasses add conditioning, e.g. a graph)."""
        return default_collate(items)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def describe(self) -> dict:
        """Facts about the data for ``results.json``."""
        self.setup()
        return {"num_categories": self.num_categories, **{f"{k}_tokens": v.num_tokens for k, v in self.splits.items()}}


def cache_key(**fields) -> str:
    """Short stable hash of the fields that determine a generated dataset."""
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_or_build(path: Path, builder) -> dict[str, np.ndarray]:
    """Arrays from ``path`` (an .npz) or from ``builder()``, saved atomically.

    Parallel jobs of a sweep share the cache: a lock file makes one of them
    build while the others wait and then load its result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        arrays = builder()
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
        return arrays


def generate_in_chunks(make_chunk, num: int, seed: int, workers: int, description: str, chunk: int = 200) -> list:
    """``num`` items from ``make_chunk(chunk_seed, count) -> list`` in chunks seeded
    one by one (so the result does not depend on ``workers``), run in ``workers``
    processes with a progress bar. ``make_chunk`` must be picklable (a module-level
    function or a ``functools.partial`` of one)."""
    jobs = [(seed * 1_000_003 + i, min(chunk, num - i * chunk)) for i in range(math.ceil(num / chunk))]
    items: list = []
    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=num)
        if workers <= 1:
            for job in jobs:
                items.extend(make_chunk(*job))
                progress.advance(task, job[1])
        else:
            with ProcessPoolExecutor(workers) as pool:
                for part in pool.map(make_chunk, *zip(*jobs)):
                    items.extend(part)
                    progress.advance(task, len(part))
    return items
