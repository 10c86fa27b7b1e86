"""What ``trufl-sample`` does (the command and its --help: trufl/sample.py): objects drawn from a
trained model with the test metrics' rejection rule, checked and rendered by the task, written
as JSON (and a picture for graphs and boards) (docs/checkpoints.md)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytorch_lightning as pl
import torch

from .api import LoadedRun, load, write_json
from .atomic import savefig_atomic
from .data.base import SamplingGroup, Task
from .data.graphs import GraphColouringDataModule
from .data.sudoku import SudokuDataModule
from .sampling import merge_sampling, sample_with_rejection


def first_objects(groups: list[SamplingGroup], num: int) -> list[SamplingGroup]:
    """The task's sampling groups cut to their first ``num`` objects in all (constrained tasks
    generate one object per test object, with its condition)."""
    picked, left = [], num
    for g in groups:
        if left <= 0:
            break
        k = min(g.num, left)
        picked.append(SamplingGroup(k, g.length, g.condition[:k] if g.condition is not None else None))
        left -= k
    return picked


def render(task: Task, tokens: list[int], adjacency: torch.Tensor | None) -> object:
    """One object for the JSON file: a board as nine rows of digits (``.`` = outside every
    support), a colouring with its graph's edges, else the task's own rendering (text for
    language models, category lists for the toy and sets)."""
    if isinstance(task, SudokuDataModule):
        cells = "".join(str(t + 1) if t >= 0 else "." for t in tokens)
        return [cells[r * 9:(r + 1) * 9] for r in range(9)]
    if isinstance(task, GraphColouringDataModule) and adjacency is not None:
        return {"colours": tokens, "edges": adjacency.triu(1).nonzero().tolist()}
    return task.render(tokens)


def draw(run: LoadedRun, num: int, seed: int = 0, max_tries: int | None = None) -> tuple[dict, list]:
    """``num`` objects (fewer when the task has fewer test objects to condition on) drawn from
    ``seed``: the JSON-ready result and ``(tokens, adjacency or None, valid)`` per object."""
    task, module = run.task, run.module
    task.setup()
    max_tries = max_tries or module.evaluation.max_tries
    pl.seed_everything(seed, verbose=False)
    device = next(module.parameters()).device
    parts, objects, records = [], [], []
    for g in first_objects(task.sampling_groups(num), num):
        condition = g.condition.to(device) if g.condition is not None else None
        info = sample_with_rejection(module.model, g.num, g.length, task.is_valid, condition, max_tries)
        parts.append(info)
        valid = task.is_valid(info["samples"], condition).tolist()
        adjacency = condition.adjacency.cpu() if condition is not None and condition.adjacency is not None else None
        for k, row in enumerate(info["samples"].cpu()):
            adj = adjacency[k] if adjacency is not None else None
            objects.append((row, adj, valid[k]))
            records.append({"object": render(task, row.tolist(), adj), "valid": bool(valid[k]),
                            "outside_support": int((row < 0).sum())})
    result = {
        "checkpoint": str(run.checkpoint), "global_step": run.global_step, "task": type(task).__name__,
        "requested": num, "num": len(records), "seed": seed,
        "sampling": merge_sampling(parts, max_tries) if parts else {}, "samples": records,
    }
    if hasattr(task, "probs"):  # the toy: how often each category came out, beside the data's probabilities
        counts = Counter(int(t) for row, _, _ in objects for t in row.tolist() if t >= 0)
        total = max(sum(counts.values()), 1)
        result["category_frequencies"] = [counts[c] / total for c in range(task.num_categories)]
        result["data_probs"] = list(task.probs)
    return result, objects


def picture(objects: list, sudoku: bool, title: str, acceptance: float, path: Path) -> Path:
    """The drawn graphs or boards (trufl/reporting/plot_samples.py) as ``path``."""
    from .reporting.plot_samples import draw_samples  # matplotlib only when a picture is drawn

    fig = draw_samples([(row, adj) for row, adj, _ in objects], [v for _, _, v in objects], sudoku, title, acceptance)
    savefig_atomic(fig, path, dpi=110, bbox_inches="tight")
    return path


def run_sample(path: str | Path, num: int, seed: int = 0, out: Path | None = None, max_tries: int | None = None,
               config: str | Path | None = None, image: bool = True, weights_only: bool = True) -> dict:
    """Draw, write the JSON (and the picture) and return the result with ``file`` (and ``image``)."""
    run = load(path, config=config, weights_only=weights_only)
    result, objects = draw(run, num, seed, max_tries)
    target = (out or run.run_dir / "samples") / f"samples-n{num}-seed{seed}.json"
    write_json(target, result)
    result["file"] = str(target)
    drawable = objects and all(adj is not None for _, adj, _ in objects)
    if image and drawable:
        sudoku = isinstance(run.task, SudokuDataModule)
        result["image"] = str(picture(objects, sudoku, run.run_dir.name, result["sampling"]["acceptance"],
                                      target.with_suffix(".png")))
    return result


def report(result: dict, show: int = 8) -> None:
    """The rejection statistics and the first ``show`` samples, printed with rich."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=sys.stdout, width=110)
    s = result["sampling"]
    table = Table(title=f"trufl-sample: {result['num']} objects ({result['task']}, step {result['global_step']})")
    for name in ("valid (first draw)", "valid (rejection)", "acceptance", "proposed", "max_tries"):
        table.add_column(name, justify="right")
    table.add_row(f"{s['validity_plain']:.3f}", f"{s['validity_rejection']:.3f}", f"{s['acceptance']:.3f}",
                  str(s["proposed"]), str(s["max_tries"]))
    console.print(table)
    if result["num"] < result["requested"]:
        console.print(f"the task has {result['num']} test objects to condition on: {result['num']} drawn, "
                      f"not {result['requested']}")
    for record in result["samples"][:show]:
        mark = "[green]valid[/]" if record["valid"] else "[red]invalid[/]"
        obj = record["object"]
        if isinstance(obj, list) and obj and isinstance(obj[0], str):  # a board: its rows under each other
            text = "\n" + "\n".join(obj)
        elif isinstance(obj, dict):  # a colouring: its graph is in the file (and the picture)
            text = f"colours {json.dumps(obj['colours'])} ({len(obj['edges'])} edges)"
        else:
            text = repr(obj) if isinstance(obj, str) else json.dumps(obj)
        console.print(f"{mark} {escape(text)}", soft_wrap=True)
    if "category_frequencies" in result:
        freq = " ".join(f"{f:.3f}" for f in result["category_frequencies"])
        console.print(f"category frequencies {freq} (data: {' '.join(f'{p:.3f}' for p in result['data_probs'])})")
    for key in ("file", "image"):
        if key in result:
            console.print(f"written: {result[key]}", soft_wrap=True)
