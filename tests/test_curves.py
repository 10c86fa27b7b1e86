"""The curves' data and the steps-to-target column (trufl.reporting.curves)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from trufl.reporting.curves import COLUMN, CurveSpec, add_steps_column, first_step_within, read_curves, steps_cell, target_value, write_curves_csv
from trufl.reporting.spec import read_spec

from .conftest import ROOT


def fake_run(root: Path, name: str, flow: str, seed: int, curve: list[tuple[int, float]], optimum: float = 2.0) -> Path:
    """A finished run directory with results.json and a CSV log holding ``curve`` (steps done, value)."""
    run = root / name
    (run / "csv").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "status": "finished", "metrics": {"test/nll_bits": curve[-1][1]}, "config": {"seed": seed},
        "choices": {"flow": flow}, "overrides": [f"flow={flow}"], "not_applicable": [], "dataset": {"optimum_bits": optimum}}))
    with open(run / "csv" / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "val/nll_bits", "train/nll_bits"])
        for step, v in curve:
            w.writerow([step - 1, v, ""])  # Lightning logs the step index: steps done − 1
            w.writerow([step - 1, "", v + 1])  # a row of another metric: skipped
    return run


def test_first_step_within_is_the_first_logged_step_at_or_below_the_bound():
    assert first_step_within([100, 200, 300], [3.0, 2.04, 2.01], 2.05) == 200
    assert first_step_within([100, 200], [3.0, 2.5], 2.05) is None


def test_steps_cell_reports_the_median_range_and_the_seeds_that_never_get_there(tmp_path):
    fast = fake_run(tmp_path, "a", "trufl", 0, [(100, 2.5), (200, 2.04)])
    slow = fake_run(tmp_path, "b", "trufl", 1, [(100, 2.6), (200, 2.3), (400, 2.01)])
    never = fake_run(tmp_path, "c", "trufl", 2, [(100, 3.0), (400, 2.9)])
    curves = read_curves(tmp_path, "val/nll_bits")
    assert [c.run for c in curves] == [fast, slow, never] and curves[1].steps == [100, 200, 400]
    assert steps_cell(curves[:2], 2.05) == "300 (200–400)"
    assert steps_cell(curves, 2.05) == "300 (200–400); 1 of 3 seeds not by 400"
    assert steps_cell(curves[2:], 2.05) == "not by 400"


def test_the_target_is_the_reference_rows_final_value_or_a_number_of_every_run(tmp_path):
    fake_run(tmp_path, "cat0", "categorical", 0, [(100, 2.0), (200, 1.6)])
    fake_run(tmp_path, "cat1", "categorical", 1, [(100, 2.0), (200, 1.8)])
    fake_run(tmp_path, "t", "trufl", 0, [(100, 1.9), (200, 1.74)], optimum=1.5)
    curves = read_curves(tmp_path, "val/nll_bits")
    assert target_value(CurveSpec("val/nll_bits", target={"where": {"flow": "categorical"}}), curves) == pytest.approx(1.7)
    assert target_value(CurveSpec("val/nll_bits", target={"source": "dataset.optimum_bits"}), curves) == pytest.approx(5.5 / 3)
    with pytest.raises(ValueError, match="matches where"):
        target_value(CurveSpec("val/nll_bits", target={"where": {"flow": "argmax"}}), curves)


def test_the_steps_column_goes_before_the_overrides_and_leaves_published_rows_empty(tmp_path):
    fake_run(tmp_path, "cat", "categorical", 0, [(100, 2.0), (200, 1.6)])
    fake_run(tmp_path, "t", "trufl", 0, [(100, 1.64), (200, 1.61)])
    curves = read_curves(tmp_path, "val/nll_bits")
    header = ["configuration", "flow", "seeds", "status", "bits", "overrides"]
    rows = [["shared", "categorical", "1", "ok", "1.6", "flow=categorical"], ["shared", "trufl", "1", "ok", "1.61", "flow=trufl"],
            ["published", "LSTM (paper)", "—", "published", "1.28", ""]]
    spec = CurveSpec("val/nll_bits", target={"where": {"flow": "categorical"}}, delta=0.05)
    header, rows = add_steps_column(spec, curves, ["configuration", "flow"], header, rows)
    assert header[-2:] == ["steps to 1.600 + 0.05", "overrides"] and COLUMN.startswith("steps to")
    assert [r[-2] for r in rows] == ["200", "100", ""]


def test_curves_csv_holds_every_point_with_its_row_keys_and_seed(tmp_path):
    fake_run(tmp_path / "runs", "t", "trufl", 3, [(100, 1.64), (200, 1.61)])
    out = write_curves_csv(read_curves(tmp_path / "runs", "val/nll_bits"), ["configuration", "flow"], "val/nll_bits", tmp_path / "c.csv")
    assert list(csv.reader(out.open())) == [["configuration", "flow", "seed", "step", "val/nll_bits"],
                                            ["shared", "trufl", "3", "100", "1.64"], ["shared", "trufl", "3", "200", "1.61"]]


@pytest.mark.parametrize("node,match", [({"metric": "val/nll_bits", "targte": {}}, "unknown key"),
                                        ({"metric": "val/nll_bits", "target": {"flow": "categorical"}}, "where"),
                                        ({"log_steps": True}, "metric"), ({"metric": "m", "delta": -1}, "delta")])
def test_a_bad_curves_entry_is_refused_by_name(node, match):
    with pytest.raises(ValueError, match=match):
        CurveSpec.read(node)


@pytest.mark.parametrize("name", ["curves_text", "curves_sets"])
def test_the_curve_experiments_reach_ten_thousand_steps_with_a_target(name):
    spec = read_spec(ROOT / "experiments" / f"{name}.yaml")
    curves = CurveSpec.read(spec["curves"])
    assert curves.log_steps and curves.target and curves.delta == 0.05
    for sweep in [spec["sweep"], *spec["blocks"].values()]:
        assert sweep["trainer.max_steps"] >= 10000 and sweep["logger"] == "csv"
    assert "categorical" in spec["sweep"].get("flow", []) or f"{name.split('_')[1]}_categorical" in spec["sweep"].get("tuned", [])


def test_the_final_evaluation_counts_at_the_runs_last_step_only_where_fit_did_not_validate(tmp_path):
    run = fake_run(tmp_path, "t", "trufl", 0, [(2, 3.0), (4, 2.5)])
    result = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**result, "global_step": 4}))
    with open(run / "csv" / "metrics.csv", "a", newline="") as f:
        csv.writer(f).writerow([4, 2.4, ""])  # the validate() after fit: logged at global_step
    (curve,) = read_curves(tmp_path, "val/nll_bits")
    assert curve.steps == [2, 4] and curve.values == [3.0, 2.5]  # step 4 was validated inside fit
    other = fake_run(tmp_path / "b", "t", "trufl", 0, [(2, 3.0), (4, 2.5)])
    (other / "results.json").write_text(json.dumps({**result, "global_step": 5}))
    with open(other / "csv" / "metrics.csv", "a", newline="") as f:
        csv.writer(f).writerow([5, 2.3, ""])  # max_steps 5, not a validation step: only the final evaluation has it
    (curve,) = read_curves(tmp_path / "b", "val/nll_bits")
    assert curve.steps == [2, 4, 5] and curve.values == [3.0, 2.5, 2.3]


def test_curve_lines_say_each_runs_configuration_share_a_flows_colour_and_mark_unfinished_runs(tmp_path):
    from trufl.reporting.plot_curves import run_lines

    tuned = fake_run(tmp_path, "0_catnf", "catnf", 0, [(250, 3.0), (500, 2.5)])
    paper = fake_run(tmp_path, "paper/0_catnf", "catnf", 0, [(250, 3.4)])
    other = fake_run(tmp_path, "1_trufl", "trufl", 0, [(250, 2.2), (500, 2.1)])
    for run, configuration, state in ((tuned, "tuned", "finished"), (paper, "paper", "interrupted"), (other, "tuned", "finished")):
        result = json.loads((run / "results.json").read_text())
        (run / "results.json").write_text(json.dumps({**result, "configuration": configuration, "status": state}))
    lines = {line.label: line for line in run_lines([tuned, paper, other], "val/nll_bits", ["flow"])}
    assert set(lines) == {"tuned catnf (2.500)", "paper catnf (3.400 at 250, interrupted)", "tuned trufl (2.100)"}
    a, b, c = lines["tuned catnf (2.500)"], lines["paper catnf (3.400 at 250, interrupted)"], lines["tuned trufl (2.100)"]
    assert a.color == b.color != c.color and (a.style, b.style) == ("-", "--")
    assert (a.steps, a.values) == ([250, 500], [2.5 + 0.5, 2.5])


def test_the_zoomed_panel_spans_the_lowest_value_to_just_above_the_target_line():
    from trufl.reporting.plot_curves import Line, tail_limits

    low, high = tail_limits([Line([1, 2], [4.4, 1.43], "a"), Line([1, 2], [1.9, 1.52], "b")], {"t": 1.459, "t + d": 1.509})
    assert 1.38 <= low < 1.43 and 1.509 < high <= 1.6  # 4.4 (the first steps) is outside it
