"""Mixed precision: the networks in bf16, the flows in float32.

``trainer.precision=bf16-mixed`` (Lightning's) runs every step under ``torch.autocast``, which
computes matrix products (linear layers, LSTMs, attention) in bfloat16: about twice as fast on
a CPU with AVX-512 BF16 and on a GPU. A flow's numbers must not follow: a log-determinant or a
mixture CDF in bf16 (8 bits of mantissa) would not integrate to 1. So every network's output
becomes float32 where the flow reads it (:func:`flow_input`), and the flow's own linear
algebra runs with autocast off (:func:`no_autocast`). The density is then exactly a density:
its parameters are a (bf16-rounded) function of what they condition on, and everything from
the parameters to log p is float32, as without autocast. Outside autocast both are no-ops.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch
from torch import Tensor

_HALF = (torch.bfloat16, torch.float16)


def flow_input(t: Tensor) -> Tensor:
    """A network's output as the flow reads it: float32 if autocast made it bf16/fp16
    (float64, in tests, stays float64)."""
    return t.float() if t.dtype in _HALF else t


@contextmanager
def no_autocast() -> Iterator[None]:
    """Autocast off for the flow's own matrix products, on every device where it is on."""
    with ExitStack() as stack:
        for device in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device):
                stack.enter_context(torch.autocast(device_type=device, enabled=False))
        yield
