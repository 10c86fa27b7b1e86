"""Graph colouring with 3 colours (GraphCNF's task; docs/design.md#tasks).

Random graphs of chromatic number exactly 3 (:mod:`.graph_generation`: CatNF's generator
by default, trufl's first G(n, p) one selectable). Colour labels are permuted as
augmentation when training. Generation runs in parallel processes with a progress bar
and is cached on disk.

Sizes: ``tiny`` 10–20 nodes, ``large`` 25–50 nodes. Defaults are sized for a CPU;
the paper's 192k/24k/24k and 450k/20k/30k graphs are a config change away.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import numpy as np
import torch
from torch.utils.data import Sampler

from ..condition import Condition, adjacency_of
from ..settings import Count, Range, Seed, checked
from .base import SamplingGroup, SplitDataModule
from .graph_generation import EDGE_PROB, NUM_COLOURS, GraphGenerator, cached_graphs


class NodeCountBatchSampler(Sampler):
    """Batches of indices whose graphs share a node count (no padding, nothing
    dropped); with ``shuffle``, a new order every epoch."""

    def __init__(self, sizes: list[int], batch_size: int, shuffle: bool, seed: int):
        self.sizes, self.batch_size, self.shuffle, self.seed = sizes, batch_size, shuffle, seed
        self.epoch = 0

    def _batches(self) -> list[list[int]]:
        by_size: dict[int, list[int]] = {}
        for i, n in enumerate(self.sizes):
            by_size.setdefault(n, []).append(i)
        rng = np.random.default_rng(self.seed + self.epoch)
        batches = []
        for idx in by_size.values():
            if self.shuffle:
                rng.shuffle(idx)
            batches += [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration gives (the training loader sets it, so a
        resumed run gives the epoch's order again)."""
        self.epoch = epoch

    def __iter__(self):
        batches = self._batches()
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches())


GraphSize = Literal["tiny", "large"]


class GraphColouringDataModule(SplitDataModule):
    """3-colourings of random graphs with chromatic number exactly 3.

    Batches hold graphs of one node count (no padding):
    ``{"x": [B, n] colours, "mask": [B, n], "condition": Condition(adjacency [B, n, n] bool)}``.
    Training batches permute the colour labels per graph (augmentation).

    Args:
        size: ``tiny`` (10–20 nodes) or ``large`` (25–50 nodes), or set min/max_nodes.
        train_size, val_size, test_size: graphs per split.
        generator: ``catnf`` (CatNF's: connected, no isolated node, edge probability drawn
            from ``edge_prob``) or ``gnp`` (G(n, p), mean degree drawn from ``degree``).
        edge_prob: range of the edge probability (``generator=catnf``).
        degree: range of the mean degree of G(n, p) before filtering (``generator=gnp``).
        generation_workers: processes generating graphs (chunks are seeded, so the
            graphs do not depend on it).
    """

    SIZES = dict(zip(get_args(GraphSize), [(10, 20), (25, 50)]))  # nodes per graph, by size

    @checked("dataset")
    def __init__(
        self,
        size: GraphSize = "tiny",
        train_size: Count = 4000,
        val_size: Count = 500,
        test_size: Count = 500,
        batch_size: Count = 64,
        generator: GraphGenerator = "catnf",
        edge_prob: tuple[float, float] = EDGE_PROB,
        degree: tuple[float, float] = (2.5, 4.5),
        min_nodes: Annotated[int, Range(3)] | None = None,
        max_nodes: Annotated[int, Range(3)] | None = None,
        data_dir: str = "~/.cache/trufl",
        generation_workers: Count = 2,
        seed: Seed = 0,
    ):
        lo, hi = self.SIZES[size]
        min_nodes, max_nodes = min_nodes or lo, max_nodes or hi
        if min_nodes > max_nodes:
            raise ValueError(f"dataset.min_nodes must be <= dataset.max_nodes, got {min_nodes} > {max_nodes}")
        if not 0 < edge_prob[0] <= edge_prob[1] <= 1:
            raise ValueError(f"dataset.edge_prob must be a range 0 < low <= high <= 1, got {list(edge_prob)}")
        super().__init__(max_nodes, batch_size, data_dir, seed=seed)  # seq_len: the largest graph
        self.min_nodes, self.max_nodes = min_nodes, max_nodes
        self.split_sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.degree, self.generation_workers = tuple(degree), generation_workers
        self.generator, self.edge_prob = generator, tuple(edge_prob)
        self.num_categories = NUM_COLOURS

    @property
    def graphs(self) -> dict[str, list]:
        """``(nodes, edges [E, 2], colours [nodes])`` per graph, per split."""
        self.setup()
        return self.splits

    def build_splits(self) -> dict[str, list]:
        return cached_graphs(self.data_dir, self.split_sizes, self.min_nodes, self.max_nodes,
                             self.degree, self.seed, self.generation_workers, self.generator, self.edge_prob)

    def batch_sampler(self, split: str, shuffle: bool) -> NodeCountBatchSampler:
        return NodeCountBatchSampler([g[0] for g in self.splits[split]], self.batch_size, shuffle, self.seed)

    def collate(self, graphs: list, generator: torch.Generator | None = None) -> dict:
        n = graphs[0][0]
        x = torch.stack([torch.from_numpy(g[2]) for g in graphs])
        if generator is not None:  # training: a random relabelling of the colours per graph
            perms = torch.stack([torch.randperm(NUM_COLOURS, generator=generator) for _ in graphs])
            x = perms.gather(1, x)
        adjacency = torch.zeros(len(graphs), n, n, dtype=torch.bool)
        for b, (_, edges, _) in enumerate(graphs):
            e = torch.from_numpy(edges)
            adjacency[b, e[:, 0], e[:, 1]] = True
            adjacency[b, e[:, 1], e[:, 0]] = True
        return {"x": x, "mask": torch.ones_like(x, dtype=torch.bool), "condition": Condition(adjacency=adjacency)}

    def sampling_groups(self, num_samples: int = 0) -> list[SamplingGroup]:
        """One colouring per test graph, conditioned on its adjacency (grouped by node count)."""
        return [SamplingGroup(b["x"].shape[0], b["x"].shape[1], b["condition"]) for b in self.test_dataloader()]

    def is_valid(self, colours: torch.Tensor, condition: Condition | None = None) -> torch.Tensor:
        """``[B]`` bool: no edge joins two nodes of one colour (the condition's graphs), no node uncoloured."""
        same = (colours[:, :, None] == colours[:, None, :]) & adjacency_of(condition, "graph colouring validity")
        return (colours >= 0).all(-1) & ~same.flatten(1).any(-1)

    def describe(self) -> dict:
        return {
            "num_categories": NUM_COLOURS,
            "generator": self.generator,
            **{f"{k}_graphs": len(v) for k, v in self.graphs.items()},
            **{f"{k}_tokens": int(sum(g[0] for g in v)) for k, v in self.graphs.items()},
        }
