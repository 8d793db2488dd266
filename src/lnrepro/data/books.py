"""Ordered sentences of books for skip-thought training (the paper's Sec. 6.3): triples
(previous, current, next) of consecutive sentences within a document.

BookCorpus (Kiros et al.'s 74M sentences) is not public; this project's stand-in is
`<data_dir>/books/`: `gutenberg_pd/` (14 Project Gutenberg books as
running prose, one paragraph a line, blank lines between paragraphs) and
`nltk_gutenberg_tokenized/` (17 NLTK Gutenberg texts, tokenised, one sentence a line).

Sources (`paths`, a list of directories or globs relative to the data dir or absolute):
  * `.txt` / `.txt.gz` files, ONE DOCUMENT PER FILE; triples never cross a file boundary.
  * `format: auto | paragraphs | lines`. "paragraphs": blank lines separate paragraphs, the lines
    of a paragraph are joined, and each paragraph is split into sentences by `split_sentences`
    (a regex: after . ! ? plus closing quotes/brackets, before whitespace and an upper-case
    letter, digit or opening quote; not after a title such as "Mr." or a one-letter initial).
    "lines": one sentence per line, as the NLTK copy. "auto":
    "paragraphs" when at least 5 % of the file's lines are blank, else "lines".
  * or a Hugging Face `datasets` text corpus (`hf: {name, split, text_column, config}`; every
    non-empty row is a document, split by `format` as a file).

Tokens: `tokenize` = lower-case, then the regex `\\w+|[^\\w\\s]` (words and single punctuation
marks); the same function tokenises the SentEval sentences (lnrepro.eval.senteval), so the
encoder sees the same kind of text in training and evaluation. Sentences are cut to `max_len`
tokens (Kiros et al.'s maxlen_w = 30; ASSUMPTION: their code skips longer sentences, we
truncate them, which keeps the triples of a small corpus) and an <eos> is appended.
Vocabulary: <pad> (id 0), <eos> (1), <unk> (2), then the `vocab_size - 3` most frequent
words of the corpus (all its sentences; ties broken alphabetically).

Split: `val_triples` triples drawn with a fixed generator (seed 0, independent of the run seed)
are held out for the validation loss; the rest train.

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
against their recorded checksums, and its folders complete. (SentEval is not data of this
module: it is an evaluation hook of the skip-thoughts task, lnrepro.tasks.skip_thoughts.)

Batches: `Triples(prev, cur, nxt)`, each a (B, max_len + 1) LongTensor of token ids padded
with <pad> (the sentence's <eos> included), cut to the longest sentence of the batch.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import logging
import os
import re
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from lnrepro.data import common
from lnrepro.data.common import check_batch_size, vocab_hash
from lnrepro.data.verify import check_flag, file_digests, verify_files
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
FORMATS = ("auto", "paragraphs", "lines")
CACHE_VERSION = 3  # bump when the parsing changes: older Arrow caches are then ignored

_TOKEN = re.compile(r"\w+|[^\w\s]")
# a sentence ends after . ! ? (and closing quotes / brackets) before whitespace and a capital,
# a digit or an opening quote / bracket; not after a title (Mr. Holmes) or an initial (J. Smith)
_NOT_AFTER = "".join(rf"(?<!\b{a})" for a in ("Mr", "Mrs", "Ms", "Dr", "St", "Messrs", "Mme",
                                               "Prof", "Capt", "Col", "Gen", "Rev", "[A-Z]"))
_SENT_END = re.compile(_NOT_AFTER
                       + r"([.!?]+[\"'\u2019\u201d)\]]*)\s+(?=[\"'\u2018\u201c(\[]*[A-Z0-9])")


def tokenize(sentence: str) -> list[str]:
    """Lower-cased words and punctuation marks: "Don't!" -> ["don", "'", "t", "!"]."""
    return _TOKEN.findall(sentence.lower())


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph (whitespace, line breaks included, collapsed to one space)."""
    text = " ".join(paragraph.split())
    if not text:
        return []
    return [s.strip() for s in _SENT_END.sub(r"\1\n", text).split("\n") if s.strip()]


