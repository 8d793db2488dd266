"""Cloze question answering for the attentive reader (the paper's Sec. 6.2): two sources behind
one loader, batched by document length for per-step batch norm.

Sources (`source`):
  * "cnn": DeepMind's CNN questions (Hermann et al. 2015) under <data_dir>/cnn/questions/
    (lnrepro.data.cloze_cnn), optionally cut to the top-k sentences ("top4", Cooijmans et al.
    2016, App. C);
  * "books": the Gutenberg stand-in built from <data_dir>/books/ (lnrepro.data.cloze_books,
    construction in lnrepro.data.cloze_text).
Both go through HF `datasets` into Arrow files under $LNREPRO_CACHE (never the data folder) and
give rows {split, doc, query, answer, candidates} of tokens; this module encodes them.

CPU-scale options: `doc_window` reads only the tokens near entity mentions and the placeholder
(shorter contexts, the same questions, candidates and floors); `repermute` draws fresh entity
labels for a training question each time it is used (evaluation keeps the corpus' labels).

Vocabulary: <pad> (0), <unk> (1), @placeholder (2), @entity0 .. @entity{n_entities-1} (3 ..),
then the most frequent words of the training documents and queries (ties alphabetical) up to
`vocab_size` entries in all. Entity k is output class k.

Batches (`ReaderBatch`): time-first (T, B) token ids padded with <pad> and their masks, the
candidates as a (B, n_entities) bool mask, the answers (B,). Training order per epoch from
(seed, epoch), resumable: a permutation, cut into pools of `bucket_batches` batches, each pool
sorted by document length and cut into batches, the batches shuffled. So a batch holds documents
of similar length and each step of it has nearly all its cases live; the model's per-step BN
uses only the live ones, and a step with fewer than `model.bn_min_live` takes the statistics
of the last step that had enough (lnrepro.nn.rnn.SeqBatchNorm). Evaluation batches: the split
sorted by document length.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from lnrepro.checks import positive_int
from lnrepro.data.common import check_batch_size, share
from lnrepro.data.verify import check_flag
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PAD, UNK, PLACEHOLDER = "<pad>", "<unk>", "@placeholder"
PAD_ID, UNK_ID, ENTITY0 = 0, 1, 3
SOURCES = ("books", "cnn")


class ReaderBatch(NamedTuple):
    doc: torch.Tensor  # (T, B) token ids
    doc_mask: torch.Tensor  # (T, B) bool, True on live steps
    query: torch.Tensor  # (Tq, B)
    query_mask: torch.Tensor  # (Tq, B)
    candidates: torch.Tensor  # (B, n_entities) bool
    answer: torch.Tensor  # (B,) entity index


@dataclass
class Split:
    """One split in memory: flat token ids with offsets, answers and candidate masks."""

    doc: torch.Tensor
    doc_off: torch.Tensor
    query: torch.Tensor
    query_off: torch.Tensor
    answer: torch.Tensor
    candidates: torch.Tensor

    def __len__(self) -> int:
        return len(self.answer)

    @property
    def doc_len(self) -> torch.Tensor:
        return self.doc_off.diff()

    @property
    def query_len(self) -> torch.Tensor:
        return self.query_off.diff()

    def to(self, device) -> Split:
        return Split(
            *(
                t.to(device)
                for t in (
                    self.doc,
                    self.doc_off,
                    self.query,
                    self.query_off,
                    self.answer,
                    self.candidates,
                )
            )
        )

    def batch(self, idx: torch.Tensor, perm: torch.Tensor | None = None) -> ReaderBatch:
        """The questions idx, padded; `perm` (B, n_entities): relabel entity k of row b as
        perm[b, k] (tokens, candidates and answer alike)."""
        idx = idx.to(self.answer.device)
        doc, dm = pad(self.doc, self.doc_off, idx)
        query, qm = pad(self.query, self.query_off, idx)
        cands, answer = self.candidates[idx], self.answer[idx]
        if perm is not None:
            perm = perm.to(doc.device)
            doc, query = relabel(doc, perm), relabel(query, perm)
            cands = torch.zeros_like(cands).scatter_(1, perm, cands)
            answer = perm.gather(1, answer.unsqueeze(1)).squeeze(1)
        return ReaderBatch(doc, dm, query, qm, cands, answer)


def pad(flat: torch.Tensor, off: torch.Tensor, idx: torch.Tensor):
    """Rows idx of a flat ragged array as a time-first (T, B) tensor padded with <pad>, mask."""
    start, length = off[idx], off[idx + 1] - off[idx]
    steps = torch.arange(int(length.max()), device=flat.device).unsqueeze(1)
    mask = steps < length
    pos = (start + steps).clamp(max=len(flat) - 1)
    return torch.where(mask, flat[pos], PAD_ID), mask


def relabel(tokens: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """(T, B) token ids with entity k of column b replaced by entity perm[b, k]."""
    k = tokens - ENTITY0
    is_entity = (k >= 0) & (k < perm.shape[1])
    new = perm.gather(1, k.clamp(0, perm.shape[1] - 1).t()).t() + ENTITY0
    return torch.where(is_entity, new, tokens)


# ---- encoding ---------------------------------------------------------------------------------
def build_vocab(table, n_entities: int, vocab_size: int) -> list[str]:
    """Specials, the entity tokens, then the most frequent training words (ties alphabetical)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    specials = [PAD, UNK, PLACEHOLDER] + [f"@entity{k}" for k in range(n_entities)]
    if vocab_size < len(specials):
        raise ConfigError(
            f"data.vocab_size={vocab_size} is smaller than the {len(specials)} "
            "specials and entity tokens"
        )
    train = table.filter(pc.equal(table["split"], "train"))
    words = pa.concat_arrays([train[c].combine_chunks().flatten() for c in ("doc", "query")])
    counts = pc.value_counts(words).to_pylist()
    special = set(specials)
    ranked = sorted(
        (
            (c["counts"], c["values"])
            for c in counts
            if c["values"] not in special and not c["values"].startswith("@entity")
        ),
        key=lambda cv: (-cv[0], cv[1]),
    )
    return specials + [w for _, w in ranked[: vocab_size - len(specials)]]


