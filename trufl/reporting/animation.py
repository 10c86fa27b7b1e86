"""Drawing a support history (:mod:`trufl.history_format`): one figure per frame, three panels.

* supports: TRUFL's boxes (D = 1: one bar per category under the axis; D = 2:
  rectangles) and every category's density ``q(z|k)`` (D = 1: curves; D = 2: contours
  for dequantisers without boxes), the prior's density underneath;
* curves: train KL, reconstruction (bits, left axis) and determinism (right axis) up
  to the frame's step, validations as markers;
* masses: each category's mass under the prior (TRUFL: ``box_mass``; otherwise the
  prior mass of the region decoded to k, from the grid) against its probability.

Everything is read from the history file; no model is needed. Artists carry a ``gid``
(``box-k``, ``density-k``, ``prior``) so their data can be checked against the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..extras import require

require("matplotlib", "figures", "drawing support animations")
from matplotlib.animation import PillowWriter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ..history_format import read_history  # noqa: E402
from ..atomic import atomic_path, savefig_atomic  # noqa: E402

#: category colours (tab10), cycled for K > 10
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
           "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
FLOW_NAMES = {"TruflDequantiser": "TRUFL", "CatNFDequantiser": "CatNF", "ArgmaxDequantiser": "Argmax"}
CURVE_STYLE = {"kl_bits": ("KL", "tab:blue"), "recon_bits": ("reconstruction", "tab:red"),
               "determinism": ("determinism", "black")}


def colour(k: int) -> str:
    return COLOURS[k % len(COLOURS)]


def density_ceiling(history: dict, cap: float = 12.0) -> float:
    """A fixed y-limit for D = 1 densities over all frames: their maximum, at most
    ``cap`` times the prior's peak (narrow densities are clipped, not squashing the rest)."""
    peak = max(float(np.max(f["prior"])) for f in history["frames"])
    top = max(float(np.max(f["density"])) for f in history["frames"])
    return 1.05 * min(max(top, peak), cap * peak)


def draw_supports(ax, meta: dict, frame: dict, ymax: float | None = None) -> None:
    """The supports and densities of one frame on ``ax`` (z-space, the grid's range)."""
    if meta["dim"] == 1:
        _supports_1d(ax, meta, frame, ymax)
    else:
        _supports_2d(ax, meta, frame)


def _supports_1d(ax, meta: dict, frame: dict, ymax: float | None) -> None:
    """Prior filled in grey, ``q(z|k)`` as curves, box k as a bar in row k under the axis."""
    axis, K = np.asarray(meta["axis"]), meta["num_categories"]
    ymax = ymax or 1.05 * max(np.max(frame["density"]), np.max(frame["prior"]))
    ax.fill_between(axis, frame["prior"], color="0.8", label="prior", gid="prior")
    for k, dens in enumerate(frame["density"]):
        ax.plot(axis, dens, color=colour(k), lw=1.5, label=f"q(z|{k})", gid=f"density-{k}")
    bar = ymax / 12
    if frame["boxes"] is not None:
        lows, highs = _drawable(frame["boxes"]["lo"], axis), _drawable(frame["boxes"]["hi"], axis)
        for k, (lo, hi) in enumerate(zip(lows, highs)):
            ax.add_patch(Rectangle((lo[0], -(k + 1) * bar), hi[0] - lo[0], 0.8 * bar, color=colour(k), gid=f"box-{k}"))
    rows = K if frame["boxes"] is not None else 0
    ax.set_xlim(axis[0], axis[-1])
    ax.set_ylim(-rows * bar - 0.1 * bar, ymax)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= ymax])  # the bars' rows are no density
    ax.set_xlabel("z")
    ax.set_ylabel("density")
    ax.legend(loc="upper right", fontsize=7, ncol=2)


def _drawable(bounds: list, axis: np.ndarray) -> np.ndarray:
    """Box bounds ``[K, D]`` with ±inf (Argmax's orthants) moved just past the grid, so the
    patch is drawable; finite bounds are kept exactly."""
    reach = 2 * max(abs(axis[0]), abs(axis[-1]))
    return np.clip(np.asarray(bounds, dtype=float), -reach, reach)


def _supports_2d(ax, meta: dict, frame: dict) -> None:
    """Prior as a grey image, boxes as rectangles and, where boxes do not say it all
    (none, or unbounded ones), ``q(z|k)`` as contours."""
    axis = np.asarray(meta["axis"])
    extent = (axis[0], axis[-1], axis[0], axis[-1])
    ax.imshow(np.asarray(frame["prior"]), origin="lower", extent=extent, cmap="Greys", alpha=0.6, gid="prior")
    boxes = frame["boxes"]
    if boxes is not None:
        lows, highs = _drawable(boxes["lo"], axis), _drawable(boxes["hi"], axis)
        for k, (lo, hi) in enumerate(zip(lows, highs)):
            ax.add_patch(Rectangle((lo[0], lo[1]), hi[0] - lo[0], hi[1] - lo[1], facecolor=colour(k), alpha=0.45,
                                   edgecolor=colour(k), lw=1.5, gid=f"box-{k}", label=f"box {k}"))
    if boxes is None or not np.isfinite(np.asarray(boxes["lo"]) - np.asarray(boxes["hi"])).all():
        for k, dens in enumerate(frame["density"]):
            dens = np.asarray(dens)
            levels = dens.max() * np.array([0.1, 0.4, 0.8])
            if levels[0] > 0:  # a density below float precision on the grid has no contours
                ax.contour(axis, axis, dens, levels=levels, colors=[colour(k)], linewidths=1.2)
            ax.plot([], [], color=colour(k), label=f"q(z|{k})")
    ax.set_xlim(axis[0], axis[-1])
    ax.set_ylim(axis[0], axis[-1])
    ax.set_aspect("equal")
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    ax.legend(loc="upper right", fontsize=7)


