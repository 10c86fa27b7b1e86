"""Reading runs' ``results.json`` files (what :mod:`trufl.results` writes): which runs
finished, a config group's choice, a number by name, a quantity a model does not have."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NOT_APPLICABLE = "n/a"


def load(root: Path) -> list[dict]:
    """Every ``results.json`` under ``root`` (recursively), in path order."""
    files = sorted(root.rglob("results.json"))
    if not files:
        sys.exit(f"no results.json under {root}")
    return [json.loads(f.read_text()) for f in files]


def status(result: dict) -> str:
    """``finished``, ``failed``, ``interrupted`` or ``started`` (running, or killed before it could
    write an outcome); files from before ``status`` existed: by their content."""
    return result.get("status") or ("finished" if "metrics" in result else "interrupted" if result.get("interrupted") else "failed")


def group_value(result: dict, key: str) -> Any:
    """A config group's choice (``flow``, ``dataset``: the option's name), a config value, or
    the run's ``configuration`` label (runs from before the label were all ``shared``)."""
    if key == "configuration":
        return result.get("configuration", "shared")
    if key in result.get("choices", {}):
        return result["choices"][key]
    node = result["config"]
    for part in key.split("."):
        node = node[part]
    return node.get("_target_", "").rsplit(".", 1)[-1] if isinstance(node, dict) else node


def value(result: dict, source: str) -> Any:
    """A number from results.json: ``test/nll_bits`` (a metric) or a dotted path such
    as ``sampling.validity_plain``, ``dataset.optimum_bits``, ``renormalised.test/nll_bits``."""
    if "." not in source:
        return result["metrics"].get(source, result.get(source))
    node = result
    for part in source.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def not_applicable(result: dict, source: str) -> bool:
    """The model has no such quantity (the categorical baseline's KL, IWBO, log Z…)."""
    name = source.rsplit("/", 1)[-1]
    return name in result.get("not_applicable", []) or (source.startswith("renormalised.") and "log_Z" in result.get("not_applicable", []))
