"""Lightning callbacks of our own (everything else comes from Lightning)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class CheckpointOnInterrupt(pl.Callback):
    """On Ctrl-C (or SIGTERM turned into KeyboardInterrupt), save the current state
    as ``last.ckpt`` so ``ckpt_path=<dir>/last.ckpt`` resumes from the very step."""

    def __init__(self, dirpath: str | Path):
        self.path = Path(dirpath) / "last.ckpt"

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.path)
            log.warning("interrupted at step %d; resume with ckpt_path=%s", trainer.global_step, self.path)
