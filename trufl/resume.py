"""Exact resumption (docs/reliability.md, Resuming a run): what a checkpoint holds beyond
Lightning's own state, so that a run resumed from ``last.ckpt`` is the run it would have been.

* :class:`ResumableLoader`: the training loader, with its position (epoch, batches already
  yielded, the data generator's state at the epoch's start and now) as ``state_dict`` /
  ``load_state_dict``, which Lightning saves with the fit loop and restores on a mid-epoch
  resume; the task also keeps it (:meth:`trufl.data.base.SplitDataModule.state_dict`) for a
  resume at an epoch's end, where Lightning does not restore loaders.
* :class:`ResumeState`: every global random stream (torch CPU and CUDA, numpy, Python) per
  rank, restored right before the first resumed training step; what makes exactness hold
  (world size, threads, workers, batch size…), compared on resume with a warning naming what
  changed; the W&B run id, so the resumed run continues the same W&B run.
* :func:`truncate_csv`: a resumed run's CSV log keeps the rows before the checkpoint's step
  and appends the rest.
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_warn
from torch.utils.data import DataLoader, Sampler

#: the checkpoint key of :class:`ResumeState`'s part
CHECKPOINT_KEY = "trufl_resume"


class LoaderPosition:
    """Where a training loader is in its stream. Shared by every copy of the loader (Lightning
    re-creates a loader to inject a distributed sampler) and by the task that built it.

    ``started``: epochs begun; ``yielded``: batches of the current epoch handed out;
    ``epoch_start``: the data generator's state when the current epoch began (it decides the
    epoch's order); the generator's current state holds what collation has drawn since."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator
        self.started, self.yielded = 0, 0
        self.epoch_start = generator.get_state()
        self.restored: dict | None = None
        self.facts: dict[str, Any] = {}  # what exactness needs to stay the same (filled by the loader)

    def state_dict(self) -> dict:
        return {"started": self.started, "yielded": self.yielded, "epoch_start_rng": self.epoch_start.clone(),
                "rng": self.generator.get_state(), **self.facts}

    def load_state_dict(self, state: dict) -> None:
        """Kept until the loader's next epoch iteration applies it (idempotent: the task and
        Lightning may both pass the same state)."""
        self.restored = dict(state)


class _Positioned(Sampler):
    """The loader's index sampler, able to skip the batches a resumed epoch already had."""

    def __init__(self, inner):
        self.inner = inner
        self.skip, self.after_skip = 0, None

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator:
        skip, after, self.skip, self.after_skip = self.skip, self.after_skip, 0, None
        it = iter(self.inner)
        for _ in range(skip):  # indices only: the skipped batches are not loaded
            next(it)
        if after is not None:
            after()
        yield from it


class ResumableLoader(DataLoader):
    """A DataLoader whose place in its stream is saved and restored (:class:`LoaderPosition`):
    a resumed epoch skips the indices of the batches it already had (without loading them)
    and continues with the data generator where it was. Every epoch tells the samplers that
    have ``set_epoch`` which epoch it is, so their order depends on the epoch, not on how often
    they were iterated."""

    def __init__(self, *args, position: LoaderPosition, **kwargs):
        super().__init__(*args, **kwargs)
        self.position = position
        self._positioned: _Positioned | None = None
        position.facts = {"num_workers": self.num_workers, "batches_per_epoch": len(self)}

    @property
    def _index_sampler(self):
        if getattr(self, "_positioned", None) is None:
            inner = super()._index_sampler
            if not hasattr(self, "position"):  # DataLoader.__init__ itself asks (length checks)
                return inner
            self._positioned = _Positioned(inner)
        return self._positioned

    def state_dict(self) -> dict:
        return self.position.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.position.load_state_dict(state)

    def _set_epoch(self, epoch: int) -> None:
        seen = {}
        for obj in (self.sampler, self.batch_sampler, getattr(self.batch_sampler, "sampler", None)):
            if obj is not None and callable(getattr(obj, "set_epoch", None)):
                seen[id(obj)] = obj
        for obj in seen.values():
            obj.set_epoch(epoch)

    def _apply_restored(self) -> None:
        """Place the stream where the checkpoint left it: mid-epoch, the epoch's start state and
        the batches to skip; between epochs, the state the next epoch starts from."""
        pos, state = self.position, self.position.restored
        pos.restored = None
        n = len(self)
        if state.get("batches_per_epoch", n) != n or state.get("num_workers", self.num_workers) != self.num_workers:
            rank_zero_warn(f"resuming with {n} batches per epoch and {self.num_workers} loader workers where the "
                           f"checkpoint had {state.get('batches_per_epoch')} and {state.get('num_workers')}: the "
                           "training data continue from the saved position but not as the interrupted run's would")
        started, yielded = int(state["started"]), int(state["yielded"])
        if 0 < yielded < n:  # mid-epoch: the same order, minus the batches already trained on
            pos.started, pos.yielded, pos.epoch_start = started, yielded, state["epoch_start_rng"].clone()
            pos.generator.set_state(pos.epoch_start)
            self._set_epoch(started - 1)
            rng = state["rng"].clone()
            self._index_sampler.skip, self._index_sampler.after_skip = yielded, lambda: pos.generator.set_state(rng)
            return
        if yielded == 0 and started > 0:  # the epoch had begun without a batch: begin it again
            pos.started, seed_state = started - 1, state["epoch_start_rng"]
        else:  # the epoch had ended: the next one begins from the generator's state after it
            pos.started, seed_state = started, state["rng"]
        pos.generator.set_state(seed_state.clone())
        self._begin_epoch()

    def _begin_epoch(self) -> None:
        pos = self.position
        pos.epoch_start = pos.generator.get_state()
        self._set_epoch(pos.started)
        pos.started, pos.yielded = pos.started + 1, 0

    def __iter__(self) -> Iterator:
        # a generator: nothing is drawn until the first batch is asked for (Lightning calls
        # iter() once more than it iterates on some paths)
        if self.position.restored is not None:
            self._apply_restored()
        else:
            self._begin_epoch()
        for batch in super().__iter__():
            self.position.yielded += 1
            yield batch


