"""Each experiments/ table end to end at a tiny size (slow): the sweep runs with -m on
the local parallel launcher and the table has a row per flow with no empty cells."""

from __future__ import annotations

import csv
import math
import json
import os
import subprocess
import sys
import tempfile

import pytest
import yaml

from trufl.reporting import experiment, formats, results_section
from trufl.reporting.repository import RESULTS, shown_command
from trufl.reporting.spec import read_spec
from trufl.reporting.sweep import run_sweep, sweep_command, sweep_overrides

from .conftest import ROOT

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))


def test_every_table_has_its_experiment_file():
    assert {p.stem for p in EXPERIMENTS} >= {"toy", "sets", "graph_colouring_tiny", "sudoku", "language_modelling"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_a_published_row_on_a_task_of_ours_sits_in_that_tasks_table(path):
    """Like with like: a published row naming one of trufl's datasets is only shown in a table
    whose runs are on that dataset (the large-graph rows belong beside 25–50-node runs, not in the
    10–20-node table); rows on another corpus (PTB, text8 beside the embedded corpus) are context
    and say so in their configuration column."""
    spec = yaml.safe_load(path.read_text())
    ours = {p.stem for p in (ROOT / "trufl" / "conf" / "dataset").glob("*.yaml")}
    datasets = spec["sweep"].get("dataset", [])
    datasets = set(datasets if isinstance(datasets, list) else [datasets])
    for row in spec.get("published") or []:
        if row.get("dataset") in ours and "other corpus" not in str(row.get("configuration", "")):
            assert row["dataset"] in datasets, f"{path.name}: a published row on {row['dataset']} beside runs on {sorted(datasets)}"


#: a stand-in for a figure script (the tests do not depend on the real ones): writes the run
#: directories it was given, one a line, and a PNG, into the folder named first
STAND_IN_FIGURE = (
    "{python} -c 'import sys, pathlib, matplotlib; matplotlib.use(\"Agg\"); import matplotlib.pyplot as plt; "
    "p = pathlib.Path(sys.argv[1]); p.mkdir(parents=True); p.joinpath(\"runs.txt\").write_text(chr(10).join(sys.argv[2:])); "
    "plt.figure().savefig(p / \"final.png\")' {out}/figures {run_dirs}"
)


def preset_flow(group: str, name: str) -> str:
    """The flow a ``tuned=`` or ``recipe=`` preset selects (its ``override /flow: X`` default)."""
    spec = yaml.safe_load((ROOT / "trufl" / "conf" / group / f"{name}.yaml").read_text())
    return next(d["override /flow"] for d in spec.get("defaults", []) if isinstance(d, dict) and "override /flow" in d)


def row_axes(sweep: dict, keys: list[str]) -> list[list]:
    """Each row key's values in one sweep of an experiment file; ``flow`` from its presets when the
    sweep names presets (``tuned``, ``recipe``) instead of flows."""
    axes = []
    for key in keys:
        values = sweep.get(key)
        if key == "flow" and values is None:
            group = "tuned" if "tuned" in sweep else "recipe"
            values = [preset_flow(group, name) for name in sweep[group]]
        axes.append(values if isinstance(values, list) else [values])
    return axes


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_runs_end_to_end_at_a_tiny_size(tmp_path, data_dir, path):
    """What ``make reproduce EXP=<name>`` runs, at the file's tiny size: the sweep, the
    tables (md, CSV, LaTeX), the figure commands, the publication and the README section."""
    spec = yaml.safe_load(path.read_text())
    if spec.get("figures"):  # the same where-filters, the stand-in command
        spec["figures"] = [{**f, "command": STAND_IN_FIGURE} for f in spec["figures"]]
    (tmp_path / "experiments").mkdir()
    spec_path = tmp_path / "experiments" / path.name
    spec_path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    out, published = tmp_path / path.stem, tmp_path / "experiments" / "results"
    cmd = [sys.executable, str(ROOT / "scripts" / "experiment.py"), str(spec_path), "--tiny", "--out", str(out),
           "--publish", str(published), f"paths.data_dir={data_dir}", "trainer.enable_progress_bar=false"]
    if "logger" not in spec["sweep"]:
        cmd.append("logger=csv")
    done = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(out / "table.csv") as f:
        header, *rows = list(csv.reader(f))
    measured = [r for r in rows if r[header.index("seeds")] != "—"]
    sweeps = [spec["sweep"], *(spec.get("blocks") or {}).values()]
    # a row per combination of the row keys, in every sweep; a preset axis (tuned=, recipe=) names its flow
    assert len(measured) == sum(math.prod(len(axis) for axis in row_axes(sweep, spec["rows"])) for sweep in sweeps)
    assert {r[header.index("flow")] for r in measured} == {f for sweep in sweeps for f in row_axes(sweep, ["flow"])[0]}
    seeds = spec["sweep"]["seed"]
    assert {r[header.index("seeds")] for r in measured} == {str(len(seeds))}
    widths = header[-2:] if spec.get("widths") else []  # the learned boxes' mass: only flows with boxes have it
    # an impossible log Z (no prior sample inside the support, likely for an untrained model at this
    # size) leaves the renormalised bound empty, as results.json says; nothing else may be empty
    no_log_z = {json.loads(p.read_text())["choices"]["flow"] for p in out.glob("runs/*/results.json")
                if "unavailable" in json.loads(p.read_text()).get("log_Z", {})}
    for r in measured:
        skip = set(widths) | ({c for c in header if "renormalised" in c} if r[header.index("flow")] in no_log_z else set())
        assert all(cell not in ("", "—", "nan") for col, cell in zip(header, r) if col not in skip), r
        has_boxes = r[header.index("flow")] == "trufl"
        assert all((r[header.index(col)] != "—") == has_boxes for col in widths), r
        for col, cell in zip(header, r):
            if col.startswith("validity") or col == "acceptance":
                assert 0.0 <= float(cell.split(" ± ")[0]) <= 1.0  # the mean, when seeds are pooled
            if len(seeds) > 1 and col == "determinism":
                assert " ± " in cell  # seeds aggregated as mean ± std
    published_rows = [r for r in rows if r[header.index("seeds")] == "—"]
    assert len(published_rows) == len(spec.get("published") or [])
    assert all(r[header.index("status")] == "published" for r in published_rows)
    assert (out / "table.md").read_text().count("\n|") == len(rows) + 2  # header, rule, rows
    tex = (out / "table.tex").read_text()
    assert tex.count(r" \\") == len(rows) + 1 and tex.count(r"\midrule") == 1 + bool(published_rows)
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["launcher"] == "local" and sweep["returncode"] == 0 and sweep["wall_time_s"] > 0
    assert sweep["command"].startswith("python train.py -m hydra/launcher=local ")  # as run from the repository root
    for figure in spec.get("figures", []):  # the stand-in saw exactly the finished runs its filter selects
        runs = [p.parent for p in sorted((out / "runs").glob("*/results.json"))
                if all(str(json.loads(p.read_text())["config"][k]) == str(v) for k, v in figure["where"].items())]
        assert (out / "figures" / "runs.txt").read_text().splitlines() == [str(r) for r in runs]
        assert (published / f"{path.stem}_figures" / "final.png").is_file()
    for ext in ("md", "csv", "tex", "json"):
        assert (published / f"{path.stem}.{ext}").read_bytes() == (out / ("sweep.json" if ext == "json" else f"table.{ext}")).read_bytes()
    # the README section made from the publication names the command and the recorded wall time
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- generated:results -->\n<!-- /generated:results -->\n")
    section = subprocess.run([sys.executable, str(ROOT / "scripts" / "results_section.py"), "--results", str(published),
                              "--experiments", str(tmp_path / "experiments"), "--readme", str(readme)],
                             capture_output=True, text=True)
    assert section.returncode == 0, section.stderr
    text = readme.read_text()
    assert f"`{sweep['reproduce']}`" in text and f"{sweep['wall_time_s'] / 60:.1f} min" in text
    assert (out / "table.md").read_text().split("\n\n")[1].strip() in text


def test_command_line_axes_replace_the_files_values(tmp_path):
    spec = read_spec(ROOT / "experiments" / "sets.yaml")
    cmd = sweep_command(spec, tmp_path, tiny=False, extra=["seed=0,1,2", "trainer.max_steps=10"])
    assert "seed=0,1,2" in cmd and "seed=0" not in cmd
    assert "flow=trufl,catnf,argmax" in cmd and "hydra/launcher=local" in cmd and "-m" in cmd
    assert cmd.index("trainer.max_steps=10") > cmd.index("experiment=sets")
    on_slurm = sweep_command(spec, tmp_path, tiny=False, extra=[], launcher="slurm")
    assert "hydra/launcher=slurm" in on_slurm and "hydra/launcher=local" not in on_slurm
    with pytest.raises(SystemExit, match="--launcher slurmm: no trufl/conf/hydra/launcher/slurmm.yaml"):
        sweep_command(spec, tmp_path, tiny=False, extra=[], launcher="slurmm")


def test_sample_drawing_marks_exactly_the_violated_constraints():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from trufl.data.sudoku import constraint_graph
    from trufl.reporting.plot_samples import draw_board, draw_graph

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


def test_latex_table_is_booktabs_with_published_rows_ruled_off_and_specials_escaped():
    header = ["flow", "recon_weight", "seeds", "status", "bits (−ELBO)", "max |mass − p|"]
    rows = [["trufl", "1", "3", "ok", "1.900 ± 0.100", "0.010"], ["CatNF (published)", "", "—", "published", "2.000", ""]]
    assert formats.latex(header, rows, caption="Toy: 50% a_b", label="tab:toy") == "\n".join([
        r"\begin{table}[t]", r"\centering", r"\caption{Toy: 50\% a\_b}", r"\label{tab:toy}",
        r"\begin{tabular}{llrrrr}", r"\toprule",
        r"flow & recon\_weight & seeds & status & bits ($-$ELBO) & max \textbar{}mass $-$ p\textbar{} \\", r"\midrule",
        r"trufl & 1 & 3 & ok & 1.900 $\pm$ 0.100 & 0.010 \\", r"\midrule",
        r"CatNF (published) &  & --- & published & 2.000 &  \\", r"\bottomrule", r"\end{tabular}", r"\end{table}",
    ]) + "\n"


def test_markdown_escapes_a_pipe_inside_a_cell():
    assert formats.markdown(["max |mass − p|"], [["0.1"]]).splitlines()[0] == r"| max \|mass − p\| |"


def test_figure_commands_expand_the_finished_runs_that_match_where(tmp_path):
    for i, (seed, status) in enumerate([(0, "finished"), (1, "finished"), (0, "failed")]):
        (tmp_path / "runs" / str(i)).mkdir(parents=True)
        result = {"status": status, "config": {"seed": seed}, **({"metrics": {}} if status == "finished" else {})}
        (tmp_path / "runs" / str(i) / "results.json").write_text(json.dumps(result))
    spec = {"name": "x", "figures": ["{python} draw.py {run_dirs} --out {out}/figs",
                                     {"command": "plot {runs} {run_dirs}", "where": {"seed": 0}}]}
    assert experiment.figure_commands(spec, tmp_path / "runs", tmp_path / "out") == [
        [sys.executable, "draw.py", str(tmp_path / "runs" / "0"), str(tmp_path / "runs" / "1"), "--out", f"{tmp_path / 'out'}/figs"],
        ["plot", str(tmp_path / "runs"), str(tmp_path / "runs" / "0")],
    ]
    with pytest.raises(SystemExit, match=r"figures\[0\]: no finished run .* where=\{'seed': 5\}"):
        experiment.figure_commands({"name": "x", "figures": [{"command": "p {run_dirs}", "where": {"seed": 5}}]},
                                   tmp_path / "runs", tmp_path / "out")


def test_results_section_reports_recorded_stated_summed_or_no_wall_time(tmp_path):
    table = "| flow | seeds | status | wall s |\n|---|---|---|---|\n| trufl | 3 | ok | 100 ± 5 |\n| catnf | 1 | ok | 300 |\n"
    (tmp_path / "a.md").write_text(f"**A**\n\n{table}")
    (tmp_path / "a.json").write_text(json.dumps({"reproduce": "python scripts/experiment.py experiments/a.yaml",
                                                 "launcher": "local", "finished_utc": "2026-11-24 20:00", "wall_time_s": 90.0}))
    (tmp_path / "b.md").write_text(f"**B**\n\n{table}\nSweep wall time: 12.3 min.\n")
    (tmp_path / "c.csv").write_text("flow,seeds,status,wall s\ntrufl,3,ok,100 ± 5\ncatnf,1,ok,300\nX (published),—,published,\n")
    (tmp_path / "c.md").write_text(f"**C**\n\n{table}")
    (tmp_path / "d.md").write_text("**D**\n\n| flow |\n|---|\n| trufl |\n")
    lines = {name: " ".join(results_section.provenance(name, tmp_path, (tmp_path / f"{name}.md").read_text()))
             for name in "abcd"}
    assert "`python scripts/experiment.py experiments/a.yaml`" in lines["a"] and "1.5 min" in lines["a"]
    assert "12.3 min (as the table states)" in lines["b"] and "EXP=b" in lines["b"]
    assert "sum to 10.0 min (longest row 5.0 min)" in lines["c"]  # 3 x 100 s + 300 s; the published row skipped
    assert lines["d"].endswith("Sweep wall time: not recorded.")


def test_results_section_links_published_figures_and_says_when_none_were(tmp_path):
    spec = tmp_path / "experiments" / "t.yaml"
    spec.parent.mkdir()
    spec.write_text(yaml.safe_dump({"title": "T", "figures": ["{python} draw.py {run_dirs}"]}))
    results = tmp_path / "experiments" / "results"
    results.mkdir()
    assert results_section.subsection(spec, results, tmp_path) == "### T\n\nNot run yet: `make reproduce EXP=t`.\n"
    (results / "t.md").write_text("**T**\n\n| a |\n|---|\n| 1 |\n")
    assert "Figures: none published yet" in results_section.subsection(spec, results, tmp_path)
    (results / "t_figures").mkdir()
    (results / "t_figures" / "trufl_d1_r10.png").write_bytes(b"")
    (results / "t_figures" / "catnf_d1_r1.png").write_bytes(b"")
    (results / "t_figures" / "catnf_d1_r1.gif").write_bytes(b"")
    (results / "t_curves.png").write_bytes(b"")
    text = results_section.subsection(spec, results, tmp_path)
    assert "none published" not in text
    assert "![t_curves](experiments/results/t_curves.png)" in text
    thumbs = ('<a href="experiments/results/t_figures/catnf_d1_r1.gif"><img src="experiments/results/t_figures/catnf_d1_r1.png" '
              'width="220" alt="catnf_d1_r1" title="catnf_d1_r1"></a> <img src="experiments/results/t_figures/trufl_d1_r10.png" '
              'width="220" alt="trufl_d1_r10" title="trufl_d1_r10">')
    assert thumbs in text  # one line, each opening its animation when there is one


def test_recorded_commands_name_the_interpreter_python_and_paths_relative_to_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").touch()
    shown = shown_command([sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={ROOT}/multirun/x/runs",
                           f"paths.data_dir={tmp_path}/data", "seed=0,1", "spec.yaml", "missing.yaml", "--out", str(ROOT)])
    assert shown == (f"python train.py -m hydra.sweep.dir=multirun/x/runs paths.data_dir={tmp_path}/data seed=0,1 "
                     f"{tmp_path}/spec.yaml missing.yaml --out .")  # a file of this folder named as from the root
    assert shown_command(["/usr/bin/python3.11", "scripts/bench.py", "--steps", "2"]) == "python scripts/bench.py --steps 2"


def test_sweep_json_records_the_commands_as_run_from_the_repository_root(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    spec = read_spec(ROOT / "experiments" / "toy.yaml")
    argv = [str(ROOT / "experiments" / "toy.yaml"), "--out", str(tmp_path), "seed=0"]
    assert run_sweep(spec, tmp_path, False, ["seed=0"], "local", argv) == 0
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert ran[0][:2] == [sys.executable, str(ROOT / "train.py")]  # what runs is unchanged
    assert record["reproduce"] == f"python scripts/experiment.py experiments/toy.yaml --out {tmp_path} seed=0"
    assert record["command"] == ("python train.py -m hydra/launcher=local "
                                 f"hydra.sweep.dir={tmp_path}/runs " + " ".join(sweep_overrides(spec, {"seed"})) + " seed=0")


def test_committed_results_name_no_path_of_this_machine():
    machine = {"/work/", "/root/", "/tmp/", sys.executable, f"{ROOT}/", f"{tempfile.gettempdir()}/"}
    found = {f"{path.relative_to(ROOT)}: {marker}" for path in RESULTS.rglob("*") if path.is_file()
             for marker in machine if marker.encode() in path.read_bytes()}
    assert sorted(found) == [], "\n".join(sorted(found))


def test_an_experiments_blocks_run_as_sweeps_of_their_own(tmp_path, monkeypatch):
    """A block (e.g. the recipes' paper configuration beside the shared rows) is its own multirun
    into runs/<block>/, recorded in sweep.json; the extra overrides reach every block."""
    ran = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    spec = {**read_spec(ROOT / "experiments" / "toy.yaml"), "blocks": {"paper": {"recipe": ["catnf_lm"], "seed": [0, 1]}}}
    assert run_sweep(spec, tmp_path, False, ["trainer.max_steps=5"], "local", ["x.yaml"]) == 0
    assert len(ran) == 2 and f"hydra.sweep.dir={tmp_path}/runs" in ran[0] and f"hydra.sweep.dir={tmp_path}/runs/paper" in ran[1]
    assert "recipe=catnf_lm" in ran[1] and "seed=0,1" in ran[1] and ran[1][-1] == "trainer.max_steps=5"
    assert not any(a.startswith("flow=") for a in ran[1])  # a block is a whole sweep, not the main one's axes
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert record["block_commands"] == [shown_command(ran[1])]


def test_a_table_refuses_one_job_in_two_run_directories(tmp_path):
    """An experiment file whose axes changed leaves its earlier job directories beside the new ones
    under --resume (0_trufl… then 1_trufl…): the same job twice, which the table must not average."""
    from trufl.reporting.experiment import refuse_repeated_jobs

    def job(name: str, overrides: list[str], seed: int = 0) -> None:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "results.json").write_text(json.dumps({"status": "finished", "overrides": overrides,
                                                                  "config": {"seed": seed}}))

    job("0_trufl_sets", ["flow=trufl", "seed=0"])
    job("1_catnf_sets", ["flow=catnf", "seed=0"])
    job("2_trufl_sets", ["flow=trufl", "seed=1"], seed=1)
    job("tuned/0_trufl_sets", ["tuned=sets_trufl", "seed=0"])
    refuse_repeated_jobs(tmp_path)  # another seed, another block: different jobs
    job("1_trufl_sets", ["flow=trufl", "seed=0", "ckpt_path=last"])  # resumed: not part of what the job is
    with pytest.raises(SystemExit, match=r"same job in more than one run directory \(0_trufl_sets and 1_trufl_sets\)"):
        refuse_repeated_jobs(tmp_path)
