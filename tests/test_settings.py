"""Declared ranges and choices (trufl.settings): what a constructor enforces from its
annotations, and what the messages say."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Annotated, Literal

import pytest

from trufl.settings import Count, Injected, Positive, Range, check_fields, checked, range_for

from .conftest import ROOT


@checked("demo")
def demo(num_categories: Injected[Annotated[int, Range(2)]], dim: Count = 3,
         gap: Annotated[float, Range(0, 0.5, high_open=True)] = 0.1, mode: Literal["a", "b"] = "a",
         width: Count | None = None, name: str = "x") -> tuple:
    return num_categories, dim, gap, mode, width, name


@dataclass
class DemoSettings:
    lr: Positive = 1.0
    steps: Count = 1

    def __post_init__(self):
        check_fields(self, "demo")


def test_range_membership_and_phrases():
    half_open = Range(0, 0.5, high_open=True)
    assert [v in half_open for v in (0, 0.25, 0.5, -0.01)] == [True, True, False, False]
    assert not any(v in Range(0) for v in (math.nan, math.inf, -math.inf))
    assert [Range(1).phrase(), Range(0, low_open=True).phrase(), half_open.phrase(), Range(high=3).phrase()] == [
        ">= 1", "> 0", "in [0, 0.5)", "<= 3"]
    assert str(Range(1)) == "[1, inf)" and str(Range(0, 1, low_open=True)) == "(0, 1]"


def test_range_for_picks_the_member_of_the_value_type():
    either = Annotated[int, Range(1)] | Annotated[float, Range(0, 1, low_open=True)]
    assert range_for(either, int) == Range(1) and range_for(either, float) == Range(0, 1, low_open=True)
    assert range_for(Positive, int) == Range(0, low_open=True)  # an int may fill a float's place
    assert range_for(Count | None, int) == Range(1) and range_for(Count, float) is None
    assert range_for(Annotated[int | None, Range(2)], int) == Range(2)  # metadata over a union applies to each


def test_valid_arguments_pass_through_unchanged():
    assert demo(2, 1, 0.0, "b", None) == (2, 1, 0.0, "b", None, "x")


@pytest.mark.parametrize("kwargs, message", [
    ({"dim": 0}, "demo.dim must be >= 1, got 0"),
    ({"gap": 0.5}, "demo.gap must be in [0, 0.5), got 0.5"),
    ({"gap": math.nan}, "demo.gap must be in [0, 0.5), got nan"),
    ({"mode": "c"}, "demo.mode must be one of 'a', 'b', got 'c'"),
    ({"width": 0}, "demo.width must be >= 1, got 0"),
    ({"dim": 2.5}, "demo.dim must be an integer >= 1, got 2.5"),
    ({"num_categories": 1}, "num_categories must be >= 2, got 1"),  # injected: not a config key
])
def test_a_declared_constraint_is_enforced_naming_the_key(kwargs, message):
    with pytest.raises(ValueError) as err:
        demo(**{"num_categories": 4, **kwargs})
    assert str(err.value) == message


def test_dataclass_fields_are_checked_against_their_declarations():
    assert DemoSettings(lr=2, steps=3).steps == 3
    with pytest.raises(ValueError, match=r"^demo\.lr must be > 0, got 0$"):
        DemoSettings(lr=0)


def test_declared_modules_import_without_hydra():
    code = ("import sys; sys.modules.update(hydra=None, omegaconf=None); "
            "import trufl.settings, trufl.dequantisers, trufl.context, trufl.weighting, trufl.categorical, trufl.data")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
