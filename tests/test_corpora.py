"""Real corpora (text8, enwik8, character-level PTB) from small files in their real
formats: splits, windows, vocabularies, the content-keyed cache and the hub path."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hydra.utils import instantiate

from trufl.data import corpora
from trufl.data import text as text_module

from .conftest import ROOT

SPLITS = ("train", "val", "test")


def split_tokens(ds) -> list[int]:
    """The tokens of a split read back from its windows, checking that only the
    end of the last window is padding (so each symbol sits in exactly one window)."""
    mask = ds.mask.numpy()
    assert mask[:-1].all(), "only the last window may be padded"
    last = mask[-1]
    assert last[0] and (np.diff(last.astype(int)) <= 0).all(), "padding only at the end of the last window"
    return ds.x[ds.mask].tolist()


def windows(n: int, length: int) -> int:
    return -(-n // length)


def words(rng, n_chars: int, letters: str) -> str:
    """Random words of ``letters`` separated by single spaces, ``n_chars`` long."""
    out = []
    while sum(map(len, out)) < n_chars:
        out.append(" " + "".join(rng.choice(list(letters), size=rng.integers(1, 9))))
    return "".join(out)[:n_chars]


@pytest.fixture
def text8_file(tmp_path):
    """text8's format: one line, no newline, lower-case a-z and space, leading space."""
    text = words(np.random.default_rng(0), 4003, "abcdefghijklmnopqrstuvwxyz")
    path = tmp_path / "text8"
    path.write_bytes(text.encode("ascii"))
    return path, text


@pytest.fixture
def enwik8_file(tmp_path):
    """enwik8's format: UTF-8 Wikipedia XML, modelled as bytes (multi-byte characters included)."""
    page = (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.3/" version="0.3" xml:lang="en">\n'
        "  <page>\n    <title>AccessibleComputing</title>\n    <id>10</id>\n"
        "    <text xml:space=\"preserve\">'''Café''' is [[Zürich|zürich]] &amp; 日本語 — {{cite}}\n"
    )
    data = (page * 60).encode("utf-8")[:7777]
    path = tmp_path / "enwik8"
    path.write_bytes(data)
    return path, data


PTB = {  # the Mikolov ptb.char.*.txt format (some lines with a leading space, as in the files)
    "ptb.char.train.txt": " a e r _ b a n k n o t e _ b e r l i t z _ c a l l o w a y\n"
    " p i e r r e _ < u n k > _ N _ y e a r s _ o l d _ w i l l _ j o i n _ t h e _ b o a r d\n"
    "m r . _ < u n k > _ i s _ c h a i r m a n _ o f _ < u n k > _ n . v . _ $ _ N _ ' s\n" * 3,
    "ptb.char.valid.txt": " c o n s u m e r s _ m a y _ w a n t _ t o _ m o v e\n t h e _ b o a r d\n",
    "ptb.char.test.txt": " n o _ i t _ w a s _ n ' t _ b l a c k _ m o n d a y\n",
}


@pytest.fixture
def ptb_folder(tmp_path):
    folder = tmp_path / "simple-examples" / "data"
    folder.mkdir(parents=True)
    for name, content in PTB.items():
        (folder / name).write_text(content)
    (folder / "ptb.train.txt").write_text(" aer banknote berlitz calloway\n")  # word level: must not be picked
    return folder


def ptb_symbols(content: str) -> str:
    """What the loader must read from a ptb.char file: each line's characters, then an end-of-sentence."""
    return "".join("".join(line.split()) + "\n" for line in content.splitlines())


def dataset(make_cfg, tmp_path, *overrides):
    cfg = make_cfg(*overrides, f"paths.data_dir={tmp_path / 'cache'}")
    dm = instantiate(cfg.dataset)
    dm.setup()
    return dm


def test_text8_splits_90_5_5_into_windows_of_256_and_loses_nothing(make_cfg, tmp_path, text8_file):
    path, text = text8_file
    dm = dataset(make_cfg, tmp_path, "dataset=text8", f"dataset.path={path}")
    a, b = 4003 * 18 // 20, 4003 * 19 // 20
    expected = {"train": text[:a], "val": text[a:b], "test": text[b:]}
    assert (dm.seq_len, dm.eval_seq_len, dm.num_categories) == (256, 256, 27)
    assert {k: len(v) for k, v in expected.items()} == {"train": 3602, "val": 200, "test": 201}
    for split in SPLITS:
        ds = dm.splits[split]
        assert len(ds) == windows(len(expected[split]), 256) and ds.x.shape[1] == 256
        assert dm.render(split_tokens(ds)) == expected[split]


