"""Logger factories referenced by ``trufl/conf/logger/*.yaml``."""

from __future__ import annotations

import csv
import netrc
import os
from pathlib import Path
from typing import Literal

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from .extras import require
from .settings import Count, NonNegativeInt, checked

WandbMode = Literal["auto", "online", "offline", "disabled"]


def wandb_api_key_configured() -> bool:
    """True when W&B could authenticate: WANDB_API_KEY or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1]) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


@checked("logger")
def resolve_wandb_mode(mode: WandbMode = "auto") -> str:
    """``auto``: honour WANDB_MODE if set, else online with a key and offline without one."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    return "online" if wandb_api_key_configured() else "offline"


#: W&B's limit on a group's length (longer groups are rejected by the server)
MAX_GROUP_CHARS = 128


def sweep_identity() -> tuple[str | None, str | None]:
    """``(group, name)`` for a job of a Hydra multirun: the sweep directory (relative to
    the launch directory when inside it; its last 128 characters) and the job's own
    overrides (``flow=trufl,seed=1``). ``(None, None)`` for a single run or outside Hydra."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None, None
    hydra = HydraConfig.get()
    sweep = Path(hydra.sweep.dir).absolute()
    try:
        sweep = sweep.relative_to(Path(hydra.runtime.cwd).absolute())
    except ValueError:
        pass
    return str(sweep)[-MAX_GROUP_CHARS:], ",".join(hydra.overrides.task) or None


def wandb_logger(
    project: str = "trufl",
    save_dir: str = ".",
    mode: WandbMode = "auto",
    name: str | None = None,
    group: str | None = None,
    entity: str | None = None,
    tags: list[str] | None = None,
    id: str | None = None,  # noqa: A002 - W&B's own name
    resume: Literal["allow", "must", "never", "auto"] | None = None,
    notes: str | None = None,
    job_type: str | None = None,
    log_model: Literal["all"] | bool = False,
) -> WandbLogger:
    """A Lightning W&B logger, offline when no API key is configured (sync later
    with ``wandb sync <run dir>``). In a multirun, ``group`` defaults to the sweep and
    ``name`` to the job's overrides (:func:`sweep_identity`), so a sweep's runs sit together.

    ``id`` + ``resume``: continue a W&B run (a resumed job passes the id its checkpoint keeps,
    with ``resume=allow``); ``notes``, ``job_type``: W&B's run fields; ``log_model``: checkpoints
    as W&B artifacts (``true``: at the end, ``all``: every save)."""
    require("wandb", "wandb", "logger=wandb (the default logger; logger=csv and logger=none need no extra)")
    resolved = resolve_wandb_mode(mode)
    sweep_group, job_name = sweep_identity()
    group, name = group or sweep_group, name or job_name
    os.makedirs(save_dir, exist_ok=True)
    extra = {k: v for k, v in {"resume": resume, "notes": notes, "job_type": job_type}.items() if v is not None}
    return WandbLogger(
        project=project, save_dir=save_dir, name=name, group=group, entity=entity,
        tags=list(tags) if tags else None, mode=resolved, id=id, log_model=log_model, **extra,
    )


class _ContinuedWriter(ExperimentWriter):
    """Lightning's CSV writer for a resumed run: it keeps the existing ``metrics.csv`` rows
    logged before ``step`` (and their header) and appends, where Lightning's deletes the file."""

    def __init__(self, log_dir: str, step: int):
        self._continue_before = step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        from .resume import truncate_csv

        path = Path(self.metrics_file_path)
        truncate_csv(path, self._continue_before)
        if path.is_file():
            with path.open(newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class CSVLogger(LightningCSVLogger):
    """Lightning's CSV logger (``<save_dir>/<name>/<version>/metrics.csv``) that a resumed run
    continues (:meth:`continue_before`) instead of starting the file anew."""

    def __init__(self, save_dir: str, name: str | None = "lightning_logs", version: NonNegativeInt | str | None = None,
                 prefix: str = "", flush_logs_every_n_steps: Count = 100):
        super().__init__(save_dir, name=name, version=version, prefix=prefix, flush_logs_every_n_steps=flush_logs_every_n_steps)
        self._continue_step: int | None = None

    def continue_before(self, step: int) -> None:
        """Keep the rows logged before ``step`` (the checkpoint's) and append after them."""
        self._continue_step = step

    @property
    def experiment(self):
        if self._experiment is None and self._continue_step is not None and rank_zero_only.rank == 0:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(self.log_dir, self._continue_step)
        return super().experiment


def close_loggers(loggers) -> None:
    """Finish the W&B run (so each job of a multirun gets its own run)."""
    for logger in loggers or []:
        if isinstance(logger, WandbLogger):
            import wandb

            if wandb.run is not None:
                wandb.finish()


@rank_zero_only
def log_summary(logger, results: dict) -> None:
    """Learned dequantiser quantities (e.g. box widths) into the W&B run summary,
    not as step metrics. Other loggers have no summary; on other DDP ranks the
    experiment is a stand-in that accepts calls but not item assignment."""
    if isinstance(logger, WandbLogger):
        for k, v in results["dequantiser"].items():
            logger.experiment.summary[f"dequantiser/{k}"] = v


@rank_zero_only
def log_samples(logger, samples: list) -> None:
    """Generated objects (rendered by the task: text, colourings, boards) as a W&B table
    (``wandb.Table``, key ``samples``; one row per object, in results.json's order)."""
    if isinstance(logger, WandbLogger) and samples:
        logger.log_text(key="samples", columns=["sample"], data=[[s if isinstance(s, str) else str(s)] for s in samples])


#: file suffixes W&B shows as images (a GIF animates) and as videos
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".webm", ".ogg"}


@rank_zero_only
def log_figures(logger, figures: dict[str, str | Path]) -> None:
    """Figure files as W&B media, ``{key: path}`` (PNG/JPEG/GIF as images, MP4/WebM/OGG as
    videos). Other loggers keep no media: the files stay where they were written."""
    if not isinstance(logger, WandbLogger) or not figures:
        return
    import wandb

    media = {}
    for key, path in figures.items():
        suffix = Path(path).suffix.lower()
        if not Path(path).is_file():
            raise FileNotFoundError(f"figure {key!r}: no file {path}")
        if suffix in IMAGE_SUFFIXES:
            media[key] = wandb.Image(str(path))
        elif suffix in VIDEO_SUFFIXES:
            media[key] = wandb.Video(str(path))
        else:
            raise ValueError(f"figure {key!r}: {path} is not an image ({sorted(IMAGE_SUFFIXES)}) or video ({sorted(VIDEO_SUFFIXES)})")
    logger.experiment.log(media)


@rank_zero_only
def log_results_artifact(logger, path: Path) -> None:
    """``results.json`` as a W&B artifact of type ``results`` (named ``results-<run id>``)."""
    if isinstance(logger, WandbLogger):
        import wandb

        artifact = wandb.Artifact(f"results-{logger.experiment.id}", type="results")
        artifact.add_file(str(path), name=Path(path).name)
        logger.experiment.log_artifact(artifact)
