"""The metric contract (docs/design.md#metrics) and unit conversions."""

from __future__ import annotations

import math

LN2 = math.log(2.0)

#: every logger and results.json uses these names
SPLIT_METRICS = ("nll_bits", "recon_bits", "kl_bits", "determinism", "decode_acc")
TEST_ONLY_METRICS = ("iwbo_bits", "log_Z")
SAMPLE_METRICS = ("sample/validity", "sample/acceptance")
#: p(x|z) at least this large counts as deterministic decoding
DETERMINISM_THRESHOLD = 1 - 1e-6


def contract_keys(splits=("train", "val", "test")) -> set[str]:
    """The metric names a run logs: per-split bounds, the test-only bounds and the
    generation metrics (every task generates at test time)."""
    keys = {f"{s}/{m}" for s in splits for m in SPLIT_METRICS}
    if "test" in splits:
        keys |= {f"test/{m}" for m in TEST_ONLY_METRICS}
    return keys | set(SAMPLE_METRICS)