def test_the_positional_split_is_exactly_90m_5m_5m_on_the_real_file_size():
    assert corpora.split_bounds(100_000_000) == (90_000_000, 95_000_000)
    assert corpora.split_bounds(20) == (18, 19)


def test_text8_rejects_a_file_that_is_not_text8(tmp_path):
    path = tmp_path / "text8"
    path.write_bytes(b" the quick brown Fox\n")
    with pytest.raises(ValueError, match=r"not in text8 format.*b'F'.*offset 17.*2 such bytes.*dataset\.path"):
        text_module.TextDataModule(corpus="text8", path=str(path), data_dir=str(tmp_path / "c")).setup()


def test_text8_reads_the_zip_as_distributed(tmp_path, text8_file):
    import zipfile

    path, text = text8_file
    with zipfile.ZipFile(tmp_path / "text8.zip", "w") as archive:
        archive.write(path, "text8")
    dm = text_module.TextDataModule(corpus="text8", path=str(tmp_path / "text8.zip"), data_dir=str(tmp_path / "c"), seq_len=100)
    dm.setup()
    assert "".join(dm.render(split_tokens(dm.splits[s])) for s in SPLITS) == text


def test_enwik8_bytes_split_90_5_5_with_eval_windows_of_320_or_256(make_cfg, tmp_path, enwik8_file):
    path, data = enwik8_file
    a, b = 7777 * 18 // 20, 7777 * 19 // 20
    expected = {"train": data[:a], "val": data[a:b], "test": data[b:]}
    dm = dataset(make_cfg, tmp_path, "dataset=enwik8", f"dataset.path={path}")
    symbols = sorted(set(data))
    assert dm.num_categories == len(symbols) and any(s > 127 for s in symbols)  # UTF-8 bytes are symbols
    assert (dm.seq_len, dm.eval_seq_len) == (320, 320)
    for split in SPLITS:
        ds = dm.splits[split]
        assert len(ds) == windows(len(expected[split]), 320)
        assert bytes(symbols[t] for t in split_tokens(ds)) == expected[split]
    short = dataset(make_cfg, tmp_path, "dataset=enwik8", f"dataset.path={path}", "dataset.eval_seq_len=256")
    assert [len(short.splits[s]) for s in SPLITS] == [windows(len(expected["train"]), 320), 2, 2]
    assert bytes(symbols[t] for t in split_tokens(short.splits["val"])) == expected["val"]


def test_ptb_reads_the_character_files_one_sentence_per_line(make_cfg, tmp_path, ptb_folder):
    dm = dataset(make_cfg, tmp_path, "dataset=ptb", f"dataset.path={ptb_folder}", "dataset.seq_len=50", "dataset.eval_seq_len=20")
    expected = dict(zip(SPLITS, map(ptb_symbols, PTB.values())))
    assert " " not in "".join(expected.values()) and expected["val"].count("\n") == 2
    assert dm.vocab == sorted(set(expected["train"])) and {"_", "\n", "<", "$"} <= set(dm.vocab)
    for split in SPLITS:
        ds = dm.splits[split]
        assert len(ds) == windows(len(expected[split]), 50 if split == "train" else 20)
        assert dm.render(split_tokens(ds)) == expected[split]


def test_ptb_errors_name_the_path_and_the_format(tmp_path, ptb_folder):
    (ptb_folder / "ptb.char.valid.txt").rename(ptb_folder / "valid.txt")
    with pytest.raises(FileNotFoundError, match=r"dataset\.path=.*lacks ptb\.char\.valid\.txt"):
        text_module.TextDataModule(corpus="ptb", path=str(ptb_folder), data_dir=str(tmp_path / "c"))
    (ptb_folder / "ptb.char.valid.txt").write_text(" t h e _ b o a r d\n aer banknote\n")
    with pytest.raises(ValueError, match=r"ptb\.char\.valid\.txt line 2 has the multi-character token 'aer'.*dataset\.path"):
        text_module.TextDataModule(corpus="ptb", path=str(ptb_folder), data_dir=str(tmp_path / "c")).setup()
    (ptb_folder / "ptb.char.valid.txt").write_text(" q u i x o t e\n")  # q and x never occur in train
    with pytest.raises(ValueError, match=r"the val split has symbols never seen in train: \['q', 'x'\]"):
        text_module.TextDataModule(corpus="ptb", path=str(ptb_folder), data_dir=str(tmp_path / "c")).setup()


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (["dataset=text8", "dataset.path=/nonexistent/text8"], FileNotFoundError, r"dataset\.path=/nonexistent/text8 does not exist"),
        (["dataset=enwik8"], ValueError, r"dataset\.corpus=enwik8 needs dataset\.path="),
        (["dataset=ptb", "dataset.path={file}"], ValueError, r"dataset\.path=.*for ptb give the folder"),
        (["dataset=enwik8", "dataset.path={folder}"], ValueError, r"dataset\.path=.* is a folder"),
    ],
)
def test_a_missing_or_wrong_path_fails_when_the_dataset_is_built(make_cfg, tmp_path, text8_file, overrides, error, match):
    """Before any data is read or model built, with the key to set."""
    from trufl.build import build

    path, _ = text8_file
    cfg = make_cfg(*(o.format(file=path, folder=tmp_path) for o in overrides))
    with pytest.raises(error, match=match):
        build(cfg.dataset)


