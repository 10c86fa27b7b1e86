"""Read an offline W&B run's records (``run-<id>.wandb``) to check what a run sent.

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then
32 KiB blocks of chunks (crc32 4 bytes, length 2, type 1: full/first/middle/last) whose
payloads join into ``wandb.proto`` ``Record`` messages. wandb 0.31 ships no Python reader.
"""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(run_dir: Path):
    """Every ``Record`` of the offline run in ``run_dir`` (``.../wandb/offline-run-*``), in order."""
    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B datastore"
    pos, payload = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        payload += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(payload)
            yield record
            payload = b""
        elif kind == 0 and length == 0:  # zero padding at the file's end
            payload = b""


def of_type(run_dir: Path, kind: str) -> list:
    """The payloads of one record type (``run``, ``config``, ``artifact``, ``history``…)."""
    return [getattr(r, kind) for r in records(run_dir) if r.WhichOneof("record_type") == kind]


def config_keys(run_dir: Path) -> list[str]:
    """The top-level config keys the run sent, in order (one entry per key per update)."""
    return [item.key for c in of_type(run_dir, "config") for item in c.update]


def history_keys(run_dir: Path) -> set[str]:
    """Every name logged as history: step metrics and media (a media item's fields are
    nested under its name: ``["samples", "_type"]``)."""
    return {item.key or item.nested_key[0] for h in of_type(run_dir, "history") for item in h.item}
