"""Where the repository keeps what the reporting reads and writes, and commands written
as someone in the repository's root would type them (what committed files record: no
interpreter or checkout path of the machine that ran them)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: the pages holding generated blocks: the Results tables and the benchmark
RESULTS_PAGE = ROOT / "docs" / "results.md"
PERFORMANCE_PAGE = ROOT / "docs" / "performance.md"
EXPERIMENTS = ROOT / "experiments"
RESULTS = EXPERIMENTS / "results"

#: an interpreter's file name: python, python3, python3.11
INTERPRETER = re.compile(r"python[0-9.]*")


def shown_path(value: str, root: Path = ROOT, cwd: Path | None = None) -> str:
    """``value`` relative to ``root`` when it names a path inside it: an absolute path, or
    a path relative to ``cwd`` that exists there; anything else as it is."""
    path, cwd = Path(value), Path.cwd() if cwd is None else cwd
    if not path.is_absolute():
        if cwd.resolve() == root.resolve() or not (cwd / path).exists():
            return value  # already relative to the root, or not a path
        path = cwd / path
    resolved, base = path.resolve(), root.resolve()
    return resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else str(path)


def shown_argument(arg: str, root: Path = ROOT, cwd: Path | None = None) -> str:
    """One argument with its path shown by :func:`shown_path`; a ``key=value`` override or
    ``--option=value`` keeps its key."""
    key, sep, value = arg.partition("=")
    if sep and value:
        return f"{key}={shown_path(value, root, cwd)}" if Path(value).is_absolute() else arg
    return shown_path(arg, root, cwd)


def shown_command(argv: Sequence[str], root: Path = ROOT, cwd: Path | None = None) -> str:
    """``argv`` as one shell line to run in ``root``: an interpreter as ``python``, paths
    inside ``root`` relative to it (paths elsewhere stay absolute)."""
    first, *rest = map(str, argv)
    first = "python" if INTERPRETER.fullmatch(Path(first).name) else shown_argument(first, root, cwd)
    return shlex.join([first, *(shown_argument(a, root, cwd) for a in rest)])
