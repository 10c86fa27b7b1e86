"""Generation at test time: rejection sampling of objects from the prior, the
task's validity checks, and the support mass ``log Z`` (docs/design.md, Renormalised prior).

A model here is anything with ``generate(num, length, condition) -> [num, length]``
(−1 marks a token outside every support) and ``log_support_mass(length, n, condition)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .condition import Condition
from .data.base import SamplingGroup, Task
from .objective import has_estimate
from .settings import Count, NonNegativeInt, check_fields


@dataclass
class EvalSettings:
    """How a run is evaluated at test time (the ``eval`` config section).

    iw_samples: k of ``test/iwbo_bits``; log_z_samples: prior samples for a Monte
    Carlo ``log Z``; max_tries: draws per object at most in rejection sampling;
    num_samples: objects kept for ``results.json`` (and generated, for tasks that
    do not generate one object per test object)."""

    iw_samples: NonNegativeInt = 16
    log_z_samples: Count = 256
    max_tries: Count = 100
    num_samples: NonNegativeInt = 4

    def __post_init__(self):
        check_fields(self, "eval")


@dataclass
class Generation:
    """What :func:`evaluate_generation` found: ``log_z`` (with its estimator),
    ``sampling`` (validity with and without rejection, acceptance, counts) and the
    first ``samples``, rendered by the task."""

    log_z: dict
    sampling: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float]:
        # an estimate that could not be made is not a number: results.json says why
        out = {"test/log_Z": self.log_z["log_Z"]} if has_estimate(self.log_z) else {}
        if self.sampling:
            out.update({"sample/validity": self.sampling["validity_rejection"], "sample/acceptance": self.sampling["acceptance"]})
        return out


@torch.no_grad()
def sample_with_rejection(model, num: int, length: int, is_valid, condition: Condition | None = None,
                          max_tries: int = 100) -> dict:
    """Generate ``num`` objects; redraw those with a token outside every support
    (TRUFL's gaps, Argmax's invalid codes) up to ``max_tries`` draws per object.

    Returns validity without rejection (first draws) and with it, the
    acceptance rate (objects in support / objects proposed), and the objects
    (``samples [num, length]``). Objects still outside the support after the
    cap count as invalid.
    """
    device = next(model.parameters()).device
    condition = condition.to(device) if condition is not None else None
    first = model.generate(num, length, condition)
    x = first.clone()
    pending = ~(x >= 0).all(-1)
    proposed = num
    for _ in range(max_tries - 1):
        if not pending.any():
            break
        idx = pending.nonzero().squeeze(-1)
        redraw = model.generate(len(idx), length, condition[idx] if condition is not None else None)
        proposed += len(idx)
        x[idx] = redraw
        pending[idx] = ~(redraw >= 0).all(-1)
    return {
        "validity_plain": is_valid(first, condition).float().mean().item(),
        "validity_rejection": is_valid(x, condition).float().mean().item(),
        "acceptance": (num - int(pending.sum())) / proposed,
        "objects": num,
        "proposed": proposed,
        "max_tries": max_tries,
        "samples": x,
    }


def merge_sampling(parts: list[dict], max_tries: int) -> dict:
    """Object-weighted validity and overall acceptance over sampling groups."""
    objects = sum(p["objects"] for p in parts)
    proposed = sum(p["proposed"] for p in parts)
    accepted = sum(p["acceptance"] * p["proposed"] for p in parts)
    return {
        "validity_plain": sum(p["validity_plain"] * p["objects"] for p in parts) / objects,
        "validity_rejection": sum(p["validity_rejection"] * p["objects"] for p in parts) / objects,
        "acceptance": accepted / proposed,
        "objects": objects,
        "proposed": proposed,
        "max_tries": max_tries,
    }


def support_mass(model, task: Task, groups: list[SamplingGroup], settings: EvalSettings) -> dict:
    """``log Z`` per token of the model's support. A conditional prior (groups carry a
    condition, e.g. test graphs) is estimated on every group and the per-token values are
    averaged weighted by the groups' tokens, so Z covers the whole test set."""
    if not groups or groups[0].condition is None:
        return model.log_support_mass(task.seq_len, settings.log_z_samples, None)
    parts = [(g.num * g.length, model.log_support_mass(g.length, settings.log_z_samples, g.condition)) for g in groups]
    missing = [p for _, p in parts if not has_estimate(p)]
    if missing:
        return {**missing[0], "conditioned_on": f"{len(missing)} of {len(parts)} groups of test objects without an estimate"}
    tokens = sum(w for w, _ in parts)
    return {
        "log_Z": sum(w * p["log_Z"] for w, p in parts) / tokens,
        "stderr": math.sqrt(sum((w * p["stderr"]) ** 2 for w, p in parts)) / tokens,
        "estimator": parts[0][1]["estimator"],
        "conditioned_on": f"{sum(g.num for g in groups)} test objects in {len(groups)} groups, weighted by tokens",
    }


def evaluate_generation(model, task: Task, settings: EvalSettings) -> Generation:
    """``log Z`` of the model's support, then one pass over the task's sampling
    groups: rejection sampling, validity, acceptance and the first samples."""
    groups: list[SamplingGroup] = task.sampling_groups(settings.num_samples)
    log_z = support_mass(model, task, groups, settings)
    parts = [sample_with_rejection(model, g.num, g.length, task.is_valid, g.condition, settings.max_tries) for g in groups]
    if not parts:
        return Generation(log_z)
    samples = [task.render(row) for p in parts for row in p["samples"].cpu().tolist()][: settings.num_samples]
    return Generation(log_z, merge_sampling(parts, settings.max_tries), samples)