def _ids(col, vocab_arr):
    import pyarrow.compute as pc

    lists = col.combine_chunks()
    ids = pc.fill_null(pc.index_in(lists.flatten(), value_set=vocab_arr), UNK_ID)
    off = torch.from_numpy(lists.offsets.to_numpy().astype("int64"))
    off = off - off[0]
    return torch.from_numpy(ids.to_numpy(zero_copy_only=False).astype("int64")), off


def _entity_index(arr, n_entities: int, what: str) -> torch.Tensor:
    import pyarrow.compute as pc

    k = torch.tensor(
        pc.cast(pc.utf8_slice_codeunits(arr, 7), "int64").to_numpy(zero_copy_only=False)
    )
    if len(k) and int(k.max()) >= n_entities:
        raise DataError(
            f"a {what} is @entity{int(k.max())}, beyond data.n_entities="
            f"{n_entities}: raise data.n_entities"
        )
    return k


GAP = "..."  # joins the pieces of a document cut to its entity windows


def entity_windows(doc: list[str], width: int) -> list[str]:
    """The tokens within `width` of an @entity mention or the @placeholder (every mention kept,
    so the candidates, their counts and their order are those of the whole text), gaps marked
    by "..."."""
    keep = [False] * len(doc)
    for i, t in enumerate(doc):
        if t.startswith("@"):
            for j in range(max(0, i - width), min(len(doc), i + width + 1)):
                keep[j] = True
    out: list[str] = []
    for i, t in enumerate(doc):
        if keep[i]:
            if i and not keep[i - 1] and out:
                out.append(GAP)
            out.append(t)
    return out


def window_docs(table, width: int | None):
    """The table with every document and query cut to its entity windows (`width` None:
    unchanged)."""
    if width is None:
        return table
    import pyarrow as pa

    for col in ("doc", "query"):
        cut = [entity_windows(d, width) for d in table[col].to_pylist()]
        table = table.set_column(table.column_names.index(col), col, pa.array(cut))
    return table


