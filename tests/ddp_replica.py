"""A DDP replica for tests/test_reliability.py, in its own module so that spawned
processes import only torch and the layer under test."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from trufl.priors.layers import ActNorm


def actnorm_replica(rank: int, world: int, port: int, out: Path) -> None:
    """One DDP replica: ActNorm initialised on this rank's own batch, then one SGD step."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(rank)) * (1 + rank) + 3 * rank  # differs per rank
    model = DistributedDataParallel(ActNorm(3))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    y, log_det = model(z)
    initial = {k: v.detach().clone() for k, v in model.module.named_parameters()}
    ((y - 1).square().sum(-1) - log_det).mean().backward()  # not the loss ActNorm's init already minimises
    optimiser.step()
    torch.save({"z": z, "initial": initial, "stepped": dict(model.module.named_parameters())}, out / f"rank{rank}.pt")
    dist.destroy_process_group()