def draw_curves(ax, history: dict, step: int) -> None:
    """Train KL and reconstruction (bits) and determinism (right axis) up to ``step``;
    validation values as markers. x spans the whole run so frames line up."""
    frames = [f for f in history["frames"] if f["step"] <= step and f["train"]]
    vals = [v for v in history["val"] if v["step"] <= step]
    right = ax.twinx()
    for name, (label, col) in CURVE_STYLE.items():
        target = right if name == "determinism" else ax
        target.plot([f["step"] for f in frames], [f["train"].get(name, np.nan) for f in frames],
                    color=col, lw=1.2, label=label, gid=f"train-{name}")
        target.plot([v["step"] for v in vals], [v["metrics"].get(name, np.nan) for v in vals],
                    "o", color=col, ms=3, gid=f"val-{name}")
    ax.set_xlim(0, _last_step(history))
    right.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("bits / token")
    right.set_ylabel("determinism")
    ax.set_title("train (lines), validation (dots)", fontsize=9)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=7)


def frame_masses(meta: dict, frame: dict) -> tuple[np.ndarray, str]:
    """Each category's mass ``[K]`` under the prior and what it is: TRUFL's ``box_mass``,
    else the prior mass of the grid cells decoded to k (normalised by the grid's mass)."""
    if "box_mass" in frame["summary"]:
        return np.asarray(frame["summary"]["box_mass"]), "box mass"
    density = np.asarray(frame["density"]).reshape(meta["num_categories"], -1)
    prior = np.asarray(frame["prior"]).reshape(-1)
    decoded = density.argmax(0)
    inside = density.max(0) > 0
    mass = np.array([prior[(decoded == k) & inside].sum() for k in range(len(density))])
    return mass / prior.sum(), "decoded-region mass"


def draw_masses(ax, history: dict, step: int) -> None:
    """Per category: its mass over training up to ``step`` (solid) and probability (dashed)."""
    meta = history["meta"]
    frames = [f for f in history["frames"] if f["step"] <= step]
    masses = np.array([frame_masses(meta, f)[0] for f in frames])  # [F, K]
    label = frame_masses(meta, frames[-1])[1]
    for k in range(meta["num_categories"]):
        ax.plot([f["step"] for f in frames], masses[:, k], color=colour(k), lw=1.5, gid=f"mass-{k}")
        if meta["probs"] is not None:
            ax.axhline(meta["probs"][k], color=colour(k), ls="--", lw=1, gid=f"prob-{k}")
    ax.set_xlim(0, _last_step(history))
    top = max(meta["probs"] or [0.0])
    ax.set_ylim(0, 1.15 * max(top, 1.0 / meta["num_categories"], float(np.max(masses))))
    ax.set_xlabel("step")
    ax.set_ylabel("mass under the prior")
    ax.set_title(f"{label} (solid) vs p(k) (dashed)" if meta["probs"] else label, fontsize=9)


def _last_step(history: dict) -> int:
    return max(history["frames"][-1]["step"], 1)


def flow_name(meta: dict) -> str:
    """The dequantiser's short name (``TRUFL``, ``CatNF``, ``Argmax``; else its class name)."""
    return FLOW_NAMES.get(meta["dequantiser"], meta["dequantiser"])


def title(meta: dict, step: int) -> str:
    start = meta.get("init")
    start = f", {start} start" if start not in (None, "grid") else ""
    return f"{flow_name(meta)}, D={meta['dim']}, recon_weight={meta['recon_weight']:g}{start}: step {step}"


def draw_frame(fig: Figure, history: dict, index: int, ymax: float | None = None) -> dict:
    """Clear ``fig`` and draw frame ``index``: supports on top, curves and masses
    below. Returns the axes by panel name."""
    fig.clear()
    # fixed margins: a layout engine would re-solve the same layout for every frame (half the time)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.4, 1), left=0.08, right=0.92, bottom=0.08, top=0.93,
                            hspace=0.3, wspace=0.45)
    axes = {"supports": fig.add_subplot(grid[0, :]), "curves": fig.add_subplot(grid[1, 0]),
            "masses": fig.add_subplot(grid[1, 1])}
    frame = history["frames"][index]
    draw_supports(axes["supports"], history["meta"], frame, ymax)
    draw_curves(axes["curves"], history, frame["step"])
    draw_masses(axes["masses"], history, frame["step"])
    fig.suptitle(title(history["meta"], frame["step"]))
    return axes


def animate(history_path: str | Path, out_dir: str | Path, name: str = "support", fps: int = 4,
            dpi: int = 72) -> tuple[Path, Path]:
    """``<out_dir>/<name>.gif`` with one frame per recorded step and the last frame
    as ``<name>.png``. ``history_path``: the jsonl file or its run directory."""
    history = read_history(history_path)
    if not history["frames"]:
        raise ValueError(f"{history_path}: the history has no frames yet")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gif, png = out_dir / f"{name}.gif", out_dir / f"{name}.png"
    ymax = density_ceiling(history) if history["meta"]["dim"] == 1 else None
    fig = Figure(figsize=(9, 7.5) if history["meta"]["dim"] == 2 else (9, 6.5))
    writer = PillowWriter(fps=fps)
    with atomic_path(gif) as tmp, writer.saving(fig, str(tmp), dpi):  # the GIF appears complete
        for index in range(len(history["frames"])):
            draw_frame(fig, history, index, ymax)
            writer.grab_frame()
    savefig_atomic(fig, png, dpi=100)
    return gif, png