def encode(
    table, vocab: list[str], n_entities: int, exclude_query_entities: bool = False
) -> dict[str, Split]:
    """Arrow rows -> one Split per split name present; with `exclude_query_entities`, an entity
    that the query names is no candidate (the answer always stays one)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    vocab_arr = pa.array(vocab)
    out = {}
    for name in ("train", "val", "test"):
        t = table.filter(pc.equal(table["split"], name))
        if not t.num_rows:
            continue
        doc, doc_off = _ids(t["doc"], vocab_arr)
        query, query_off = _ids(t["query"], vocab_arr)
        answer = _entity_index(t["answer"].combine_chunks(), n_entities, "answer")
        cl = t["candidates"].combine_chunks()
        ck = _entity_index(cl.flatten(), n_entities, "candidate")
        rows = torch.repeat_interleave(
            torch.arange(t.num_rows),
            torch.from_numpy(pc.list_value_length(cl).to_numpy().astype("int64")),
        )
        cands = torch.zeros(t.num_rows, n_entities, dtype=torch.bool)
        cands[rows, ck] = True
        if not bool(cands[torch.arange(t.num_rows), answer].all()):
            raise DataError(f"the {name} split has questions whose answer is not a candidate")
        if exclude_query_entities:
            qrow = torch.repeat_interleave(torch.arange(t.num_rows), query_off.diff())
            ent = query - ENTITY0
            hit = (ent >= 0) & (ent < n_entities)
            named = torch.zeros_like(cands)
            named[qrow[hit], ent[hit]] = True
            named[torch.arange(t.num_rows), answer] = False
            cands &= ~named
        out[name] = Split(doc, doc_off, query, query_off, answer, cands)
    return out


# ---- batches ----------------------------------------------------------------------------------
class ClozeData:
    """The data interface of lnrepro.trainer for the reader (see the module docstring)."""

    def __init__(
        self,
        splits: dict[str, Split],
        vocab: list[str],
        n_entities: int,
        batch_size: int,
        eval_batch_size: int,
        bucket_batches: int,
        seed: int,
        repermute: bool = False,
    ):
        if "train" not in splits:
            raise DataError("the cloze corpus has no training questions")
        self.batch_size = check_batch_size(batch_size)
        self.eval_batch_size = check_batch_size(eval_batch_size)
        positive_int(bucket_batches, "data.bucket_batches")
        self.bucket_batches, self.seed, self.repermute = bucket_batches, int(seed), repermute
        self.train = splits["train"]
        self.splits = {k: v for k, v in splits.items() if k != "train"}
        if len(self.train) < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the "
                f"{len(self.train)} training questions"
            )
        self.steps_per_epoch = len(self.train) // self.batch_size
        self.vocab, self.n_entities = vocab, n_entities
        vocab_hash = hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16]
        self.model_kwargs = {
            "vocab_size": len(vocab),
            "vocab_hash": vocab_hash,
            "n_entities": n_entities,
            "entity_offset": ENTITY0,
        }

    @staticmethod
    def shard(batch: ReaderBatch, rank: int, size: int) -> ReaderBatch:
        """Process `rank`'s questions of a batch: documents and queries are time-first (T, B),
        candidates and answers case-first (lnrepro.contracts.DataModule.shard)."""
        cases = share(len(batch.answer), rank, size)
        return ReaderBatch(
            batch.doc[:, cases],
            batch.doc_mask[:, cases],
            batch.query[:, cases],
            batch.query_mask[:, cases],
            batch.candidates[cases],
            batch.answer[cases],
        )

    def to(self, device) -> ClozeData:
        self.train = self.train.to(device)
        self.splits = {k: v.to(device) for k, v in self.splits.items()}
        return self

    def train_order(self, epoch: int) -> list[torch.Tensor]:
        """The batches (index tensors) of one epoch, bucketed by document length."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        bs, n = self.batch_size, self.steps_per_epoch * self.batch_size
        perm = torch.randperm(len(self.train), generator=g)[:n]
        lengths = self.train.doc_len.cpu()
        batches: list[torch.Tensor] = []
        for p in range(0, n, bs * self.bucket_batches):
            pool = perm[p : p + bs * self.bucket_batches]
            pool = pool[torch.argsort(lengths[pool], stable=True)]
            batches += list(pool.split(bs))
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[ReaderBatch]:
        order = self.train_order(epoch)
        for i in range(start, self.steps_per_epoch):
            perm = None
            if self.repermute:  # a fresh entity relabelling per question and epoch
                g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 100_003 + i)
                perm = torch.rand(len(order[i]), self.n_entities, generator=g).argsort(1)
            yield self.train.batch(order[i], perm)

    def eval_batches(self, split: str) -> Iterator[ReaderBatch]:
        s = self.splits[split] if split != "train" else self.train
        order = torch.argsort(s.doc_len.cpu(), stable=True)
        for i in range(0, len(order), self.eval_batch_size):
            yield s.batch(order[i : i + self.eval_batch_size])


def load_table(
    source: str, data_dir: str, books: dict | None, build: dict, top_k: int | None, verify: bool
):
    """The corpus' Arrow table (rows {split, doc, query, answer, candidates, ...})."""
    if source == "books":
        from lnrepro.data import cloze_books

        return cloze_books.build(
            data_dir, books or {}, {**build, "top_k": top_k}, verify
        ).data.table
    from lnrepro.data import cloze_cnn

    return cloze_cnn.build(data_dir, top_k).data.table


