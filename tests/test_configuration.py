"""Every run and every table row says which configuration it is (shared defaults, a
baseline's paper recipe, its reference code's optimiser, tuned, support-matched)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from trufl.config import ConfigError, validate_config
from trufl.configuration import run_configuration
from trufl.reporting.tables import build_table

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"


@pytest.mark.parametrize("keys,label", [
    ({}, "shared"), ({"recipe_name": "catnf_lm", "optim": {"preset": "catnf"}}, "paper"),
    ({"recipe_name": "catnf_lm", "optim": {"preset": "catnf_reference"}}, "reference-optimiser"),
    ({"recipe_name": "argmax_lm", "optim": {"preset": "argmax_reference"}}, "reference-optimiser"),
    ({"configuration": "tuned", "optim": {"preset": "shared"}}, "tuned")])
def test_the_label_follows_the_recipe_and_its_optimiser(keys, label):
    assert run_configuration(OmegaConf.create({"optim": {"preset": "shared"}, **keys})) == label


def test_a_recipe_with_another_methods_optimiser_is_refused_by_name(make_cfg, set_key):
    cfg = make_cfg("optim=argmax")
    set_key(cfg, "recipe_name", "catnf_lm")
    with pytest.raises(ConfigError, match="recipe=catnf_lm with optim=argmax"):
        validate_config(cfg)
    set_key(cfg, "recipe_name", None)
    validate_config(make_cfg("optim=argmax"))  # without a recipe it is a shared run with another optimiser


def test_a_recipe_cannot_be_combined_with_an_experiment_preset(make_cfg, set_key):
    cfg = make_cfg("experiment=sets", "optim=catnf")
    set_key(cfg, "recipe_name", "catnf_sets")
    with pytest.raises(ConfigError, match="recipe=catnf_sets cannot be combined with experiment=sets"):
        validate_config(cfg)


def result(configuration: str | None, flow: str, bits: float, overrides: list[str]) -> dict:
    r = {"status": "finished", "metrics": {"test/nll_bits": bits}, "config": {"seed": 0}, "choices": {"flow": flow},
         "overrides": overrides, "not_applicable": []}
    return r if configuration is None else {**r, "configuration": configuration}


def test_tables_put_each_configuration_in_its_own_row_with_its_overrides():
    runs = [result(None, "catnf", 3.8, ["flow=catnf", "seed=0"]),  # a run from before the label: shared
            result("paper", "catnf", 2.5, ["recipe=catnf_lm", "seed=0"]),
            result("paper", "catnf", 2.7, ["recipe=catnf_lm", "seed=1"])]
    runs[2]["config"]["seed"] = 1
    header, rows = build_table(runs, ["flow"], ["test/nll_bits"])
    assert header == ["configuration", "flow", "seeds", "status", "test/nll_bits", "overrides"]
    assert rows == [["paper", "catnf", "2", "ok", "2.600 ± 0.141", "recipe=catnf_lm"],
                    ["shared", "catnf", "1", "ok", "3.800", "flow=catnf"]]


#: committed CSVs of curves' data (one row per logged step; their tables are the <name>.csv beside them)
CURVES = "_curves.csv"


@pytest.mark.parametrize("table", sorted(p for p in RESULTS.glob("*.csv") if not p.name.endswith(CURVES)), ids=lambda p: p.name)
def test_every_committed_table_labels_its_rows(table):
    rows = list(csv.reader(table.open()))
    assert rows[0][0] == "configuration"
    assert {r[0] for r in rows[1:]} <= {"shared", "paper", "reference-optimiser", "tuned", "support-matched", "published",
                                        "published, other corpus"}
    if table.name.startswith("tuning_"):  # a search's trials: trial 0 is the shared configuration, the rest tuned
        trial = rows[0].index("trial")
        assert all((r[0] == "shared") == (r[trial] == "0") for r in rows[1:])
    else:
        assert "configuration" in table.with_suffix(".md").read_text().split("\n")[2]


def test_a_row_key_one_flow_lacks_is_a_dash_and_a_key_no_run_has_is_an_error():
    trufl_run = result(None, "trufl", 1.9, ["flow=trufl", "flow.init=central"])
    trufl_run["config"]["flow"] = {"_target_": "trufl.dequantisers.TruflDequantiser", "init": "central"}
    other = result(None, "argmax", 2.2, ["flow=argmax"])
    other["config"]["flow"] = {"_target_": "trufl.dequantisers.ArgmaxDequantiser"}
    header, rows = build_table([trufl_run, other], ["flow", "flow.init"], ["test/nll_bits"])
    assert [r[:3] + [r[5]] for r in rows] == [["shared", "argmax", "—", "2.200"], ["shared", "trufl", "central", "1.900"]]
    with pytest.raises(KeyError, match="flow.int"):
        build_table([trufl_run, other], ["flow", "flow.int"], ["test/nll_bits"])
