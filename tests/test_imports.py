"""No import cycles among trufl's modules: each module's imports are read with ``ast``
(function-level imports too: they close a cycle as soon as they run), relative imports
resolved, and every strongly connected group of modules reported as one cycle."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

from .conftest import ROOT

#: cycles allowed: none
ALLOWED: list[frozenset[str]] = []


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (a folder under ``root``) by dotted name; a package's
    ``__init__.py`` by the package's name."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _known(name: str, known: set[str]) -> str | None:
    """The innermost module of ``known`` that ``name`` (a module or a name in one) lives in."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported(name: str, path: Path, known: set[str]) -> dict[str, int]:
    """The modules of ``known`` that module ``name`` (file ``path``) imports, each with the
    line of its first import."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names]
        else:
            continue
        for target in filter(None, (_known(t, known) for t in targets)):
            if target != name:
                found[target] = min(found.get(target, node.lineno), node.lineno)
    return found


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """Tarjan's groups of modules that reach each other, those of two or more only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def cycle_through(graph: dict[str, dict[str, int]], group: set[str]) -> list[str]:
    """The shortest cycle from the group's first module back to it: ``[a, b, …, a]``."""
    start = min(group)
    previous = {start: None}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w in group and w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"{sorted(group)} is not strongly connected")


def import_cycles(root: Path, package: str, allowed: list[frozenset] = ()) -> list[str]:
    """Each cycle of ``package``'s imports, not in ``allowed``, as ``a -> b -> a (a.py:3, b.py:9)``."""
    found = modules(root, package)
    graph = {name: imported(name, path, set(found)) for name, path in found.items()}
    lines = []
    for group in strongly_connected(graph):
        if frozenset(group) in allowed:
            continue
        cycle = cycle_through(graph, group)
        where = ", ".join(f"{found[a].relative_to(root)}:{graph[a][b]}" for a, b in zip(cycle, cycle[1:]))
        lines.append(f"{' -> '.join(cycle)} ({where})")
    return sorted(lines)


def test_no_import_cycle_among_trufl_modules():
    cycles = import_cycles(ROOT, "trufl", ALLOWED)
    assert cycles == [], "import cycles:\n  " + "\n  ".join(cycles)


def test_cycle_finder_reports_a_cycle_through_relative_and_function_level_imports(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from .sub import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "import os\n\n\ndef f():\n    from ..a import name\n",
        "pkg/c.py": "from . import a\nfrom .sub.b import f\n",  # imports into the cycle, is not part of it
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert import_cycles(tmp_path, "pkg") == ["pkg.a -> pkg.sub.b -> pkg.a (pkg/a.py:1, pkg/sub/b.py:5)"]
    assert import_cycles(tmp_path, "pkg", [frozenset({"pkg.a", "pkg.sub.b"})]) == []
