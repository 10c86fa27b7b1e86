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


def sample_sum_tuples(num: int, size: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` tuples drawn uniformly among all with the given sum (values 1..size)."""
    if count_tuples(size, total, size) == 0:
        raise ValueError(f"no {size} numbers in 1..{size} sum to {total}")
    out = np.zeros((num, size), dtype=np.int64)
    remaining = np.full(num, total)
    for i in range(size):
        left = size - i - 1
        values = np.arange(1, size + 1)
        weights = np.array([[count_tuples(left, r - v, size) if r - v >= 0 else 0 for v in values] for r in range(total + 1)], dtype=np.float64)
        probs = weights[remaining] / weights[remaining].sum(1, keepdims=True)
        cum = probs.cumsum(1)
        pick = (rng.random((num, 1)) > cum).sum(1)
        out[:, i] = values[pick]
        remaining -= values[pick]
    return out


class SetDataModule(SplitDataModule):
    """Sets of ``size`` elements; each item is ``{"x": [size], "mask": [size]}``.

    Args:
        kind: ``shuffle`` (permutations) or ``sum`` (tuples with the sum ``total``).
        size: N, the set size (and the number of categories).
        total: the required sum (``sum`` only).
        train_size, val_size, test_size: number of sets per split.
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
    ):
        super().__init__(size, batch_size, data_dir, num_workers, seed)
        self.kind, self.size, self.total = kind, size, total
        self.num_categories = size
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.optimum_bits = optimum_bits(kind, size, total)  # raises for an impossible sum

    def build(self) -> dict[str, np.ndarray]:
        key = cache_key(kind=self.kind, size=self.size, total=self.total, sizes=self.sizes, seed=self.seed)

        def generate():
            rng = np.random.default_rng(self.seed)
            out = {}
            for split, n in self.sizes.items():
                if self.kind == "shuffle":
                    sets = np.argsort(rng.random((n, self.size)), axis=1)
                else:
                    sets = sample_sum_tuples(n, self.size, self.total, rng) - 1
                out[split] = sets.reshape(-1)
            return out

        return load_or_build(self.data_dir / "sets" / f"{key}.npz", generate)

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
        return {**super().describe(), "kind": self.kind, "optimum_bits": self.optimum_bits}
