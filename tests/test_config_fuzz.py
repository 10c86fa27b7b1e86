"""Random bad overrides across every config group fail at composition, naming the key.

Each case composes the real config in-process (as ``train.py`` does) and validates
it: no data is read and nothing trains, so a few hundred cases take seconds. The
oracle is independent of :mod:`trufl.config`'s checks: wrong types come from the
constructors' annotations read here, out-of-range values from the ranges they
declare (:func:`declared_bad_values`, read here) and, where nothing can be declared
(Lightning's arguments; the priors until they declare theirs), :data:`BAD_NUMBERS`.
"""

from __future__ import annotations

import copy
import inspect
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import get_object
from omegaconf import DictConfig

from trufl import config
from trufl.config import ConfigError, target_annotations, validate_config
from trufl.settings import Range, members, metadata, plain

from .conftest import CONF

GROUPS = ("dataset", "flow", "prior", "context", "weighting", "trainer", "logger")
BASE = ["logger=none", "paths.output_dir=/nonexistent/never-written", "paths.data_dir=/nonexistent/data"]

#: values numeric keys without a declaration cannot run with, by ``prefix.key``
BAD_NUMBERS = {
    # Lightning: -1 is "unlimited", below is an error; floats are fractions of an epoch
    "trainer.max_steps": [-2, -100], "trainer.max_epochs": [-2], "trainer.val_check_interval": [0, -1, 1.5, 0.0],
    "trainer.limit_val_batches": [-1, 1.5], "trainer.limit_test_batches": [-1, 2.5],
    "trainer.gradient_clip_val": [-1.0], "trainer.log_every_n_steps": [-1], "trainer.num_sanity_val_steps": [-2],
    "trainer.devices": [-2], "trainer.check_val_every_n_epoch": [0], "logger.version": [-1],
    "callbacks.best.save_top_k": [-2], "callbacks.early_stopping.patience": [-1], "callbacks.early_stopping.min_delta": [-0.5],
}
#: values that look wrong but are right (Lightning's conventions, nulls, edges): must pass
GOOD_EDGES = [
    "trainer.max_steps=-1", "trainer.max_epochs=-1", "trainer.val_check_interval=1.0", "trainer.val_check_interval=7",
    "trainer.limit_val_batches=0", "trainer.limit_val_batches=0.25", "trainer.limit_test_batches=3",
    "trainer.precision=bf16-mixed", "trainer.precision=16", "trainer.deterministic=warn", "trainer.devices=auto",
    "trainer.accelerator=cpu", "trainer.gradient_clip_val=0", "trainer.check_val_every_n_epoch=null",
    "flow.init_gap=0", "flow.max_log_scale=1", "recon_weight=0", "kl_weight=10", "eval.iw_samples=0",
    "optim.schedule=cosine", "num_threads=2", "seed=4294967295", "tags=[a,b]", "ckpt_path=/some/file.ckpt",
    "dataset=toy dataset.probs=[0.5,0.5]", "dataset=graph_colouring_tiny dataset.degree=[2.5,3]",
    "dataset=graph_colouring_tiny dataset.min_nodes=3", "dataset=sets_sum dataset.kind=shuffle",
    "dataset=sudoku dataset.generation_workers=1", "callbacks.last.every_n_train_steps=1",
    "flow=argmax flow.dim=null", "flow=argmax flow.variant=onehot", "weighting=kl_warmup weighting.start=1",
    "weighting=recon_decay weighting.decay=1", "context=causal_lstm", "prior=ar_lstm prior.encoder.dropout=0.5",
    "experiment=toy callbacks.support_history.render=true",
]


def declared_bad_values(tp) -> list:
    """Numbers outside the ranges ``tp`` declares: below the low end, above the high end,
    at an open end, and NaN and ±inf where a float is declared."""
    out = []
    for member in members(tp):
        base = plain(member)
        for rule in (r for r in metadata(member) if isinstance(r, Range) and base in (int, float)):
            step, far = (1, 7) if base is int else (0.001, 1.5)
            if rule.low is not None:
                out += [rule.low - step, rule.low - far] + ([rule.low] if rule.low_open else [])
            if rule.high is not None:
                out += [rule.high + step, rule.high + far] + ([rule.high] if rule.high_open else [])
            out += [float("nan"), float("inf"), float("-inf")] if base is float else []
    return out


def override_value(number) -> str:
    """How an override spells ``number`` (Hydra reads nan, inf and -inf)."""
    if isinstance(number, float) and not math.isfinite(number):
        return "nan" if math.isnan(number) else "inf" if number > 0 else "-inf"
    return repr(number)


@dataclass(frozen=True)
class Section:
    """One node of the composed config: its key ``prefix`` ("" at the top), the overrides
    selecting it, its ``_target_`` (None for the run/optim/eval settings), its parameters
    (name -> annotation; the job's injected ones left out) and the keys trufl/conf/ sets."""

    prefix: str
    select: tuple[str, ...]
    target: str | None
    params: dict[str, Any]
    shipped: frozenset[str]

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    @property
    def label(self) -> str:
        return " ".join(self.select) or "top level"


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


