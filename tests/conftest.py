"""Shared fixtures: compose real configs (trufl.config_dir()) with a temporary output dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from trufl import config_dir

ROOT = Path(__file__).resolve().parent.parent
CONF = config_dir()

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One cache for the whole session (the embedded corpus is processed once)."""
    return Path(os.environ.get("TRUFL_TEST_DATA_DIR") or tmp_path_factory.mktemp("data"))


@pytest.fixture
def make_cfg(tmp_path, data_dir):
    """``make_cfg(*overrides) -> DictConfig`` composed from trufl/conf/ like train.py does."""

    def _make(*overrides: str, out: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "logger=none",
                    f"paths.data_dir={data_dir}",
                    f"paths.output_dir={out or tmp_path / 'run'}",
                    "trainer.enable_progress_bar=false",
                    *overrides,
                ],
            )
        return cfg

    return _make


def tiny_text(*extra: str, prior: str = "ar_lstm") -> list[str]:
    """Overrides for a seconds-long run on the embedded corpus."""
    small_prior = ["prior.encoder.hidden=16", "prior.head_hidden=16", "prior.num_mixtures=3"] if prior == "ar_lstm" else []
    return [
        f"prior={prior}", *small_prior, "dataset.seq_len=16", "dataset.batch_size=8", "trainer.max_steps=3", "trainer.val_check_interval=3",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "eval.iw_samples=2",
        "eval.log_z_samples=8", "eval.num_samples=1", *extra,
    ]


def toy(*extra: str) -> list[str]:
    return ["experiment=toy", "trainer.accelerator=cpu", *extra]


@pytest.fixture
def set_key(monkeypatch):
    def _set(cfg: DictConfig, key: str, value):
        with open_dict(cfg):
            cfg[key] = value

    return _set


def ar_prior(dim: int, encoder: str = "lstm", support=None, inputs: str = "latent", transform: str = "mixture",
             **kw):
    """An autoregressive prior of width ``dim`` on its own (``Support.unbound``) or for ``support``,
    with an LSTM or causal-Transformer encoder; encoder settings (``hidden``, ``num_layers``,
    ``heads``, ``positions``, ``relations``, ``max_length``, ``dropout``) go to the encoder,
    the rest to the prior. Defaults: latent inputs and mixture transforms (no dequantiser)."""
    from functools import partial

    from trufl.priors import AutoregressivePrior, CausalTransformerEncoder, LSTMEncoder
    from trufl.support import Support

    names = {"hidden", "num_layers", "heads", "positions", "relations", "max_length", "dropout", "side", "box", "out_layer"}
    enc_kw = {k: kw.pop(k) for k in list(kw) if k in names}
    enc = partial(LSTMEncoder if encoder == "lstm" else CausalTransformerEncoder, **enc_kw)
    return AutoregressivePrior(support or Support.unbound(dim), enc, inputs=inputs, transform=transform, **kw)
