"""Ranges and choices of settings, declared once, next to each parameter:

    dim: Annotated[int, Range(1)] = 3                          # or the alias Count
    init_gap: Annotated[float, Range(0, 0.5, high_open=True)] = 0.01
    variant: Literal["binary", "onehot"] = "binary"             # choices
    num_categories: Injected[int]                               # filled in by the job

:mod:`trufl.config` reads them to validate a composed config by key before any job
starts; :func:`checked` (constructors, factories) and :func:`check_fields`
(dataclasses) enforce the same declarations on every call, raising ``ValueError``
that names the key (``flow.dim must be >= 1, got 0``). Checks between parameters
stay hand-written in the constructors. No dependency on Hydra.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """An interval of finite numbers; ``None`` ends are unbounded (NaN and ±inf are never in it)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        lo = "-inf" if self.low is None else repr(self.low)
        hi = "inf" if self.high is None else repr(self.high)
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}{')' if self.high_open or self.high is None else ']'}"

    def phrase(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 0.5)``: what a message says a value must be."""
        if self.high is None and self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low!r}"
        if self.low is None and self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high!r}"
        return f"in {self}"

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))


class _InjectedMarker:
    def __repr__(self) -> str:
        return "INJECTED"


#: metadata of a parameter the job fills in (the task's K, the context's width), not the config
INJECTED = _InjectedMarker()
Injected = Annotated[T, INJECTED]

Count = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
NonNegative = Annotated[float, Range(0)]
Positive = Annotated[float, Range(0, low_open=True)]
Seed = Annotated[int, Range(0, 2**32 - 1)]  # what numpy (and Lightning's seed_everything) accept


# -- reading declarations -------------------------------------------------------
def members(tp) -> list:
    """The members of a (nested) union, each possibly ``Annotated``; ``[tp]`` otherwise."""
    if get_origin(tp) in (Union, types.UnionType):
        return [m for a in get_args(tp) for m in members(a)]
    if get_origin(tp) is Annotated and get_origin(get_args(tp)[0]) in (Union, types.UnionType):
        return [Annotated[(m, *tp.__metadata__)] for m in members(get_args(tp)[0])]  # metadata applies to each
    return [tp]


def metadata(tp) -> tuple:
    return tp.__metadata__ if get_origin(tp) is Annotated else ()


def plain(tp):
    """``tp`` without its ``Annotated`` declarations (for type checks and messages)."""
    parts = [get_args(m)[0] if get_origin(m) is Annotated else m for m in members(tp)]
    return parts[0] if len(parts) == 1 else Union[tuple(parts)]


def is_injected(tp) -> bool:
    """Whether the job, not the config, fills in a parameter annotated ``tp``."""
    return any(INJECTED in metadata(m) for m in members(tp))


def choices(tp) -> tuple:
    """The ``Literal`` values allowed by ``tp`` (empty: no choice declared)."""
    return tuple(a for m in members(plain(tp)) if get_origin(m) is Literal for a in get_args(m))


def range_for(tp, value_type: type) -> Range | None:
    """The range ``tp`` declares for a number of ``value_type`` (an int may fill a float's place)."""
    found: dict[type, Range] = {}
    for m in members(tp):
        base, rules = plain(m), [r for r in metadata(m) if isinstance(r, Range)]
        if rules and base in (int, float):
            found.setdefault(base, rules[0])
    return found.get(value_type, found.get(float) if value_type is int else None)


def number_type(value) -> type | None:
    if isinstance(value, bool):
        return None
    return int if isinstance(value, int) else float if isinstance(value, float) else None


def violation(value, tp) -> str | None:
    """What is wrong with ``value`` for the declaration ``tp`` (``must be >= 1, got 0``), or None.
    Only declared ranges and choices (and an int's integrality): types are the config's to check."""
    if value is None:
        return None
    allowed = choices(tp)
    others = [m for m in members(plain(tp)) if get_origin(m) is not Literal and m is not type(None)]
    if allowed and not others and not any(type(value) is type(c) and value == c for c in allowed):
        return f"must be one of {', '.join(map(repr, allowed))}, got {value!r}"
    kind = number_type(value)
    if kind is None:
        return None
    declared = {plain(m) for m in members(tp)}
    if kind is float and int in declared and float not in declared:
        rule = range_for(tp, int)
        return f"must be an integer{' ' + rule.phrase() if rule else ''}, got {value!r}"
    rule = range_for(tp, kind)
    if rule is not None and value not in rule:
        return f"must be {rule.phrase()}, got {value!r}"
    return None


def _raise_first(prefix: str, values: dict[str, Any], annotations: dict[str, Any]) -> None:
    for name, tp in annotations.items():
        problem = violation(values[name], tp) if name in values else None
        if problem:  # injected values are not config keys: named alone
            raise ValueError(f"{name if is_injected(tp) or not prefix else f'{prefix}.{name}'} {problem}")


# -- enforcing them -------------------------------------------------------------
@functools.cache
def _signature(fn) -> inspect.Signature:
    return inspect.signature(fn, eval_str=True)


def checked(prefix: str):
    """Decorate a constructor (or a factory) so that every call checks its arguments
    against their declarations; errors name ``prefix.parameter`` (``flow.init_gap``)."""

    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            signature = _signature(fn)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            _raise_first(prefix, bound.arguments, {n: p.annotation for n, p in signature.parameters.items()})
            return fn(*args, **kwargs)

        return call

    return wrap


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def check_fields(obj, prefix: str) -> None:
    """The :func:`checked` of a dataclass: call it from ``__post_init__``."""
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    _raise_first(prefix, values, _field_types(type(obj)))
