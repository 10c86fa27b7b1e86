"""The support history file, ``<run>/support_history.jsonl``: one JSON record a line,
written by the callback (:class:`trufl.history.SupportHistory`) and read by the drawing
(:mod:`trufl.reporting.animation`). Both depend on this module, neither on the other.

* ``{"kind": "meta", ...}`` (:func:`meta_record`): dequantiser class, K, D, ``recon_weight``,
  the task's category probabilities (the toy's ``probs``; None for a task without them) and
  the grid axis (the same axis for both dimensions when D = 2);
* ``{"kind": "frame", "step": s, ...}`` (:func:`frame_record`): the box bounds in z-space
  (``boxes.lo/hi [K][D]``, dequantisers with boxes only), the dequantiser's summary
  (TRUFL's ``box_mass``), ``q(z|k)`` of every category on the grid (``density [K][G]`` or
  ``[K][G][G]``), the prior's density on the same grid (``prior [G]`` / ``[G][G]``) and the
  training metrics averaged over the steps since the previous frame (None before any);
* ``{"kind": "val", "step": s, "metrics": {...}}`` (:func:`val_record`): a validation's
  :data:`CURVE_METRICS`.

Records are appended one whole line at a time (:func:`append`), so an interrupted run
keeps what it wrote; a resumed run appends to the same file, after removing a line a kill cut
short; :func:`read_history` skips such a line with a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "support_history.jsonl"
#: the metrics drawn beside the supports (names of trufl.metrics.SPLIT_METRICS)
CURVE_METRICS = ("kl_bits", "recon_bits", "determinism")
#: significant digits kept for densities (the file stays a few MB at D = 2)
DIGITS = 6


def rounded(values: list | float) -> list | float:
    """Nested lists of floats (a tensor's ``tolist()``) with :data:`DIGITS` significant digits."""
    return [rounded(v) for v in values] if isinstance(values, list) else float(f"{values:.{DIGITS}g}")


def meta_record(dequantiser: str, num_categories: int, dim: int, recon_weight: float | None,
                probs: list[float] | None, axis: list[float], every_n_steps: int, max_steps: int,
                init: str | None = None) -> dict:
    """The first record: what the run is (``init``: where TRUFL's boxes started, None for other
    dequantisers) and the grid every frame is drawn on."""
    return {"kind": "meta", "dequantiser": dequantiser, "num_categories": num_categories, "dim": dim,
            "recon_weight": recon_weight, "probs": probs, "axis": axis, "every_n_steps": every_n_steps,
            "max_steps": max_steps, "init": init}


def frame_record(step: int, boxes: tuple[list, list] | None, summary: dict, density: list, prior: list,
                 train: dict[str, float] | None) -> dict:
    """One frame: ``boxes`` as ``(lo, hi)``; densities rounded to :data:`DIGITS` digits."""
    return {"kind": "frame", "step": step, "boxes": None if boxes is None else {"lo": boxes[0], "hi": boxes[1]},
            "summary": summary, "density": rounded(density), "prior": rounded(prior), "train": train}


def val_record(step: int, metrics: dict[str, float]) -> dict:
    return {"kind": "val", "step": step, "metrics": metrics}


def history_file(path: str | Path) -> Path:
    """The history file itself; a directory means its :data:`FILENAME`."""
    path = Path(path)
    return path / FILENAME if path.is_dir() else path


def append(path: str | Path, record: dict) -> None:
    """One JSON line, written whole by a single unbuffered write (an interrupted run keeps
    every record it finished). A line cut short by an earlier kill is removed first, with a
    warning, so the record does not join it on one unreadable line."""
    line = (json.dumps(record) + "\n").encode()
    with open(path, "ab+", buffering=0) as f:
        _drop_partial_tail(f, path)
        written = 0
        while written < len(line):  # a regular file takes it in one write; a short write is resumed
            written += f.write(line[written:])


def _drop_partial_tail(f, path: str | Path) -> None:
    """Truncate ``f`` (opened ``ab+``) after its last newline when it does not end in one."""
    end = f.seek(0, 2)
    if end == 0:
        return
    f.seek(end - 1)
    if f.read(1) == b"\n":
        return
    keep, pos = 0, end
    while pos > 0:  # the last newline, read backwards a block at a time
        start = max(0, pos - (1 << 16))
        f.seek(start)
        cut = f.read(pos - start).rfind(b"\n")
        if cut >= 0:
            keep = start + cut + 1
            break
        pos = start
    log.warning("%s: an incomplete last line (%d bytes, a run killed mid-write) removed before appending",
                path, end - keep)
    f.truncate(keep)


def read_history(path: str | Path) -> dict:
    """The history file as ``{"meta": {...}, "frames": [...], "val": [...]}``: frames and
    validations sorted by step, one per step (the latest written wins: a resumed run
    appends). A directory means its ``support_history.jsonl``."""
    path = history_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"no support history at {path} (train with callbacks.support_history enabled, "
                                "e.g. experiment=toy, with flow.dim <= 2)")
    meta, frames, val = None, {}, {}
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill: everything before it stands
                log.warning("%s:%d: incomplete line skipped", path, number)
                continue
            if record["kind"] == "meta":
                meta = meta or record
            else:
                (frames if record["kind"] == "frame" else val)[record["step"]] = record
    if meta is None:
        raise ValueError(f"{path} has no meta record (not a support history?)")
    return {"meta": meta, "frames": [frames[s] for s in sorted(frames)], "val": [val[s] for s in sorted(val)]}
