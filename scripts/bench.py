"""Speed and memory benchmarks, measured side by side in one run (docs/performance.md).

Every model is built from the composed config exactly as ``train.py`` builds it
(the contender's overrides on top of the defaults: B=32, T=128, hidden 256) and
compared with the categorical baseline (``flow=categorical``: embedding → LSTM →
softmax of the same width) on the same batches:

1. training step, isolated (forward, backward, Adam) — contenders interleaved
   step by step (A B A B …), median (min–max) over the timed steps;
2. training step in the full Lightning loop (``trainer.fit`` with the default
   logging, NaN checks, gradient clipping, checkpoint callbacks and a CSV logger;
   no validation inside the window): time between consecutive batch starts,
   contenders interleaved run by run;
3. peak memory (resident set, MiB) of a fresh process running training steps;
4. sampling from the default prior at T = 64, 256, 1024 for B = 1 and 32: the
   stateful sampler (T LSTM steps) against naive recomputation (the LSTM re-run
   over the prefix for every token, where affordable), with growth per 4× length;
5. evaluation throughput: test/iwbo_bits (k = 16) against the categorical
   model's exact NLL, tokens per second;
6. data generation: graph colouring (3-chromatic graphs + CP-SAT colourings) and
   Sudoku (backtracking boards), objects per second on one core;

then the other implementations' figures (measured elsewhere on this kind of
machine) as marked reference rows. ``--write`` stores the tables in
``experiments/results/bench.{md,json}`` and regenerates docs/performance.md's performance
section from them.

    python scripts/bench.py [--steps 20] [--loop-steps 40] [--rounds 3] [--write]
    make bench                                  # the same, with --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from rich.console import Console

from trufl import config_dir
from trufl.build import build, build_model, build_trainer
from trufl.atomic import write_json_atomic, write_text_atomic
from trufl.objective import iwbo, weighted_loss
from trufl.priors.reference import recomputing_inverse
from trufl.reporting.formats import markdown
from trufl.reporting.readme import update as update_readme
from trufl.reporting.repository import PERFORMANCE_PAGE, shown_command

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "experiments" / "results"
BASELINE = "categorical LSTM"
#: name -> overrides on the default job (flow=trufl, D=1, AR-LSTM prior reading decoded tokens, spline)
CONTENDERS = {
    BASELINE: ["flow=categorical"],
    "TRUFL D=1, decoded + spline (default)": [],
    "TRUFL D=1, linear head (prior.head_layers=0)": ["prior.head_layers=0"],
    "TRUFL D=3, latent + mixture (papers')": ["latent_dim=3", "prior.inputs=latent", "prior.transform=mixture"],
    "TRUFL D=3, latent + mixture, no boundary gradient": ["latent_dim=3", "prior.inputs=latent", "prior.transform=mixture",
                                                          "flow.boundary_gradient=none"],
    "CatNF D=1, decoded + spline": ["flow=catnf"],
    "CatNF D=3, latent + mixture (papers')": ["flow=catnf", "latent_dim=3", "prior.inputs=latent", "prior.transform=mixture"],
    "Argmax binary D=5, decoded + spline": ["flow=argmax"],
}
#: priors to sample from: name -> (overrides, batch sizes; None: --sample-batches)
SAMPLERS = {
    "default: D=1, decoded + spline": ([], None),
    "papers': D=3, latent + mixture": (["latent_dim=3", "prior.inputs=latent", "prior.transform=mixture"], [32]),
}
#: the reference implementations, measured elsewhere on this kind of machine (2 threads,
#: B=32, T=128, hidden 256, 27 categories); from issue 12
PEERS = {
    "step": [
        ("CatNF (reference code)", "2.48"),
        ("Argmax flows (reference code)", "5.3 (11.7 with its 512-wide context LSTM)"),
    ],
    "memory": [("plain LSTM LM", "≈ 403"), ("CatNF (reference code)", "≈ 625"), ("Argmax flows (reference code)", "640–811")],
    "sampling": [("Argmax flows (reference code)", {64: 5.5, 128: 18.1, 256: 76.7})],
}


# -- configs and statistics -----------------------------------------------------
def compose_cfg(overrides: list[str], out_dir: Path, data_dir: str | None) -> DictConfig:
    """The job's config with ``overrides``, a CSV logger into ``out_dir``, no progress bar."""
    fixed = ["logger=csv", f"paths.output_dir={out_dir}", "trainer.enable_progress_bar=false"]
    if data_dir:
        fixed.append(f"paths.data_dir={data_dir}")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[*fixed, *overrides])