def test_cache_is_keyed_by_content_not_path_or_mtime(tmp_path, text8_file, monkeypatch):
    path, text = text8_file
    stat = path.stat()
    make = lambda: text_module.TextDataModule(corpus="text8", path=str(path), data_dir=str(tmp_path / "c"), seq_len=64)
    first = make()
    first.setup()
    # same size, same modification time, one character changed in the test split
    edited = text[:-5] + ("q" if text[-5] != "q" else "x") + text[-4:]
    path.write_bytes(edited.encode())
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    second = make()
    second.setup()
    b = len(text) * 19 // 20
    assert second.render(split_tokens(second.splits["test"])) == edited[b:] != text[b:]
    assert len(list((tmp_path / "c" / "text").glob("text8-*/tokens.npz"))) == 2
    # unchanged content is served from the cache, not processed again
    monkeypatch.setattr(text_module, "local_tokens", lambda *a: pytest.fail("processed again despite a cache"))
    third = make()
    third.setup()
    assert third.render(split_tokens(third.splits["test"])) == edited[b:]


def cache_hub_copy(cache_dir, repo_id: str, column: str, rows: dict[str, list[str]]) -> None:
    """Put a prepared copy of ``repo_id`` into the ``datasets`` cache at ``cache_dir``,
    laid out as ``load_dataset`` leaves a downloaded hub dataset."""
    import datasets

    class Copy(datasets.GeneratorBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo(features=datasets.Features({column: datasets.Value("string")}))

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name=name, gen_kwargs={"texts": texts}) for name, texts in rows.items()]

        def _generate_examples(self, texts):
            yield from enumerate({column: t} for t in texts)

    Copy(cache_dir=str(cache_dir), dataset_name=repo_id.split("/")[-1], repo_id=repo_id, hash="0123abcd").download_and_prepare()


#: an endpoint that refuses connections at once (the discard port, nothing listens)
REFUSING = "http://127.0.0.1:9"


def set_offline(monkeypatch, flag: bool) -> None:
    """The hub's offline switches as ``HF_HUB_OFFLINE`` would set them (both libraries)."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", flag)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", flag)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty ``datasets`` cache, offline, with the hub's endpoint refusing connections."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    set_offline(monkeypatch, True)
    monkeypatch.setattr(constants, "ENDPOINT", REFUSING)
    return tmp_path / "hf"


@pytest.mark.parametrize("offline_flag", [True, False])
def test_a_hub_copy_in_the_datasets_cache_is_used_offline(tmp_path, hf_cache, monkeypatch, offline_flag):
    import datasets

    texts = {"train": " anarchism originated as a term", "validation": " of abuse", "test": " first used"}
    cache_hub_copy(hf_cache, "afmck/text8", "text", {k: [v] for k, v in texts.items()})
    set_offline(monkeypatch, offline_flag)  # False: the endpoint is unreachable instead
    dm = text_module.TextDataModule(corpus="text8", data_dir=str(tmp_path / "c"), seq_len=8)
    dm.setup()
    assert [dm.render(split_tokens(dm.splits[s])) for s in SPLITS] == list(texts.values())
    assert datasets.config.HF_HUB_OFFLINE is offline_flag  # the offline switch was put back


def test_ptb_from_the_hub_cache_matches_the_character_files(tmp_path, hf_cache, ptb_folder):
    """ptb_text_only rows are word-level sentences; they become the ptb.char format."""
    words = {k: ["".join(line.split()).replace("_", " ") for line in v.splitlines()] for k, v in PTB.items()}
    cache_hub_copy(hf_cache, "ptb_text_only", "sentence", dict(zip(["train", "validation", "test"], words.values())))
    hub = text_module.TextDataModule(corpus="ptb", data_dir=str(tmp_path / "c"), seq_len=16)
    local = text_module.TextDataModule(corpus="ptb", path=str(ptb_folder), data_dir=str(tmp_path / "c"), seq_len=16)
    hub.setup(), local.setup()
    assert hub.vocab == local.vocab
    for split in SPLITS:
        assert hub.render(split_tokens(hub.splits[split])) == ptb_symbols(list(PTB.values())[SPLITS.index(split)])
        assert (hub.splits[split].x == local.splits[split].x).all()


@pytest.mark.parametrize("offline_flag", [True, False])
def test_hub_name_not_cached_offline_fails_at_once_naming_dataset_path(tmp_path, hf_cache, monkeypatch, offline_flag):
    set_offline(monkeypatch, offline_flag)
    reason = "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set" if offline_flag else f"{REFUSING} unreachable"
    start = time.time()
    with pytest.raises(corpora.HubUnavailableError,
                       match=rf"offline \({reason}\) and not in the datasets cache.*dataset\.path=/path/to/text8"):
        text_module.TextDataModule(corpus="text8", data_dir=str(tmp_path)).setup()
    assert time.time() - start < 5


#: text8 from the hub, timing the load alone (not the interpreter's start and imports)
HUB_JOB = """
import datasets, time
from trufl.data.corpora import load_from_hub
start = time.time()
try:
    load_from_hub("text8", "afmck/text8")
