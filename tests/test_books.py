"""The book corpus of skip-thoughts through HF `datasets` (lnrepro.data.books_corpus): the same token
ids, vocabulary, triples and batches as the hand-written loader it replaced (fingerprints
recorded with that loader, commit ae9001d), the Arrow cache hit on a second load and missed
when a book changes, and nothing written to the data folder."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT
from test_skip_thoughts import write_corpus

from lnrepro.data import books as B
from lnrepro.data import books_corpus as BC
from lnrepro.errors import ConfigError, DataError


# ---- fingerprints -----------------------------------------------------------------------------
def _sha(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def fingerprint(d: B.BooksData, n_batches: int = 3) -> dict:
    """sha256 (16 hex) of the vocabulary, of the token-id matrix and lengths (as int64), of the
    training and validation triples, and of the first `n_batches` training batches of epochs 0
    and 1 (shapes and ids); the sizes in clear."""
    out = {
        "vocab": hashlib.sha256("\n".join(d.vocab).encode()).hexdigest()[:16],
        "n_vocab": len(d.vocab),
        "ids": _sha(d.ids.to(torch.int64)),
        "lengths": _sha(d.lengths.to(torch.int64)),
        "n_sent": int(d.ids.shape[0]),
        "width": int(d.ids.shape[1]),
        "train": _sha(d.train),
        "val": _sha(d.val),
    }
    h = hashlib.sha256()
    for epoch in (0, 1):
        for _, b in zip(range(n_batches), d.train_batches(epoch)):
            for t in b:
                h.update(str(tuple(t.shape)).encode())
                h.update(t.to(torch.int64).numpy().tobytes())
    out["batches"] = h.hexdigest()[:16]
    return out


# Recorded with the hand-written loader (torch.save cache, ae9001d) on the corpora below.
RECORDED = {
    "story": {
        "vocab": "61b6caf3ddafbad8",
        "n_vocab": 60,
        "ids": "5738b22b7f9ba5e1",
        "lengths": "7dccf0ad74c07720",
        "n_sent": 200,
        "width": 31,
        "train": "6ed9abc55e745835",
        "val": "c3d05f75164948ba",
        "batches": "c7287a4934b56891",
    },
    "story_short": {
        "vocab": "2007605952ee2b5b",
        "n_vocab": 20,
        "ids": "5e437bc3f987a384",
        "lengths": "cea839b8f6915db6",
        "n_sent": 200,
        "width": 5,
        "train": "674413a87913f558",
        "val": "a22d39b400ff74c2",
        "batches": "66771e0101492084",
    },
    "edge": {
        "vocab": "727102b65c2666cc",
        "n_vocab": 30,
        "ids": "bf34cb6fabc660bc",
        "lengths": "40daeecce902edf4",
        "n_sent": 33,
        "width": 7,
        "train": "59be1a76460aad4f",
        "val": "b2922ea99591d19d",
        "batches": "773f770ed43db924",
    },
    "edge_lines": {
        "vocab": "11a79e9b3d226e40",
        "n_vocab": 131,
        "ids": "0cdee0240c72f1a1",
        "lengths": "1d6fcec46159054d",
        "n_sent": 23,
        "width": 31,
        "train": "44e4f11ce378960e",
        "val": "e3b0c44298fc1c14",
        "batches": "0798a78c6eeaa543",
    },
    "edge_par": {
        "vocab": "c5de9e40433dd6a2",
        "n_vocab": 15,
        "ids": "65657f3e97e3a6fc",
        "lengths": "af64b4f8930d829d",
        "n_sent": 22,
        "width": 4,
        "train": "15e7da31cf9a53f9",
        "val": "f0a0278e4372459c",
        "batches": "ddae4e60b58b9a89",
    },
    "hf": {
        "vocab": "02f8906d961d534b",
        "n_vocab": 12,
        "ids": "e34d7f2e0529616b",
        "lengths": "fbabda0c72a4bbdb",
        "n_sent": 6,
        "width": 31,
        "train": "fe6d3d3bb5dd778a",
        "val": "e3b0c44298fc1c14",
        "batches": "188137e52d6c0159",
    },
}
# The real stand-in (<LNREPRO_DATA>/books), recorded with the same loader: the CPU-scale
# config (skip_thoughts_cpu) and the paper-scale one (configs/data/books.yaml).
REAL = {
    "cpu": (
        {"paths": ["books/gutenberg_pd"], "vocab_size": 4000, "val_triples": 1000},
        {
            "vocab": "3f1e2a7d1930cff2",
            "n_vocab": 4000,
            "ids": "caa0ba3b834da19e",
            "lengths": "fef861792b859804",
            "n_sent": 99853,
            "width": 31,
            "train": "31645aef062f3668",
            "val": "595e7dd40741f2c3",
            "batches": "8637c2c165903c25",
        },
    ),
    "full": (
        {
            "paths": ["books/gutenberg_pd", "books/nltk_gutenberg_tokenized"],
            "vocab_size": 20000,
            "val_triples": 2000,
        },
        {
            "vocab": "ac7e497ad84c5abc",
            "n_vocab": 20000,
            "ids": "9e4e58997f6169cb",
            "lengths": "818e77f8a7c8222c",
            "n_sent": 166225,
            "width": 31,
            "train": "281005ad00991266",
            "val": "a240aebc9220361e",
            "batches": "ada34ab586f323e0",
        },
    ),
}

HF_DOCS = [
    "First doc. It has three sentences. Really it does.",
    "",
    "  \n ",
    "Second doc here.\n\nWith a paragraph. And one more. And the last one!",
    "Tiny.",
]


def write_edge_corpus(root: Path) -> Path:
    """Books that exercise the reader: CRLF, accents and curly quotes, invalid UTF-8, a
    two-sentence and an empty document, a gzipped one-sentence-a-line file in a subfolder, a
    non-book file, a sentence longer than max_len, punctuation-only text, tied word counts."""
    d = root / "books"
    (d / "sub").mkdir(parents=True, exist_ok=True)
    prose = (
        "It was the best of times. It was the worst of times! Was it? \u201cYes,\u201d "
        "said Mr. Smith to J. Watson.\r\n\r\nCaf\u00e9 au lait, na\u00efve fa\u00e7ade; "
        "\u00c9tienne\u2019s dog\u2014a big one\u2014ran. 3 cats followed.\r\n\r\n"
        + " ".join(f"word{k}" for k in range(45))
        + ". The end (really). Done.\r\n"
    )
    (d / "a_prose.txt").write_text(prose, encoding="utf-8", newline="")
    (d / "b_bad.txt").write_bytes(
        b"Bad \xff\xfe bytes here. More text\nwrapped.\n\nNext one. And another one. Last.\n"
    )
    (d / "c_two.txt").write_text("Only one.\n\nOnly two.\n")
    (d / "d_empty.txt").write_text("\n \n\n")
    lines = "\n".join(f"line {k} of the tokenised file , with tokens ." for k in range(12))
    with gzip.open(d / "sub" / "e_lines.txt.gz", "wt", encoding="utf-8") as f:
        f.write(lines + "\n")
    (d / "sub" / "ignored.csv").write_text("not, a, book\n")
    (d / "f_punct.txt").write_text(
        "!!! ... ???\n\nZ. Y. X? W! V.\n\n" + "Ties a b c d e f. " * 3 + "\n"
    )
    return root


CASES = {
    "story": ("story", {"paths": ["books"], "vocab_size": 60, "batch_size": 8, "val_triples": 10}),
    "story_short": (
        "story",
        {"paths": ["books"], "vocab_size": 20, "max_len": 4, "batch_size": 4, "val_triples": 3},
    ),
    "edge": (
        "edge",
        {"paths": ["books"], "vocab_size": 30, "max_len": 6, "batch_size": 4, "val_triples": 5},
    ),
    "edge_lines": (
        "edge",
        {
            "paths": ["books/*.txt", "books/sub"],
            "format": "lines",
            "vocab_size": 1000,
            "batch_size": 2,
            "val_triples": 0,
        },
    ),
    "edge_par": (
        "edge",
        {
            "paths": ["books"],
            "format": "paragraphs",
            "vocab_size": 15,
            "max_len": 3,
            "batch_size": 2,
            "val_triples": 2,
        },
    ),
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("books_corpora")
    return {"story": write_corpus(root / "story"), "edge": write_edge_corpus(root / "edge")}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _files(root: Path) -> list:
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns) for p in root.rglob("*"))


# ---- equal to the recorded output of the old loader ------------------------------------------
@pytest.mark.parametrize("num_proc", [1, pytest.param(3, marks=pytest.mark.slow)])  # 3: > 1 s
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_output_as_the_old_loader(corpora, cache, case, num_proc):
    where, kw = CASES[case]
    before = _files(corpora[where])
    d = B.books(str(corpora[where]), **kw, verify=False, num_proc=num_proc)
    assert fingerprint(d) == RECORDED[case]
    assert _files(corpora[where]) == before  # nothing written in the data folder
    assert list((cache / "books").rglob("*.arrow"))  # the Arrow cache is under the cache root


@pytest.mark.slow  # > 1 s: the datasets library's map and Arrow files
def test_hub_corpus_same_output_as_the_old_loader(tmp_path, cache, monkeypatch):
    import datasets

    seen = {}

    def fake_load(name, config=None, split=None, cache_dir=None):
        seen.update(name=name, split=split, cache_dir=cache_dir)
        return datasets.Dataset.from_dict({"body": HF_DOCS})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    d = B.books(
        str(tmp_path),
        hf={"name": "some/corpus", "text_column": "body"},
        vocab_size=12,
        batch_size=2,
        val_triples=1,
    )
    assert fingerprint(d) == RECORDED["hf"]
    assert seen == {
        "name": "some/corpus",
        "split": "train",
        "cache_dir": str(cache / "huggingface"),
    }


@pytest.mark.realdata("books/gutenberg_pd")
@pytest.mark.parametrize("which", sorted(REAL))
def test_real_corpus_same_output_as_the_old_loader(which, cache, real_data):
    kw, want = REAL[which]
    assert fingerprint(B.books(str(real_data), **kw)) == want


# ---- the Arrow cache --------------------------------------------------------------------------
def _tokenize_forbidden(*a, **k):
    raise AssertionError("tokenised again: the Arrow cache was not used")


@pytest.mark.slow  # > 1 s: subprocesses that import the datasets library
def test_second_load_hits_the_cache_and_a_changed_book_misses_it(tmp_path, cache, monkeypatch):
    write_corpus(tmp_path)
    kw = {
        "paths": ["books"],
        "vocab_size": 60,
        "batch_size": 8,
        "val_triples": 10,
        "verify": False,
        "num_proc": 1,
    }
    first = B.books(str(tmp_path), **kw)
    arrow = sorted(p.relative_to(cache) for p in (cache / "books").rglob("*.arrow"))
    assert arrow
    # the same books again: read from the Arrow files, no sentence split or tokenising
    with monkeypatch.context() as m:
        m.setattr(BC, "tokenize", _tokenize_forbidden)
        m.setattr(BC, "document_sentences", _tokenize_forbidden)
        again = B.books(str(tmp_path), **kw)
    assert fingerprint(again) == fingerprint(first)
    assert sorted(p.relative_to(cache) for p in (cache / "books").rglob("*.arrow")) == arrow
    # and from another process (the fingerprints do not depend on the process)
    probe = (
        "from lnrepro.data import books as B, books_corpus as BC\n"
        "def no(*a, **k): raise SystemExit('tokenised again')\n"
        "BC.tokenize = BC.document_sentences = no\n"
        f"d = B.books({str(tmp_path)!r}, paths=['books'], vocab_size=60, batch_size=8, "
        "val_triples=10, verify=False, num_proc=1)\n"
        "print(len(d.ids))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src")] + sys.path)}
    r = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0 and r.stdout.split()[-1] == "200", r.stderr[-2000:]
    # a changed book: a new cache (the old one is not read), built by tokenising again
    (tmp_path / "books" / "doc1.txt").write_text("A new start. Then more. And the end.\n\n")
    calls = []
    real = BC.tokenize

    def counting(s):
        calls.append(s)
        return real(s)

    monkeypatch.setattr(BC, "tokenize", counting)
    changed = B.books(str(tmp_path), **kw)
    assert calls and len(changed.ids) == 200 - 40 + 1  # one line: one sentence ("lines")
    assert not torch.equal(changed.ids[:3], first.ids[:3]) or not torch.equal(
        changed.ids[40:43], first.ids[40:43]
    )
    now = sorted(p.relative_to(cache) for p in (cache / "books").rglob("*.arrow"))
    assert set(arrow) < set(now)


def test_a_changed_setting_misses_the_encoding_cache_only(tmp_path, cache, monkeypatch):
    write_corpus(tmp_path)
    kw = {"paths": ["books"], "batch_size": 8, "val_triples": 10, "verify": False, "num_proc": 1}
    a = B.books(str(tmp_path), vocab_size=60, **kw)
    with monkeypatch.context() as m:  # the sentences are reused, the ids are new
        m.setattr(BC, "tokenize", _tokenize_forbidden)
        b = B.books(str(tmp_path), vocab_size=30, max_len=5, **kw)
    assert len(b.vocab) == 30 and b.ids.shape == (200, 6) and len(a.vocab) == 60
    assert torch.equal(b.train, a.train) and torch.equal(b.val, a.val)


@pytest.mark.slow  # > 1 s: the datasets library's map
def test_cache_false_leaves_no_arrow_files(tmp_path, cache):
    write_corpus(tmp_path)
    d = B.books(
        str(tmp_path),
        paths=["books"],
        vocab_size=60,
        batch_size=8,
        val_triples=10,
        verify=False,
        cache=False,
    )
    assert fingerprint(d) == RECORDED["story"]
    assert not list(cache.rglob("*.arrow"))


def test_bad_settings_and_unwritable_cache_are_one_line(tmp_path, monkeypatch):
    write_corpus(tmp_path)
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="data.num_proc must be null or a positive integer"):
        B.books(
            str(tmp_path), paths=["books"], vocab_size=60, batch_size=8, verify=False, num_proc=0
        )
    with pytest.raises(ConfigError, match="data.format must be one of"):
        B.books(str(tmp_path), paths=["books"], format="pages", verify=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("LNREPRO_CACHE", str(blocker / "cache"))
    with pytest.raises((DataError, ConfigError), match="LNREPRO_CACHE"):
        B.books(str(tmp_path), paths=["books"], vocab_size=60, batch_size=8, verify=False)
