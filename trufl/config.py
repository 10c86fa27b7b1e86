"""Config validation: every mistake is reported, by key, before any data or training.

Hydra already rejects overrides of keys that do not exist (struct mode) and
unknown group options (``flow=foo``). This adds what Hydra cannot know, with a
schema generated from the code rather than written twice:

* each group node (``dataset``, ``flow``, ``prior``, ``context``, ``weighting``,
  ``trainer``, ``logger``, ``callbacks.*``) is checked against its ``_target_``'s
  signature: unknown keys, and every value's type from the parameter annotation
  (``int``, ``float``, ``str | None``, ``Literal[...]`` choices, ``list[float]``…);
  ``trainer.*`` against ``pytorch_lightning.Trainer``'s own annotations;
* the top-level keys and the ``optim``/``eval`` sections against the dataclasses
  :class:`RunSettings`, :class:`~trufl.optim.OptimSettings` and
  :class:`~trufl.sampling.EvalSettings`;
* numbers against the range declared in the annotation (:mod:`trufl.settings`:
  ``Annotated[int, Range(1)]``; Lightning's own in :data:`LIGHTNING_RANGES`);
* ``_target_`` against the allowed namespaces.

A new constructor parameter is picked up automatically (type from its annotation,
choices from a ``Literal``, range from its ``Range``; parameters marked ``Injected``
are the job's). ``tests/test_config_fuzz.py`` asserts every numeric one declares a range.
:class:`trufl.multirun.ValidateJobs` validates every job of a multirun before any is launched.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from hydra.errors import CompactHydraException
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .configuration import Configuration, run_configuration
from .config_lightning import LIGHTNING_INJECTED, LIGHTNING_RANGES, registry_choices
from .settings import Count, NonNegative, NonNegativeInt, Range, Seed, is_injected, members, number_type, plain, range_for
from .suggest import did_you_mean

ALLOWED_TARGET_PREFIXES = ("trufl.", "torch.", "pytorch_lightning.")
HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
#: group nodes with a ``_target_`` (empty optional groups mean "none")
REQUIRED_GROUPS = ("dataset", "flow", "prior", "weighting", "trainer")
OPTIONAL_GROUPS = ("logger", "context")
#: top-level nodes that are not run settings (Hydra's, paths, the experiment choice)
UNCHECKED = {"hydra", "paths", "experiment", "callbacks", "optim", "eval", *REQUIRED_GROUPS, *OPTIONAL_GROUPS}


class ConfigError(ValueError, CompactHydraException):
    """A configuration mistake; the message names every offending key.

    A :class:`~hydra.errors.CompactHydraException`, so ``train.py`` prints the
    message alone, without a traceback."""


@dataclass
class RunSettings:
    """The top-level keys of ``trufl/conf/config.yaml`` (documented there)."""

    seed: Seed = 0
    recon_weight: NonNegative = 1.0
    kl_weight: NonNegative = 1.0
    latent_dim: Count | None = 3
    catnf_init: Literal["random", "grid"] = "random"
    ckpt_path: str | None = None
    num_threads: Count | None = None
    check_finite_every: NonNegativeInt = 0
    task_name: str = "train"
    tags: list[str] | None = None
    configuration: Configuration | None = None
    recipe_name: str | None = None
    experiment_name: str | None = None
    optimized_metric: str = "val/nll_bits"
    skip_finished: bool = True


# -- ranges: declared in the annotations; Lightning's in trufl.config_lightning -----


def _class_name(target: str | None) -> str:
    return target.rsplit(".", 1)[-1] if target else ""


def range_rule(target: str | None, name: str, tp, value_type: type) -> Range | None:
    """The range of parameter ``name`` (annotated ``tp``) of ``target`` for a value of
    ``value_type``: declared in ``tp``, else Lightning's (:data:`LIGHTNING_RANGES`)."""
    declared = range_for(tp, value_type)
    if declared is not None:
        return declared
    rule = LIGHTNING_RANGES.get(f"{_class_name(target)}.{name}")
    rule = rule.get(value_type) if isinstance(rule, dict) else rule
    return rule


def injected(target: str | None, name: str, tp) -> bool:
    """Whether the job, not the config, fills in parameter ``name`` of ``target``."""
    return is_injected(tp) or name in LIGHTNING_INJECTED.get(_class_name(target), ())


