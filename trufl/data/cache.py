"""On-disk caches of generated and processed data, shared safely by parallel jobs."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import Progress

from ..atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)


def cache_key(**fields) -> str:
    """Short stable hash of the fields that determine a generated dataset."""
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_or_build(path: Path, builder) -> dict[str, np.ndarray]:
    """Arrays from ``path`` (an .npz) or from ``builder()``, saved atomically.

    Parallel jobs of a sweep share the cache: a lock file makes one of them
    build while the others wait and then load its result. A SHA-256 of the file
    is kept beside it (``<name>.sha256``); a file that does not match it, or
    does not load (truncated, corrupted), is rebuilt with a warning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            arrays, problem = _load_checked(path)
            if arrays is not None:
                return arrays
            log.warning("data cache %s is %s; rebuilding it", path, problem)
        arrays = builder()
        # a unique temporary file beside the cache, renamed into place once complete; the
        # checksum goes first, so a kill in between leaves a mismatch (a rebuild), never a bad hit
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **arrays)
            write_text_atomic(_checksum_path(path), _sha256(tmp))
        return arrays


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_checked(path: Path) -> tuple[dict[str, np.ndarray] | None, str]:
    """``(arrays, "")``, or ``(None, what is wrong)``. A file cached before checksums
    were kept is trusted if it loads, and its checksum recorded."""
    recorded = _checksum_path(path)
    if recorded.exists() and recorded.read_text().strip() != _sha256(path):
        return None, "corrupted or truncated (its SHA-256 differs from the one recorded when it was written)"
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        return None, f"unreadable ({type(err).__name__}: {err})"
    if not recorded.exists():
        write_text_atomic(recorded, _sha256(path))
    return arrays, ""


def generate_in_chunks(make_chunk, num: int, seed: int, workers: int, description: str, chunk: int = 200) -> list:
    """``num`` items from ``make_chunk(chunk_seed, count) -> list`` in chunks seeded
    one by one (so the result does not depend on ``workers``), run in ``workers``
    processes with a progress bar. ``make_chunk`` must be picklable (a module-level
    function or a ``functools.partial`` of one)."""
    jobs = [(seed * 1_000_003 + i, min(chunk, num - i * chunk)) for i in range(math.ceil(num / chunk))]
    items: list = []
    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=num)
        if workers <= 1:
            for job in jobs:
                items.extend(make_chunk(*job))
                progress.advance(task, job[1])
        else:
            with ProcessPoolExecutor(workers) as pool:
                for part in pool.map(make_chunk, *zip(*jobs)):
                    items.extend(part)
                    progress.advance(task, len(part))
    return items
