"""An experiment file (``experiments/<name>.yaml``): one table or figure of docs/results.md, as
a sweep (every value list an axis), the row keys, the columns and the published rows."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .curves import CurveSpec
from .repository import EXPERIMENTS

REQUIRED = ("title", "sweep", "rows", "columns")


def read_spec(path: Path) -> dict:
    """The experiment file, checked: a clear error for a missing file or key."""
    if not path.is_file():
        sys.exit(f"no experiment file {path} (see {EXPERIMENTS})")
    spec = yaml.safe_load(path.read_text())
    missing = [k for k in REQUIRED if k not in (spec or {})]
    if missing:
        sys.exit(f"{path}: missing {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    try:
        CurveSpec.read(spec.get("curves"), f"{path}: curves")  # checked now, not after the sweep
    except ValueError as err:
        sys.exit(str(err))
    spec.setdefault("published", [])
    spec.setdefault("tiny", [])
    spec.setdefault("figures", [])
    spec.setdefault("widths", False)
    spec["name"] = path.stem
    return spec
