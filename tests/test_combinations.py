"""Every pair of group options either composes, validates and trains, or is refused at
composition or validation with a message naming both options; never a traceback after
the data is built.

Composing one config costs Hydra ~0.25 s here (its defaults tree, not the validator), so the
1,800 pairs of trufl/conf/'s options take ~8 min: the fast tests take the pairs known to interact
plus a fixed random sample of 12, and train two steps for a few; ``@pytest.mark.slow`` runs every
pair, and trains every valid one two steps (``-k`` picks pairs: ``-k "flow=catnf and context"``).
"""

from __future__ import annotations

import itertools
import random

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict

from trufl.config import ConfigError, validate_config
from trufl.data.corpora import HubUnavailableError
from trufl.suggest import install

from .conftest import CONF

#: groups Hydra chooses itself (recipe_scale from recipe + scale), one-option or empty groups
NOT_CHOSEN = {"hydra", "paths", "tuned", "recipe_scale"}
BASE = ["logger=none", "trainer.enable_progress_bar=false"]
#: a two-step run at a tiny size: the keys each dataset has are set after composing
TINY_DATA = {"train_size": 64, "val_size": 16, "test_size": 16, "batch_size": 8, "seq_len": 16, "eval_seq_len": 16,
             "generation_workers": 1}
TINY_RUN = {"trainer": {"max_steps": 2, "val_check_interval": 2, "limit_val_batches": 1, "limit_test_batches": 1,
                        "check_val_every_n_epoch": None},
            "eval": {"iw_samples": 2, "log_z_samples": 8, "num_samples": 1}}
#: pairs that were broken (a traceback after the corpus was built) or that interact at composition
INTERACTING = [
    ("flow=categorical", "context=causal_lstm"),
    ("context=causal_lstm", "recipe=argmax_lm"), ("prior=standard", "prior/encoder=lstm"),
    ("experiment=toy", "prior/encoder=transformer"), ("dataset=sets_sum", "recipe=argmax_lm"),
    ("dataset=text", "recipe=catnf_sets"), ("experiment=sets", "prior=ar_lstm"), ("experiment=sudoku", "recipe=catnf_lm"),
    ("prior=set_coupling", "flow=trufl"), ("prior=graph_coupling", "callbacks=best"), ("dataset=enwik8", "flow=catnf"),
    ("flow=argmax", "prior=set_coupling"), ("recipe=catnf_sets", "scale=paper"), ("experiment=toy", "flow=categorical"),
    ("flow=categorical", "prior=standard"), ("hparams_search=toy", "experiment=toy"), ("optim=catnf_reference", "recipe=catnf_lm"),
]


def options() -> dict[str, list[str]]:
    """Each group of trufl/conf/ (nested ones as ``prior/encoder``) and its options."""
    found = {}
    for folder in sorted(p for p in CONF.rglob("*") if p.is_dir()):
        group = folder.relative_to(CONF).as_posix()
        names = sorted(f.stem for f in folder.glob("*.yaml"))
        if names and group.split("/")[0] not in NOT_CHOSEN:
            found[group] = names
    return found


def all_pairs() -> list[tuple[str, str]]:
    chosen = [f"{g}={o}" for g, names in options().items() for o in names]
    return [(a, b) for a, b in itertools.combinations(chosen, 2) if a.split("=")[0] != b.split("=")[0]]


@pytest.fixture(scope="module")
def hydra_conf():
    install()  # the did-you-mean hints train.py adds to Hydra's errors
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def verdict(pair: tuple[str, str], *extra: str) -> tuple[DictConfig | None, str]:
    """``(config, "")`` when the pair composes and validates, else ``(None, message)``."""
    try:
        cfg = compose("config", overrides=[*BASE, *extra, *pair], return_hydra_config=True)
    except HydraException as err:
        return None, f"{err}\n{err.__cause__ or ''}"
    try:
        validate_config(cfg)
    except ConfigError as err:
        return None, str(err)
    return cfg, ""


def refusal_problem(pair: tuple[str, str], message: str) -> str | None:
    """None when ``message`` names both options of ``pair`` (the group, for Hydra's errors about
    a nested group); otherwise what is missing."""
    names = [p if p in message else p.split("=")[0] for p in pair]
    missing = [n for n in names if n not in message]
    return f"message does not name {missing}: {message}" if missing else None


def test_every_group_of_conf_is_enumerated():
    groups = options()
    assert {"dataset", "flow", "prior", "prior/encoder", "context", "weighting", "optim", "logger", "callbacks",
            "experiment", "recipe", "scale", "trainer", "hparams_search"} == set(groups)
    assert len(all_pairs()) > 1500


def test_interacting_pairs_and_a_sample_validate_or_are_refused_naming_both(hydra_conf):
    sample = INTERACTING + random.Random(20261201).sample(all_pairs(), 12)
    problems, refused = {}, set()
    for pair in sample:
        cfg, message = verdict(pair)
        if cfg is None:
            refused.add(pair)
            if (why := refusal_problem(pair, message)) is not None:
                problems[" ".join(pair)] = why
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
    must_refuse = {("flow=categorical", "context=causal_lstm"),
                   ("context=causal_lstm", "recipe=argmax_lm"), ("prior=set_coupling", "flow=trufl"),
                   ("prior=standard", "prior/encoder=lstm"), ("dataset=enwik8", "flow=catnf")}
    assert must_refuse <= refused, must_refuse - refused
    assert ("flow=argmax", "prior=set_coupling") not in refused and ("experiment=toy", "flow=categorical") not in refused


def test_the_reported_case_is_refused_before_the_corpus_naming_the_context(hydra_conf):
    _, message = verdict(("flow=categorical", "context=causal_lstm"))
    assert message.startswith("invalid configuration (with logger=none flow=categorical context=causal_lstm):")
    assert "has no latent to give a context to: use context=none" in message


def tiny(cfg: DictConfig, out) -> DictConfig:
    """``cfg`` at a two-step size, writing under ``out``."""
    with open_dict(cfg):
        for key, value in TINY_DATA.items():
            if key in cfg.dataset:
                cfg.dataset[key] = value
        for section, values in TINY_RUN.items():
            cfg[section].update(values)
        cfg.paths.output_dir = str(out)
        del cfg["hydra"]
    return cfg


def train_two_steps(pair: tuple[str, str], tmp_path, data_dir) -> str:
    """"refused" or "trained" (failing the test on any other outcome)."""
    from trufl.run import run

    cfg, message = verdict(pair, f"paths.data_dir={data_dir}")
    if cfg is None:
        assert refusal_problem(pair, message) is None, refusal_problem(pair, message)
        return "refused"
    try:
        metrics = run(tiny(cfg, tmp_path / "run"))
    except HubUnavailableError as err:  # a real corpus not on this machine: nothing to say about the pair
        pytest.skip(str(err))
    assert metrics["test/nll_bits"] == metrics["test/nll_bits"], metrics  # not NaN
    return "trained"


@pytest.mark.parametrize("pair", [("experiment=toy", "flow=catnf"), ("flow=argmax", "prior=set_coupling")], ids=" ".join)
def test_representative_pairs_train_two_steps(pair, tmp_path, data_dir, hydra_conf):
    assert train_two_steps(pair, tmp_path, data_dir) == "trained"


@pytest.mark.slow
@pytest.mark.parametrize("pair", all_pairs(), ids=" ".join)
def test_every_pair_trains_two_steps_or_is_refused_naming_both(pair, tmp_path, data_dir, hydra_conf):
    assert train_two_steps(pair, tmp_path, data_dir) in ("trained", "refused")
