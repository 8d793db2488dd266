"""The book corpus of skip-thoughts (Sec. 6.3) parsed through HF `datasets`: files or a hub
corpus -> sentences -> token ids, cached as Arrow (lnrepro.data.books builds the triples).

BookCorpus (Kiros et al.'s 74M sentences) is not public; this project's stand-in is
`<data_dir>/books/`: `gutenberg_pd/` (14 Project Gutenberg books as running prose, one
paragraph a line, blank lines between paragraphs) and `nltk_gutenberg_tokenized/` (17 NLTK
Gutenberg texts, tokenised, one sentence a line).

Sources (`paths`, a list of directories or globs relative to the data dir or absolute):
  * `.txt` / `.txt.gz` files, ONE DOCUMENT PER FILE; triples never cross a file boundary.
    How a file splits into sentences: `format` (lnrepro.data.text.document_sentences).
  * or a Hugging Face `datasets` text corpus (`hf: {name, split, text_column, config}`; every
    non-empty row is a document, split by `format` as a file).
Sentences are tokenised (lnrepro.data.text.tokenize) and cut to `max_len` tokens (Kiros et al.'s
maxlen_w = 30; ASSUMPTION: their code skips longer sentences, we truncate them, which keeps the
triples of a small corpus) and an <eos> is appended.

Parsing goes through HF `datasets`, cached as Arrow by that library's fingerprints, under
$LNREPRO_CACHE/books/ (default ~/.cache/lnrepro; never in the data folder):
  1. `Dataset.from_generator` (one row per file {doc, text}); the files' sha256 are part of its
     gen_kwargs, so a changed book is a new cache, and the same books the same cache;
  2. `Dataset.map(batched=True, num_proc=...)`: documents -> sentences {doc, tokens}
     (`document_sentences` + `tokenize`);
  3. the vocabulary from the tokens' counts (pyarrow), then `Dataset.map(batched=True,
     num_proc=...)`: tokens -> ids {ids} (a new vocabulary or `max_len` re-runs this step only);
  4. the Arrow columns -> the padded token matrix, lengths and document ids, once.
A second load reads the Arrow files of each step without splitting or tokenising again. The
map functions are fingerprinted by reference: CACHE_VERSION (in their arguments) must be bumped
when the parsing changes. A Hugging Face corpus goes the same way from step 2 on, its own
download cached by the library under $LNREPRO_CACHE/huggingface/. `cache: false` builds in a
temporary folder, removed after reading.

Verification (`verify`, lnrepro.data.verify), before any parse or cache: the stand-in's files
against their recorded checksums, and its folders complete.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import logging
import os
import tempfile
import zlib
from pathlib import Path

import torch

from lnrepro.data import common
from lnrepro.data.text import (
    EOS_ID,
    FORMATS,
    PAD_ID,
    SPECIALS,
    UNK_ID,
    document_sentences,
    tokenize,
)
from lnrepro.data.verify import file_digests, verify_files
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # bump when the parsing changes: older Arrow caches are then ignored


# ---- reading ----------------------------------------------------------------------------------
def read_text(path: Path) -> str:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
                return f.read()
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); corrupt file?") from None


def find_files(data_dir: str | Path, paths: list[str]) -> list[Path]:
    """The .txt / .txt.gz files named by `paths` (directories or globs), sorted, no duplicates."""
    root = Path(data_dir).expanduser()
    found: set[Path] = set()
    for p in paths:
        base = Path(p).expanduser()
        base = base if base.is_absolute() else root / base
        matches = [Path(m) for m in glob.glob(str(base))] if glob.has_magic(str(base)) else [base]
        for m in matches:
            if m.is_dir():
                found.update(f for f in m.rglob("*") if f.is_file() and _is_text(f))
            elif m.is_file() and _is_text(m):
                found.add(m)
    return sorted(found)


def _is_text(p: Path) -> bool:
    return p.name.endswith(".txt") or p.name.endswith(".txt.gz")


def _hf_dataset(hf: dict):
    """The corpus through HF `datasets`, cached by that library under $LNREPRO_CACHE."""
    try:
        import datasets
    except ImportError as e:
        raise DataError(f"data.hf needs the `datasets` package ({e})") from None
    try:
        ds = datasets.load_dataset(
            hf["name"],
            hf.get("config"),
            split=hf.get("split", "train"),
            cache_dir=str(common.cache_dir("huggingface")),
        )
    except Exception as e:  # noqa: BLE001  (network, unknown name, ...)
        raise DataError(f"cannot load the Hugging Face corpus {hf.get('name')!r}: {e}") from None
    col = hf.get("text_column", "text")
    if col not in ds.column_names:
        raise DataError(
            f"the Hugging Face corpus {hf['name']!r} has no column {col!r} "
            f"(columns: {', '.join(ds.column_names)})"
        )
    return ds


def _doc_rows(docs: list[dict]):
    """One row per document (the generator of Dataset.from_generator, which may call it once
    per shard of `docs`). Each entry's sha256 is not read here: as part of gen_kwargs it enters
    the builder's fingerprint, so a changed file is a new Arrow cache."""
    for d in docs:
        yield {"doc": d["doc"], "text": read_text(Path(d["path"]))}


