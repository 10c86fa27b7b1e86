"""Figures a finished run can draw from its own ``results.json`` (no checkpoint, no
logger history), written next to it and logged as media (:func:`trufl.loggers.log_figures`).
Figures over training (the toy's support animations, learning curves) are drawn by
:mod:`trufl.reporting` from logged histories."""

from __future__ import annotations

from pathlib import Path

from .atomic import savefig_atomic
from .extras import require


def run_figures(results: dict, out: Path) -> dict[str, Path]:
    """``{media key: PNG path}`` of every figure ``results`` supports, written under ``out``.

    * ``figures/box_mass``: for a dequantiser with boxes on a task with known category
      probabilities (the toy), each box's prior mass beside the probability it should learn.
    """
    figures = {}
    mass = results.get("dequantiser", {}).get("box_mass")
    probs = results.get("dataset", {}).get("probs")
    if mass and probs and len(mass) == len(probs):
        figures["figures/box_mass"] = box_mass_figure(mass, probs, out / "box_mass.png")
    return figures


def box_mass_figure(mass: list[float], probs: list[float], path: Path) -> Path:
    """Bars per category (K of each list): the learned box's prior mass and the data probability."""
    matplotlib = require("matplotlib", "figures", "drawing the run's figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = range(len(probs))
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([k - 0.2 for k in categories], probs, width=0.4, label="data probability")
    ax.bar([k + 0.2 for k in categories], mass, width=0.4, label="box prior mass")
    ax.set(xlabel="category", ylabel="probability", xticks=list(categories))
    ax.legend(frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    savefig_atomic(fig, path, dpi=100)
    plt.close(fig)
    return path
