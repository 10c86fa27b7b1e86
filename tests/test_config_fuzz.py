"""Random bad overrides across every config group fail at composition, naming the key.

Each case composes the real config in-process (as ``train.py`` does) and validates
it: no data is read and nothing trains, so a few hundred cases take seconds. The
oracle is independent of :mod:`trufl.config`: wrong types come from the
constructors' annotations read here, out-of-range values from :data:`BAD_NUMBERS`
(values the code cannot run with, and why).
"""

from __future__ import annotations

import copy
import inspect
import random
import re
from dataclasses import dataclass
from typing import Literal, Union, get_args, get_origin

import types

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import get_object
from omegaconf import DictConfig

from trufl.config import ConfigError, range_rule, target_annotations, validate_config

from .conftest import CONF

GROUPS = ("dataset", "flow", "prior", "context", "weighting", "trainer", "logger")
BASE = ["logger=none", "paths.output_dir=/nonexistent/never-written", "paths.data_dir=/nonexistent/data"]

#: values each numeric key cannot run with: ``group.key`` or ``group/option.key`` (more specific)
BAD_NUMBERS = {
    # sizes and counts of data (a split or a batch of 0 items, negative workers)
    **{f"dataset.{k}": [0, -5] for k in ("train_size", "val_size", "test_size", "batch_size", "seq_len", "workers")},
    "dataset.num_workers": [-1], "dataset.seed": [-1, 2**32], "dataset.total": [0, -3],
    "dataset.size": [1, 0], "dataset.min_nodes": [2, 0], "dataset.max_nodes": [2, -1],
    # models: empty layers, non-positive scale bounds, gaps that leave no box
    "flow.dim": [0, -1], "flow.max_log_scale": [0, -1.5], "flow.init_gap": [0.5, -0.01, 2.0],
    "flow.num_flows": [-1], "flow.hidden": [0, -8], "flow.init_loc_std": [-0.5], "flow.init_spread": [0, -1.0], "flow.init_log_scale": [11.0, -50.0],
    "flow.num_layers": [0, -1], "flow.embed_dim": [0, -4], "dataset.eval_seq_len": [0, -16],
    "prior.embed_dim": [0, -4], "prior.num_bins": [0, -2],
    **{f"prior.{k}": [0, -3] for k in ("hidden", "num_layers", "num_mixtures", "head_hidden", "heads",
                                         "transformer_layers", "side", "box", "max_length")},
    "prior.num_flows": [-1], "prior.head_layers": [-1], "prior.dropout": [1.0, -0.1, 1.5],
    "context.dim": [0, -2], "context.hidden": [0, -1],
    # schedules: a warm-up over 0 steps divides by 0; factors must stay weights
    "weighting.steps": [0, -10], "weighting/kl_warmup.start": [-0.1, 1.5], "weighting/recon_decay.start": [-1.0],
    "weighting.decay": [0, 1.5, -0.5],
    # Lightning: -1 is "unlimited", below is an error; floats are fractions of an epoch
    "trainer.max_steps": [-2, -100], "trainer.max_epochs": [-2], "trainer.val_check_interval": [0, -1, 1.5, 0.0],
    "trainer.limit_val_batches": [-1, 1.5], "trainer.limit_test_batches": [-1, 2.5],
    "trainer.gradient_clip_val": [-1.0], "trainer.log_every_n_steps": [-1], "trainer.num_sanity_val_steps": [-2],
    "trainer.devices": [-2], "trainer.check_val_every_n_epoch": [0],
    # run settings
    "seed": [-1, 2**32], "recon_weight": [-0.5], "kl_weight": [-1], "latent_dim": [0, -2], "num_threads": [0, -1],
    "logger.version": [-1], "check_finite_every": [-1], "optim.lr": [0, -1e-3], "optim.weight_decay": [-0.1], "optim.warmup_steps": [-1],
    "eval.iw_samples": [-1], "eval.log_z_samples": [0], "eval.num_samples": [-1], "eval.max_tries": [0],
}
#: values that look wrong but are right (Lightning's conventions, nulls, edges): must pass
GOOD_EDGES = [
    "trainer.max_steps=-1", "trainer.max_epochs=-1", "trainer.val_check_interval=1.0", "trainer.val_check_interval=7",
    "trainer.limit_val_batches=0", "trainer.limit_val_batches=0.25", "trainer.limit_test_batches=3",
    "trainer.precision=bf16-mixed", "trainer.precision=16", "trainer.deterministic=warn", "trainer.devices=auto",
    "trainer.accelerator=cpu", "trainer.gradient_clip_val=0", "trainer.check_val_every_n_epoch=null",
    "flow.init_gap=0", "flow.max_log_scale=1", "recon_weight=0", "kl_weight=10", "eval.iw_samples=0",
    "optim.schedule=cosine", "num_threads=2", "seed=4294967295", "tags=[a,b]", "ckpt_path=/some/file.ckpt",
    "dataset=toy dataset.probs=[0.5,0.5]", "dataset=graph_colouring_tiny dataset.degree=[2,3]",
    "flow=argmax flow.dim=null", "flow=argmax flow.variant=onehot", "weighting=kl_warmup weighting.start=1",
    "weighting=recon_decay weighting.decay=1", "context=causal_lstm", "prior=ar_lstm prior.encoder.dropout=0.5",
]


