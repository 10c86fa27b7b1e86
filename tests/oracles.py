"""Test oracles: slow, obviously-correct reference computations that the library's
fast paths are checked against (kept out of the library)."""

from __future__ import annotations

import numpy as np


def chromatic_number_brute_force(n: int, edges: np.ndarray, max_colours: int = 4) -> int:
    """Smallest k ≤ max_colours admitting a proper colouring, by exhaustive search
    with backtracking (independent of the generator's BFS and CP-SAT)."""
    adj = [set() for _ in range(n)]
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    for k in range(1, max_colours + 1):
        colour = [-1] * n

        def place(i: int) -> bool:
            if i == n:
                return True
            for c in range(k):
                if all(colour[j] != c for j in adj[i]):
                    colour[i] = c
                    if place(i + 1):
                        return True
            colour[i] = -1
            return False

        if place(0):
            return k
    return max_colours + 1
