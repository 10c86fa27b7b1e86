"""The papers' recipes against their reference code: training-step time and peak memory, in
float32 and with ``trainer.precision=bf16-mixed`` (docs/performance.md#recipes).

Each recipe is built from the composed config exactly as ``train.py`` builds it
(``recipe=<name>``, this repository's budget: B = 32, T = 128 for text, B = 64 sets of 16) and
timed on the same batches in float32 and under bf16 autocast, interleaved step by step (A B A B …)
so that load drift hits both alike: forward, backward and Adam, one torch thread. Peak memory is
the resident set of a fresh process running float32 steps. The reference code's figures were
measured on this machine with its own training loop at the same configuration (one thread, the
commands in docs/baselines.md); they are recorded numbers, marked as such, not re-run here.

    python scripts/bench_recipes.py [--steps 6] [--write]
    make bench-recipes                              # the same, with --write
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench import compose_cfg, finish, peak_memory, stats, task_and_module, train_step  # noqa: E402

from trufl.reporting.formats import markdown  # noqa: E402

RECIPES = ["catnf_lm", "argmax_lm", "trufl_lm", "catnf_sets"]
#: the reference code at the recipe's configuration, one thread, on this machine (2-core AMD EPYC,
#: torch 2.13): seconds per training iteration (wall, uncontended) and peak resident MiB, and how
#: they were measured (docs/baselines.md has the commands)
REFERENCE = {
    "catnf_lm": (0.276, 729, "CategoricalNF text8 loop, 1500 iterations, uncontended (2026-12-01)"),
    "argmax_lm": (0.629, 923, "argmax_flows AR text8 loop, 1500 iterations, CPU s/iteration (2026-12-01)"),
    "catnf_sets": (1.058, 4935, "CategoricalNF set-shuffling loop, 60 iterations, idle machine (2026-12-02); "
                                "4.6 GB of its memory is torch.randperm(1e8) for its 1e8-long dataset"),
}


def step_times(recipe: str, steps: int, data_dir: str | None, tmp: Path, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per step in float32 and bf16-mixed on the same batches, interleaved."""
    cfg = compose_cfg([f"recipe={recipe}"], tmp, data_dir)
    task, module = task_and_module(cfg)
    loader = iter(task.train_dataloader())
    batches = [next(loader) for _ in range(steps + warmup)]
    opt = torch.optim.Adam(module.parameters(), lr=cfg.optim.lr)
    times = {"fp32": [], "bf16": []}
    for i, batch in enumerate(batches):
        for name in times:
            start = time.perf_counter()
            train_step(module.model, opt, batch, name == "bf16")
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def render(r: dict) -> str:
    rows = []
    for recipe, m in r["recipes"].items():
        fp32, bf16, mem = m["fp32"], m["bf16"], m["memory"]
        ref = REFERENCE.get(recipe)
        rows.append([f"`recipe={recipe}`", f"{mem['parameters']:,}",
                     f"{fp32['median']:.3f} ({fp32['min']:.3f}–{fp32['max']:.3f})",
                     f"{bf16['median']:.3f} ({bf16['min']:.3f}–{bf16['max']:.3f})", f"{bf16['median'] / fp32['median']:.2f}",
                     f"{ref[0]:.3f}" if ref else "—", f"{fp32['median'] / ref[0]:.2f}" if ref else "—",
                     f"{bf16['median'] / ref[0]:.2f}" if ref else "—", f"{mem['peak_mib']:.0f}", f"{ref[1]}" if ref else "—"])
    notes = [f"* {recipe}: {ref[2]}" for recipe, ref in REFERENCE.items() if recipe in r["recipes"]]
    return "\n".join([
        f"Measured {r['date']} on {r['machine']}, torch {r['torch']}, one thread; `{r['command']}` ({r['wall_s']:.0f} s). "
        f"Seconds per training step (forward, backward, Adam), median (min–max) over {r['args']['steps']} steps, float32 and "
        "bf16 autocast interleaved on the same batches; peak memory of a fresh process running float32 steps. "
        "The reference columns are the reference code's own loop at the same configuration, measured separately on this "
        "machine (recorded numbers, not re-run by this command):",
        "",
        markdown(["recipe", "parameters", "fp32 s/step", "bf16-mixed s/step", "bf16 ÷ fp32", "reference s/step",
                  "fp32 ÷ reference", "bf16 ÷ reference", "peak MiB", "reference peak MiB"], rows),
        "",
        *notes,
        "",
    ])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per precision and recipe")
    ap.add_argument("--memory-steps", type=int, default=3)
    ap.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES)
    ap.add_argument("--data-dir", default=None, help="data cache (default: paths.data_dir)")
    ap.add_argument("--write", action="store_true", help="write experiments/results/bench_recipes.{md,json} and docs/performance.md's block")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import tempfile

    start, out = time.time(), {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, recipe in enumerate(args.recipes):
            print(f"{recipe}: {args.steps} steps in float32 and bf16-mixed, then peak memory", flush=True)
            times = step_times(recipe, args.steps, args.data_dir, Path(tmp) / str(i))
            out[recipe] = {name: stats(v) for name, v in times.items()}
            out[recipe]["memory"] = peak_memory({recipe: [f"recipe={recipe}"]}, args.memory_steps, args.data_dir)[recipe]
    finish("bench_recipes.py", "bench_recipes", "recipes", args, argv, start, render,
           recipes=out, reference={k: list(v) for k, v in REFERENCE.items()})


if __name__ == "__main__":
    main()
