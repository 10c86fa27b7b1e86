"""Mixed precision: the networks in bf16, the flows in float32.

``trainer.precision=bf16-mixed`` (Lightning's) runs every step under ``torch.autocast``, which
computes matrix products (linear layers, LSTMs, attention) in bfloat16: about twice as fast on
a CPU with AVX-512 BF16 and on a GPU. A flow's numbers must not follow: a log-determinant or a
mixture CDF in bf16 (8 bits of mantissa) would not integrate to 1. So every network's output
becomes float32 where the flow reads it (:func:`flow_input`), and the flow's own linear
algebra runs with autocast off (:func:`no_autocast`). The density is then exactly a density:
its parameters are a (bf16-rounded) function of what they condition on, and everything from
the parameters to log p is float32, as without autocast. Outside autocast both are no-ops.

Attention is the exception to "bf16 is faster": on a CPU (torch 2.13) the fused attention
kernel's backward in bf16 is about 8× slower than in float32 (docs/performance.md#recipes), so
on CPU :func:`attention` runs it in float32 and :func:`cpu_attention_kernels` makes PyTorch's own
attention layers (``nn.TransformerEncoderLayer``) take the composed kernel, which is fast in bf16.
On a GPU both leave attention to autocast.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from typing import ContextManager, Iterator

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

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


def _cpu_half(t: Tensor) -> bool:
    return t.device.type == "cpu" and (t.dtype in _HALF or torch.is_autocast_enabled("cpu"))


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=mask)`` (``[B, heads, T, d]``), in
    float32 where the inputs are half precision on a CPU (module docstring), returned in the
    inputs' dtype."""
    if not _cpu_half(q):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with no_autocast():
        att = F.scaled_dot_product_attention(flow_input(q), flow_input(k), flow_input(v),
                                             attn_mask=None if mask is None else flow_input(mask))
    return att.to(q.dtype)


def cpu_attention_kernels(x: Tensor) -> ContextManager:
    """Around PyTorch's attention layers (which call the fused kernel themselves): the composed
    ("math") kernel under CPU autocast, where the fused one is slow in bf16; otherwise nothing."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return sdpa_kernel([SDPBackend.MATH])
    return nullcontext()
