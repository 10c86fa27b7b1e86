"""What Lightning's constructors do not declare (trufl's declare it in their
annotations, :mod:`trufl.settings`): ranges of their numbers, the parameters the
job fills in, and string settings resolved through Lightning's registries."""

from __future__ import annotations

from collections.abc import Callable

from .settings import Range

#: Lightning's ranges by ``Class.param`` (-1 = unlimited; a float is a fraction of an
#: epoch, an int a number of batches); a dict maps the value's type to its range
FRACTION_OR_COUNT = {int: Range(0), float: Range(0, 1)}
LIGHTNING_RANGES: dict[str, Range | dict[type, Range]] = {
    "Trainer.max_steps": Range(-1), "Trainer.max_epochs": Range(-1), "Trainer.min_steps": Range(0),
    "Trainer.min_epochs": Range(0), "Trainer.num_sanity_val_steps": Range(-1),
    "Trainer.val_check_interval": {int: Range(1), float: Range(0, 1, low_open=True)},
    "Trainer.limit_train_batches": FRACTION_OR_COUNT, "Trainer.limit_val_batches": FRACTION_OR_COUNT,
    "Trainer.limit_test_batches": FRACTION_OR_COUNT, "Trainer.limit_predict_batches": FRACTION_OR_COUNT,
    "Trainer.overfit_batches": FRACTION_OR_COUNT, "Trainer.check_val_every_n_epoch": Range(1),
    "Trainer.log_every_n_steps": Range(0), "Trainer.gradient_clip_val": Range(0),
    "Trainer.accumulate_grad_batches": Range(1), "Trainer.num_nodes": Range(1),
    "Trainer.reload_dataloaders_every_n_epochs": Range(0), "Trainer.devices": Range(-1),
    "CSVLogger.version": Range(0), "ModelCheckpoint.save_top_k": Range(-1),
    "EarlyStopping.patience": Range(0), "EarlyStopping.min_delta": Range(0),
}
#: Lightning parameters filled in by the job, by class
LIGHTNING_INJECTED = {"Trainer": {"logger", "callbacks", "default_root_dir"}}


def registry_choices() -> dict[str, Callable[[], set[str]]]:
    """String settings that Lightning resolves through registries (checked lazily: imports)."""

    def accelerators() -> set[str]:
        from pytorch_lightning.accelerators import AcceleratorRegistry

        return {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}

    def strategies() -> set[str]:
        from pytorch_lightning.strategies import StrategyRegistry

        return {"auto", *StrategyRegistry.available_strategies()}

    return {"trainer.accelerator": accelerators, "trainer.strategy": strategies}