def stats(seconds: list[float]) -> dict:
    """Median, min and max of a list of timings (seconds)."""
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "n": len(seconds)}


def ms(s: dict) -> str:
    return f"{1000 * s['median']:.1f} ({1000 * s['min']:.1f}–{1000 * s['max']:.1f})"


def ratio(s: dict, ref: dict) -> str:
    return f"{s['median'] / ref['median']:.2f}"


@contextmanager
def timer(out: list):
    start = time.perf_counter()
    yield
    out.append(time.perf_counter() - start)


# -- 1. isolated step -----------------------------------------------------------
def task_and_module(cfg: DictConfig):
    """The task (set up) and a freshly seeded LightningModule, as a run builds them."""
    pl.seed_everything(cfg.seed, verbose=False)
    task = build(cfg.dataset)
    task.setup()
    return task, build_model(cfg, task.num_categories)


def train_step(model, opt, batch: dict, bf16: bool = False) -> None:
    """One optimisation step on the unweighted loss: forward, backward, optimiser (the forward
    under bf16 autocast with ``bf16``, as ``trainer.precision=bf16-mixed`` runs it)."""
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = weighted_loss(model.terms(batch["x"], batch["mask"], batch.get("condition")), batch["mask"], 1.0, 1.0)
    loss.backward()
    opt.step()


def isolated_steps(cfgs: dict[str, DictConfig], steps: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per optimisation step (forward, backward, Adam) of each model on the same
    batches, interleaved step by step so load drift hits every model alike."""
    fns, batches = {}, None
    for name, cfg in cfgs.items():
        task, module = task_and_module(cfg)
        if batches is None:
            loader = iter(task.train_dataloader())
            batches = [next(loader) for _ in range(steps + warmup)]
        model, opt = module.model, torch.optim.Adam(module.parameters(), lr=cfg.optim.lr)
        fns[name] = lambda b, model=model, opt=opt: train_step(model, opt, b)
    times = {name: [] for name in fns}
    for i, b in enumerate(batches):
        for name, fn in fns.items():
            if i < warmup:
                fn(b)
                continue
            with timer(times[name]):
                fn(b)
    return times


# -- 2. the full Lightning loop -------------------------------------------------
class BatchStartTimes(pl.Callback):
    """Time of every training batch start: consecutive differences are whole loop steps
    (data loading, forward, backward, optimiser, logging, checks, callbacks)."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.perf_counter())


def loop_steps(cfgs: dict[str, DictConfig], steps: int, rounds: int, warmup: int = 5) -> dict[str, list[float]]:
    """Seconds per step of ``trainer.fit`` for each config; runs interleaved A B A B …
    (``rounds`` fits per config, the first ``warmup`` steps of each discarded)."""
    times = {name: [] for name in cfgs}
    for _ in range(rounds):
        for name, cfg in cfgs.items():
            task, module = task_and_module(cfg)
            timing = BatchStartTimes()
            trainer = build_trainer(cfg, None, cfg.paths.output_dir)
            trainer.callbacks.append(timing)
            trainer.fit(module, datamodule=task)
            gaps = [b - a for a, b in zip(timing.starts, timing.starts[1:])]
            times[name].extend(gaps[warmup:])
    return times


def loop_overrides(steps: int) -> list[str]:
    """A fit of ``steps`` steps with the default logging and checks, without validation
    or the end-of-training checkpoint inside the timed window (the window ends at the
    last batch start)."""
    return [f"trainer.max_steps={steps}", "trainer.limit_val_batches=0", "trainer.val_check_interval=null",
            "trainer.check_val_every_n_epoch=1"]


# -- 3. peak memory ---------------------------------------------------------------
def rss_mib() -> dict:
    """Current and peak resident set of this process (MiB), from /proc where available."""
    fields = {}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    peak = fields.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"rss": fields.get("VmRSS", peak), "peak": peak}


