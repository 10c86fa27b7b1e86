"""Lightning callbacks of our own (everything else comes from Lightning and is
chosen in ``conf/callbacks/``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

from .objective import NonFiniteLossError

log = logging.getLogger(__name__)


class CheckpointOnException(pl.Callback):
    """Save the state of the very step at which training stopped:

    * Ctrl-C (or SIGTERM turned into KeyboardInterrupt): ``last.ckpt``, so
      ``ckpt_path=<dir>/last.ckpt`` resumes from that step;
    * a NaN/inf loss: ``nonfinite-step<N>.ckpt``, the state before the failing
      step (the loss is checked before backward), named in the error.
    """

    def __init__(self, dirpath: str | Path):
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit":
            return
        if isinstance(exception, KeyboardInterrupt):
            path = self.dirpath / "last.ckpt"
            trainer.save_checkpoint(path)
            log.warning("interrupted at step %d; resume with ckpt_path=%s", trainer.global_step, path)
        elif isinstance(exception, NonFiniteLossError):
            path = self.dirpath / f"nonfinite-step{trainer.global_step}.ckpt"
            trainer.save_checkpoint(path)
            exception.add_note(f"checkpoint of the state before this step: {path}")


def progress_bar(refresh_rate: int = 50) -> pl.Callback:
    """Rich's bar in a terminal, a plain tqdm bar (every ``refresh_rate`` steps) in logs."""
    return RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(refresh_rate=refresh_rate)
