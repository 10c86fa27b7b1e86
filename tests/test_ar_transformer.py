"""The autoregressive Transformer prior over elements (sets, graphs, Sudoku): exact
inverse, log-determinant, normalisation, causality, and that the structure it is
told (a board's cells, a graph's edges) changes its density."""

from __future__ import annotations

import pytest
import torch

from trufl.data.sudoku import constraint_graph
from trufl.condition import Condition
from trufl.priors import AutoregressivePrior
from trufl.priors.reference import recomputing_inverse

from .conftest import ar_prior

STRUCTURES = [("index", "none"), ("grid", "adjacency"), ("degree", "adjacency"), ("none", "adjacency")]


def random_graph(n: int, T: int, seed: int = 0, p: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    adj = torch.rand(n, T, T, generator=g) < p
    adj = torch.triu(adj, 1)
    return adj | adj.transpose(1, 2)


def random_prior(positions="index", relations="none", dim=2, seed=0, **kw) -> AutoregressivePrior:
    """Off the initialisation: random head outputs, embeddings and relation biases."""
    torch.manual_seed(seed)
    kw = {"inputs": "latent", "transform": "mixture", "num_mixtures": 4, **kw}
    prior = ar_prior(dim, "transformer", hidden=16, num_layers=2, heads=2, head_hidden=16, positions=positions,
                     relations=relations, max_length=16, **kw).double()
    with torch.no_grad():
        prior.head.out.weight.normal_(0, 0.3)
        for block in prior.encoder.blocks:
            if block.relation_bias is not None:
                block.relation_bias.normal_(0, 2.0)
        actnorm = getattr(prior.transform, "actnorm", None)
        if actnorm is not None:
            actnorm.bias.normal_(0, 0.5)
            actnorm.log_scale.normal_(0, 0.3)
            actnorm.initialised.fill_(True)
    return prior.eval()


def cond_for(positions: str, relations: str, n: int, T: int) -> Condition | None:
    if positions == "grid":
        return Condition(adjacency=constraint_graph().expand(n, 81, 81))
    return Condition(adjacency=random_graph(n, T)) if relations == "adjacency" or positions == "degree" else None


def length_for(positions: str) -> int:
    return 81 if positions == "grid" else 7


@pytest.mark.parametrize("positions,relations", STRUCTURES)
def test_inverse_recovers_z_and_the_cached_sampler_equals_recomputing(positions, relations):
    prior = random_prior(positions, relations)
    T = length_for(positions)
    cond = cond_for(positions, relations, 3, T)
    z = 2 * torch.randn(3, T, 2, dtype=torch.float64)
    e, _ = prior(z, None, cond)
    assert (prior.inverse(e, None, cond) - z).abs().max().item() < 1e-5
    e2 = torch.logit(torch.rand(3, T, 2, dtype=torch.float64).clamp(1e-3, 1 - 1e-3))
    torch.testing.assert_close(prior.inverse(e2, None, cond), recomputing_inverse(prior, e2, cond), atol=1e-9, rtol=0)


@pytest.mark.parametrize("positions,relations", [("index", "none"), ("degree", "adjacency")])
def test_log_det_matches_autograd_jacobian(positions, relations):
    prior = random_prior(positions, relations)
    T, D = 4, 2
    cond = cond_for(positions, relations, 1, T)
    z = torch.randn(1, T, D, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: prior(v.view(1, T, D), None, cond)[0].flatten(), z.flatten())
    assert torch.triu(jac, diagonal=1).abs().max().item() == 0, "not autoregressive over (element, dimension)"
    _, log_det = prior(z, None, cond)
    assert log_det.sum().item() == pytest.approx(torch.slogdet(jac)[1].item(), abs=1e-8)


@pytest.mark.parametrize("relations", ["none", "adjacency"])
def test_density_of_two_elements_integrates_to_one(relations):
    """D = 1, two elements: midpoint quadrature over z = 6·logit(u), u on a grid over (0, 1)²
    (heavy tails reach far out)."""
    prior = random_prior("index", relations, dim=1)
    m = 1200
    u = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    z1, z2 = torch.meshgrid(6 * torch.logit(u), 6 * torch.logit(u), indexing="ij")
    dz = 6 / (u * (1 - u)) / m
    jac = dz[:, None] * dz[None, :]
    z = torch.stack([z1.flatten(), z2.flatten()], dim=1)[..., None]  # [m², 2, 1]
    cond = Condition(adjacency=torch.ones(1, 2, 2, dtype=torch.bool).expand(m * m, 2, 2)) if relations == "adjacency" else None
    with torch.no_grad():
        log_p = prior.log_prob(z, None, cond).sum(-1)
    assert (log_p.exp().view(m, m) * jac).sum().item() == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("positions,relations", STRUCTURES)
def test_an_element_never_reads_later_elements(positions, relations):
    """Changing z at element t changes no earlier element's log density (causality),
    and does change a later one's (the prior is not ignoring its inputs)."""
    prior = random_prior(positions, relations)
    T = length_for(positions)
    cond = cond_for(positions, relations, 2, T)
    z = torch.randn(2, T, 2, dtype=torch.float64)
    t = T // 2
    moved = z.clone()
    moved[:, t] += 1.5
    with torch.no_grad():
        before, after = prior.log_prob(z, None, cond), prior.log_prob(moved, None, cond)
    assert (before[:, :t] - after[:, :t]).abs().max().item() == 0
    assert (before[:, t + 1 :] - after[:, t + 1 :]).abs().max().item() > 1e-3


def test_sudoku_cells_are_not_exchangeable():
    """The grid prior knows where a cell is: swapping two cells' latents changes log p."""
    prior = random_prior("grid", "adjacency")
    cond = cond_for("grid", "adjacency", 4, 81)
    z = torch.randn(4, 81, 2, dtype=torch.float64)
    swapped = z.clone()
    swapped[:, [3, 40]] = z[:, [40, 3]]
    with torch.no_grad():
        gap = (prior.log_prob(z, None, cond).sum(-1) - prior.log_prob(swapped, None, cond).sum(-1)).abs()
    assert gap.min().item() > 1e-3


def test_edges_reach_the_density_through_the_relation_bias():
    """Removing one edge changes the density of the later endpoint (not of earlier elements);
    with relations=none the graph is not read at all."""
    T = 7
    adj = random_graph(1, T, seed=3, p=0.5)
    i, j = [int(v) for v in torch.nonzero(torch.triu(adj[0], 1))[0]]
    cut = adj.clone()
    cut[0, i, j] = cut[0, j, i] = False
    z = torch.randn(1, T, 2, dtype=torch.float64)
    with torch.no_grad():
        prior = random_prior("none", "adjacency")
        a, b = prior.log_prob(z, None, Condition(adjacency=adj)), prior.log_prob(z, None, Condition(adjacency=cut))
        assert (a[:, : j] - b[:, : j]).abs().max().item() == 0  # j > i: elements before j cannot see the edge's token pair
        assert (a[:, j] - b[:, j]).abs().item() > 1e-4
        blind = random_prior("index", "none")
        assert torch.equal(blind.log_prob(z, None, Condition(adjacency=adj)), blind.log_prob(z, None, Condition(adjacency=cut)))


def test_bad_structure_is_refused_by_name():
    with pytest.raises(ValueError, match="prior.encoder.positions"):
        ar_prior(1, "transformer", positions="rows")
    with pytest.raises(ValueError, match="adjacency"):
        random_prior("none", "adjacency").log_prob(torch.randn(1, 5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="max_length"):
        random_prior("index", "none").log_prob(torch.randn(1, 17, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="81"):
        random_prior("grid", "none").log_prob(torch.randn(1, 82, 2, dtype=torch.float64))


def distinct_degree_graph(T: int = 6) -> torch.Tensor:
    """A graph whose node degrees are all different except one pair (a 'half graph'),
    with a random labelling; returns ``[1, T, T]`` and checks the degrees used below."""
    adj = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(T):
            if i != j and i + j >= T - 1:
                adj[i, j] = True
    perm = torch.randperm(T, generator=torch.Generator().manual_seed(1))
    return adj[perm][:, perm][None]


def test_degree_order_inverts_and_is_equivariant_where_degrees_differ():
    """order=degree: exact inverse, and relabelling the nodes together with the graph permutes
    the per-node log densities (to 1e-5) — here all nodes of equal degree are also
    interchangeable in the graph, so the tie order does not matter."""
    prior = random_prior("degree", "adjacency", order="degree")
    adj = distinct_degree_graph()
    T = adj.shape[1]
    z = torch.randn(1, T, 2, dtype=torch.float64)
    e, _ = prior(z, None, Condition(adjacency=adj))
    assert (prior.inverse(e, None, Condition(adjacency=adj)) - z).abs().max().item() < 1e-5
    torch.testing.assert_close(prior.inverse(e, None, Condition(adjacency=adj)), recomputing_inverse(prior, e, Condition(adjacency=adj)), atol=1e-9, rtol=0)
    relabel = torch.randperm(T, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        log_p = prior.log_prob(z, None, Condition(adjacency=adj))
        moved = prior.log_prob(z[:, relabel], None, Condition(adjacency=adj[:, relabel][:, :, relabel]))
    assert (moved - log_p[:, relabel]).abs().max().item() < 1e-5
    given = random_prior("degree", "adjacency", order="given")
    with torch.no_grad():
        gap = (given.log_prob(z[:, relabel], None, Condition(adjacency=adj[:, relabel][:, :, relabel])).sum() - given.log_prob(z, None, Condition(adjacency=adj)).sum()).abs()
    assert gap.item() > 1e-3, "the given order is not equivariant: this test would not notice a broken sort"