def wrong_values(tp, rng: random.Random) -> list[str]:
    """Override strings of the wrong type for annotation ``tp`` (empty when any value could be right)."""
    parts = members(plain(tp))
    if any(m in (inspect.Parameter.empty, object) for m in parts):
        return []
    literals = [a for m in parts if get_origin(m) is Literal for a in get_args(m)]
    takes = {m for m in parts if m in (int, float, bool, str)}
    takes |= {list for m in parts if get_origin(m) in (list, tuple)}
    if str in takes or any(isinstance(m, type) and m.__module__ not in ("builtins",) for m in parts):
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


def _target_section(prefix: str, select: tuple[str, ...], node: DictConfig) -> Section:
    params = target_annotations(get_object(node._target_))[0]
    params = {k: tp for k, tp in params.items() if not config.injected(node._target_, k, tp)}
    return Section(prefix, select, node._target_, params, frozenset(k for k in node if k in params))


def sections() -> list[Section]:
    """Every node of the config: the run/optim/eval settings, each option of each group
    (and the nested parts it builds), and each callback of trufl/conf/callbacks/ and of the experiments."""
    from trufl.config import RunSettings
    from trufl.optim import OptimSettings
    from trufl.sampling import EvalSettings

    out = []
    for prefix, cls in (("", RunSettings), ("optim", OptimSettings), ("eval", EvalSettings)):
        params = {k: tp for k, tp in target_annotations(cls)[0].items() if not config.injected(None, k, tp)}
        out.append(Section(prefix, (), None, params, frozenset(params)))
    for group in GROUPS:
        for option in options(group):
            node = compose_case((f"{group}={option}", "seed=0")).get(group)
            if isinstance(node, DictConfig) and "_target_" in node:
                out.append(_target_section(group, (f"{group}={option}",), node))
                for key, part in node.items():  # parts their parent builds (prior.encoder)
                    if isinstance(part, DictConfig) and "_target_" in part:
                        out.append(_target_section(f"{group}.{key}", (f"{group}={option}",), part))
    seen = set()
    for select in [(f"callbacks={o}",) for o in options("callbacks")] + [(f"experiment={o}",) for o in options("experiment")]:
        for name, node in (compose_case((*select, "seed=0")).get("callbacks") or {}).items():
            if name not in seen:
                seen.add(name)
                out.append(_target_section(f"callbacks.{name}", select, node))
    return out


def numeric_types(tp) -> list[type]:
    return [m for m in members(plain(tp)) if m in (int, float)]


def bad_numbers(section: Section, key: str) -> list:
    return declared_bad_values(section.params[key]) + BAD_NUMBERS.get(section.key(key), [])


def typo(name: str, rng: random.Random) -> str:
    i = rng.randrange(len(name))
    return rng.choice([name[:i] + name[i + 1:] + "x", name[:i] + rng.choice("qzjk") + name[i:], name + "s"])


def all_cases(rng: random.Random) -> list[Case]:
    """Every bad override we can derive, over all groups, options and keys trufl/conf/ sets."""
    cases = []
    for section in sections():
        for key in sorted(section.shipped):
            tp, full = section.params[key], section.key(key)
            kind = "unknown choice" if any(get_origin(m) is Literal for m in members(plain(tp))) else "type"
            cases += [Case((*section.select, f"{full}={v}"), full, kind) for v in wrong_values(tp, rng)]
            cases += [Case((*section.select, f"{full}={override_value(v)}"), full, "range") for v in bad_numbers(section, key)]
            name = typo(key, rng)
            if name not in section.params:
                cases.append(Case((*section.select, f"+{section.key(name)}=1"), name, "unknown key"))
                cases.append(Case((*section.select, f"{section.key(name)}=1"), name, "unknown key"))
    for group in GROUPS:
        cases += [Case((f"{group}={typo(rng.choice(options(group)), rng)}",), group, "unknown choice") for _ in range(2)]
    return cases


def case_group(case: Case) -> str:
    return case.overrides[-1].lstrip("+").split(".")[0].split("=")[0]


def stratified(cases: list[Case], per_kind: int, rng: random.Random) -> list[Case]:
    """Up to ``per_kind`` random cases of each kind (all of a rarer kind), plus one random
    case of every group the draw missed (so every group is exercised whatever else is added)."""
    out = []
    for kind in sorted({c.kind for c in cases}):
        pool = [c for c in cases if c.kind == kind]
        out += rng.sample(pool, min(per_kind, len(pool)))
    for group in sorted({case_group(c) for c in cases} - {case_group(c) for c in out}):
        out.append(rng.choice([c for c in cases if case_group(c) == group]))
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