def document_sentences(text: str, fmt: str = "auto") -> list[str]:
    """The sentences of one document, in order (see the module docstring for `fmt`)."""
    if fmt not in FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    lines = text.replace("\r\n", "\n").strip("\n").split("\n")
    if fmt == "auto":
        blank = sum(1 for line in lines if not line.strip())
        fmt = "paragraphs" if lines and blank >= 0.05 * len(lines) else "lines"
    if fmt == "lines":
        return [" ".join(line.split()) for line in lines if line.strip()]
    out: list[str] = []
    for para in re.split(r"\n\s*\n", "\n".join(lines)):
        out += split_sentences(para)
    return out


def rank_words(counts: dict[str, int], vocab_size: int) -> list[str]:
    """<pad>, <eos>, <unk>, then the vocab_size - 3 most frequent words (ties alphabetical)."""
    words = sorted(counts, key=lambda w: (-counts[w], w))[: max(0, vocab_size - len(SPECIALS))]
    return list(SPECIALS) + words


def build_vocab(sentences: list[list[str]], vocab_size: int) -> list[str]:
    """The vocabulary of token lists (`rank_words` of their counts)."""
    return rank_words(Counter(w for s in sentences for w in s), vocab_size)


class Triples(NamedTuple):
    """A batch of (previous, current, next) sentences, each (B, L) ids padded with <pad>."""

    prev: torch.Tensor
    cur: torch.Tensor
    nxt: torch.Tensor


# ---- reading ----------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
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
        ds = datasets.load_dataset(hf["name"], hf.get("config"), split=hf.get("split", "train"),
                                   cache_dir=str(common.cache_dir("huggingface")))
    except Exception as e:  # noqa: BLE001  (network, unknown name, ...)
        raise DataError(f"cannot load the Hugging Face corpus {hf.get('name')!r}: {e}") from None
    col = hf.get("text_column", "text")
    if col not in ds.column_names:
        raise DataError(f"the Hugging Face corpus {hf['name']!r} has no column {col!r} "
                        f"(columns: {', '.join(ds.column_names)})")
    return ds


def _doc_rows(docs: list[dict]):
    """One row per document (the generator of Dataset.from_generator, which may call it once
    per shard of `docs`). Each entry's sha256 is not read here: as part of gen_kwargs it enters
    the builder's fingerprint, so a changed file is a new Arrow cache."""
    for d in docs:
        yield {"doc": d["doc"], "text": _read_text(Path(d["path"]))}


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
    return {"ids": [[stoi.get(w, UNK_ID) for w in toks[:max_len]] + [EOS_ID]
                    for toks in batch["tokens"]]}


def _documents(files: list[Path], ds, hf: dict | None, cache_root: Path):
    """The documents as a datasets.Dataset {doc, text}: the local files through
    Dataset.from_generator (Arrow under <cache_root>/books/), or the hub corpus' non-empty rows."""
    import datasets

    feats = datasets.Features({"doc": datasets.Value("int64"), "text": datasets.Value("string")})
    if ds is None:
        return datasets.Dataset.from_generator(
            _doc_rows, features=feats, cache_dir=str(cache_root / "books"),
            gen_kwargs={"docs": [{"doc": k, "path": str(f), "sha256": file_digests(f)["sha256"],
                                  "version": CACHE_VERSION} for k, f in enumerate(files)]})
    col = hf.get("text_column", "text")
    ds = ds.filter(lambda t: bool(t and t.strip()), input_columns=[col])
    return ds.map(lambda t, i: {"doc": i, "text": t}, input_columns=[col], with_indices=True,
                  remove_columns=ds.column_names, features=feats)


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