@dataclass(frozen=True)
class Case:
    """One bad override and the key its error must name."""

    overrides: tuple[str, ...]
    key: str
    kind: str


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(*overrides: str) -> DictConfig:
    return compose("config", overrides=[*BASE, *overrides])


def _members(tp) -> list:
    if get_origin(tp) in (Union, types.UnionType):
        return [m for a in get_args(tp) for m in _members(a)]
    return [tp]


def wrong_values(tp, rng: random.Random) -> list[str]:
    """Override strings of the wrong type for annotation ``tp`` (empty when any value could be right)."""
    members = _members(tp)
    if any(m in (inspect.Parameter.empty, object) for m in members):
        return []
    literals = [a for m in members if get_origin(m) is Literal for a in get_args(m)]
    takes = {m for m in members if m in (int, float, bool, str)}
    takes |= {list for m in members if get_origin(m) in (list, tuple)}
    if str in takes or any(isinstance(m, type) and m.__module__ not in ("builtins",) for m in members):
        return []  # strings are fine, or an object (e.g. a Lightning plugin) is accepted
    out = []
    if not takes & {int, float}:
        out.append(str(rng.choice([3, -7, 0.25])))
    if int in takes and float not in takes:
        out += [f"{rng.randint(1, 9)}.5", "1e3"]
    if bool not in takes and not literals:
        out.append(rng.choice(["true", "false"]))
    if literals or takes & {int, float, bool}:
        out.append(rng.choice(["abc", "ten", "'3'", "none_of_these"]))
    if list not in takes:
        out.append("[1,2]")
    elif not takes & {int, float}:
        out.append(str(rng.randint(1, 9)))
    return out


def numeric_keys() -> dict[tuple[str, str], dict]:
    """``(group, option) -> {key: annotation}`` of every option in conf/ (and the top-level sections)."""
    from trufl.config import RunSettings
    from trufl.optim import OptimSettings
    from trufl.sampling import EvalSettings

    out = {("", ""): target_annotations(RunSettings)[0]}
    out[("optim", "")] = {k: v for k, v in target_annotations(OptimSettings)[0].items() if k != "max_steps"}
    out[("eval", "")] = target_annotations(EvalSettings)[0]
    for group in GROUPS:
        for option in options(group):
            node = compose_case((f"{group}={option}", "seed=0")).get(group)
            if isinstance(node, DictConfig) and "_target_" in node:
                params = target_annotations(get_object(node._target_))[0]
                out[(group, option)] = {k: params[k] for k in node if k in params}
    return out


def bad_numbers(group: str, option: str, key: str) -> list:
    qualified = f"{group}.{key}" if group else key
    return BAD_NUMBERS.get(f"{group}/{option}.{key}", BAD_NUMBERS.get(qualified, []))


def typo(name: str, rng: random.Random) -> str:
    i = rng.randrange(len(name))
    return rng.choice([name[:i] + name[i + 1:] + "x", name[:i] + rng.choice("qzjk") + name[i:], name + "s"])


def all_cases(rng: random.Random) -> list[Case]:
    """Every bad override we can derive, over all groups, options and keys."""
    cases = []
    for (group, option), annotations in numeric_keys().items():
        select = (f"{group}={option}",) if option else ()
        for key, tp in annotations.items():
            full = f"{group}.{key}" if group else key
            kind = "unknown choice" if any(get_origin(m) is Literal for m in _members(tp)) else "type"
            cases += [Case((*select, f"{full}={v}"), full, kind) for v in wrong_values(tp, rng)]
            cases += [Case((*select, f"{full}={v}"), full, "range") for v in bad_numbers(group, option, key)]
            name = typo(key, rng)
            if name not in annotations:
                cases.append(Case((*select, f"+{group + '.' if group else ''}{name}=1"), name, "unknown key"))
                cases.append(Case((*select, f"{group + '.' if group else ''}{name}=1"), name, "unknown key"))
    for group in GROUPS:
        cases += [Case((f"{group}={typo(rng.choice(options(group)), rng)}",), group, "unknown choice") for _ in range(2)]
    return cases


