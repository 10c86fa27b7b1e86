"""What each category's support and density look like over training (D <= 2).

:class:`SupportHistory` (a Lightning callback, ``callbacks.support_history``) appends
records to ``<dirpath>/support_history.jsonl`` (the format: :mod:`trufl.history_format`):
the run's meta record, a frame at step 0, every ``every_n_steps`` steps and the last
step, and each validation during fit. ``q(z|k)`` is evaluated on the grid through the
dequantiser's own ``log_prob_all``, so any variant is drawn as it is; the prior's density
is a sequence prior's first token's.

One more frame is written for the step where fitting stopped on an exception. At the end
of training, with a W&B logger (or ``render: true``), the callback draws the animation
(:mod:`trufl.reporting.animation`) next to the file and logs the GIF and the final frame
as media; ``python -m trufl.reporting.animate_toy`` draws it from the file at any time.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Annotated, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger

from .extras import require
from .resume import keep_lines
from .history_format import CURVE_METRICS, FILENAME, append, frame_record, meta_record, val_record
from .settings import Count, Positive, Range, checked

log = logging.getLogger(__name__)

#: grid points per axis (2 at least: a grid has two ends)
GridPoints = Annotated[int, Range(2)]


def grid_axis(z_range: float, points: int) -> torch.Tensor:
    """``[G]`` equally spaced points on ``[-z_range, z_range]``."""
    return torch.linspace(-z_range, z_range, points, dtype=torch.float64)


def grid_points(axis: torch.Tensor, dim: int) -> torch.Tensor:
    """Grid points ``[G, 1]`` (D = 1) or ``[G*G, 2]`` (D = 2; row i, column j is
    ``(axis[j], axis[i])`` so a reshape to ``[G, G]`` is an image with x along columns)."""
    if dim == 1:
        return axis[:, None]
    zy, zx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([zx.reshape(-1), zy.reshape(-1)], dim=-1)


@torch.no_grad()
def densities_on_grid(model, axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``q(z|k)`` for every k ``[K, G(, G)]`` and the prior ``p(z)`` ``[G(, G)]`` on the
    grid of ``axis``. ``model``: a :class:`~trufl.latent.LatentVariableModel`; the
    dequantiser's context-free parameters; the prior sees one token."""
    deq = model.dequantiser
    param = next(model.parameters())
    z = grid_points(axis, deq.dim).to(device=param.device, dtype=param.dtype)  # [N, D]
    shape = (len(axis),) * deq.dim
    log_q = deq.log_prob_all(z)  # [N, K]
    mask = torch.ones(z.shape[0], 1, dtype=torch.bool, device=z.device)
    log_p = model.prior.log_prob(z[:, None, :], mask, None, model.support)[:, 0]  # [N]
    return log_q.T.exp().reshape(-1, *shape).cpu(), log_p.exp().reshape(shape).cpu()