finally:
    print(f"seconds={time.time() - start:.3f}")
"""


def hub_job(tmp_path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """A fresh interpreter loading text8 from the hub with ``env`` set as a user would set it
    (the hub libraries read HF_* when imported), an empty ``datasets`` cache; and how long the
    load took."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "PROXY" not in k.upper()}
    full = {**clean, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run([sys.executable, "-c", HUB_JOB], env=full, capture_output=True, text=True, timeout=120)
    return done, float(done.stdout.rpartition("seconds=")[2] or "nan")


@pytest.mark.parametrize("env, reason", [
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set"),
    ({"HF_ENDPOINT": REFUSING}, f"{REFUSING} unreachable"),
], ids=["HF_HUB_OFFLINE", "bogus-HF_ENDPOINT"])
def test_hub_switches_from_the_environment_fail_fast_naming_dataset_path(tmp_path, env, reason):
    """The hub's own switches are obeyed: offline flags, and HF_ENDPOINT (probed once, with no
    retries: datasets alone retries a refusing endpoint for ~25 s)."""
    done, seconds = hub_job(tmp_path, **env)
    assert done.returncode != 0
    assert "HubUnavailableError" in done.stderr and f"offline ({reason}) and not in the datasets cache" in done.stderr
    assert "dataset.path=/path/to/text8" in done.stderr
    assert seconds < 5, f"the load took {seconds:.1f} s"


def test_hub_probe_goes_to_hf_endpoint_through_https_proxy(tmp_path):
    """hub_reachable asks HF_ENDPOINT through the proxy of the environment (a raw socket to
    huggingface.co did neither): a local proxy that answers sees the endpoint's URL."""
    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # a forward proxy receives the absolute URL
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        env = {**{k: v for k, v in os.environ.items() if "PROXY" not in k.upper() and not k.startswith("HF_")},
               "HF_ENDPOINT": "http://hub.invalid", "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", "from trufl.data.corpora import hub_reachable; print(hub_reachable(5))"],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert done.stdout.strip() == "True", done.stderr
    assert seen and seen[0].startswith("http://hub.invalid")


def test_the_embedded_corpus_reads_the_verses_datasets_read(tmp_path):
    """The KJV file is read with the standard library (the minimal install has no
    ``datasets``): the same verses, in the same order, as ``datasets``' json loader gave."""
    datasets = pytest.importorskip("datasets")
    path = corpora.bible_path()
    ours = corpora.bible_verses(path)
    theirs = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ours) == len(theirs) == 31103
    for key in ("book", "chapter", "text"):
        assert [v[key] for v in ours] == theirs[key], key


def test_a_verses_file_with_a_bad_line_names_the_path_and_line(tmp_path):
    path = tmp_path / "kjv.jsonl"
    path.write_text('{"book": "Genesis", "chapter": 1, "text": "In the beginning"}\n{"book": "Genesis"}\n')
    with pytest.raises(ValueError, match=rf"dataset.path={path} line 2 is not a verse object"):
        corpora.bible_verses(path)
