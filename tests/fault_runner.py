"""``python tests/fault_runner.py SIGNAL WHERE N [train.py overrides…]``: train.py with one
signal sent to itself at a chosen point, for the fault matrix (tests/test_faults.py).

``WHERE``:

* ``step``: at the start of training step ``N`` (global step ``N``, before its forward pass) of
  the ``FAULT_JOB``-th job the process runs (default 1; a multirun's basic launcher runs its jobs in turn);
* ``validation``: in the validation run at global step ``N`` (its second batch), not the sanity check;
* ``save``: half-way through writing the ``N``-th ``last.ckpt`` (after half its bytes reached
  the temporary file, so a SIGKILL leaves a partial file exactly as a kill during a save does).

The signal is real (``os.kill`` of this process): SIGKILL ends it at once, SIGTERM reaches
Lightning's handler, as ``kill``/``scancel`` would.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def install(sig: signal.Signals, where: str, n: int) -> None:
    """Patch the one seam ``where`` so that it sends ``sig`` to this process at ``n``."""
    import trufl.atomic
    from trufl.model import LikelihoodModule

    def fire() -> None:
        print(f"fault_runner: {sig.name} at {where} {n}", flush=True)
        os.kill(os.getpid(), sig)

    if where == "step":
        training_step, jobs = LikelihoodModule.training_step, []
        job = int(os.environ.get("FAULT_JOB", "1"))  # in a multirun (one process, jobs in turn): the job to stop

        def step(self, batch, batch_idx):
            if self not in jobs:
                jobs.append(self)
            if len(jobs) == job and self.global_step == n and not getattr(self, "_fired", False):
                self._fired = True
                fire()
            return training_step(self, batch, batch_idx)

        LikelihoodModule.training_step = step
    elif where == "validation":
        validation_step = LikelihoodModule.validation_step

        def validate(self, batch, batch_idx):
            if not self.trainer.sanity_checking and self.global_step == n and batch_idx == 1 and not getattr(self, "_fired", False):
                self._fired = True
                fire()
            return validation_step(self, batch, batch_idx)

        LikelihoodModule.validation_step = validate
    elif where == "save":
        write_chunks, saves = trufl.atomic._write_chunks, []

        def write(f, data):
            if Path(f.name).name.startswith(".last.ckpt."):
                saves.append(1)
                if len(saves) == n:
                    f.write(data[: len(data) // 2])
                    f.flush()
                    fire()
                    f.write(data[len(data) // 2 :])  # reached only when the signal does not end the process
                    return
            write_chunks(f, data)

        trufl.atomic._write_chunks = write
    else:
        raise SystemExit(f"fault_runner: WHERE is step, validation or save, not {where!r}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # this tree's trufl, whatever is installed
    name, where, n, *overrides = sys.argv[1:]
    install(signal.Signals[name], where, int(n))
    sys.argv = [str(ROOT / "train.py"), *overrides]
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
