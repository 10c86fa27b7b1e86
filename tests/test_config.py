"""Bad configuration fails before any data is read or any step is taken, naming the key."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from trufl.config import ConfigError, validate_config
from trufl.run import run

from .conftest import toy


def test_default_config_is_valid(make_cfg):
    cfg = make_cfg()
    validate_config(cfg)
    assert cfg.flow._target_.endswith("TruflDequantiser") and cfg.dataset.corpus == "bible"


def test_unknown_override_key_is_rejected_by_name(make_cfg):
    with pytest.raises(ConfigCompositionException, match="recon_wieght"):
        make_cfg("recon_wieght=10")


@pytest.mark.parametrize(
    "override,key",
    [
        ("+flow.widht=3", "flow.widht"),
        ("+learning_rate=1", "learning_rate"),
        ("+optim.momentum=0.9", "optim.momentum"),
        ("recon_weight=-1", "recon_weight"),
        ("kl_weight=abc", "kl_weight"),
        ("optim.lr=0", "optim.lr"),
        ("eval.iw_samples=-2", "eval.iw_samples"),
        ("flow._target_=os.system", "flow._target_"),
        ("optim.schedule=cosinus", "optim.schedule"),
        ("latent_dim=0", "latent_dim"),
    ],
)
def test_bad_keys_and_values_name_the_key(make_cfg, override, key, tmp_path):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run(cfg)
    assert not (tmp_path / "run").exists(), "nothing may be written before validation passes"


def test_messages_name_the_declared_type_and_range_of_a_key(make_cfg):
    with pytest.raises(ConfigError) as err:
        validate_config(make_cfg("flow.dim=abc", "flow.init_gap=0.5", "dataset.num_workers=-1"))
    assert str(err.value).split("\n")[1:] == ["  - dataset.num_workers=-1 must be in [0, inf)",
                                              "  - flow.dim='abc' must be int | null", "  - flow.init_gap=0.5 must be in [0, 0.5)"]


def test_probs_must_sum_to_one(make_cfg):
    cfg = make_cfg(*toy("dataset.probs=[0.5,0.6]"))
    with pytest.raises(ConfigError, match=r"dataset\.probs.*sum"):
        validate_config(cfg)


def test_unknown_flow_lists_the_options(make_cfg):
    with pytest.raises((MissingConfigException, ConfigCompositionException), match="flow"):
        make_cfg("flow=glow")


@pytest.mark.parametrize(
    "overrides,key",
    [
        (("flow=argmax", "flow.dim=1"), "flow.dim"),
        (("flow=trufl", "flow.boundary_gradient=exact", "flow.dim=3"), "flow.boundary_gradient"),
        (("flow=trufl", "flow.boundary_gradient=magic"), "flow.boundary_gradient"),
    ],
)
def test_inconsistent_flow_settings_fail_before_training(make_cfg, overrides, key, tmp_path):
    cfg = make_cfg(*toy(*overrides))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_learning_rate_schedule_warms_up_and_decays_to_zero():
    import math

    from trufl.optim import OptimSettings

    cosine = OptimSettings(schedule="cosine", warmup_steps=10, max_steps=100)
    assert cosine.lr_factor(0) == pytest.approx(0.1)
    assert cosine.lr_factor(9) == pytest.approx(math.cos(math.pi * 0.09) * 0.5 + 0.5)
    assert cosine.lr_factor(50) == pytest.approx(0.5)
    assert cosine.lr_factor(100) == pytest.approx(0.0, abs=1e-12)
    constant = OptimSettings(warmup_steps=4)
    assert [constant.lr_factor(s) for s in (0, 3, 500)] == [0.25, 1.0, 1.0]


def test_latent_dim_sets_the_dimension_of_trufl_and_catnf(make_cfg):
    cfg = make_cfg("latent_dim=2", "flow=catnf")
    assert cfg.flow.dim == 2


def test_multirun_validates_every_job_before_launching_any(tmp_path):
    """Jobs 1 and 3 of 4 are invalid: none of the 4 may start (no sweep dir, no results)."""
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "seed=0,1", "trainer.max_steps=3,abc", "logger=none",
         f"hydra.sweep.dir={sweep}", f"paths.data_dir={tmp_path / 'data'}"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "2 of 4 jobs have an invalid configuration; none was launched" in proc.stderr, proc.stderr[-2000:]
    assert "job #1 (seed=0 trainer.max_steps=abc" in proc.stderr and "job #3 (seed=1 trainer.max_steps=abc" in proc.stderr
    assert "job #0" not in proc.stderr and proc.stderr.count("trainer.max_steps='abc' must be int") == 2
    assert "Traceback" not in proc.stderr
    assert not sweep.exists() and not (tmp_path / "data").exists()


def test_sweep_expansion_matches_the_basic_sweeper():
    """The jobs validated are the jobs the basic sweeper will launch (cartesian product, in order)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from trufl.multirun import sweep_jobs

    from .conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("config", ["flow=trufl,catnf", "seed=range(0,3)", "logger=none"], RunMode.MULTIRUN)
        jobs = sweep_jobs(cfg, loader)
    assert jobs == [[f"flow={f}", f"seed={s}", "logger=none"] for f in ("trufl", "catnf") for s in range(3)]


def test_hydra_choices_are_recorded_inside_a_hydra_job():
    """results.json's "choices" come from the job's HydraConfig (empty outside @hydra.main)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from trufl.results import hydra_choices

    from .conftest import CONF

    assert hydra_choices() == {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["flow=catnf", "experiment=toy", "logger=none"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        choices = hydra_choices()
    finally:
        HydraConfig.instance().cfg = None
    assert {k: choices[k] for k in ("flow", "dataset", "prior", "experiment", "logger")} == {
        "flow": "catnf", "dataset": "toy", "prior": "standard", "experiment": "toy", "logger": "none"}
    assert choices["hydra/launcher"] == "basic" and not any(k.startswith("hydra/job_logging") for k in choices)
