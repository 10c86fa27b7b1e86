"""Each experiments/ table end to end at a tiny size (slow): the sweep runs with -m on
the local parallel launcher and the table has a row per flow with no empty cells."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import yaml

from .conftest import ROOT

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


def test_every_table_has_its_experiment_file():
    assert {p.stem for p in EXPERIMENTS} >= {"sets", "graph_colouring_tiny", "sudoku"}


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_runs_end_to_end_at_a_tiny_size(tmp_path, data_dir, path):
    spec = yaml.safe_load(path.read_text())
    out = tmp_path / path.stem
    cmd = [sys.executable, str(ROOT / "scripts" / "experiment.py"), str(path), "--tiny", "--out", str(out),
           f"paths.data_dir={data_dir}", "logger=csv", "trainer.enable_progress_bar=false"]
    done = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "table.csv") as f:
        header, *rows = list(csv.reader(f))
    measured = [r for r in rows if r[header.index("seeds")] != "—"]
    flows = set(spec["sweep"]["flow"])
    datasets = spec["sweep"]["dataset"]
    assert len(measured) == len(flows) * len(datasets)
    assert {r[header.index("flow")] for r in measured} == flows
    for r in measured:
        assert all(cell not in ("", "—", "nan") for cell in r), r
        for col, cell in zip(header, r):
            if col.startswith("validity") or col == "acceptance":
                assert 0.0 <= float(cell) <= 1.0
    published = [r for r in rows if r[header.index("seeds")] == "—"]
    assert len(published) == len(spec.get("published") or [])
    assert (out / "table.md").read_text().count("\n|") == len(rows) + 2  # header, rule, rows


def test_command_line_axes_replace_the_files_values(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from experiment import read_spec, sweep_command
    finally:
        sys.path.pop(0)
    spec = read_spec(ROOT / "experiments" / "sets.yaml")
    cmd = sweep_command(spec, tmp_path, tiny=False, extra=["seed=0,1,2", "trainer.max_steps=10"])
    assert "seed=0,1,2" in cmd and "seed=0" not in cmd
    assert "flow=trufl,catnf,argmax" in cmd and "hydra/launcher=local" in cmd and "-m" in cmd
    assert cmd.index("trainer.max_steps=10") > cmd.index("experiment=sets")


def test_sample_drawing_marks_exactly_the_violated_constraints():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from plot_samples import draw_board, draw_graph
    finally:
        sys.path.pop(0)
    from trufl.data.sudoku import constraint_graph

    adjacency = torch.tensor([[0, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    fig, ax = plt.subplots()
    draw_graph(ax, torch.tensor([0, 0, 1, 1]), adjacency)  # edges 0-1 and 2-3 clash
    red = [line for line in ax.lines if line.get_color() == "#d62728"]
    assert len(red) == 2 and len(ax.lines) == 4
    fig, ax = plt.subplots()
    board = torch.arange(81) % 9  # every row valid, every column constant: all cells clash
    board[0] = -1
    draw_board(ax, board, constraint_graph())
    assert len(ax.patches) == 81
    plt.close("all")
