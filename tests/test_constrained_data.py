"""Graph colouring and Sudoku data: every generated object satisfies its constraints,
checked independently of the generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trufl.condition import Condition

from trufl.data.graph_generation import connected_graph, edge_probability_range, is_bipartite
from trufl.data.graphs import GraphColouringDataModule
from trufl.data.sudoku import boards_are_valid, random_board

from .oracles import chromatic_number_brute_force


def test_every_generated_graph_has_chromatic_number_three(tmp_path):
    dm = GraphColouringDataModule("tiny", train_size=60, val_size=10, test_size=10, data_dir=str(tmp_path), generation_workers=2)
    dm.setup()
    for split, graphs in dm.graphs.items():
        for n, edges, colours in graphs:
            assert 10 <= n <= 20
            assert chromatic_number_brute_force(n, edges) == 3, (split, n, edges)
            assert (colours[edges[:, 0]] != colours[edges[:, 1]]).all()


def bfs_reaches_every_node(n: int, edges: np.ndarray) -> bool:
    """Oracle: a plain BFS over adjacency sets from node 0."""
    adj = {i: set() for i in range(n)}
    for a, b in edges:
        adj[int(a)].add(int(b))
        adj[int(b)].add(int(a))
    seen, queue = {0}, [0]
    while queue:
        for v in adj[queue.pop()] - seen:
            seen.add(v)
            queue.append(v)
    return len(seen) == n


def density(n: int, edges: np.ndarray) -> float:
    return len(edges) / (n * (n - 1) / 2)


@pytest.mark.parametrize("size,nodes", [("tiny", (10, 20)), ("large", (25, 50))])
def test_catnf_generator_graphs_are_connected_with_min_degree_one_and_chromatic_number_three(tmp_path, size, nodes):
    dm = GraphColouringDataModule(size, train_size=40, val_size=10, test_size=10, data_dir=str(tmp_path), generation_workers=1)
    assert dm.generator == "catnf"  # the default: the published rows' data
    graphs = [g for split in dm.graphs.values() for g in split]
    for n, edges, colours in graphs:
        assert nodes[0] <= n <= nodes[1]
        assert (edges[:, 0] < edges[:, 1]).all() and len({tuple(e) for e in edges.tolist()}) == len(edges)
        assert np.bincount(edges.ravel(), minlength=n).min() >= 1, "an isolated node"
        assert bfs_reaches_every_node(n, edges), "a disconnected graph"
        assert (colours[edges[:, 0]] != colours[edges[:, 1]]).all()
        if n <= 30:  # the backtracking oracle is exponential: small graphs only
            assert chromatic_number_brute_force(n, edges) == 3, (n, edges)
    assert 0.1 <= np.mean([density(n, e) for n, e, _ in graphs]) <= 0.3


def test_catnf_edge_probability_is_drawn_from_its_range_and_sets_the_density():
    assert edge_probability_range(20, 20) == pytest.approx((0.1, 0.2))  # CatNF's cap 0.2 * max_nodes / n at n = max_nodes
    assert edge_probability_range(10, 20) == pytest.approx((0.1, 0.3))
    rng = np.random.default_rng(0)
    for p in (0.1, 0.2, 0.3):
        dens = [density(40, connected_graph(rng, 40, p)) for _ in range(200)]
        # each pair an edge with probability p (the mean's std is 0.0012 at most); repairs add few edges at 40 nodes
        assert p - 0.005 <= np.mean(dens) <= p + 0.01, (p, np.mean(dens))


@pytest.mark.parametrize("generator", ["catnf", "gnp"])
def test_graphs_are_reproducible_by_seed_and_change_with_it(tmp_path, generator):
    def train(seed, where):
        dm = GraphColouringDataModule("tiny", train_size=30, val_size=5, test_size=5, generator=generator, seed=seed,
                                      data_dir=str(tmp_path / where), generation_workers=1)
        return [(n, e.tolist(), c.tolist()) for n, e, c in dm.graphs["train"]]

    assert train(0, "a") == train(0, "b")
    assert train(0, "a") != train(1, "c")


def test_gnp_generator_is_still_selectable_and_allows_isolated_nodes(tmp_path):
    dm = GraphColouringDataModule("tiny", train_size=60, val_size=5, test_size=5, generator="gnp", data_dir=str(tmp_path), generation_workers=1)
    graphs = dm.graphs["train"]
    assert all(chromatic_number_brute_force(n, e) == 3 for n, e, _ in graphs)
    assert any(np.bincount(e.ravel(), minlength=n).min() == 0 for n, e, _ in graphs)  # what catnf rules out


def test_graph_batches_group_node_counts_and_permute_colours(tmp_path):
    dm = GraphColouringDataModule("tiny", train_size=80, val_size=10, test_size=10, batch_size=8,
                                  data_dir=str(tmp_path), generation_workers=1)
    seen = 0
    for batch in dm.train_dataloader():
        B, n = batch["x"].shape
        adjacency = batch["condition"].adjacency
        assert adjacency.shape == (B, n, n) and (adjacency == adjacency.transpose(1, 2)).all()
        assert dm.is_valid(batch["x"], batch["condition"]).all()  # relabelling keeps colourings proper
        seen += B
    assert seen == 80  # no graph dropped
    plain = {tuple(c) for _, _, c in dm.graphs["train"]}
    relabelled = {tuple(row.tolist()) for b in dm.train_dataloader() for row in b["x"]}
    assert relabelled != plain  # the augmentation changes labels


def test_invalid_colourings_are_detected():
    adjacency = torch.zeros(1, 3, 3, dtype=torch.bool)
    adjacency[0, 0, 1] = adjacency[0, 1, 0] = True
    dm = GraphColouringDataModule.__new__(GraphColouringDataModule)
    graph = Condition(adjacency=adjacency)
    assert not dm.is_valid(torch.tensor([[1, 1, 0]]), graph).item()
    assert dm.is_valid(torch.tensor([[1, 2, 1]]), graph).item()
    assert not dm.is_valid(torch.tensor([[1, -1, 0]]), graph).item()


def test_bipartite_check():
    square = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])
    triangle = np.array([[0, 1], [1, 2], [2, 0]])
    assert is_bipartite(4, square) and not is_bipartite(3, triangle)


def test_generated_sudoku_boards_are_valid_and_varied():
    rng = np.random.default_rng(0)
    boards = torch.from_numpy(np.stack([random_board(rng) for _ in range(50)])).reshape(50, 81)
    assert boards_are_valid(boards).all()
    assert len({tuple(b.tolist()) for b in boards}) == 50
    broken = boards.clone()
    broken[:, [0, 1]] = broken[:, [1, 0]]  # swapping two cells of a row breaks its columns
    assert not boards_are_valid(broken).any()
    assert not boards_are_valid(torch.full((1, 81), -1)).any()


def test_sudoku_constraint_graph_and_datamodule(tmp_path):
    from trufl.data.sudoku import SudokuDataModule, constraint_graph

    adj = constraint_graph()
    assert adj.shape == (81, 81) and (adj == adj.T).all() and (adj.sum(1) == 20).all()  # 8 + 8 + 4 peers
    dm = SudokuDataModule(train_size=40, val_size=8, test_size=8, batch_size=16, data_dir=str(tmp_path))
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (16, 81) and batch["condition"].adjacency.shape == (16, 81, 81)
    assert dm.is_valid(batch["x"]).all()
    (num, length, condition), = dm.sampling_groups()
    assert (num, length) == (8, 81) and condition.adjacency.shape == (8, 81, 81)


def test_sudoku_generation_is_cached_and_independent_of_the_worker_count(tmp_path):
    from trufl.data.sudoku import SudokuDataModule

    def boards(workers, where):
        dm = SudokuDataModule(train_size=450, val_size=8, test_size=8, data_dir=str(tmp_path / where), generation_workers=workers)
        dm.setup()
        return dm, dm.build()

    dm, serial = boards(1, "a")
    _, parallel = boards(2, "b")
    assert all(np.array_equal(serial[k], parallel[k]) for k in serial)
    assert boards_are_valid(torch.from_numpy(serial["train"]).view(-1, 81)).all()
    assert len(serial["train"]) == 450 * 81  # chunks of 200, 200, 50: nothing dropped
    (cache,) = (tmp_path / "a" / "sudoku").glob("*.npz")
    stamp = cache.stat().st_mtime_ns
    boards(1, "a")
    assert cache.stat().st_mtime_ns == stamp  # reused, not rebuilt
