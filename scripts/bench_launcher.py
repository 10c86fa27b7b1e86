"""Sweeps on this machine's cores: the local launcher (as many one-thread jobs as cores) against
one job at a time with every thread (docs/performance.md#launcher).

Both run the same small sweep end to end — every flow of a task, training, validation, the
test-time evaluation and sampling, as ``make reproduce`` runs them — through ``train.py -m`` in
a fresh process, so the times include start-up and data. The two settings alternate
(A B B A …) so that load drift hits both alike; each time is the whole sweep's wall clock.

    python scripts/bench_launcher.py [--task sets] [--steps 300] [--rounds 2] [--write]
    make bench-launcher                              # the same, with --write
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench import finish, stats  # noqa: E402

from trufl.reporting.formats import markdown  # noqa: E402
from trufl.reporting.sweep import sweep_command, sweep_overrides  # noqa: E402

#: the sweep each task runs (an experiment file's ``sweep``): its preset, every flow
TASKS = {
    "sets": {"experiment": "sets", "dataset": "sets_shuffle", "flow": ["categorical", "trufl", "catnf", "argmax"]},
    "text": {"dataset": "text", "flow": ["categorical", "trufl", "catnf", "argmax"]},
}
#: the settings compared: a launcher and its overrides (the local launcher sets one torch thread per job)
SETTINGS = {
    "local launcher, 1 thread × cores jobs": ("local", [f"hydra.launcher.n_jobs={os.cpu_count()}"]),
    "one job at a time, cores threads": ("basic", [f"num_threads={os.cpu_count()}"]),
}


def setting_overrides(name: str) -> list[str]:
    """The setting as command-line overrides (``hydra/launcher=…`` first)."""
    launcher, extra = SETTINGS[name]
    return [f"hydra/launcher={launcher}", *extra]


def sweep_seconds(task: str, setting: str, steps: int, out: Path, data_dir: str | None) -> float:
    """Wall seconds of the task's sweep with the launcher ``setting``, built as ``make reproduce``
    builds an experiment's sweep (:func:`trufl.reporting.sweep.sweep_command`)."""
    launcher, extra = SETTINGS[setting]
    run = ["seed=0", "logger=csv", f"trainer.max_steps={steps}", f"trainer.val_check_interval={max(steps // 2, 1)}",
           "trainer.enable_progress_bar=false", *([f"paths.data_dir={data_dir}"] if data_dir else [])]
    cmd = sweep_command({"sweep": TASKS[task]}, out, False, [*extra, *run], launcher)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"the sweep failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return seconds


def render(r: dict) -> str:
    names = list(r["settings"])
    first = r["settings"][names[0]]
    rows = [[name, f"{s['median']:.0f} ({s['min']:.0f}–{s['max']:.0f})", f"{s['median'] / first['median']:.2f}"]
            for name, s in r["settings"].items()]
    return "\n".join([
        f"Measured {r['date']} on {r['machine']}, torch {r['torch']}; `{r['command']}` ({r['wall_s'] / 60:.0f} min). "
        f"The {r['args']['task']} sweep ({', '.join(sweep_overrides({'sweep': TASKS[r['args']['task']]}))}), {r['args']['steps']} steps per run, "
        f"seed 0; whole-sweep wall seconds, median (min–max) of {r['args']['rounds']} alternated rounds.",
        "",
        markdown(["setting", "sweep wall s", f"÷ {names[0]}"], rows),
        "",
    ])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=list(TASKS), default="sets")
    ap.add_argument("--steps", type=int, default=300, help="training steps per run")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each setting, alternated A B B A …")
    ap.add_argument("--data-dir", default=None, help="data cache (default: paths.data_dir)")
    ap.add_argument("--write", action="store_true", help="write experiments/results/bench_launcher.{md,json} and docs/performance.md's block")
    args = ap.parse_args(argv)
    start, times = time.time(), {name: [] for name in SETTINGS}
    order = [n for i in range(args.rounds) for n in (list(SETTINGS) if i % 2 == 0 else list(SETTINGS)[::-1])]
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(order):
            print(f"[{i + 1}/{len(order)}] {name}", flush=True)
            times[name].append(sweep_seconds(args.task, name, args.steps, Path(tmp) / str(i), args.data_dir))
            print(f"    {times[name][-1]:.0f} s", flush=True)
    finish("bench_launcher.py", "bench_launcher", "launcher", args, argv, start, render,
           settings={name: {**stats(t), "seconds": t} for name, t in times.items()},
           overrides={"task": sweep_overrides({"sweep": TASKS[args.task]}), **{n: setting_overrides(n) for n in SETTINGS}})

if __name__ == "__main__":
    main()
