"""The LightningModule shared by every dequantiser and prior (DESIGN.md §1).

    log p(x) >= E_q[log p(x|z)] + E_q[log p(z) - log q(z|x)]
                 \\__ recon __/     \\________ -KL ________/

Loss per token (nats): ``-(recon_weight·recon + kl_weight·(log p(z) - log q(z|x)))``
with the weighting schedule's factors applied; reported bounds use weights 1.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from .dequantisers.base import Dequantiser, gather
from .metrics import DETERMINISM_THRESHOLD, LN2, log_support_mass
from .priors.base import Prior
from .weighting import Constant


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf; the message names the step and the term."""


class DequantisationModel(pl.LightningModule):
    """Dequantiser + flow prior + Bayes decoder, trained on a weighted ELBO.

    Args:
        dequantiser: any :class:`~trufl.dequantisers.Dequantiser`.
        prior: any :class:`~trufl.priors.Prior` over ``[B, T, D]``.
        weighting: schedule returning ``(recon_factor, kl_factor)`` per step.
        recon_weight, kl_weight: the loss weights (top-level config keys).
        lr, weight_decay: Adam(W) settings.
        schedule: ``constant`` or ``cosine`` (decays to 0 at ``max_steps``).
        warmup_steps: linear learning-rate warm-up from 0.
        max_steps: length of the cosine schedule (``trainer.max_steps``).
        iw_samples: k for ``test/iwbo_bits``.
        log_z_samples: prior samples for a Monte Carlo ``test/log_Z``.
        max_tries: cap on draws per object in rejection sampling (constrained tasks).
        check_finite_every: check the loss terms for NaN/inf every n steps (0: never).
        context_encoder: optional causal context (``trufl.context``) passed to the dequantiser.
    """

    def __init__(
        self,
        dequantiser: Dequantiser,
        prior: Prior,
        weighting=None,
        recon_weight: float = 1.0,
        kl_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        schedule: str = "constant",
        warmup_steps: int = 0,
        max_steps: int | None = None,
        iw_samples: int = 16,
        log_z_samples: int = 256,
        max_tries: int = 100,
        check_finite_every: int = 1,
        context_encoder: nn.Module | None = None,
    ):
        super().__init__()
        if context_encoder is not None and dequantiser.context_dim != context_encoder.dim:
            raise ValueError(f"dequantiser context_dim={dequantiser.context_dim} != context.dim={context_encoder.dim}")
        self.context_encoder = context_encoder
        self.dequantiser = dequantiser
        self.prior = prior
        self.weighting = weighting or Constant()
        self.recon_weight, self.kl_weight = float(recon_weight), float(kl_weight)
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"optim.schedule must be 'constant' or 'cosine', got {schedule!r}")
        if schedule == "cosine" and not (max_steps and max_steps > 0):
            raise ValueError("optim.schedule=cosine needs trainer.max_steps > 0")
        self.lr, self.weight_decay = lr, weight_decay
        self.schedule, self.warmup_steps, self.max_steps = schedule, warmup_steps, max_steps
        self.iw_samples, self.log_z_samples, self.max_tries = iw_samples, log_z_samples, max_tries
        self.sampling_info: dict = {}
        self.check_finite_every = check_finite_every
        self.log_z_info: dict = {}
        self.save_hyperparameters(ignore=["dequantiser", "prior", "weighting", "context_encoder"])

    # -- the bound --------------------------------------------------------------
    def context(self, x: Tensor) -> Tensor | None:
        """Per-token context ``[B, T, C]`` from x_{<t}, or None without an encoder."""
        return self.context_encoder(x) if self.context_encoder is not None else None

    def terms(self, x: Tensor, mask: Tensor, cond: dict | None = None) -> dict[str, Tensor]:
        """Per-token terms ``[B, T]`` of one sample z ~ q(z|x); ``cond`` goes to the prior."""
        deq = self.dequantiser
        ctx = self.context(x)
        z, log_q = deq.sample(x, ctx)
        log_post = deq.decoder_log_prob(z, ctx)  # once: for the loss and for the metrics
        recon = deq.recon_log_prob(x, z, ctx, log_post=log_post)
        log_p = self.prior.log_prob(z, mask, **(cond or {}))
        log_post = log_post.detach()
        log_px = gather(log_post, x)
        correct = (log_post.argmax(-1) == x) & torch.isfinite(log_px)
        return {"recon": recon, "log_p": log_p, "log_q": log_q, "log_px": log_px, "correct": correct}

    def _metrics(self, t: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        n = mask.sum().clamp_min(1)
        mean = lambda v: torch.where(mask, v, torch.zeros_like(v)).sum() / n  # noqa: E731
        recon_bits = -mean(t["recon"].detach()) / LN2
        kl_bits = mean((t["log_q"] - t["log_p"]).detach()) / LN2
        return {
            "nll_bits": recon_bits + kl_bits,
            "recon_bits": recon_bits,
            "kl_bits": kl_bits,
            "determinism": mean((t["log_px"] >= math.log(DETERMINISM_THRESHOLD)).float()),
            "decode_acc": mean(t["correct"].float()),
        }

    def _log_split(self, split: str, metrics: dict[str, Tensor], n_tokens: int, **kw) -> None:
        for name, value in metrics.items():
            self.log(f"{split}/{name}", value, batch_size=n_tokens, **kw)

    # -- steps -------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        x, mask = batch["x"], batch["mask"]
        t = self.terms(x, mask, conditioning(batch))
        recon_f, kl_f = self.weighting(self.global_step)
        per_token = -(self.recon_weight * recon_f * t["recon"] + self.kl_weight * kl_f * (t["log_p"] - t["log_q"]))
        n = mask.sum().clamp_min(1)
        loss = torch.where(mask, per_token, torch.zeros_like(per_token)).sum() / n
        if self.check_finite_every and self.global_step % self.check_finite_every == 0:
            self._check_finite(loss, t, mask)
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=int(n))
        self._log_split("train", self._metrics(t, mask), int(n), on_step=True, on_epoch=False)
        return loss

    def _check_finite(self, loss: Tensor, t: dict[str, Tensor], mask: Tensor) -> None:
        names = ("recon", "log_p", "log_q")
        sums = torch.stack([loss] + [torch.where(mask, t[k], torch.zeros_like(t[k])).sum() for k in names])
        finite = torch.isfinite(sums.detach()).tolist()  # one device sync for all terms
        if all(finite):
            return
        bad = [k for k, ok in zip(("loss",) + names, finite) if not ok]
        path = None
        if self.trainer is not None and self.trainer.log_dir:
            path = f"{self.trainer.default_root_dir}/checkpoints/nonfinite-step{self.global_step}.ckpt"
            self.trainer.save_checkpoint(path)
        raise NonFiniteLossError(
            f"non-finite loss at step {self.global_step}: term(s) {bad} are NaN/inf "
            f"(recon = log p(x|z), log_p = prior, log_q = dequantiser); checkpoint before the step: {path}"
        )

    def _eval_step(self, split: str, batch: dict) -> None:
        x, mask = batch["x"], batch["mask"]
        cond = conditioning(batch)
        t = self.terms(x, mask, cond)
        n = int(mask.sum())
        self._log_split(split, self._metrics(t, mask), n, on_step=False, on_epoch=True, sync_dist=True)
        if split == "test" and self.iw_samples > 0:
            self.log("test/iwbo_bits", -self.iwbo(x, mask, cond=cond).sum() / n / LN2, batch_size=n, on_epoch=True, sync_dist=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        datamodule = self.trainer.datamodule if self.trainer else None
        length = datamodule.seq_len if datamodule is not None else 1
        groups = datamodule.sampling_groups() if hasattr(datamodule, "sampling_groups") else []
        cond, what = None, ""
        if groups and groups[0][2]:  # a conditional prior: estimate Z on the first group of test objects
            _, length, cond = groups[0]
            what = f", conditioned on {groups[0][0]} test objects of that size"
        self.log_z_info = log_support_mass(
            self.dequantiser, self.prior, length, self.log_z_samples, decode=self.decode,
            exact_ok=self.context_encoder is None, cond=cond, what=what,
        )
        self.log("test/log_Z", self.log_z_info["log_Z"])
        if groups:
            parts = [self.sample_with_rejection(num, n, datamodule.is_valid, c) for num, n, c in groups]
            self.sampling_info = merge_sampling(parts, self.max_tries)
            self.log("sample/validity", self.sampling_info["validity_rejection"])
            self.log("sample/acceptance", self.sampling_info["acceptance"])

    @torch.no_grad()
    def iwbo(self, x: Tensor, mask: Tensor, k: int | None = None, cond: dict | None = None) -> Tensor:
        """Importance-weighted bound per sequence ``[B]`` (nats) with k samples."""
        k = k or self.iw_samples
        ctx = self.context(x)
        log_w = []
        for _ in range(k):  # a loop, not a k-times larger batch: bounded memory
            z, log_q = self.dequantiser.sample(x, ctx)
            log_px = gather(self.dequantiser.decoder_log_prob(z, ctx), x)
            per_token = log_px + self.prior.log_prob(z, mask, **(cond or {})) - log_q
            log_w.append(torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1))
        return torch.logsumexp(torch.stack(log_w), dim=0) - math.log(k)

    # -- generation ---------------------------------------------------------------
    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Categories ``[n, T]`` for latents ``z [n, T, D]``; -1 where z is outside
        every support. With a causal context, left to right carrying its state."""
        if self.context_encoder is None:
            return self.dequantiser.decode(z)
        tokens, prev, state = [], None, None
        for t in range(z.shape[1]):
            ctx, state = self.context_encoder.step(prev, state, batch=z.shape[0])
            prev = self.dequantiser.decode(z[:, t], ctx)
            tokens.append(prev)
        return torch.stack(tokens, dim=1)

    @torch.no_grad()
    def generate(self, num: int, length: int, cond: dict | None = None) -> tuple[Tensor, Tensor]:
        """Samples ``x [num, length]`` from the prior (given ``cond``, e.g. graphs),
        decoded; ``valid [num]`` is False where some token fell outside every
        support (``x`` is -1 there)."""
        x = self.decode(self.prior.sample(num, length, **(cond or {})).to(self.device))
        return x, (x >= 0).all(-1)

    @torch.no_grad()
    def sample_with_rejection(self, num: int, length: int, is_valid, cond: dict | None = None) -> dict:
        """Generate ``num`` objects; redraw those with a token outside every support
        (TRUFL's gaps, Argmax's invalid codes) up to ``max_tries`` draws per object.

        Returns validity without rejection (first draws) and with it, the
        acceptance rate (objects in support / objects proposed), and the objects
        (``samples [num, length]``). Objects still outside the support after the
        cap count as invalid.
        """
        cond = {k: v.to(self.device) for k, v in (cond or {}).items()}
        first, _ = self.generate(num, length, cond)
        x = first.clone()
        pending = ~(x >= 0).all(-1)
        proposed = num
        for _ in range(self.max_tries - 1):
            if not pending.any():
                break
            idx = pending.nonzero().squeeze(-1)
            redraw, ok = self.generate(len(idx), length, {k: v[idx] for k, v in cond.items()})
            proposed += len(idx)
            x[idx] = redraw
            pending[idx] = ~ok
        return {
            "validity_plain": is_valid(first, **cond).float().mean().item(),
            "validity_rejection": is_valid(x, **cond).float().mean().item(),
            "acceptance": (num - int(pending.sum())) / proposed,
            "objects": num,
            "proposed": proposed,
            "max_tries": self.max_tries,
            "samples": x,
        }

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at optimiser step ``step``: warm-up, then constant or cosine."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.schedule == "constant":
            return warm
        progress = min(1.0, step / self.max_steps)
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))

    def configure_optimizers(self):
        optimiser = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant" and not self.warmup_steps:
            return optimiser
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, self.lr_factor)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def conditioning(batch: dict) -> dict:
    """What a batch carries besides ``x`` and ``mask`` (e.g. ``adjacency``): the prior's condition."""
    return {k: v for k, v in batch.items() if k not in ("x", "mask")}


def merge_sampling(parts: list[dict], max_tries: int) -> dict:
    """Object-weighted validity and overall acceptance over sampling groups."""
    objects = sum(p["objects"] for p in parts)
    proposed = sum(p["proposed"] for p in parts)
    accepted = sum(p["acceptance"] * p["proposed"] for p in parts)
    return {
        "validity_plain": sum(p["validity_plain"] * p["objects"] for p in parts) / objects,
        "validity_rejection": sum(p["validity_rejection"] * p["objects"] for p in parts) / objects,
        "acceptance": accepted / proposed,
        "objects": objects,
        "proposed": proposed,
        "max_tries": max_tries,
    }
