"""The optimisers and schedules of the optim presets: the reference codes' RAdam with a per-step
decay, Adam with a per-epoch decay, and what the presets compose to."""

from __future__ import annotations

import pytest
import torch

from trufl.optim import OptimSettings
from trufl.run import run

from .conftest import toy


def scheduled(settings: OptimSettings):
    params = [torch.nn.Parameter(torch.zeros(3))]
    out = settings.configure(params)
    return out["optimizer"], out["lr_scheduler"]


def test_exponential_schedule_multiplies_the_rate_by_decay_every_step():
    optimiser, sched = scheduled(OptimSettings(lr=7.5e-4, optimizer="radam", schedule="exponential", decay=0.999975))
    assert isinstance(optimiser, torch.optim.RAdam) and sched["interval"] == "step"
    for _ in range(1000):
        optimiser.step()
        sched["scheduler"].step()
    assert optimiser.param_groups[0]["lr"] == pytest.approx(7.5e-4 * 0.999975**1000, rel=1e-12)


def test_a_per_epoch_decay_is_an_epoch_scheduler():
    optimiser, sched = scheduled(OptimSettings(lr=1e-3, optimizer="adam", schedule="exponential", decay=0.995,
                                               decay_every="epoch"))
    assert type(optimiser) is torch.optim.Adam and sched["interval"] == "epoch"
    with pytest.raises(ValueError, match="decay_every=epoch"):
        OptimSettings(schedule="cosine", decay_every="epoch", max_steps=10)


@pytest.mark.parametrize("preset,optimizer,lr,clip,decay_every", [
    ("shared", "adamw", 2e-3, 1.0, "step"), ("catnf", "radam", 7.5e-4, 0.25, "step"),
    ("catnf_reference", "radam", 7.5e-4, 0.25, "step"), ("argmax", "adam", 1e-3, 0.0, "epoch"),
    ("argmax_reference", "adam", 1e-3, 0.0, "epoch")])
def test_optim_presets_compose_to_their_optimisers(make_cfg, preset, optimizer, lr, clip, decay_every):
    cfg = make_cfg(f"optim={preset}")
    assert (cfg.optim.preset, cfg.optim.optimizer, cfg.optim.lr, cfg.trainer.gradient_clip_val, cfg.optim.decay_every) == \
        (preset, optimizer, lr, clip, decay_every)


def test_catnf_reference_clips_at_its_first_step_only(make_cfg):
    cfg = make_cfg("optim=catnf_reference")
    settings = OptimSettings(**{k: v for k, v in cfg.optim.items()})
    assert cfg.trainer.gradient_clip_val == 0.25 and [settings.clips_at(s) for s in range(3)] == [True, False, False]


def test_the_training_loop_decays_the_rate_once_per_optimiser_step(make_cfg, tmp_path):
    run(make_cfg(*toy("optim=catnf", "trainer.max_steps=7", "~callbacks.support_history")))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["lr_schedulers"][0]["_last_lr"][0] == pytest.approx(7.5e-4 * 0.999975**7, rel=1e-9)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["decoupled_weight_decay"] is False  # RAdam, not AdamW


@pytest.mark.parametrize("clip_steps,clipped", [(None, [0, 1, 2, 3]), (1, [0]), (0, [])])
def test_clip_steps_clips_the_gradient_norm_in_the_first_steps_only(make_cfg, tmp_path, monkeypatch, clip_steps,
                                                                   clipped):
    from trufl.model import LikelihoodModule
    steps, norms = [], []
    original = LikelihoodModule.clip_gradients

    def recording(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        steps.append(self.global_step)
        original(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
        norms.append(torch.nn.utils.get_total_norm([p.grad for p in self.parameters() if p.grad is not None]))

    monkeypatch.setattr(LikelihoodModule, "clip_gradients", recording)
    setting = "null" if clip_steps is None else clip_steps
    run(make_cfg(*toy("trainer.max_steps=4", "trainer.gradient_clip_val=1e-3", f"optim.clip_steps={setting}",
                      "~callbacks.support_history")))
    assert steps == clipped
    assert all(n <= 1e-3 * (1 + 1e-4) for n in norms)  # the clip acted where it ran