def stratified(cases: list[Case], per_kind: int, rng: random.Random) -> list[Case]:
    """Up to ``per_kind`` random cases of each kind (all of a rarer kind)."""
    out = []
    for kind in sorted({c.kind for c in cases}):
        pool = [c for c in cases if c.kind == kind]
        out += rng.sample(pool, min(per_kind, len(pool)))
    return out


_BASES: dict[tuple[str, ...], DictConfig] = {}


def compose_case(overrides: tuple[str, ...]) -> DictConfig:
    """The config ``train.py`` would compose for ``overrides``. Group choices go through
    Hydra's compose (cached per choice); the last ``key=value`` override is applied the way
    Hydra applies it (its parser and ``_apply_overrides_to_config``, struct mode), which
    is the same composition at a fraction of the cost."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices, (last,) = overrides[:-1], overrides[-1:]
    if last.split("=")[0] in GROUPS:
        return compose_cfg(*overrides)  # a group choice: Hydra looks the option up
    if choices not in _BASES:
        _BASES[choices] = compose_cfg(*choices)
    cfg = copy.deepcopy(_BASES[choices])
    ConfigLoaderImpl._apply_overrides_to_config(OverridesParser.create().parse_overrides([last]), cfg)
    return cfg


def fails_naming(case: Case) -> str | None:
    """None when composing + validating ``case`` fails with a message naming its key;
    otherwise what happened instead."""
    try:
        cfg = compose_case(case.overrides)
    except HydraException as err:  # unknown keys/choices: Hydra's own composition error
        return None if case.key in str(err) else f"Hydra error not naming {case.key}: {err}"
    try:
        validate_config(cfg)
    except ConfigError as err:
        return None if re.search(rf"(^|[\s.']){re.escape(case.key)}\b", str(err)) else f"ConfigError not naming {case.key}: {err}"
    except Exception as err:  # noqa: BLE001 - any other exception is the failure we are looking for
        return f"{type(err).__name__} (not a ConfigError): {err}"
    return "accepted"


@pytest.fixture
def hydra_conf():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def rejections(*override_sets: str) -> dict[str, str]:
    """The validation error of each override set that fails (none should)."""
    errors = {}
    for overrides in override_sets:
        try:
            validate_config(compose_cfg(*overrides.split()))
        except ConfigError as err:
            errors[overrides] = str(err)
    return errors


def test_every_option_of_every_group_is_valid_as_shipped(hydra_conf):
    assert rejections(*(f"{group}={option}" for group in GROUPS for option in options(group))) == {}


def test_at_least_200_random_bad_overrides_fail_at_composition_naming_the_key(hydra_conf):
    rng = random.Random(20261124)
    cases = all_cases(rng)
    sample = stratified(cases, 70, rng)
    kinds = {c.kind for c in sample}
    groups = {c.overrides[-1].lstrip("+").split(".")[0].split("=")[0] for c in sample}
    assert len(sample) >= 200 and kinds == {"type", "range", "unknown key", "unknown choice"}, (len(sample), kinds)
    assert set(GROUPS) | {"optim", "eval"} <= groups, groups
    failures = {" ".join(c.overrides): why for c in sample if (why := fails_naming(c)) is not None}
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())


@pytest.mark.parametrize("override", GOOD_EDGES)
def test_valid_edge_values_are_accepted(hydra_conf, override):
    assert rejections(override) == {}


def test_every_numeric_setting_has_a_range(hydra_conf):
    """A new int/float constructor parameter (e.g. a prior's bin count) needs a range:
    a RANGES entry in trufl/config.py or a count-like name (COUNT_NAMES)."""
    missing = []
    for (group, option), annotations in numeric_keys().items():
        target = compose_cfg(f"{group}={option}")[group]._target_ if option else None
        for key, tp in annotations.items():
            numbers = [m for m in _members(tp) if m in (int, float)]
            if any(range_rule(group, target, key, m) is None for m in numbers):
                missing.append(f"{group + '.' if group else ''}{key} ({option or 'top level'})")
    assert not missing, f"no range for: {missing}"


def test_bad_numbers_cover_every_numeric_key(hydra_conf):
    """The fuzz oracle itself: each numeric key shipped in conf/ has known-bad values."""
    missing = [f"{g + '.' if g else ''}{k} ({o or 'top level'})" for (g, o), ann in numeric_keys().items()
               for k, tp in ann.items() if {int, float} & set(_members(tp)) and not bad_numbers(g, o, k)]
    assert not missing, missing


@pytest.mark.slow
def test_every_derivable_bad_override_fails_naming_the_key(hydra_conf):
    """The whole pool (~1400 cases) rather than a sample."""
    cases = all_cases(random.Random(20261124))
    failures = {" ".join(c.overrides): why for c in cases if (why := fails_naming(c)) is not None}
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