#: options that cannot run with the other groups' defaults, and what their refusal must say
NEEDS_ANOTHER_OPTION = {
    "dataset=enwik8": "needs dataset.path",  # no hub copy is the benchmark's bytes
    **{f"prior={p}": "flow.dim must be >= 2, got 1" for p in ("graph_coupling", "grid_coupling", "set_coupling")},
}


def test_every_option_of_every_group_is_valid_as_shipped(hydra_conf):
    """With the other groups' defaults, every option validates except the few that need
    another choice, which are refused (at validation: the run is assembled) saying which."""
    refused = rejections(*(f"{group}={option}" for group in GROUPS for option in options(group)))
    assert set(refused) == set(NEEDS_ANOTHER_OPTION)
    assert all(NEEDS_ANOTHER_OPTION[k] in message for k, message in refused.items()), refused
    # files are not looked at (dataset.path=/x is checked when the data is built)
    assert rejections("prior=set_coupling flow=argmax", "prior=set_coupling flow.dim=2", "dataset=enwik8 dataset.path=/x") == {}


def test_at_least_200_random_bad_overrides_fail_at_composition_naming_the_key(hydra_conf):
    rng = random.Random(20261124)
    cases = all_cases(rng)
    sample = stratified(cases, 70, rng)
    kinds = {c.kind for c in sample}
    groups = {case_group(c) for c in sample}
    assert len(sample) >= 200 and kinds == {"type", "range", "unknown key", "unknown choice"}, (len(sample), kinds)
    assert set(GROUPS) | {"optim", "eval", "callbacks"} <= groups, groups
    failures = {" ".join(c.overrides): why for c in sample if (why := fails_naming(c)) is not None}
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())


@pytest.mark.parametrize("override", GOOD_EDGES)
def test_valid_edge_values_are_accepted(hydra_conf, override):
    assert rejections(override) == {}


def undeclared_ranges() -> list[str]:
    """Numeric settings without a range: every numeric parameter of a trufl ``_target_`` in
    trufl/conf/ and every run/optim/eval setting must declare one; a Lightning key that trufl/conf/ sets
    needs a LIGHTNING_RANGES entry."""
    missing = []
    for section in sections():
        lightning = bool(section.target) and not section.target.startswith("trufl.")
        for key, tp in section.params.items():
            if lightning and key not in section.shipped:
                continue
            declared = {plain(m) for m in members(tp) if any(isinstance(r, Range) for r in metadata(m))}
            for number in numeric_types(tp):
                if number not in declared and not (lightning and config.range_rule(section.target, key, tp, number)):
                    missing.append(f"{section.key(key)} ({section.label})")
    return missing


def test_every_numeric_setting_declares_a_range(hydra_conf):
    """A new int/float constructor parameter needs a range next to it (``Annotated[int, Range(1)]``)."""
    assert undeclared_ranges() == []


def test_a_parameter_whose_range_declaration_is_removed_is_reported(hydra_conf, monkeypatch):
    from trufl.dequantisers import TruflDequantiser

    monkeypatch.setitem(inspect.unwrap(TruflDequantiser.__init__).__annotations__, "init_gap", "float")
    assert undeclared_ranges() == ["flow.init_gap (flow=trufl)"]


def test_a_declared_range_that_composition_does_not_enforce_is_caught(hydra_conf, monkeypatch):
    """Mutation check of the oracle: with trufl.config ignoring flow.init_gap's range, every
    out-of-range value generated from the declaration is reported as accepted."""
    enforced = config.range_rule
    monkeypatch.setattr(config, "check_model", lambda cfg: [])  # the constructor would refuse the value a second time
    monkeypatch.setattr(config, "range_rule", lambda target, name, *rest: None if name == "init_gap" else enforced(target, name, *rest))
    cases = [c for c in all_cases(random.Random(0)) if c.key == "flow.init_gap" and c.kind == "range"]
    values = sorted(c.overrides[-1].split("=")[1] for c in cases)
    assert values == sorted(["-0.001", "-1.5", "0.501", "2.0", "0.5", "nan", "inf", "-inf"])
    assert {fails_naming(c) for c in cases} == {"accepted"}


def test_bad_numbers_cover_every_numeric_key(hydra_conf):
    """The fuzz oracle itself: each numeric key shipped in trufl/conf/ has known-bad values."""
    missing = [f"{s.key(k)} ({s.label})" for s in sections() for k in s.shipped
               if numeric_types(s.params[k]) and not bad_numbers(s, k)]
    assert not missing, missing


@pytest.mark.slow
def test_every_derivable_bad_override_fails_naming_the_key(hydra_conf):
    """The whole pool (~2000 cases) rather than a sample."""
    cases = all_cases(random.Random(20261124))
    failures = {" ".join(c.overrides): why for c in cases if (why := fails_naming(c)) is not None}
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
