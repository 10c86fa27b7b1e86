"""Lightning callbacks of our own (everything else comes from Lightning and is
chosen in ``trufl/conf/callbacks/``)."""

from __future__ import annotations

import logging
import signal
import threading
import sys
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from .checkpoints import PREVIOUS, keep_previous
from .objective import NonFiniteLossError
from .resume import validates_after_this_batch
from .settings import Count, checked

log = logging.getLogger(__name__)

#: exceptions that every rank sees at the same step (Lightning broadcasts SIGTERM;
#: Ctrl-C reaches the whole process group), so all ranks can join the save
STOPS = (SIGTERMException, KeyboardInterrupt)


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt``: the latest training state, written

    * every ``every_n_train_steps`` steps (what a SIGKILL or a crashed node leaves:
      at most one interval lost),
    * at the end of training (the weights that are evaluated and named in
      ``results.json``),
    * when fitting stops on an exception: SIGTERM (SLURM timeout, ``scancel``,
      preemption), Ctrl-C or an error, with the state of that exact step. A NaN/inf
      loss also keeps ``nonfinite-step<N>.ckpt`` (the state before the failing step;
      the loss is checked before backward), named in the error.

    Each save is atomic (:class:`trufl.checkpoints.AtomicCheckpointIO`): a save that fails
    (a full disk) or is killed leaves the previous ``last.ckpt`` whole, and the state each save
    replaces stays as ``last-previous.ckpt`` (a hard link).

    ``ckpt_path=<dirpath>/last.ckpt`` resumes from it. The best validation
    checkpoint is a separate :class:`~pytorch_lightning.callbacks.ModelCheckpoint`.
    """

    @checked("callbacks.last")
    def __init__(self, dirpath: str | Path, every_n_train_steps: Count = 500):
        super().__init__(
            dirpath=dirpath, filename="last", monitor=None, save_top_k=1, every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,
        )

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        # a periodic save on a step that validates waits for the validation: Lightning resumes a
        # state saved before it as if it had run (it skips it), so the resumed run would miss
        # that validation (its metrics, its draws from the random streams, the best checkpoint)
        if validates_after_this_batch(trainer) and self._on_interval(trainer):
            self._save_after_validation = True
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if getattr(self, "_save_after_validation", False) and not trainer.sanity_checking:
            self._save_after_validation = False
            self.save_now(trainer)

    def _on_interval(self, trainer: pl.Trainer) -> bool:
        return (self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
                and not self._should_skip_saving_checkpoint(trainer))

    @property
    def path(self) -> Path:
        return Path(self.dirpath) / f"last{self.FILE_EXTENSION}"

    @property
    def previous_path(self) -> Path:
        """What ``last.ckpt`` held before its latest save."""
        return Path(self.dirpath) / PREVIOUS

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        # each save is atomic (AtomicCheckpointIO); the state it replaces stays as last-previous.ckpt
        if trainer.is_global_zero and Path(filepath) == self.path and self.path.is_file():
            keep_previous(self.path, self.previous_path)
        super()._save_checkpoint(trainer, filepath)

    def save_now(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` unless it already holds this step (every rank calls this: the save synchronises)."""
        if self._last_global_step_saved != trainer.global_step or not self.path.exists():
            self._save_checkpoint(trainer, str(self.path))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save_now(trainer)  # the final step is rarely on the interval

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit":
            return
        if trainer.world_size > 1 and not isinstance(exception, STOPS):
            # the other ranks are inside a collective: a save (which synchronises) would hang
            rank_zero_warn(f"{type(exception).__name__} on one rank: the latest periodic {self.path} is the resume point")
            return
        try:
            with _no_sigchld():  # another dataloader worker dying now would raise inside the save and cut it short
                self.save_now(trainer)
        except OSError as err:  # e.g. the disk filled during a save: the error that stopped fitting stays the one raised
            if not self.path.is_file():
                log.error("could not save the state of step %d (%s); no checkpoint was written", trainer.global_step, err)
                exception.add_note(f"the save at step {trainer.global_step} failed ({err}); no checkpoint was written")
                return
            step = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
            log.error("could not save the state of step %d (%s); %s (step %d) is intact: resume with ckpt_path=%s",
                      trainer.global_step, err, self.path, step, self.path)
            exception.add_note(f"the save at step {trainer.global_step} failed ({err}); resume from {self.path} (step {step})")
            return
        if isinstance(exception, NonFiniteLossError):
            kept = self.path.with_name(f"nonfinite-step{trainer.global_step}{self.FILE_EXTENSION}")
            if trainer.is_global_zero:
                keep_previous(self.path, kept)
            exception.add_note(f"checkpoint of the state before this step: {kept}")
        else:
            log.warning("%s at step %d; resume with ckpt_path=%s", type(exception).__name__, trainer.global_step, self.path)


@contextmanager
def _no_sigchld():
    """SIGCHLD at its default (ignored) for the body: PyTorch's handler raises in the main thread
    when a dataloader worker dies, which during the save after a first worker's death would leave
    the previous checkpoint. Outside the main thread (or without SIGCHLD) nothing changes."""
    if not hasattr(signal, "SIGCHLD") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)


def progress_bar(refresh_rate: int = 50) -> pl.Callback:
    """Rich's bar in a terminal, a plain tqdm bar (every ``refresh_rate`` steps) in logs."""
    return RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(refresh_rate=refresh_rate)
