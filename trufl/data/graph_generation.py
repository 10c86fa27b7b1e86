"""Random graphs of chromatic number exactly 3 with a 3-colouring each (the graph-colouring
task's data, :mod:`trufl.data.graphs`), from one of two generators:

* ``catnf`` (default) — the generator of CatNF's graph-colouring data, whose sets the published
  GraphCNF rows were measured on: per graph an edge probability p ~ U(edge_prob) (0.1–0.3;
  CatNF lowers the upper end to ``0.2 · max_nodes / n`` for the larger graphs of a set, so the
  mean degree stays bounded), every pair an edge with probability p, the edges of any isolated
  node redrawn until every node has one, then, while the graph is disconnected, three random
  edges added between the part reachable from node 0 and the rest.
* ``gnp`` — trufl's first generator: G(n, p) with a mean degree ~ U(degree) (2.5–4.5), neither
  connected nor free of isolated nodes.

Both keep a graph only when it is not bipartite (an odd cycle, found by BFS) and is
3-colourable (OR-Tools CP-SAT, whose colouring is the training target).
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from typing import Literal

import numpy as np

from ..extras import require
from .cache import cache_key, generate_in_chunks, load_or_build

NUM_COLOURS = 3
GraphGenerator = Literal["catnf", "gnp"]
#: CatNF's range of the edge probability for 3 colours
EDGE_PROB = (0.1, 0.3)
#: edges added at a time while a catnf graph is disconnected (as CatNF does)
JOINING_EDGES = 3

Graph = tuple[int, np.ndarray, np.ndarray]  # nodes, edges [E, 2] (i < j), colours [nodes]


def neighbours(n: int, edges: np.ndarray) -> list[list[int]]:
    adj = [[] for _ in range(n)]
    for a, b in edges:
        adj[a].append(int(b))
        adj[b].append(int(a))
    return adj


def is_bipartite(n: int, edges: np.ndarray) -> bool:
    """BFS 2-colouring of every component."""
    adj = neighbours(n, edges)
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
    cp_model = require("ortools.sat.python.cp_model", "graphs", "generating graph-colouring data (CP-SAT)")

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
    """``gnp``: G(n, p) with n uniform in [min_nodes, max_nodes] and mean degree uniform in ``degree``."""
    n = int(rng.integers(min_nodes, max_nodes + 1))
    p = min(1.0, rng.uniform(*degree) / (n - 1))
    pairs = np.array(list(itertools.combinations(range(n), 2)), dtype=np.int64)
    return n, pairs[rng.random(len(pairs)) < p]


def edge_probability_range(n: int, max_nodes: int, edge_prob: tuple[float, float] = EDGE_PROB) -> tuple[float, float]:
    """The range p is drawn from for an ``n``-node catnf graph (the upper end lowered for large n)."""
    lo, hi = edge_prob
    return lo, max(lo, min(hi, max_nodes / n * (lo + hi) / 2))


def reached_from_first(adjacency: np.ndarray) -> np.ndarray:
    """``[n]`` bool: the nodes a BFS from node 0 reaches."""
    seen = np.zeros(len(adjacency), dtype=bool)
    seen[0], frontier = True, [0]
    while frontier:
        new = adjacency[frontier].any(0) & ~seen
        seen |= new
        frontier = list(np.flatnonzero(new))
    return seen


def connected_graph(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """``catnf``'s graph for ``n`` nodes and edge probability ``p`` (module docstring): edges ``[E, 2]``."""
    upper = np.triu(rng.random((n, n)) < p, 1)
    adjacency = upper | upper.T
    while (degrees := adjacency.sum(1)).min() == 0:  # redraw an isolated node's edges
        node = int(np.argmin(degrees))
        row = rng.random(n) < p
        row[node] = False
        adjacency[node], adjacency[:, node] = row, row
    while not (reached := reached_from_first(adjacency)).all():
        a = rng.choice(np.flatnonzero(reached), JOINING_EDGES)
        b = rng.choice(np.flatnonzero(~reached), JOINING_EDGES)
        adjacency[a, b] = adjacency[b, a] = True
    return np.argwhere(np.triu(adjacency, 1)).astype(np.int64)


