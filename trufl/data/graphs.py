"""Graph colouring with 3 colours (GraphCNF's task; docs/design.md#tasks).

Random graphs are kept only when their chromatic number is exactly 3: not
bipartite (an odd cycle, found by BFS) and 3-colourable (OR-Tools CP-SAT, which
also gives the colouring used as the training target). Colour labels are
permuted as augmentation when training. Generation runs in parallel processes
with a progress bar and is cached on disk.

Sizes: ``tiny`` 10–20 nodes, ``large`` 25–50 nodes. Defaults are sized for a CPU;
the paper's 192k/24k/24k and 450k/20k/30k graphs are a config change away.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from typing import Annotated, Literal, get_args

import numpy as np
import torch
from torch.utils.data import Sampler

from ..condition import Condition, adjacency_of
from ..settings import Count, Range, Seed, checked
from .base import SamplingGroup, SplitDataModule
from .cache import cache_key, generate_in_chunks, load_or_build

NUM_COLOURS = 3


def is_bipartite(n: int, edges: np.ndarray) -> bool:
    """BFS 2-colouring of every component."""
    adj = [[] for _ in range(n)]
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    side = [-1] * n
    for start in range(n):
        if side[start] >= 0:
            continue
        side[start] = 0
        queue = deque([start])
        while queue:
            u = queue.popleft()
            for v in adj[u]:
                if side[v] < 0:
                    side[v] = 1 - side[u]
                    queue.append(v)
                elif side[v] == side[u]:
                    return False
    return True


def solve_colouring(n: int, edges: np.ndarray, colours: int = NUM_COLOURS, seed: int = 0) -> np.ndarray | None:
    """A proper colouring with ``colours`` colours from CP-SAT, or None if none exists."""
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    c = [model.NewIntVar(0, colours - 1, f"c{i}") for i in range(n)]
    for a, b in edges:
        model.Add(c[int(a)] != c[int(b)])
    if n:
        model.Add(c[0] == 0)  # break the colour symmetry: the solver's work, not the data's
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return np.array([solver.Value(v) for v in c], dtype=np.int64)


def random_graph(rng: np.random.Generator, min_nodes: int, max_nodes: int, degree: tuple[float, float]) -> tuple[int, np.ndarray]:
    """G(n, p) with n uniform in [min_nodes, max_nodes] and mean degree uniform in ``degree``."""
    n = int(rng.integers(min_nodes, max_nodes + 1))
    p = min(1.0, rng.uniform(*degree) / (n - 1))
    pairs = np.array(list(itertools.combinations(range(n), 2)), dtype=np.int64)
    return n, pairs[rng.random(len(pairs)) < p]


def generate_chunk(seed: int, count: int, min_nodes: int, max_nodes: int, degree) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``count`` graphs of chromatic number exactly 3, with a colouring each."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        n, edges = random_graph(rng, min_nodes, max_nodes, degree)
        if is_bipartite(n, edges):
            continue
        colouring = solve_colouring(n, edges, seed=seed)
        if colouring is not None:
            out.append((n, edges, colouring))
    return out


def pack(graphs: list[tuple[int, np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Flat arrays for the cache: node counts, edge counts, edges, colours."""
    return {
        "nodes": np.array([g[0] for g in graphs], dtype=np.int64),
        "num_edges": np.array([len(g[1]) for g in graphs], dtype=np.int64),
        "edges": np.concatenate([g[1].reshape(-1, 2) for g in graphs]) if graphs else np.zeros((0, 2), np.int64),
        "colours": np.concatenate([g[2] for g in graphs]) if graphs else np.zeros(0, np.int64),
    }


def unpack(arrays: dict[str, np.ndarray]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    node_off = np.concatenate([[0], np.cumsum(arrays["nodes"])])
    edge_off = np.concatenate([[0], np.cumsum(arrays["num_edges"])])
    return [
        (int(n), arrays["edges"][edge_off[i] : edge_off[i + 1]], arrays["colours"][node_off[i] : node_off[i + 1]])
        for i, n in enumerate(arrays["nodes"])
    ]


def generate_graphs(
    num: int, min_nodes: int, max_nodes: int, degree: tuple[float, float], seed: int, workers: int, chunk: int = 200
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``num`` graphs in parallel chunks (seeded per chunk, so the result does not
    depend on the number of workers), with a progress bar."""
    make = functools.partial(generate_chunk, min_nodes=min_nodes, max_nodes=max_nodes, degree=degree)
    return generate_in_chunks(make, num, seed, workers, f"generating {num} graphs ({min_nodes}-{max_nodes} nodes)", chunk)


def cached_graphs(data_dir, split_sizes: dict[str, int], min_nodes: int, max_nodes: int,
                  degree: tuple[float, float], seed: int, workers: int) -> dict[str, list]:
    """Every split, generated once and cached under ``data_dir/graphs``."""
    out = {}
    for i, (split, num) in enumerate(split_sizes.items()):
        key = cache_key(split=split, num=num, nodes=(min_nodes, max_nodes), degree=degree, seed=seed, v=1)
        arrays = load_or_build(
            data_dir / "graphs" / f"{split}-{key}.npz",
            lambda num=num, i=i: pack(generate_graphs(num, min_nodes, max_nodes, degree, seed * 10 + i, workers)),
        )
        out[split] = unpack(arrays)
    return out


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
        degree: range of the mean degree of G(n, p) before filtering.
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
        super().__init__(max_nodes, batch_size, data_dir, seed=seed)  # seq_len: the largest graph
        self.min_nodes, self.max_nodes = min_nodes, max_nodes
        self.split_sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.degree, self.generation_workers = tuple(degree), generation_workers
        self.num_categories = NUM_COLOURS

    @property
    def graphs(self) -> dict[str, list]:
        """``(nodes, edges [E, 2], colours [nodes])`` per graph, per split."""
        self.setup()
        return self.splits

    def build_splits(self) -> dict[str, list]:
        return cached_graphs(self.data_dir, self.split_sizes, self.min_nodes, self.max_nodes,
                             self.degree, self.seed, self.generation_workers)

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
            **{f"{k}_graphs": len(v) for k, v in self.graphs.items()},
            **{f"{k}_tokens": int(sum(g[0] for g in v)) for k, v in self.graphs.items()},
        }