class SupportHistory(pl.Callback):
    """Records the supports and densities of a D <= 2 model at frame steps (module docstring).

    Args:
        dirpath: the run directory (the file is ``<dirpath>/support_history.jsonl``).
        every_n_steps: steps between frames (plus step 0 and the last step).
        z_range: the grid covers ``[-z_range, z_range]`` in every dimension.
        grid_points_1d, grid_points_2d: grid points per axis for D = 1 and D = 2.
        render: draw ``support.gif`` / ``support.png`` at the end of training: ``auto`` when a
            W&B logger is attached (and log them as media), ``true`` always, ``false`` never
            (``python -m trufl.reporting.animate_toy`` draws them from the file later; ~0.3 s a frame).
    """

    @checked("callbacks.support_history")
    def __init__(self, dirpath: str | Path, every_n_steps: Count = 50, z_range: Positive = 6.0,
                 grid_points_1d: GridPoints = 400, grid_points_2d: GridPoints = 64,
                 render: Literal["auto", True, False] = "auto"):
        self.path = Path(dirpath) / FILENAME
        self.every_n_steps = every_n_steps
        self.z_range = float(z_range)
        self.grid_sizes = {1: grid_points_1d, 2: grid_points_2d}
        self.render = render
        self.axis: torch.Tensor | None = None
        self._sums: dict[str, float] = {}
        self._count = 0
        self._last_frame: int | None = None
        self._resumed_at: int | None = None  # the checkpoint's step, when resumed

    def state_dict(self) -> dict:
        # the averages since the last frame: a resumed run's next frame averages the same steps
        return {"sums": dict(self._sums), "count": self._count, "last_frame": self._last_frame}

    def load_state_dict(self, state_dict: dict) -> None:
        self._sums, self._count = dict(state_dict["sums"]), state_dict["count"]
        self._last_frame = state_dict["last_frame"]
        self._resumed_at = -1  # set to the step in on_train_start (the trainer's step is restored then)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dim = pl_module.model.dequantiser.dim
        if dim > 2:
            raise ValueError(f"callbacks.support_history draws D <= 2 latents; this run has flow.dim={dim} "
                             "(drop it with ~callbacks.support_history)")
        self.axis = grid_axis(self.z_range, self.grid_sizes[dim])
        if trainer.is_global_zero and not self.path.is_file():  # a resumed run appends to its history
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append(self.path, self._meta(trainer, pl_module))

    def _meta(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        deq = pl_module.model.dequantiser
        probs = getattr(trainer.datamodule, "probs", None)
        return meta_record(type(deq).__name__, deq.num_categories, deq.dim, getattr(pl_module, "recon_weight", None),
                           list(probs) if probs is not None else None, self.axis.tolist(), self.every_n_steps,
                           trainer.max_steps, getattr(deq, "init", None))

    def _frame(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Append the frame of the current step (once per step)."""
        step = trainer.global_step
        if step == self._last_frame or not trainer.is_global_zero:
            return
        model = pl_module.model
        density, prior = densities_on_grid(model, self.axis)
        boxes = model.support.boxes()
        train = {k: v / self._count for k, v in self._sums.items()} if self._count else None
        append(self.path, frame_record(step, None if boxes is None else (boxes[0].tolist(), boxes[1].tolist()),
                                       model.dequantiser.summary(), density.tolist(), prior.tolist(), train))
        self._sums, self._count, self._last_frame = {}, 0, step

    # -- hooks ------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._resumed_at is None:
            self._frame(trainer, pl_module)  # step 0
            return
        self._resumed_at = step = trainer.global_step
        if trainer.is_global_zero:  # what the interrupted run wrote after its checkpoint is written again
            keep_lines(self.path, lambda line: self._kept(json.loads(line), step))

    def _kept(self, record: dict, step: int) -> bool:
        """A record of the interrupted run that the resumed run keeps: those up to the checkpoint's
        step, less the extra frame of the step where it stopped (an uninterrupted run has none)."""
        if record.get("kind") not in ("frame", "val"):
            return True
        return record["step"] < step or (record["step"] == step and (record["kind"] == "val" or step == self._last_frame))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for name in CURVE_METRICS:
            value = trainer.callback_metrics.get(f"train/{name}")
            if value is not None and math.isfinite(float(value)):
                self._sums[name] = self._sums.get(name, 0.0) + float(value)
        self._count += 1
        if trainer.global_step % self.every_n_steps == 0:
            self._frame(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        metrics = {name: float(trainer.callback_metrics[f"val/{name}"]) for name in CURVE_METRICS
                   if f"val/{name}" in trainer.callback_metrics}
        append(self.path, val_record(trainer.global_step, metrics))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn == "fit" and self.axis is not None:
            # the state where fitting stopped (the file keeps every earlier frame); the running
            # averages stay as they are, for the checkpoint saved next (a resume drops this frame)
            kept = dict(self._sums), self._count, self._last_frame
            self._frame(trainer, pl_module)
            self._sums, self._count, self._last_frame = kept

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._frame(trainer, pl_module)  # the last step, rarely on the interval
        wandb = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if trainer.is_global_zero and (self.render is True or (self.render == "auto" and wandb)):
            self._render(wandb)

    def _render(self, wandb_loggers: list[WandbLogger]) -> None:
        """Draw ``support.gif`` and ``support.png`` beside the history; log them as W&B media."""
        require("matplotlib", "figures", "drawing the support animation (callbacks.support_history.render)")
        from .reporting.animation import animate  # drawing is optional: matplotlib only when asked
        from .loggers import log_figures

        gif, png = animate(self.path, self.path.parent)
        for logger in wandb_loggers:
            log_figures(logger, {"support/animation": gif, "support/final": png})
        log.info("support animation: %s, final frame: %s", gif, png)
