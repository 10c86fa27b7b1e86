"""Config validation: every mistake is reported, by key, before any data or training.

Hydra already rejects overrides of keys that do not exist (struct mode) and
unknown group options (``flow=foo``). This adds what Hydra cannot know: keys
that the target class does not accept (typos in YAML files or ``+key=`` overrides),
targets outside the allowed namespaces, and values out of range.
"""

from __future__ import annotations

import inspect
import math

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

ALLOWED_TARGET_PREFIXES = ("trufl.", "torch.", "pytorch_lightning.")
#: keys filled in by the job, not by the config
INJECTED = {
    "flow": {"num_categories", "context_dim"},
    "prior": {"dim", "num_categories", "num_faces"},
    "context": {"num_categories"},
    "trainer": {"logger", "callbacks", "default_root_dir"},
}
TOP_LEVEL = {
    "dataset", "flow", "prior", "context", "weighting", "trainer", "logger", "paths", "experiment", "hydra",
    "seed", "recon_weight", "kl_weight", "ckpt_path", "num_threads", "optim", "eval", "check_finite_every",
    "task_name", "tags", "latent_dim", "callbacks",
}
SECTIONS = {
    "optim": {"lr": "positive", "weight_decay": "nonnegative", "warmup_steps": "nonnegative_int", "schedule": "choice"},
    "eval": {
        "iw_samples": "nonnegative_int", "log_z_samples": "positive_int", "num_samples": "nonnegative_int",
        "max_tries": "positive_int",
    },
}


class ConfigError(ValueError):
    """A configuration mistake; the message names every offending key."""


CHOICES = {"optim.schedule": ("constant", "cosine")}


def _check_number(key: str, value, kind: str) -> str | None:
    if kind == "choice":
        return None if value in CHOICES[key] else f"{key}={value!r} must be one of {CHOICES[key]}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return f"{key}={value!r} must be a number"
    if kind.endswith("int") and not isinstance(value, int):
        return f"{key}={value!r} must be an integer"
    if kind.startswith("positive") and value <= 0:
        return f"{key}={value} must be > 0"
    if kind.startswith("nonnegative") and value < 0:
        return f"{key}={value} must be >= 0"
    return None


def _check_target(group: str, node: DictConfig) -> list[str]:
    target = node.get("_target_")
    if target is None:
        return [f"{group}._target_ is missing"]
    if not str(target).startswith(ALLOWED_TARGET_PREFIXES):
        return [f"{group}._target_={target} is outside the allowed namespaces {ALLOWED_TARGET_PREFIXES}"]
    try:
        obj = get_object(target)
    except Exception as err:  # noqa: BLE001 - report, don't crash
        return [f"{group}._target_={target} cannot be imported: {err}"]
    params = inspect.signature(obj).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    accepted = set(params) - INJECTED.get(group, set())
    unknown = sorted(set(node.keys()) - accepted - {"_target_", "_partial_", "_convert_", "_recursive_"})
    return [f"unknown key {group}.{k} (valid keys for {target}: {', '.join(sorted(accepted))})" for k in unknown]


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` listing every problem found in ``cfg``."""
    errors: list[str] = []
    unknown = sorted(set(cfg.keys()) - TOP_LEVEL)
    errors += [f"unknown top-level key {k!r} (valid: {', '.join(sorted(TOP_LEVEL))})" for k in unknown]
    for key in ("recon_weight", "kl_weight"):
        errors.append(_check_number(key, cfg.get(key), "nonnegative"))
    if cfg.get("latent_dim") is not None:
        errors.append(_check_number("latent_dim", cfg.latent_dim, "positive_int"))
    for section, keys in SECTIONS.items():
        node = cfg.get(section) or {}
        errors += [f"unknown key {section}.{k} (valid: {', '.join(keys)})" for k in node if k not in keys]
        errors += [_check_number(f"{section}.{k}", node[k], kind) for k, kind in keys.items() if k in node]
    for group in ("dataset", "flow", "prior", "weighting", "trainer"):
        if not isinstance(cfg.get(group), DictConfig):
            errors.append(f"{group} must be a config group choice (e.g. {group}=<option>)")
            continue
        errors += _check_target(group, cfg[group])
    for group in ("logger", "context"):  # optional groups: empty means none
        if isinstance(cfg.get(group), DictConfig) and cfg[group]:
            errors += _check_target(group, cfg[group])
    for name, node in (cfg.get("callbacks") or {}).items():
        errors += _check_target(f"callbacks.{name}", node) if isinstance(node, DictConfig) else [f"callbacks.{name} must be a config node with a _target_"]
    probs = cfg.dataset.get("probs") if isinstance(cfg.get("dataset"), DictConfig) else None
    if probs is not None:
        if not isinstance(probs, (list, ListConfig)) or not all(isinstance(p, (int, float)) for p in probs):
            errors.append(f"dataset.probs={probs} must be a list of numbers")
        elif len(probs) < 2 or min(probs) <= 0 or abs(sum(probs) - 1) > 1e-6:
            errors.append(f"dataset.probs={list(probs)} must be >= 2 positive numbers summing to 1 (sum {sum(probs):.6g})")
    errors = [e for e in errors if e]
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain Python (for results.json)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
