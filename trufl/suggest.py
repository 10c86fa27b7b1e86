"""Did-you-mean hints for mistyped keys and group options, in the validator's messages
(:mod:`trufl.config`) and in Hydra's own composition errors (``train.py``)."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable

from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``candidates`` close to ``word`` (difflib's ratio >= 0.6), best first."""
    return difflib.get_close_matches(str(word), sorted({str(c) for c in candidates}), n=n, cutoff=0.6)


def did_you_mean(word: str, candidates: Iterable[str], prefix: str = "") -> str:
    """``"; did you mean <prefix>x?"`` for the closest candidates, or ``""`` when none is close."""
    found = close_matches(word, candidates)
    return f"; did you mean {' or '.join(prefix + f for f in found)}?" if found else ""


def composition_hint(err: Exception, overrides: Iterable[str] = ()) -> str:
    """A did-you-mean line for one of Hydra's composition errors: an unknown group option
    (``flow=trufI``) or an override of a key that does not exist (``recon_wieght=10``); for
    a nested group that no chosen option has (``prior=standard prior/encoder=lstm``), which
    of the ``overrides`` chose the options it was looked for in."""
    nested = re.match(r"Could not override '([\w/]+)'\. No match in the defaults list", str(err))
    if nested:
        group = nested.group(1)
        others = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0] and o.split("=", 1)[0] != group]
        parent = group.rsplit("/", 1)[0]
        return (f"{group} is chosen inside a {parent} option's defaults, and none chosen here has it"
                + (f" (with {' '.join(others)})" if others else ""))
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        return _sentence(did_you_mean(option, err.options, prefix=f"{group}="))
    cause = err.__cause__
    parent, key = getattr(cause, "parent_node", None), getattr(cause, "key", None)
    if isinstance(err, ConfigCompositionException) and isinstance(parent, DictConfig) and key is not None:
        full = str(getattr(cause, "full_key", key))
        head = full[: -len(str(key))]
        return _sentence(did_you_mean(str(key), [str(k) for k in parent.keys()], prefix=head))
    return ""


def _sentence(hint: str) -> str:
    return f"D{hint[3:]}" if hint else ""  # "; did you mean x?" -> "Did you mean x?"


def install() -> None:
    """Make Hydra's composition errors end with a did-you-mean line.

    Hydra composes the config inside ``hydra.main`` and prints its own error, so the hint is
    added where it composes (:meth:`hydra._internal.hydra.Hydra.compose_config`, which runs,
    multiruns and ``--cfg`` all use): the error is re-raised as the same class, message
    extended, so Hydra still prints it without a traceback."""
    from hydra._internal.hydra import Hydra

    original = Hydra.compose_config
    if getattr(original, "_trufl_hints", False):
        return

    @functools.wraps(original)
    def compose_config(self, config_name, overrides, *args, **kwargs):
        try:
            return original(self, config_name, overrides, *args, **kwargs)
        except (MissingConfigException, ConfigCompositionException) as err:
            hint = composition_hint(err, overrides)
            if not hint:
                raise
            if isinstance(err, MissingConfigException):
                raise MissingConfigException(f"{err}\n{hint}", err.missing_cfg_file, err.options) from None
            # Hydra prints the cause after the message: keep it, and put the hint last
            cause = f"\n{err.__cause__}" if err.__cause__ is not None else ""
            raise ConfigCompositionException(f"{err}{cause}\n{hint}") from None

    compose_config._trufl_hints = True  # type: ignore[attr-defined]
    Hydra.compose_config = compose_config