# -- random streams, run facts, the W&B id -----------------------------------------------------------------


def collect_rng() -> dict:
    """Every global random stream of this process, as tensors and plain values (checkpoints are
    loaded with ``weights_only``, which refuses numpy arrays)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next}}


def set_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"].contiguous().clone())  # torch reads the storage from its start
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))


def run_facts(trainer: pl.Trainer) -> dict:
    """What a bit-for-bit continuation needs to be the same as when the checkpoint was written."""
    datamodule = trainer.datamodule
    return {"world_size": trainer.world_size, "accelerator": type(trainer.accelerator).__name__,
            "precision": str(trainer.precision), "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "num_threads": torch.get_num_threads(), "batch_size": getattr(datamodule, "batch_size", None),
            "num_workers": getattr(datamodule, "num_workers", None), "torch": str(torch.__version__)}


def validates_after_this_batch(trainer: pl.Trainer) -> bool:
    """Whether Lightning validates once the current training batch ends (its own test); False
    before training has a batch (a save on an exception raised while fitting was set up)."""
    loop = trainer.fit_loop
    if loop._data_fetcher is None:
        return False
    return trainer.enable_validation and loop.epoch_loop._should_check_val_fx(loop._data_fetcher)


def settle_loop_state(checkpoint: dict, saved: dict) -> None:
    """Make Lightning resume a checkpoint written after a training batch's last bookkeeping
    (on SIGTERM, or after that step's validation) as the run would have gone on.

    Lightning resumes such a state (its batch counters all equal) as "restarted on last": it
    neither ends an epoch whose last batch this was (it takes one more batch into that epoch) nor
    accounts for where the logging step counter already is. Its own form for a state saved at
    ``on_train_batch_end`` (the batch not yet counted complete) handles both, so the state is
    written in that form when the batch ended an epoch, and the counter is set so that every form
    resumes at the step the interrupted run was at (Lightning adds one on the paths noted)."""
    loops = (checkpoint.get("loops") or {}).get("fit_loop")
    if not loops or "epoch_loop.batch_progress" not in loops:
        return
    progress = loops["epoch_loop.batch_progress"]
    total, current = progress["total"], progress["current"]
    if not total["ready"] == total["started"] == total["processed"] == total["completed"] > 0:
        return  # saved at on_train_batch_end: Lightning's own form
    state = loops["epoch_loop.state_dict"]
    stepped = state["_batches_that_stepped"] + (0 if saved["after_batch_end"] else 1)
    if progress["is_last_batch"]:
        epochs = loops["epoch_progress"]
        if epochs["total"]["processed"] == epochs["total"]["started"]:  # stopped after the epoch's end (Lightning
            for part in ("total", "current"):  # raises SIGTERM there on an epoch's last batch): undo the epoch's
                epochs[part]["processed"] -= 1  # end, which Lightning counts again for this form
                epochs[part]["completed"] = min(epochs[part]["completed"], epochs[part]["processed"])
        total["completed"] -= 1
        current["completed"] -= 1
        state["_batches_that_stepped"] = stepped - 1  # the on_train_batch_end form adds one
    elif saved["validated_step"]:
        state["_batches_that_stepped"] = stepped - 1  # "restarted on last" runs one empty iteration, which adds one
    else:
        state["_batches_that_stepped"] = stepped


class ResumeState(pl.Callback):
    """Keeps in every checkpoint what Lightning does not: each rank's random streams (restored
    at the first training batch after a resume, after everything a resumed run sets up anew has
    drawn), the run's facts (:func:`run_facts`; a resume that changes one warns), the W&B run id.
    It also writes the loggers' pending rows at the batch after each save, so a run killed later
    leaves a log that reaches the checkpoint's step, and it keeps the run's wall time across
    resumes: :attr:`earlier_wall_time_s` is the time the checkpoint's run had spent (all its
    segments) when it saved, so a run cut off and resumed reports what it cost in all."""

    def __init__(self):
        self._rng: dict | None = None
        self._flush = False
        self._sigterm_during_validation = False
        self.started = time.time()  # the run's start (train.py sets it to its own)
        self.earlier_wall_time_s = 0.0

    def wall_time_s(self) -> float:
        """Seconds this run has spent, earlier segments (before a resume) included."""
        return self.earlier_wall_time_s + time.time() - self.started

    def on_validation_batch_end(self, trainer: pl.Trainer, *args, **kwargs) -> None:
        # Lightning stops a validation half done on SIGTERM, and resumes it without the batches it
        # had (their metrics are not saved): during fit, the signal waits for the validation's end
        connector = trainer._signal_connector
        if trainer.state.fn == "fit" and not trainer.sanity_checking and connector.received_sigterm:
            connector.received_sigterm, self._sigterm_during_validation = False, True

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._sigterm_during_validation:  # Lightning raises it once the training step's bookkeeping is done
            trainer._signal_connector.received_sigterm, self._sigterm_during_validation = True, False

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        states = collect_rng()
        if trainer.world_size > 1:  # every rank's own streams (each rank calls this: the save is collective)
            gathered = trainer.strategy.all_gather(states["torch"])
            states["torch_per_rank"] = [t.cpu().clone() for t in gathered]  # own storage: a row view would not do
        wandb = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        loop = {"after_batch_end": not trainer.validating, "validated_step": validates_after_this_batch(trainer)}
        checkpoint[CHECKPOINT_KEY] = {"rng": states, "facts": run_facts(trainer), "loop": loop,
                                      "wandb_run_id": wandb[0].version if wandb else None,
                                      "wall_time_s": self.wall_time_s()}
        self._flush = True

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            rank_zero_warn("the checkpoint holds no random-stream state (written before trufl saved it): the resumed "
                           "run continues but not bit for bit")
            return
        if "loop" in saved:
            settle_loop_state(checkpoint, saved["loop"])
        if "wall_time_s" in saved:
            self.earlier_wall_time_s = float(saved["wall_time_s"])
        self._rng = dict(saved["rng"])
        per_rank = self._rng.pop("torch_per_rank", None)
        if per_rank is not None and trainer.global_rank < len(per_rank):
            self._rng["torch"] = per_rank[trainer.global_rank]
        now = run_facts(trainer)
        changed = {k: (v, now.get(k)) for k, v in saved["facts"].items() if now.get(k) != v}
        if changed:
            rank_zero_warn("resuming with " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
                           + ": the run continues from the checkpoint but is not bit for bit the run it would have been")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        if self._rng is not None:  # the first resumed step: the streams as they were after the saved step
            set_rng(self._rng)
            self._rng = None
        if self._flush:  # the saved step's own rows were logged after the save
            self._flush = False
            for logger in trainer.loggers:
                logger.save()


# -- the checkpoint's facts before training, the run's files ----------------------------------------------------


def checkpoint_facts(path: str | Path) -> dict:
    """``{"global_step", "wandb_run_id"}`` of a checkpoint, read without building anything
    (memory-mapped: the weights are not read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such checkpoint")
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    saved = ckpt.get(CHECKPOINT_KEY) or {}
    return {"global_step": int(ckpt.get("global_step", 0)), "wandb_run_id": saved.get("wandb_run_id")}


def run_dir_of(ckpt_path: str | None) -> Path | None:
    """The run directory of ``<run dir>/checkpoints/<name>.ckpt``; None for any other path."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path)
    return path.parent.parent if path.parent.name == "checkpoints" else None


def truncate_csv(path: Path, step: int) -> int:
    """Keep the rows of CSV log ``path`` logged before ``step`` (a resumed run logs the rest
    again); returns how many rows were dropped."""
    if not path.is_file():
        return 0
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < step]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    return len(rows) - len(kept)


def keep_lines(path: Path, keep: Callable[[str], bool]) -> None:
    """Rewrite a line-oriented file with the lines ``keep`` accepts."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line for line in lines if keep(line)))
