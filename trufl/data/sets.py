"""Set modelling tasks of CatNF (docs/design.md#tasks), of two kinds: shuffling and summation.

* ``sets_shuffle``: a uniformly random permutation of {1..N} (N = 16): optimum
  ``log2(N!)/N`` bits per element (2.766 for N = 16).
* ``sets_sum``: N numbers from {1..N} summing to ``total`` (42), drawn uniformly
  from all such tuples by exact sequential sampling with the counting table;
  optimum ``log2(#tuples)/N`` bits per element (2.243 for N = 16, total 42).

Category k stands for the number k + 1.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Literal

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, Sampler

from ..settings import Count, NonNegativeInt, Range, Seed, checked
from .base import SamplingGroup, SplitDataModule
from .cache import cache_key, load_or_build

#: what makes a list of numbers a valid set: a permutation, or a given sum
SetKind = Literal["shuffle", "sum"]


@lru_cache(maxsize=None)
def count_tuples(length: int, total: int, high: int) -> int:
    """Number of tuples of ``length`` numbers in 1..high summing to ``total``."""
    if length == 0:
        return int(total == 0)
    return sum(count_tuples(length - 1, total - v, high) for v in range(1, high + 1) if total - v >= length - 1)


def optimum_bits(kind: str, size: int, total: int) -> float:
    """Entropy of the data distribution in bits per element."""
    if kind == "shuffle":
        return math.lgamma(size + 1) / math.log(2) / size
    count = count_tuples(size, total, size)
    if count == 0:
        raise ValueError(f"dataset.total: no {size} numbers in 1..{size} sum to {total}")
    return math.log2(count) / size


@lru_cache(maxsize=None)
def _completions(left: int, size: int, total: int) -> np.ndarray:
    """``[total + 1, size]``: how many ways ``left`` more numbers complete a remainder r after value v."""
    return np.array([[count_tuples(left, r - v, size) if r - v >= 0 else 0 for v in range(1, size + 1)]
                     for r in range(total + 1)], dtype=np.float64)


def sample_sum_tuples(num: int, size: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` tuples drawn uniformly among all with the given sum (values 1..size)."""
    if count_tuples(size, total, size) == 0:
        raise ValueError(f"no {size} numbers in 1..{size} sum to {total}")
    out = np.zeros((num, size), dtype=np.int64)
    remaining = np.full(num, total)
    values = np.arange(1, size + 1)
    for i in range(size):
        weights = _completions(size - i - 1, size, total)
        probs = weights[remaining] / weights[remaining].sum(1, keepdims=True)
        cum = probs.cumsum(1)
        pick = (rng.random((num, 1)) > cum).sum(1)
        out[:, i] = values[pick]
        remaining -= values[pick]
    return out


class FreshSets(Dataset):
    """Training sets drawn anew: item i is drawn by ``draw(1, rng)`` from the i-th child stream of
    ``seed`` (its spawn key; never the cached splits' stream), so it depends on neither the
    DataLoader's workers nor the batch size. ``len``
    is ``count``, one epoch; :class:`EpochSampler` asks for new indices every epoch."""

    def __init__(self, draw, count: int, size: int, seed: int):
        self.draw, self.count, self.size, self.seed = draw, count, size, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(int(i),)))
        x = torch.from_numpy(self.draw(1, rng)[0])
        return {"x": x, "mask": torch.ones(self.size, dtype=torch.bool)}

    @property
    def num_tokens(self) -> int:
        return self.count * self.size


class EpochSampler(Sampler):
    """Indices ``epoch·n .. epoch·n + n − 1``, the next block each epoch (new sets, never a repeat)."""

    def __init__(self, n: int):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose block the next iteration gives (set by the training loader)."""
        self.epoch = epoch

    def __iter__(self):
        start, self.epoch = self.epoch * self.n, self.epoch + 1
        return iter(range(start, start + self.n))

    def __len__(self) -> int:
        return self.n


class SetDataModule(SplitDataModule):
    """Sets of ``size`` elements; each item is ``{"x": [size], "mask": [size]}``.

    Args:
        kind: ``shuffle`` (permutations) or ``sum`` (tuples with the sum ``total``).
        size: N, the set size (and the number of categories).
        total: the required sum (``sum`` only).
        train_size, val_size, test_size: number of sets per split.
        fresh: training draws new sets for every step (CatNF's reference does), ``train_size``
            of them per epoch, reproducible from ``seed`` (:class:`FreshSets`); validation and
            test are the fixed cached sets either way.
    """

    @checked("dataset")
    def __init__(
        self,
        kind: SetKind = "shuffle",
        size: Annotated[int, Range(2)] = 16,
        total: Count = 42,
        train_size: Count = 20000,
        val_size: Count = 1000,
        test_size: Count = 2000,
        batch_size: Count = 64,
        data_dir: str = "~/.cache/trufl",
        num_workers: NonNegativeInt = 0,
        seed: Seed = 0,
        fresh: bool = False,
    ):
        super().__init__(size, batch_size, data_dir, num_workers, seed)
        self.kind, self.size, self.total, self.fresh = kind, size, total, fresh
        self.num_categories = size
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.optimum_bits = optimum_bits(kind, size, total)  # raises for an impossible sum

    def build(self) -> dict[str, np.ndarray]:
        key = cache_key(kind=self.kind, size=self.size, total=self.total, sizes=self.sizes, seed=self.seed)

        def generate():
            rng = np.random.default_rng(self.seed)
            return {split: self.draw(n, rng).reshape(-1) for split, n in self.sizes.items()}

        return load_or_build(self.data_dir / "sets" / f"{key}.npz", generate)

    def draw(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """``num`` sets ``[num, size]`` of categories 0..size−1 from ``rng``."""
        if self.kind == "shuffle":
            return np.argsort(rng.random((num, self.size)), axis=1)
        return sample_sum_tuples(num, self.size, self.total, rng) - 1

    def build_splits(self) -> dict[str, Dataset]:
        splits = super().build_splits()
        if self.fresh:  # the cached training sets are still built: val and test follow them in the seeded stream
            splits["train"] = FreshSets(self.draw, self.sizes["train"], self.size, self.seed)
        return splits

    def batch_sampler(self, split: str, shuffle: bool) -> Sampler | None:
        if split == "train" and self.fresh:
            return BatchSampler(EpochSampler(self.sizes["train"]), self.batch_size, drop_last=False)
        return None

    def sampling_groups(self, num_samples: int = 0) -> list[SamplingGroup]:
        """One group: a generated set per test set."""
        self.setup()
        return [SamplingGroup(len(self.splits["test"]), self.size)]

    def is_valid(self, x: torch.Tensor, condition=None) -> torch.Tensor:
        """``[n]`` bool for sets ``x [n, size]`` (−1 = a token outside every support)."""
        ok = (x >= 0).all(-1)
        if self.kind == "shuffle":
            return ok & (torch.sort(x, dim=-1).values == torch.arange(self.size, device=x.device)).all(-1)
        return ok & ((x + 1).sum(-1) == self.total)

    def describe(self) -> dict:
        return {**super().describe(), "kind": self.kind, "optimum_bits": self.optimum_bits, "fresh_training_sets": self.fresh}
