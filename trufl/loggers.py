"""Logger factories referenced by ``conf/logger/*.yaml``."""

from __future__ import annotations

import netrc
import os
from typing import Literal, get_args

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

WandbMode = Literal["auto", "online", "offline", "disabled"]
WANDB_MODES = get_args(WandbMode)


def wandb_api_key_configured() -> bool:
    """True when W&B could authenticate: WANDB_API_KEY or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(os.environ.get("WANDB_BASE_URL", "api.wandb.ai").split("//")[-1]) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: str = "auto") -> str:
    """``auto``: honour WANDB_MODE if set, else online with a key and offline without one."""
    if mode not in WANDB_MODES:
        raise ValueError(f"logger.mode must be one of {WANDB_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled", "dryrun"):
        return "offline" if env == "dryrun" else env
    return "online" if wandb_api_key_configured() else "offline"


def wandb_logger(
    project: str = "trufl",
    save_dir: str = ".",
    mode: WandbMode = "auto",
    name: str | None = None,
    group: str | None = None,
    entity: str | None = None,
    tags: list[str] | None = None,
) -> WandbLogger:
    """A Lightning W&B logger, offline when no API key is configured (sync later
    with ``wandb sync <run dir>``)."""
    resolved = resolve_wandb_mode(mode)
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(
        project=project, save_dir=save_dir, name=name, group=group, entity=entity,
        tags=list(tags) if tags else None, mode=resolved,
    )


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


def log_samples(logger, samples: list) -> None:
    """Generated objects (rendered by the task: text, colourings, boards) as a W&B table."""
    if isinstance(logger, WandbLogger) and samples:
        logger.log_text(key="samples", columns=["sample"], data=[[s if isinstance(s, str) else str(s)] for s in samples])