def cloze(
    data_dir: str,
    source: str = "books",
    books: dict | None = None,
    build: dict | None = None,
    top_k: int | None = 4,
    doc_window: int | None = None,
    n_entities: int = 50,
    vocab_size: int = 10000,
    batch_size: int = 64,
    eval_batch_size: int = 256,
    bucket_batches: int = 20,
    repermute: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    verify: bool = True,
    exclude_query_entities: bool = False,
) -> ClozeData:
    """The reader's data (see the module docstring).

    Args:
        source: "books" (the Gutenberg stand-in) | "cnn" (DeepMind's CNN question files).
        books: the stand-in's books: {train, val, test: [names under books/], drama: [...],
            excluded: {name: reason}}.
        build: the stand-in's construction settings (lnrepro.data.cloze_text): window,
            min_context, min_candidates, min_name_count, max_lower_ratio, max_sentence_tokens,
            build_seed.
        top_k: context sentences kept ("top4"); null: the whole CNN article (the stand-in
            always needs it).
        doc_window: null, or read only the tokens within this many of an entity mention or
            the placeholder, in documents and queries (the CPU scale's shorter contexts: the
            same questions, candidates and floors).
        n_entities: entity classes (@entity0..); the stand-in's permutation range.
        vocab_size: vocabulary entries in all (specials and entity tokens included).
        bucket_batches: batches per length-sorted pool of the training order.
        repermute: relabel the entities of every training question with a fresh permutation
            each time it is drawn (seeded by the run's seed, epoch and batch), so that a reader
            cannot memorise a question's fixed labels over epochs; evaluation keeps the
            corpus' labels.
        exclude_query_entities: an entity the query names is no candidate. In the stand-in
            the answer never occurs in its query (every mention is replaced), so this removes
            only wrong candidates, and the floors are computed over the same candidates.
    """
    _check_options(source, top_k, doc_window, repermute, verify, exclude_query_entities)
    settings = {**(build or {}), "n_entities": n_entities}
    table = window_docs(load_table(source, data_dir, books, settings, top_k, verify), doc_window)
    vocab = build_vocab(table, n_entities, vocab_size)
    splits = encode(table, vocab, n_entities, exclude_query_entities)
    data = ClozeData(
        splits, vocab, n_entities, batch_size, eval_batch_size, bucket_batches, seed, repermute
    )
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in {"train": data.train, **data.splits}.items())
    log.info("cloze (%s): %s questions; vocabulary %d", source, sizes, len(vocab))
    return data.to(device)


def _check_options(source, top_k, doc_window, repermute, verify, exclude_query_entities) -> None:
    """One ConfigError line for a bad option of `cloze`."""
    if source not in SOURCES:
        raise ConfigError(f"data.source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "books" and not top_k:
        raise ConfigError("data.top_k must be a positive integer for the books stand-in")
    check_flag(verify)
    if doc_window is not None and (
        isinstance(doc_window, bool) or not isinstance(doc_window, int) or doc_window < 0
    ):
        raise ConfigError(f"data.doc_window must be null or an integer >= 0, got {doc_window!r}")
    if not isinstance(repermute, bool):
        raise ConfigError(f"data.repermute must be true or false, got {repermute!r}")
    if not isinstance(exclude_query_entities, bool):
        raise ConfigError(
            f"data.exclude_query_entities must be true or false, got {exclude_query_entities!r}"
        )


def synthetic_batch(cfg: dict, batch_size: int, generator: torch.Generator, length=None):
    """A batch of random questions as `cloze` yields it, without the corpus
    (lnrepro.contracts.SyntheticBatch). ASSUMPTIONS, from the CNN corpus (Hermann et al. 2015,
    Table 1: 762 document tokens, 12.5 query tokens, 26.4 entities on average): documents of
    `length` tokens (default: 762, or `top_k` x 30 for the top-k sentences; a length-sorted
    batch, so 90-100 % of that), 13-token queries, 26 candidates each mentioned in the doc."""
    from lnrepro.contracts import SyntheticBatch

    g, B, E = generator, batch_size, cfg.get("n_entities", 50)
    T = length or (cfg["top_k"] * 30 if cfg.get("top_k") else 762)
    Tq, V, K = min(13, T), cfg.get("vocab_size", 10000), min(26, E)
    words = ENTITY0 + E
    doc = torch.randint(words, V, (T, B), generator=g)
    n = torch.randint(max(1, T * 9 // 10), T + 1, (B,), generator=g)
    n[0] = T
    doc_mask = torch.arange(T).unsqueeze(1) < n
    cands = torch.rand(B, E, generator=g).argsort(1)[:, :K]  # each row's entities
    for b in range(B):  # every candidate mentioned at a live step
        doc[torch.randint(0, int(n[b]), (K,), generator=g), b] = ENTITY0 + cands[b]
    query = torch.randint(words, V, (Tq, B), generator=g)
    query[torch.randint(0, Tq, (B,), generator=g), torch.arange(B)] = 2  # @placeholder
    candidates = torch.zeros(B, E, dtype=torch.bool).scatter_(1, cands, True)
    answer = cands[torch.arange(B), torch.randint(0, K, (B,), generator=g)]
    doc = doc.masked_fill(~doc_mask, PAD_ID)
    batch = ReaderBatch(doc, doc_mask, query, torch.ones_like(query, dtype=torch.bool),
                        candidates, answer)  # fmt: skip
    kwargs = {"vocab_size": V, "n_entities": E, "entity_offset": ENTITY0}
    return SyntheticBatch(batch, kwargs, None)
