"""On-disk caches of generated and processed data, shared safely by parallel jobs."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import Progress


def cache_key(**fields) -> str:
    """Short stable hash of the fields that determine a generated dataset."""
    return hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_or_build(path: Path, builder) -> dict[str, np.ndarray]:
    """Arrays from ``path`` (an .npz) or from ``builder()``, saved atomically.

    Parallel jobs of a sweep share the cache: a lock file makes one of them
    build while the others wait and then load its result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        arrays = builder()
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
        return arrays


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
