"""Toy task: i.i.d. tokens from given category probabilities (docs/design.md#tasks)."""

from __future__ import annotations

import math

import numpy as np

from ..settings import Count, NonNegativeInt, Seed, checked
from .base import SamplingGroup, SplitDataModule
from .cache import cache_key, load_or_build


def entropy_bits(probs) -> float:
    return -sum(p * math.log2(p) for p in probs if p > 0)


class ToyDataModule(SplitDataModule):
    """Sequences of ``seq_len`` i.i.d. categories with probabilities ``probs``.

    The optimum bits per token is the entropy of ``probs`` (:attr:`entropy_bits`).
    """

    @checked("dataset")
    def __init__(
        self,
        probs: list[float],
        seq_len: Count = 1,
        train_size: Count = 20000,
        val_size: Count = 2000,
        test_size: Count = 2000,
        batch_size: Count = 256,
        data_dir: str = "~/.cache/trufl",
        num_workers: NonNegativeInt = 0,
        seed: Seed = 0,
    ):
        super().__init__(seq_len, batch_size, data_dir, num_workers, seed)
        probs = [float(p) for p in probs]
        if len(probs) < 2 or any(p <= 0 for p in probs) or abs(sum(probs) - 1) > 1e-6:
            raise ValueError(f"dataset.probs must be >= 2 positive numbers summing to 1, got {probs} (sum {sum(probs)})")
        self.probs = probs
        self.num_categories = len(probs)
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.entropy_bits = entropy_bits(probs)

    def build(self) -> dict[str, np.ndarray]:
        key = cache_key(probs=self.probs, sizes=self.sizes, seq_len=self.seq_len, seed=self.seed)

        def generate():
            rng = np.random.default_rng(self.seed)
            return {s: rng.choice(len(self.probs), size=n * self.seq_len, p=self.probs) for s, n in self.sizes.items()}

        return load_or_build(self.data_dir / "toy" / f"{key}.npz", generate)

    def sampling_groups(self, num_samples: int = 0) -> list[SamplingGroup]:
        """One generated sequence per test sequence (validity: every token decodes)."""
        return [SamplingGroup(self.sizes["test"], self.seq_len)]

    def describe(self) -> dict:
        return {**super().describe(), "entropy_bits": self.entropy_bits, "probs": self.probs}
