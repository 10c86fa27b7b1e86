"""Atomic file writes: whoever reads a file the project writes (a table, ``results.json``,
a checkpoint, a figure) sees the previous complete file or the new complete one, never half.

Each writer goes to a uniquely named temporary file in the same directory (a rename is
atomic only within one file system), which is flushed and ``fsync``-ed before
:func:`os.replace` puts it in place; the directory is then ``fsync``-ed so the rename
survives a power cut. A write that fails (a full disk, an exception) removes its
temporary file and leaves the previous file as it was. A process killed mid-write
(SIGKILL) may leave a ``.<name>.<random>.tmp`` beside the file; the file itself is intact.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

#: bytes per ``write`` call of :func:`write_bytes_atomic`
CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: permissions of a written file: what ``open(path, "w")`` would give (mkstemp makes 0600)
FILE_MODE = 0o666 & ~_umask()


def _write_chunks(f: IO[bytes], data: bytes) -> None:
    """Write ``data`` to ``f`` in :data:`CHUNK`-sized pieces (the seam where the fault tests
    make a write fail half-way, as a full disk does)."""
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        f.write(view[start : start + CHUNK])


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform or file system without directory handles: the rename stands
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _replacing(path: Path, tmp: str) -> Iterator[None]:
    """Run the body that writes ``tmp``; then ``tmp`` replaces ``path`` (a clean exit) or is
    removed (any exception, re-raised), and the directory entry is made durable."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` whose file appears at ``path`` complete, on a clean exit only.

    ``mode`` is ``"w"`` (text, ``kwargs`` as for :func:`open`, e.g. ``newline=""``) or
    ``"wb"``. The yielded file's ``name`` is the temporary path (complete once flushed).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with _replacing(path, tmp):
        os.fchmod(fd, FILE_MODE)
        os.close(fd)
        with open(tmp, mode, **kwargs) as f:  # by name: ``f.name`` is the temporary path
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (ending in the same suffix, for writers that pick a
    format from it) for a writer that takes a path; it replaces ``path`` on a clean exit."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    with _replacing(path, tmp):
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """``path`` holds ``data``, or (when the write fails) what it held before."""
    with atomic_open(path, "wb") as f:
        _write_chunks(f, data)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """:func:`write_bytes_atomic` of ``text`` encoded."""
    write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2, **dumps: Any) -> None:
    """``obj`` as JSON (``json.dumps(obj, indent=indent, **dumps)``, with a final newline)."""
    write_text_atomic(path, json.dumps(obj, indent=indent, **dumps) + "\n")


def savefig_atomic(fig, path: str | Path, **savefig: Any) -> None:
    """``fig.savefig(path, **savefig)`` through a buffer, so the image appears complete;
    the format is the suffix's, as for ``savefig`` on a path."""
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=savefig.pop("format", path.suffix.lstrip(".") or None), **savefig)
    write_bytes_atomic(path, buffer.getvalue())