def catnf_graph(rng: np.random.Generator, min_nodes: int, max_nodes: int, edge_prob: tuple[float, float]) -> tuple[int, np.ndarray]:
    """``catnf``: n uniform in [min_nodes, max_nodes], p ~ U(:func:`edge_probability_range`), then :func:`connected_graph`."""
    n = int(rng.integers(min_nodes, max_nodes + 1))
    p = rng.uniform(*edge_probability_range(n, max_nodes, edge_prob))
    return n, connected_graph(rng, n, p)


def generate_chunk(seed: int, count: int, min_nodes: int, max_nodes: int, degree, generator: GraphGenerator = "gnp",
                   edge_prob: tuple[float, float] = EDGE_PROB) -> list[Graph]:
    """``count`` graphs of chromatic number exactly 3, with a colouring each."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        if generator == "catnf":
            n, edges = catnf_graph(rng, min_nodes, max_nodes, edge_prob)
        else:
            n, edges = random_graph(rng, min_nodes, max_nodes, degree)
        if is_bipartite(n, edges):
            continue
        colouring = solve_colouring(n, edges, seed=seed)
        if colouring is not None:
            out.append((n, edges, colouring))
    return out


def pack(graphs: list[Graph]) -> dict[str, np.ndarray]:
    """Flat arrays for the cache: node counts, edge counts, edges, colours."""
    return {
        "nodes": np.array([g[0] for g in graphs], dtype=np.int64),
        "num_edges": np.array([len(g[1]) for g in graphs], dtype=np.int64),
        "edges": np.concatenate([g[1].reshape(-1, 2) for g in graphs]) if graphs else np.zeros((0, 2), np.int64),
        "colours": np.concatenate([g[2] for g in graphs]) if graphs else np.zeros(0, np.int64),
    }


def unpack(arrays: dict[str, np.ndarray]) -> list[Graph]:
    node_off = np.concatenate([[0], np.cumsum(arrays["nodes"])])
    edge_off = np.concatenate([[0], np.cumsum(arrays["num_edges"])])
    return [
        (int(n), arrays["edges"][edge_off[i] : edge_off[i + 1]], arrays["colours"][node_off[i] : node_off[i + 1]])
        for i, n in enumerate(arrays["nodes"])
    ]


def generate_graphs(num: int, min_nodes: int, max_nodes: int, degree: tuple[float, float], seed: int, workers: int,
                    generator: GraphGenerator = "gnp", edge_prob: tuple[float, float] = EDGE_PROB, chunk: int = 200) -> list[Graph]:
    """``num`` graphs in parallel chunks (seeded per chunk, so the result does not
    depend on the number of workers), with a progress bar."""
    make = functools.partial(generate_chunk, min_nodes=min_nodes, max_nodes=max_nodes, degree=degree,
                             generator=generator, edge_prob=edge_prob)
    return generate_in_chunks(make, num, seed, workers,
                              f"generating {num} graphs ({min_nodes}-{max_nodes} nodes, {generator})", chunk)


def cached_graphs(data_dir, split_sizes: dict[str, int], min_nodes: int, max_nodes: int, degree: tuple[float, float],
                  seed: int, workers: int, generator: GraphGenerator = "gnp", edge_prob: tuple[float, float] = EDGE_PROB) -> dict[str, list]:
    """Every split, generated once and cached under ``data_dir/graphs``."""
    # gnp keeps its first key, so caches made before the catnf generator stay valid
    params = dict(degree=degree) if generator == "gnp" else dict(generator=generator, edge_prob=edge_prob)
    out = {}
    for i, (split, num) in enumerate(split_sizes.items()):
        key = cache_key(split=split, num=num, nodes=(min_nodes, max_nodes), seed=seed, v=1, **params)
        arrays = load_or_build(
            data_dir / "graphs" / f"{split}-{key}.npz",
            lambda num=num, i=i: pack(generate_graphs(num, min_nodes, max_nodes, degree, seed * 10 + i, workers,
                                                      generator, edge_prob)),
        )
        out[split] = unpack(arrays)
    return out
