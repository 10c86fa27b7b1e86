"""Checkpoint files that survive a failed save, and a check of a checkpoint before resuming.

* :class:`AtomicCheckpointIO` (every checkpoint of a run, set by :func:`trufl.build.build_trainer`)
  writes each checkpoint to a temporary file beside it and renames it into place
  (:mod:`trufl.atomic`): a full disk, an exception or a kill during a save leaves the
  previous file whole. Lightning's own save stages the file in the system temporary
  directory and *moves* it, which is a copy into the destination (not atomic) when that
  directory is on another file system than the run, as on most clusters.
* :func:`keep_previous`: before ``last.ckpt`` is replaced, the state it held stays as
  ``last-previous.ckpt`` (a hard link: no copy, no extra space until the next save).
* :func:`check_resumable`: a ``ckpt_path`` that is truncated, corrupted or not a checkpoint
  is refused before training, naming the file and the newest good checkpoint beside it.

Trust boundary: checkpoints are loaded with ``weights_only=True`` (PyTorch's safe unpickler,
also Lightning's default on resume with torch >= 2.6): ours hold only tensors and plain
Python values (the loops' and callbacks' state, the optimiser's and scheduler's state dicts),
so a checkpoint from elsewhere cannot run code when it is checked or loaded.
"""

from __future__ import annotations

import io
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from .atomic import atomic_path, write_bytes_atomic
from .checkpoint import CheckpointError

log = logging.getLogger(__name__)

#: what ``last.ckpt`` held before its latest save (:func:`keep_previous`)
PREVIOUS = "last-previous.ckpt"
#: Lightning's named checkpoints for ``ckpt_path`` (resolved by Lightning, not files)
SPECIAL_PATHS = {"last", "best", "hpc", "registry"}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer with an atomic write in the checkpoint's own directory
    (a file system path; URLs go to Lightning's writer). Only global rank 0 calls it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised before the file is touched: a failure here writes nothing
        write_bytes_atomic(path, buffer.getvalue())


def keep_previous(path: Path, previous: Path) -> None:
    """``previous`` holds what ``path`` holds now (a hard link, else a copy), replaced atomically."""
    with atomic_path(previous) as tmp:
        try:
            os.unlink(tmp)
            os.link(path, tmp)
        except OSError:  # a file system without hard links
            tmp.write_bytes(path.read_bytes())


def checkpoint_problem(path: Path) -> str | None:
    """What is wrong with ``path`` as a checkpoint to resume from, or None when it is whole:
    a complete archive whose every member matches its CRC-32, loadable with
    ``weights_only=True``, with the model's weights and the step."""
    if not path.is_file():
        return "there is no such file"
    if not zipfile.is_zipfile(path):
        return "it is truncated or not a PyTorch checkpoint (no complete zip archive)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f"it is corrupted ({type(err).__name__}: {err})"
    if bad is not None:
        return f"it is corrupted (member {bad} does not match its CRC-32)"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any failure to load means it cannot be resumed from
        return f"it does not load with weights_only=True ({type(err).__name__}: {str(err)[:300]})"
    missing = [k for k in ("state_dict", "global_step") if not isinstance(state, dict) or k not in state]
    if missing:
        return f"it is not a Lightning training checkpoint (no {', '.join(missing)})"
    return None


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def good_alternative(path: Path) -> tuple[Path, int] | None:
    """The newest whole checkpoint beside ``path`` (``last-previous.ckpt`` first among equals) and its step."""
    candidates = [path.with_name(PREVIOUS)] + sorted(p for p in path.parent.glob("*.ckpt") if p.name != PREVIOUS)
    good = [(p, _step(p)) for p in candidates if p.resolve() != path.resolve() and checkpoint_problem(p) is None]
    return max(good, key=lambda found: found[1], default=None)


def check_resumable(ckpt_path: str | Path | None) -> None:
    """Raise :class:`CheckpointError` when ``ckpt_path`` (a file) cannot be resumed from, naming
    the newest good checkpoint in its directory when there is one. ``None`` and Lightning's
    names (``last``, ``best``…) pass."""
    if ckpt_path is None or str(ckpt_path) in SPECIAL_PATHS or "://" in str(ckpt_path):
        return
    path = Path(ckpt_path)
    problem = checkpoint_problem(path)
    if problem is None:
        return
    message = f"ckpt_path={path} cannot be resumed from: {problem}."
    alternative = good_alternative(path) if path.parent.is_dir() else None
    if alternative is not None:
        message += (f" The previous good checkpoint is {alternative[0]} (step {alternative[1]}): "
                    f"resume with ckpt_path={alternative[0]}")
    else:
        message += f" No good checkpoint was found beside it in {path.parent}."
    raise CheckpointError(message)
