"""Tasks: the embedded corpus, the toy, the shared caches (real corpora: test_corpora.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from trufl.data import TextDataModule, ToyDataModule
from trufl.data import text as text_module
from trufl.data.base import TokenWindows


def test_windows_pad_and_mask_instead_of_dropping():
    tokens = np.arange(10) % 7
    ds = TokenWindows(tokens, seq_len=4)
    assert len(ds) == 3 and ds.num_tokens == 10
    assert ds.x[ds.mask].tolist() == tokens.tolist()
    assert ds.mask[-1].tolist() == [True, True, False, False]


def test_embedded_corpus_split_by_interleaved_chapters(data_dir):
    dm = TextDataModule(data_dir=str(data_dir), seq_len=64)
    dm.setup()
    n = {k: v.num_tokens for k, v in dm.splits.items()}
    total = sum(n.values())
    assert total > 3_500_000 and dm.num_categories == 27
    assert 0.04 < n["val"] / total < 0.06 and 0.04 < n["test"] / total < 0.06
    val = dm.render(dm.splits["val"].x[dm.splits["val"].mask].tolist())
    test = dm.render(dm.splits["test"].x[dm.splits["test"].mask].tolist())
    # chapter 19 of Genesis is in val and chapter 20 in test; Revelation 13 (book 66) in test
    assert "there came two angels to sodom at even" in val
    assert "abraham journeyed from thence toward the south country" in test
    assert "his number is six hundred threescore and six" in test
    assert set(val) <= set(text_module.ALPHABET27)


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.path"):
        TextDataModule(corpus="enwik8", path=str(tmp_path / "nope"), data_dir=str(tmp_path)).setup()


def test_toy_frequencies_match_probs_and_cache_is_reused(tmp_path):
    probs = [0.1, 0.2, 0.3, 0.4]
    dm = ToyDataModule(probs, train_size=40_000, data_dir=str(tmp_path))
    dm.setup()
    freq = np.bincount(dm.splits["train"].x.flatten().numpy(), minlength=4) / 40_000
    assert np.abs(freq - probs).max() < 0.01
    assert dm.entropy_bits == pytest.approx(1.8464, abs=1e-4)
    again = ToyDataModule(probs, train_size=40_000, data_dir=str(tmp_path))
    again.setup()
    assert (again.splits["train"].x == dm.splits["train"].x).all()
    assert len(list((tmp_path / "toy").glob("*.npz"))) == 1


def _build_in_process(args):
    import numpy as np

    from trufl.data.cache import load_or_build

    path, value = args

    def builder():
        import time

        time.sleep(0.3)  # long enough for the other process to arrive meanwhile
        return {"x": np.full(3, value)}

    return load_or_build(path, builder)["x"].tolist()


def test_parallel_jobs_share_one_cache_build(tmp_path):
    """Two sweep jobs asking for the same cache: one builds, the other loads it
    (they used to race on one temporary file and one of them crashed)."""
    from concurrent.futures import ProcessPoolExecutor

    path = tmp_path / "cache" / "data.npz"
    with ProcessPoolExecutor(2) as pool:
        first, second = pool.map(_build_in_process, [(path, 1), (path, 2)])
    assert first == second  # both see the one build that won
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.lock", "data.npz", "data.npz.sha256"]