def _sentence_rows(batch: dict, fmt: str, version: int) -> dict:
    """Dataset.map(batched=True): documents -> one row per non-empty sentence {doc, tokens}
    (`version` only keys the cache)."""
    doc: list[int] = []
    tokens: list[list[str]] = []
    for d, text in zip(batch["doc"], batch["text"]):
        for s in document_sentences(text, fmt):
            toks = tokenize(s)
            if toks:
                doc.append(d)
                tokens.append(toks)
    return {"doc": doc, "tokens": tokens}


def _encode_rows(batch: dict, vocab: list[str], max_len: int) -> dict:
    """Dataset.map(batched=True): tokens -> ids (cut to max_len, then <eos>)."""
    stoi = {w: i for i, w in enumerate(vocab)}
    return {
        "ids": [
            [stoi.get(w, UNK_ID) for w in toks[:max_len]] + [EOS_ID] for toks in batch["tokens"]
        ]
    }


def _documents(files: list[Path], ds, hf: dict | None, cache_root: Path):
    """The documents as a datasets.Dataset {doc, text}: the local files through
    Dataset.from_generator (Arrow under <cache_root>/books/), or the hub corpus' non-empty rows."""
    import datasets

    feats = datasets.Features({"doc": datasets.Value("int64"), "text": datasets.Value("string")})
    if ds is None:
        return datasets.Dataset.from_generator(
            _doc_rows,
            features=feats,
            cache_dir=str(cache_root / "books"),
            gen_kwargs={
                "docs": [
                    {
                        "doc": k,
                        "path": str(f),
                        "sha256": file_digests(f)["sha256"],
                        "version": CACHE_VERSION,
                    }
                    for k, f in enumerate(files)
                ]
            },
        )
    col = hf.get("text_column", "text")
    ds = ds.filter(lambda t: bool(t and t.strip()), input_columns=[col])
    return ds.map(
        lambda t, i: {"doc": i, "text": t},
        input_columns=[col],
        with_indices=True,
        remove_columns=ds.column_names,
        features=feats,
    )


def _num_proc(num_proc: int | None, n_docs: int) -> int:
    if num_proc is None:
        num_proc = min(len(os.sched_getaffinity(0)), 8)
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise ConfigError(f"data.num_proc must be null or a positive integer, got {num_proc!r}")
    return max(1, min(num_proc, n_docs))


def _tensors(sents, enc, max_len: int) -> dict:
    """The Arrow columns -> {"ids" (N, max_len+1) int32 padded with <pad>, "lengths", "doc"}."""
    ids = enc.data.table.column("ids").combine_chunks()
    off = torch.from_numpy(ids.offsets.to_numpy().astype("int64"))
    flat = torch.from_numpy(ids.flatten().to_numpy().astype("int32"))
    lengths = off.diff()
    n = len(lengths)
    out = torch.full((n, max_len + 1), PAD_ID, dtype=torch.int32)
    rows = torch.repeat_interleave(torch.arange(n), lengths)
    out[rows, torch.arange(len(flat)) - (off[:-1] - off[0])[rows]] = flat
    doc = torch.from_numpy(sents.data.table.column("doc").to_numpy().astype("int64"))
    return {"ids": out, "lengths": lengths, "doc": doc}