def memory_probe(overrides: list[str], steps: int, data_dir: str | None) -> dict:
    """In this (fresh) process: resident set before the model and peak after ``steps``
    training steps of the job with ``overrides``; its parameter count."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_cfg(overrides, Path(tmp), data_dir)
        task = build(cfg.dataset)
        task.setup()
        loader = iter(task.train_dataloader())
        batches = [next(loader) for _ in range(steps)]
        before = rss_mib()["rss"]
        pl.seed_everything(cfg.seed, verbose=False)
        module = build_model(cfg, task.num_categories)
        opt = torch.optim.Adam(module.parameters())
        for b in batches:
            train_step(module.model, opt, b)
    return {"before_model_mib": before, "peak_mib": rss_mib()["peak"],
            "parameters": sum(p.numel() for p in module.parameters())}


def peak_memory(jobs: dict[str, list[str]], steps: int, data_dir: str | None) -> dict[str, dict]:
    """Run :func:`memory_probe` for each named job (its overrides) in a process of its own."""
    out = {}
    for name, overrides in jobs.items():
        cmd = [sys.executable, __file__, "--memory-probe", json.dumps(overrides), "--steps", str(steps)]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


# -- 4. sampling ------------------------------------------------------------------
def sampling_times(model, lengths: list[int], batch_sizes: list[int], max_recompute: int, reps: int) -> list[dict]:
    """Seconds to sample ``[B, T]`` latents from the prior: stateful and (T ≤ ``max_recompute``)
    recomputing, interleaved, median of ``reps``; both agree (checked)."""
    rows = []
    model.prior.inverse(torch.zeros(2, 8, model.prior.dim), support=model.support)  # warm-up
    for B in batch_sizes:
        previous = None
        for T in lengths:
            fast, slow = [], []
            for _ in range(reps if T <= 256 else 1):
                e = torch.logit(torch.rand(B, T, model.prior.dim).clamp(1e-4, 1 - 1e-4))
                with timer(fast):
                    z = model.prior.inverse(e, support=model.support)
                if T <= max_recompute:
                    with timer(slow):
                        z_ref = recomputing_inverse(model.prior, e, support=model.support)
                    if not torch.allclose(z, z_ref, atol=1e-3):
                        raise AssertionError(f"stateful and recomputing samplers disagree at B={B} T={T}")
            row = {"B": B, "T": T, "stateful": stats(fast), "recompute": stats(slow) if slow else None}
            row["growth"] = row["stateful"]["median"] / previous if previous else None
            previous = row["stateful"]["median"]
            rows.append(row)
    return rows


# -- 5. evaluation throughput ------------------------------------------------------
@torch.no_grad()
def eval_throughput(cfgs: dict[str, DictConfig], k: int, num_batches: int) -> dict[str, dict]:
    """Test tokens per second: the categorical model's exact NLL, the others' IWBO with
    ``k`` importance samples (each a fresh z ~ q(z|x) and a prior density)."""
    out = {}
    for name, cfg in cfgs.items():
        task, module = task_and_module(cfg)
        model = module.model.eval()
        batches = [b for _, b in zip(range(num_batches), task.test_dataloader())]
        tokens = sum(int(b["mask"].sum()) for b in batches)
        exact = "iwbo_bits" in model.not_applicable  # a model without a latent: its NLL is exact
        evaluate = (lambda b: model.terms(b["x"], b["mask"])) if exact else (lambda b: iwbo(model, b["x"], b["mask"], k))
        evaluate(batches[0])  # warm-up (allocator, first-call dispatch)
        seconds = []
        with timer(seconds):
            for b in batches:
                evaluate(b)
        out[name] = {"tokens_per_s": tokens / seconds[0], "seconds": seconds[0], "tokens": tokens,
                     "bound": "exact NLL" if exact else f"IWBO k={k}"}
    return out


# -- 6. data generation ------------------------------------------------------------
def data_generation(count: int) -> dict[str, dict]:
    """Objects per second of the constrained tasks' generators on one process."""
    from trufl.data.graph_generation import generate_chunk
    from trufl.data.graphs import GraphColouringDataModule
    from trufl.data.sudoku import generate_boards

    out = {}
    generate_chunk(0, 1, 10, 20, (2.5, 4.5))  # warm-up: the solver's first call
    for size, (lo, hi) in GraphColouringDataModule.SIZES.items():
        seconds = []
        with timer(seconds):
            generate_chunk(0, count, lo, hi, (2.5, 4.5))
        out[f"graph colouring {size} ({lo}–{hi} nodes)"] = {"per_s": count / seconds[0], "count": count}
    seconds = []
    with timer(seconds):
        generate_boards(0, count)
    out["Sudoku boards"] = {"per_s": count / seconds[0], "count": count}
    return out