# -- types --------------------------------------------------------------------
def _is_union(tp) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def matches(value, tp) -> bool:
    """Whether a config value (after interpolation) can be passed where ``tp`` is annotated."""
    if tp in (inspect.Parameter.empty, Any, object):
        return True
    if get_origin(tp) is Annotated:
        return matches(value, get_args(tp)[0])
    origin, args = get_origin(tp), get_args(tp)
    if _is_union(tp):
        return any(matches(value, a) for a in args)
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:  # ints are fine where floats are expected
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, Iterable) or tp in (list, tuple):
        if not isinstance(value, (ListConfig, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
        return all(matches(v, args[0]) for v in value) if args else True
    if origin is dict or tp is dict:
        return isinstance(value, (DictConfig, dict))
    if isinstance(tp, type) and tp.__name__ in ("Path", "PurePath", "PathLike"):
        return isinstance(value, str)
    # any other class (Accelerator, timedelta, Profiler...): only an instantiable node
    return isinstance(value, DictConfig) and "_target_" in value


def describe(tp) -> str:
    """A readable name for an annotation (for messages)."""
    tp = plain(tp)
    parts = members(tp)
    choices = [a for m in parts if get_origin(m) is Literal for a in get_args(m)]
    others = [m for m in parts if get_origin(m) is not Literal]
    if choices:
        return " or ".join(["one of " + ", ".join(map(repr, choices)), *map(describe, others)])
    if len(others) > 1:
        return " | ".join(dict.fromkeys(map(describe, others)))
    if tp is type(None):
        return "null"
    if get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


# -- checks -------------------------------------------------------------------
_UNRESOLVED = object()


def _value(node: DictConfig, key: str):
    """``(value, error)``; values that only Hydra's job set-up can resolve (``${hydra:...}``) are skipped."""
    try:
        return node[key], None
    except OmegaConfBaseException as err:
        raw = OmegaConf.to_container(node, resolve=False).get(key)
        if (isinstance(raw, str) and "hydra:" in raw) or "HydraConfig was not set" in str(err):
            return _UNRESOLVED, None  # a path under the job's output dir, set when the job starts
        return None, f"cannot resolve: {err}".split("\n")[0]


def check_values(prefix: str, node: DictConfig, annotations: dict[str, Any], target: str | None = None,
                 open_keys: bool = False, skip: Iterable[str] = ()) -> list[str]:
    """Errors for ``node`` against ``annotations`` (``name -> type``): unknown keys
    (unless ``open_keys``), wrong types, numbers out of range, registry choices.
    Keys in ``skip`` are checked elsewhere; ``prefix`` is the node's key ("" at the top)."""
    valid = ", ".join(sorted({*annotations, *skip}))
    errors = []
    registries = registry_choices()
    for key in node.keys():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key in HYDRA_KEYS or key in skip:
            continue
        if key not in annotations:
            if not open_keys:
                where = f" for {target}" if target else "" if prefix else " at the top level"
                hint = did_you_mean(str(key), {*annotations, *skip}, prefix=f"{prefix}." if prefix else "")
                errors.append(f"unknown key {name}{hint} (valid keys{where}: {valid})")
            continue
        value, err = _value(node, key)
        if err:
            errors.append(f"{name}: {err}")
        if err or value is _UNRESOLVED:
            continue
        tp = annotations[key]
        if not matches(value, tp):
            shown = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
            errors.append(f"{name}={shown!r} must be {describe(tp)}")
            continue
        number = number_type(value)
        rule = range_rule(target, str(key), tp, number) if number else None
        if rule is not None and value not in rule:
            errors.append(f"{name}={value!r} must be in {rule}")
        if name in registries and isinstance(value, str) and value not in registries[name]():
            errors.append(f"{name}={value!r} must be one of {', '.join(sorted(registries[name]()))}")
    return errors


def target_annotations(obj) -> tuple[dict[str, Any], bool]:
    """``(name -> annotation, accepts **kwargs)`` from a callable's signature (string
    annotations evaluated in its module)."""
    try:
        params = inspect.signature(obj, eval_str=True).parameters
    except (NameError, TypeError, SyntaxError):  # unresolvable annotation: keep names, skip types
        params = inspect.signature(obj).parameters
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n: p.annotation for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return named, var_kw


def dataclass_annotations(cls) -> dict[str, Any]:
    """``name -> annotation`` of a settings dataclass's fields."""
    return target_annotations(cls)[0]


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
    annotations, var_kw = target_annotations(obj)
    annotations = {k: tp for k, tp in annotations.items() if not injected(str(target), k, tp)}
    errors = check_values(group, node, annotations, target=str(target), open_keys=var_kw)
    raw = OmegaConf.to_container(node, resolve=False)  # unresolved: ${hydra:...} values resolve only in a job
    for key, part in raw.items():  # nested parts built by their parent (e.g. prior.encoder)
        if key in annotations and isinstance(part, dict) and "_target_" in part:
            errors += _check_target(f"{group}.{key}", node[key])
    return errors


def _check_probs(cfg: DictConfig) -> list[str]:
    probs = cfg.dataset.get("probs") if isinstance(cfg.get("dataset"), DictConfig) else None
    if not isinstance(probs, ListConfig) or not all(isinstance(p, (int, float)) for p in probs):
        return []  # type errors are reported by the signature check
    if len(probs) < 2 or min(probs) <= 0 or abs(sum(probs) - 1) > 1e-6:
        return [f"dataset.probs={list(probs)} must be >= 2 positive numbers summing to 1 (sum {sum(probs):.6g})"]
    return []


def _check_configuration(cfg: DictConfig) -> list[str]:
    if cfg.get("recipe_name") and cfg.get("experiment_name"):
        return [f"recipe={cfg.recipe_name} cannot be combined with experiment={cfg.experiment_name}: a recipe is a whole "
                "configuration (its task, budget and optimiser); the experiment preset would override them"]
    try:
        run_configuration(cfg)
    except ValueError as err:
        return [str(err)]
    return []


#: K for assembling the model of a corpus whose vocabulary is only known from its data (ptb, enwik8):
#: what a refusal depends on (Argmax's dimension >= 2 for a coupling prior's split) is the same for any K >= 3
PLACEHOLDER_CATEGORIES = 256


def _num_categories(cfg: DictConfig) -> int:
    """The task's K without reading its data (a placeholder where the vocabulary is the data's)."""
    from .data.text import TextDataModule

    if issubclass(get_object(cfg.dataset._target_), TextDataModule):
        return 27 if cfg.dataset.get("corpus") in ("bible", "text8") else PLACEHOLDER_CATEGORIES
    from .builders import build

    return int(build(cfg.dataset).num_categories)


def check_model(cfg: DictConfig) -> list[str]:
    """Errors from assembling the run's parts: the task's constructor and the likelihood model,
    built and dropped (a fraction of a second; parameter initialisation does not read the
    run's seed, which the job sets afterwards), so a combination of options that cannot train
    (``flow=categorical context=causal_lstm``, ``prior=set_coupling`` with D = 1,
    ``dataset=enwik8`` without a path) is refused before anything is read or written, with
    the constructor's message (which names its keys). Files are not looked at: a
    ``dataset.path`` is checked when the data is built."""
    from hydra.errors import InstantiationException

    from .builders import build, build_likelihood

    try:
        try:
            build(cfg.dataset)
        except OSError:
            pass  # a missing dataset.path: the data's problem, reported when it is built
        build_likelihood(cfg, _num_categories(cfg))
    except InstantiationException as err:
        return [f"the run cannot be assembled: {err.__cause__ or err}".split("\n")[0]]
    except (ValueError, TypeError) as err:
        return [f"the run cannot be assembled: {err}"]
    return []


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` listing every problem found in ``cfg``."""
    from .optim import OptimSettings
    from .sampling import EvalSettings

    errors = check_values("", cfg, dataclass_annotations(RunSettings), skip=UNCHECKED)
    for section, cls in (("optim", OptimSettings), ("eval", EvalSettings)):
        annotations = {k: v for k, v in dataclass_annotations(cls).items() if not is_injected(v)}
        node = cfg.get(section)
        errors += check_values(section, node, annotations) if isinstance(node, DictConfig) else []
    for group in REQUIRED_GROUPS:
        if not isinstance(cfg.get(group), DictConfig):
            errors.append(f"{group} must be a config group choice (e.g. {group}=<option>)")
            continue
        errors += _check_target(group, cfg[group])
    for group in OPTIONAL_GROUPS:
        if isinstance(cfg.get(group), DictConfig) and cfg[group]:
            errors += _check_target(group, cfg[group])
    for name, node in (cfg.get("callbacks") or {}).items():
        errors += _check_target(f"callbacks.{name}", node) if isinstance(node, DictConfig) else [f"callbacks.{name} must be a config node with a _target_"]
    errors += _check_probs(cfg)
    errors += _check_configuration(cfg)
    if not errors:  # the parts are valid one by one: do they fit together?
        errors += check_model(cfg)
    if errors:
        chosen = " ".join(chosen_groups(cfg))
        raise ConfigError(f"invalid configuration{f' (with {chosen})' if chosen else ''}:\n  - " + "\n  - ".join(errors))


def chosen_groups(cfg: DictConfig) -> list[str]:
    """The group choices given as overrides (``flow=categorical``, ``prior/encoder=lstm``), from the
    config's own ``hydra`` node or the job's HydraConfig: which options a message is about."""
    from hydra.core.hydra_config import HydraConfig

    node = cfg.get("hydra") if isinstance(cfg.get("hydra"), DictConfig) else None
    if node is None and HydraConfig.initialized():
        node = HydraConfig.get()
    if node is None:
        return []
    choices = node.runtime.choices
    overrides = [str(o) for o in node.overrides.task]
    return [o for o in overrides if "=" in o and o.split("=", 1)[0].lstrip("+~") in choices]


def to_container(cfg: DictConfig) -> dict:
    """The resolved config as plain Python (for results.json)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
