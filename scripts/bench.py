"""Speed benchmarks, measured side by side in one run (DESIGN.md §7).

1. Training-step time of each dequantiser + AR-LSTM prior ÷ the categorical
   baseline (``flow=categorical``: embedding → LSTM → softmax, the same width), on
   the same batches of the embedded corpus (forward, backward and an Adam step).
   Read it beside the bits-per-character gap of experiments/language_modelling.yaml.
2. Sampling B sequences from the default prior (TRUFL D=1, decoded tokens, spline):
   the stateful sampler at T = 64, 256, 1024 with its growth per 4× length, and ÷
   naive recomputation (re-running the LSTM over the whole prefix for every token)
   where that is affordable (T ≤ 256).

    python scripts/bench.py [--hidden 256] [--batch 32] [--seq-len 128] [--steps 20] [--sample-batch 32]
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from trufl.build import prior_injections
from trufl.categorical import CategoricalLSTM
from trufl.data import TextDataModule
from trufl.dequantisers import ArgmaxDequantiser, CatNFDequantiser, TruflDequantiser
from trufl.latent import LatentVariableModel
from trufl.objective import weighted_loss
from trufl.priors import ARLSTMPrior


def latent_lm(deq, hidden: int, **prior) -> LatentVariableModel:
    """A dequantiser with an AR-LSTM prior, built as a run builds it (faces injected)."""
    injected = prior_injections(ARLSTMPrior, deq, deq.num_categories)
    return LatentVariableModel(deq, ARLSTMPrior(deq.dim, hidden=hidden, **injected, **prior))


def models(hidden: int, K: int) -> dict:
    """name -> model; the first is the reference (``flow=categorical``)."""
    decoded_spline = dict(inputs="decoded", transform="spline")
    return {
        "categorical LSTM (flow=categorical)": CategoricalLSTM(K, hidden),
        "TRUFL D=1, decoded + spline": latent_lm(TruflDequantiser(K, 1), hidden, **decoded_spline),
        "TRUFL D=3, decoded + spline": latent_lm(TruflDequantiser(K, 3), hidden, **decoded_spline),
        "TRUFL D=3, latent + mixture (papers')": latent_lm(TruflDequantiser(K, 3), hidden),
        "TRUFL D=3, latent + mixture, no boundary grad": latent_lm(TruflDequantiser(K, 3, boundary_gradient="none"), hidden),
        "CatNF D=1, decoded + spline": latent_lm(CatNFDequantiser(K, 1), hidden, **decoded_spline),
        "Argmax binary D=5, decoded + spline": latent_lm(ArgmaxDequantiser(K), hidden, **decoded_spline),
    }


def step_fns(batches, hidden: int, K: int) -> dict:
    """name -> a function running one optimisation step (forward, backward, Adam) on batch i."""
    fns = {}
    for name, model in models(hidden, K).items():
        opt = torch.optim.Adam(model.parameters())

        def step(i, model=model, opt=opt):
            b = batches[i]
            opt.zero_grad()
            weighted_loss(model.terms(b["x"], b["mask"]), b["mask"], 1.0, 1.0).backward()
            opt.step()

        fns[name] = step
    return fns


def time_steps(fns: dict, steps: int) -> dict:
    """Interleave the models step by step so drift in machine load hits all alike."""
    totals = dict.fromkeys(fns, 0.0)
    for name, fn in fns.items():  # warm-up
        fn(0)
    for i in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(i)
            totals[name] += time.perf_counter() - start
    return {k: v / steps for k, v in totals.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sample-lengths", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--sample-batch", type=int, default=32)
    ap.add_argument("--max-recompute-length", type=int, default=256, help="longest T for the O(T²) reference sampler")
    ap.add_argument("--data-dir", default="~/.cache/trufl")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    console = Console()

    dm = TextDataModule(seq_len=args.seq_len, batch_size=args.batch, data_dir=args.data_dir)
    loader = iter(dm.train_dataloader())
    batches = [next(loader) for _ in range(args.steps)]
    times = time_steps(step_fns(batches, args.hidden, dm.num_categories), args.steps)
    base = next(iter(times.values()))
    table = Table(title=f"training step, B={args.batch} T={args.seq_len} hidden={args.hidden}, {torch.get_num_threads()} threads")
    for col in ("model", "ms / step", "÷ categorical LSTM"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, t in times.items():
        table.add_row(name, f"{1000 * t:.1f}", f"{t / base:.2f}")
    console.print(table)

    model = latent_lm(TruflDequantiser(dm.num_categories, 1), args.hidden, inputs="decoded", transform="spline").eval()
    B = args.sample_batch
    table = Table(title=f"sampling {B} sequences, the default prior (TRUFL D=1, decoded tokens, spline), hidden={args.hidden}")
    for col in ("T", "stateful s", "× previous T", "recompute s", "recompute ÷ stateful", "stateful ms / token"):
        table.add_column(col, justify="right")
    previous = None
    for T in args.sample_lengths:
        e = torch.logit(torch.rand(B, T, 1).clamp(1e-4, 1 - 1e-4))
        start = time.perf_counter()
        fast = model.prior.inverse(e, readout=model)
        t_fast = time.perf_counter() - start
        growth = f"{t_fast / previous:.2f}" if previous else "—"
        previous = t_fast
        if T <= args.max_recompute_length:  # O(T²): the reference sampler
            start = time.perf_counter()
            slow = model.prior.inverse_recomputing(e, readout=model)
            t_slow = time.perf_counter() - start
            assert torch.allclose(fast, slow, atol=1e-3), "samplers disagree"
            slow_cells = [f"{t_slow:.3f}", f"{t_slow / t_fast:.2f}"]
        else:
            slow_cells = ["—", "—"]
        table.add_row(str(T), f"{t_fast:.3f}", growth, *slow_cells, f"{t_fast / T * 1000:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