# -- tables -------------------------------------------------------------------------
def render(r: dict) -> str:
    """The markdown report (also docs/performance.md's block)."""
    a = r["args"]
    ref_iso, ref_loop = r["isolated"][BASELINE], r["loop"][BASELINE]
    ref_mem = r["memory"][BASELINE]["peak_mib"]
    rows = []
    for name in r["isolated"]:
        iso, loop, mem = r["isolated"][name], r["loop"][name], r["memory"][name]
        rows.append([name, ms(iso), ratio(iso, ref_iso), ms(loop), ratio(loop, ref_loop), f"{1 / loop['median']:.1f}",
                     f"{mem['peak_mib']:.0f}", f"{mem['peak_mib'] / ref_mem:.2f}"])
    for peer, step_ratio in PEERS["step"]:
        rows.append([f"*{peer}: measured elsewhere on this kind of machine*", "", step_ratio, "", "", "", "", ""])
    for peer, mib in PEERS["memory"]:
        rows.append([f"*{peer}: measured elsewhere on this kind of machine*", "", "", "", "", "", mib, ""])
    out = [
        f"Measured {r['date']} on {r['machine']}, torch {r['torch']}, {r['threads']} threads; "
        f"`{r['command']}` ({r['wall_s']:.0f} s). Medians (min–max) over {a['steps']} interleaved steps (isolated) and "
        f"{a['rounds']} × {a['loop_steps'] - 5} steps (loop); B = {a['batch']}, T = {a['seq_len']}, hidden {a['hidden']}.",
        "",
        markdown(["model", "isolated ms/step", "÷ categorical", "full loop ms/step", "÷ categorical", "loop steps/s",
                  "peak MiB", "÷ categorical"], rows),
        "",
        "Sampling B sequences of T tokens from the prior (TRUFL's AR-LSTM prior, untrained weights; decoding "
        "included), seconds, median of repeats (one run at T = 1024; the recomputing sampler, O(T²), only up to T = 256):",
        "",
    ]
    rows = []
    for s in r["sampling"]:
        rec = s["recompute"]
        rows.append([s["prior"], str(s["B"]), str(s["T"]), f"{s['stateful']['median']:.3f}",
                     f"{s['growth']:.2f}" if s["growth"] else "—",
                     f"{1000 * s['stateful']['median'] / s['T']:.2f}",
                     f"{rec['median']:.3f}" if rec else "—", f"{rec['median'] / s['stateful']['median']:.1f}" if rec else "—"])
    for peer, by_t in PEERS["sampling"]:
        for T, sec in by_t.items():
            rows.append([f"*{peer}: elsewhere*", "32", str(T), f"{sec}", "", "", "", ""])
    out += [markdown(["prior", "B", "T", "stateful s", "× previous T (4×)", "ms / token", "recompute s", "recompute ÷ stateful"], rows), ""]
    ref_tps = r["eval"][BASELINE]["tokens_per_s"]
    rows = [[name, e["bound"], f"{e['tokens_per_s']:.0f}", f"{ref_tps / e['tokens_per_s']:.2f}"] for name, e in r["eval"].items()]
    out += ["Test-split evaluation throughput (one pass over the first batches, no gradients):", "",
            markdown(["model", "bound", "tokens / s", "time ÷ categorical NLL"], rows), ""]
    rows = [[name, f"{d['per_s']:.1f}", str(d["count"])] for name, d in r["data"].items()]
    out += ["Data generation (one process; runs split across `dataset.workers` processes and are cached):", "",
            markdown(["objects", "per second", "generated"], rows), ""]
    return "\n".join(out)


