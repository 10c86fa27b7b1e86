"""What ``train.py`` does to its command line before Hydra reads it: any
``pytorch_lightning.Trainer`` argument is settable as ``trainer.<name>=value`` (no ``+``),
and ``--dry-run`` lists a sweep's jobs instead of launching them (:mod:`trufl.sweep_plan`)."""

from __future__ import annotations

import functools
import inspect
import re

import yaml

from . import config_dir

CONF = config_dir()
_TRAINER_KEY = re.compile(r"^trainer\.(\w+)=")


@functools.cache
def trainer_arguments() -> frozenset[str]:
    """``Trainer.__init__``'s parameters that a config may set (the job fills in the others)."""
    import pytorch_lightning as pl

    from .config_lightning import LIGHTNING_INJECTED

    params = inspect.signature(pl.Trainer.__init__).parameters
    named = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return frozenset(named - {"self"} - LIGHTNING_INJECTED["Trainer"])


def shipped_trainer_keys() -> frozenset[str]:
    """The keys ``trufl/conf/trainer/default.yaml`` sets (every trainer option extends it)."""
    return frozenset(yaml.safe_load((CONF / "trainer" / "default.yaml").read_text()))


def open_trainer_overrides(args: list[str]) -> list[str]:
    """``trainer.<name>=v`` for a Trainer argument that trufl/conf/ does not set becomes
    ``++trainer.<name>=v`` (Hydra's add-or-override), so ``trainer.fast_dev_run=true`` works
    as the README promises; other arguments (and misspelt names, which Hydra and the
    validator then report) pass unchanged."""
    if not any(_TRAINER_KEY.match(a) for a in args):
        return list(args)  # no Lightning import for the common case
    known, shipped = trainer_arguments(), shipped_trainer_keys()
    out = []
    for arg in args:
        match = _TRAINER_KEY.match(arg)
        out.append(f"++{arg}" if match and match.group(1) in known and match.group(1) not in shipped else arg)
    return out