def load_corpus(data_dir: str | Path, paths: list[str] | None, hf: dict | None, fmt: str,
                vocab_size: int, max_len: int, cache: bool = True, verify: bool = True,
                num_proc: int | None = None) -> dict:
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
            "LNREPRO_DATA at a folder with books/")
    if files:
        verify_files("the book corpus", Path(data_dir).expanduser() / "books", files, verify,
                     complete=True)
    ds = _hf_dataset(hf) if hf else None
    with contextlib.ExitStack() as stack:
        root = common.cache_root()
        if not cache:  # everything in a folder of its own, removed after reading
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lnrepro_books_")))
        try:
            out = _parse(files, ds, hf, fmt, vocab_size, max_len, root, num_proc)
        except OSError as e:
            raise DataError(f"cannot write the book corpus cache under {root} ({e}); set "
                            "LNREPRO_CACHE to a writable folder") from None
    return {**out, "files": [str(f) for f in files]}


def _parse(files, ds, hf, fmt, vocab_size, max_len, root: Path, num_proc) -> dict:
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    docs = _documents(files, ds, hf, root)
    procs = _num_proc(num_proc, len(docs))
    sents = docs.map(
        _sentence_rows, batched=True, batch_size=1, num_proc=procs if procs > 1 else None,
        remove_columns=docs.column_names, fn_kwargs={"fmt": fmt, "version": CACHE_VERSION},
        features=datasets.Features({"doc": datasets.Value("int64"),
                                    "tokens": datasets.Sequence(datasets.Value("string"))}),
        desc="book sentences")
    if not len(sents):
        raise DataError(f"empty corpus: the {len(docs)} source(s) hold no sentences "
                        f"({', '.join(map(str, files[:3]))}{' ...' if len(files) > 3 else ''})")
    # rank_words in pyarrow: by count, ties by UTF-8 bytes (the order of Python's str)
    counts = pc.value_counts(sents.data.table.column("tokens").combine_chunks().flatten())
    top = pc.sort_indices(pa.RecordBatch.from_struct_array(counts),
                          [("counts", "descending"), ("values", "ascending")])
    words = counts.field("values").take(top[: max(0, vocab_size - len(SPECIALS))])
    vocab = list(SPECIALS) + words.to_pylist()
    enc = sents.map(
        _encode_rows, batched=True, batch_size=10_000, num_proc=procs if procs > 1 else None,
        input_columns=None, remove_columns=sents.column_names,
        fn_kwargs={"vocab": vocab, "max_len": max_len},
        features=datasets.Features({"ids": datasets.Sequence(datasets.Value("int32"))}),
        desc="book token ids")
    log.info("books corpus: %d documents, %d sentences (Arrow cache in %s)", len(docs),
             len(sents), Path(enc.cache_files[0]["filename"]).parent if enc.cache_files else "-")
    return {**_tensors(sents, enc, max_len), "vocab": vocab}


def triple_index(doc: torch.Tensor) -> torch.Tensor:
    """Indices i of the sentences whose neighbours i-1 and i+1 are in the same document."""
    if len(doc) < 3:
        return torch.empty(0, dtype=torch.int64)
    ok = (doc[1:-1] == doc[:-2]) & (doc[1:-1] == doc[2:])
    return torch.nonzero(ok).flatten() + 1