def write_report(name: str, block: str, results: dict, report: str) -> str:
    """``experiments/results/<name>.{json,md}`` and docs/performance.md's ``block``; what was written."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / f"{name}.json", results, indent=1)
    write_text_atomic(RESULTS / f"{name}.md", report)
    update_readme(block, report, PERFORMANCE_PAGE)
    return f"wrote {RESULTS / name}.md, {RESULTS / name}.json and docs/performance.md's {block} section"


def finish(script: str, name: str, block: str, args, argv: list[str] | None, start: float, render, **fields) -> dict:
    """A bench's results: the common header (arguments, date, machine, torch, its command without
    ``--write``) around ``fields``, and the wall time; prints ``render(results)`` and, with
    ``args.write``, writes it (:func:`write_report`)."""
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write"]
    results = {"args": vars(args), "date": time.strftime("%Y-%m-%d"), "machine": machine(), "platform": platform.platform(),
               "torch": torch.__version__, "command": shown_command(["python", f"scripts/{script}", *shown]),
               **fields, "wall_s": time.time() - start}
    report = render(results)
    print(report)
    if args.write:
        print(write_report(name, block, results, report))
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20, help="timed isolated steps per model")
    ap.add_argument("--loop-steps", type=int, default=40, help="steps per trainer.fit (the first 5 are not timed)")
    ap.add_argument("--rounds", type=int, default=3, help="trainer.fit runs per model, interleaved")
    ap.add_argument("--memory-steps", type=int, default=5)
    ap.add_argument("--sample-lengths", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--sample-batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--sample-reps", type=int, default=3)
    ap.add_argument("--max-recompute-length", type=int, default=256, help="longest T for the O(T²) reference sampler")
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--iw-samples", type=int, default=16)
    ap.add_argument("--data-count", type=int, default=50, help="graphs / boards generated for the throughput")
    ap.add_argument("--only", nargs="+", choices=list(CONTENDERS), help="a subset of contenders (the baseline is always in)")
    ap.add_argument("--data-dir", default=None, help="data cache (default: paths.data_dir)")
    ap.add_argument("--write", action="store_true", help="write experiments/results/bench.{md,json} and docs/performance.md's block")
    ap.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_probe:
        print(json.dumps(memory_probe(json.loads(args.memory_probe), args.steps, args.data_dir)))
        return
    start, console = time.time(), Console()
    names = [BASELINE] + [n for n in CONTENDERS if n != BASELINE and (not args.only or n in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = {n: compose_cfg(CONTENDERS[n], Path(tmp) / str(i), args.data_dir) for i, n in enumerate(names)}
        loop_cfgs = {n: compose_cfg(CONTENDERS[n] + loop_overrides(args.loop_steps), Path(tmp) / f"loop{i}", args.data_dir)
                     for i, n in enumerate(names)}
        console.print(f"[bold]1/6[/] isolated steps ({args.steps} per model, interleaved)")
        isolated = isolated_steps(cfgs, args.steps)
        console.print(f"[bold]2/6[/] full Lightning loop ({args.rounds} × {args.loop_steps} steps per model, interleaved)")
        loop = loop_steps(loop_cfgs, args.loop_steps, args.rounds)
        console.print("[bold]3/6[/] peak memory (a process per model)")
        memory = peak_memory({n: CONTENDERS[n] for n in names}, args.memory_steps, args.data_dir)
        console.print("[bold]4/6[/] sampling")
        sampling = []
        for prior, (overrides, batch_sizes) in SAMPLERS.items():
            _, module = task_and_module(compose_cfg(overrides, Path(tmp) / "sampling", args.data_dir))
            batch_sizes = args.sample_batches if batch_sizes is None else batch_sizes
            rows = sampling_times(module.model.eval(), args.sample_lengths, batch_sizes, args.max_recompute_length, args.sample_reps)
            sampling += [{"prior": prior, **row} for row in rows]
        console.print("[bold]5/6[/] evaluation throughput")
        evaluation = eval_throughput(cfgs, args.iw_samples, args.eval_batches)
    console.print("[bold]6/6[/] data generation")
    data = data_generation(args.data_count)
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write"]  # copy-pasteable
    results = {
        "args": {**vars(args), "batch": cfgs[BASELINE].dataset.batch_size, "seq_len": cfgs[BASELINE].dataset.seq_len,
                 "hidden": cfgs[BASELINE].flow.hidden},
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "command": shown_command(["python", "scripts/bench.py", *shown]),
        "isolated": {n: stats(v) for n, v in isolated.items()}, "loop": {n: stats(v) for n, v in loop.items()},
        "memory": memory, "sampling": sampling, "eval": evaluation, "data": data, "wall_s": time.time() - start,
    }
    report = render(results).rstrip("\n") + "\n"  # as the page's block stores it
    print(report)
    if args.write:
        console.print(write_report("bench", "performance", results, report))


if __name__ == "__main__":
    main()