def load_corpus(
    data_dir: str | Path,
    paths: list[str] | None,
    hf: dict | None,
    fmt: str,
    vocab_size: int,
    max_len: int,
    cache: bool = True,
    verify: bool = True,
    num_proc: int | None = None,
) -> dict:
    """Parse the corpus through HF `datasets` (Arrow, cached by the library's fingerprints):
    {"ids" (N, max_len+1) int32, "lengths" (N,), "doc" (N,) document index, "vocab" [str],
    "files" [str]}."""
    if fmt not in FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    files = [] if hf else find_files(data_dir, list(paths or []))
    if not hf and not files:
        raise DataError(
            f"empty corpus: no .txt or .txt.gz files under data.paths={list(paths or [])} "
            f"(relative to {data_dir}); point data.paths at folders or globs of text files, or "
            "LNREPRO_DATA at a folder with books/"
        )
    if files:
        verify_files(
            "the book corpus", Path(data_dir).expanduser() / "books", files, verify, complete=True
        )
    ds = _hf_dataset(hf) if hf else None
    with contextlib.ExitStack() as stack:
        root = common.cache_root()
        if not cache:  # everything in a folder of its own, removed after reading
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lnrepro_books_")))
        try:
            out = _parse(files, ds, hf, fmt, vocab_size, max_len, root, num_proc)
        except OSError as e:
            raise DataError(
                f"cannot write the book corpus cache under {root} ({e}); set "
                "LNREPRO_CACHE to a writable folder"
            ) from None
    return {**out, "files": [str(f) for f in files]}


def _parse(files, ds, hf, fmt, vocab_size, max_len, root: Path, num_proc) -> dict:
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    docs = _documents(files, ds, hf, root)
    procs = _num_proc(num_proc, len(docs))
    sents = docs.map(
        _sentence_rows,
        batched=True,
        batch_size=1,
        num_proc=procs if procs > 1 else None,
        remove_columns=docs.column_names,
        fn_kwargs={"fmt": fmt, "version": CACHE_VERSION},
        features=datasets.Features(
            {"doc": datasets.Value("int64"), "tokens": datasets.Sequence(datasets.Value("string"))}
        ),
        desc="book sentences",
    )
    if not len(sents):
        raise DataError(
            f"empty corpus: the {len(docs)} source(s) hold no sentences "
            f"({', '.join(map(str, files[:3]))}{' ...' if len(files) > 3 else ''})"
        )
    # rank_words in pyarrow: by count, ties by UTF-8 bytes (the order of Python's str)
    counts = pc.value_counts(sents.data.table.column("tokens").combine_chunks().flatten())
    top = pc.sort_indices(
        pa.RecordBatch.from_struct_array(counts),
        [("counts", "descending"), ("values", "ascending")],
    )
    words = counts.field("values").take(top[: max(0, vocab_size - len(SPECIALS))])
    vocab = list(SPECIALS) + words.to_pylist()
    enc = sents.map(
        _encode_rows,
        batched=True,
        batch_size=10_000,
        num_proc=procs if procs > 1 else None,
        input_columns=None,
        remove_columns=sents.column_names,
        fn_kwargs={"vocab": vocab, "max_len": max_len},
        features=datasets.Features({"ids": datasets.Sequence(datasets.Value("int32"))}),
        desc="book token ids",
    )
    log.info(
        "books corpus: %d documents, %d sentences (Arrow cache in %s)",
        len(docs),
        len(sents),
        Path(enc.cache_files[0]["filename"]).parent if enc.cache_files else "-",
    )
    return {**_tensors(sents, enc, max_len), "vocab": vocab}