class BooksData:
    """Skip-thought triples in memory; the data interface of lnrepro.trainer.

    Training order: a fresh permutation of the training triples per epoch from (seed, epoch),
    so a resumed run replays the same batches. Split: "val" (held-out triples, loss).
    """

    def __init__(self, corpus: dict, batch_size: int, val_triples: int, eval_batch_size: int,
                 seed: int):
        self.batch_size = check_batch_size(batch_size)
        self.eval_batch_size = check_batch_size(eval_batch_size)
        self.seed = int(seed)
        self.ids, self.lengths = corpus["ids"].long(), corpus["lengths"]
        self.vocab = list(corpus["vocab"])
        self.vocab_size, self.vocab_hash = len(self.vocab), vocab_hash(self.vocab)
        self.max_len = self.ids.shape[1] - 1
        self.model_kwargs = {"vocab_size": self.vocab_size, "vocab_hash": self.vocab_hash,
                             "vocab": self.vocab}
        centres = triple_index(corpus["doc"])
        if len(centres) == 0:
            raise DataError("empty corpus: no document has three consecutive sentences, so there "
                            "is no (previous, current, next) triple to train on")
        if isinstance(val_triples, bool) or not isinstance(val_triples, int) or val_triples < 0:
            raise ConfigError(f"data.val_triples must be an integer >= 0, got {val_triples!r}")
        n_val = min(val_triples, len(centres) // 10)  # never more than a tenth of the corpus
        perm = torch.randperm(len(centres), generator=torch.Generator().manual_seed(0))
        self.val = centres[perm[:n_val]].sort().values
        self.train = centres[perm[n_val:]].sort().values
        if len(self.train) < self.batch_size:
            raise ConfigError(f"data.batch_size={self.batch_size} is larger than the "
                              f"{len(self.train)} training triples")
        self.steps_per_epoch = len(self.train) // self.batch_size
        self.splits: dict = {}
        if n_val:
            self.splits["val"] = self.val
        self.device = torch.device("cpu")

    def to(self, device) -> BooksData:
        self.device = torch.device(device)
        return self

    def _batch(self, centres: torch.Tensor) -> Triples:
        def rows(idx):
            n = int(self.lengths[idx].max())
            return self.ids[idx, :n].to(self.device)

        return Triples(rows(centres - 1), rows(centres), rows(centres + 1))

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Triples]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = self.train[torch.randperm(len(self.train), generator=g)]
        bs = self.batch_size
        for i in range(start, self.steps_per_epoch):
            yield self._batch(order[i * bs : (i + 1) * bs])

    def eval_batches(self, split: str):
        node = self.splits[split]
        for i in range(0, len(node), self.eval_batch_size):
            yield self._batch(node[i : i + self.eval_batch_size])


def books(
    data_dir: str,
    paths: list[str] | None = None,
    hf: dict | None = None,
    format: str = "auto",
    vocab_size: int = 20000,
    max_len: int = 30,
    batch_size: int = 64,
    val_triples: int = 2000,
    eval_batch_size: int = 256,
    cache: bool = True,
    num_proc: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> BooksData:
    """Skip-thought triples from local books or a hub corpus (see the module docstring).

    Args:
        paths: directories or globs (relative to data_dir, or absolute) of .txt/.txt.gz files.
        hf: {name, split, text_column, config} of a Hugging Face text corpus (instead of paths).
        format: auto | paragraphs | lines (how a file splits into sentences).
        vocab_size: words kept, the three specials included (Kiros et al.: 20,000).
        max_len: tokens kept per sentence, <eos> not counted (Kiros et al.: 30).
        val_triples: held-out triples for the validation loss (at most a tenth of the corpus).
        cache: read / write the Arrow cache of the parsed corpus (false: a temporary folder).
        num_proc: processes of the `Dataset.map` passes (null: the available cores, at most
            8; never more than the documents). The result does not depend on it.
        verify: check the known files against the recorded checksums (false: a warning).
    """
    check_batch_size(batch_size)
    for name, v in (("vocab_size", vocab_size), ("max_len", max_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"data.{name} must be a positive integer, got {v!r}")
    if vocab_size <= len(SPECIALS):
        raise ConfigError(f"data.vocab_size must be > {len(SPECIALS)} (the specials), got {vocab_size}")
    if not paths and not hf:
        raise ConfigError("set data.paths (folders or globs of text files) or data.hf")
    if isinstance(paths, str):
        paths = [paths]
    check_flag(verify)
    corpus = load_corpus(data_dir, paths, hf, format, vocab_size, max_len, cache, verify,
                         num_proc)
    return BooksData(corpus, batch_size, val_triples, eval_batch_size, seed).to(device)
