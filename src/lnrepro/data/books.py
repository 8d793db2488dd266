"""Skip-thought triples (the paper's Sec. 6.3): (previous, current, next) consecutive sentences
within a document of the book corpus (lnrepro.data.books_corpus parses and caches it).

Split: `val_triples` triples drawn with a fixed generator (seed 0, independent of the run seed)
are held out for the validation loss; the rest train. (SentEval is not data of this module: it
is an evaluation hook of the skip-thoughts task, lnrepro.tasks.skip_thoughts.)

Batches: `Triples(prev, cur, nxt)`, each a (B, max_len + 1) LongTensor of token ids padded
with <pad> (the sentence's <eos> included), cut to the longest sentence of the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from lnrepro.data.books_corpus import load_corpus
from lnrepro.data.common import check_batch_size, shard_cases, vocab_hash
from lnrepro.data.text import SPECIALS
from lnrepro.data.verify import check_flag
from lnrepro.errors import ConfigError, DataError


class Triples(NamedTuple):
    """A batch of (previous, current, next) sentences, each (B, L) ids padded with <pad>."""

    prev: torch.Tensor
    cur: torch.Tensor
    nxt: torch.Tensor


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

    def __init__(
        self, corpus: dict, batch_size: int, val_triples: int, eval_batch_size: int, seed: int
    ):
        self.batch_size = check_batch_size(batch_size)
        self.eval_batch_size = check_batch_size(eval_batch_size)
        self.seed = int(seed)
        self.ids, self.lengths = corpus["ids"].long(), corpus["lengths"]
        self.vocab = list(corpus["vocab"])
        self.vocab_size, self.vocab_hash = len(self.vocab), vocab_hash(self.vocab)
        self.max_len = self.ids.shape[1] - 1
        self.model_kwargs = {
            "vocab_size": self.vocab_size,
            "vocab_hash": self.vocab_hash,
            "vocab": self.vocab,
        }
        centres = triple_index(corpus["doc"])
        if len(centres) == 0:
            raise DataError(
                "empty corpus: no document has three consecutive sentences, so there "
                "is no (previous, current, next) triple to train on"
            )
        if isinstance(val_triples, bool) or not isinstance(val_triples, int) or val_triples < 0:
            raise ConfigError(f"data.val_triples must be an integer >= 0, got {val_triples!r}")
        n_val = min(val_triples, len(centres) // 10)  # never more than a tenth of the corpus
        perm = torch.randperm(len(centres), generator=torch.Generator().manual_seed(0))
        self.val = centres[perm[:n_val]].sort().values
        self.train = centres[perm[n_val:]].sort().values
        if len(self.train) < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the "
                f"{len(self.train)} training triples"
            )
        self.steps_per_epoch = len(self.train) // self.batch_size
        self.splits: dict = {}
        if n_val:
            self.splits["val"] = self.val
        self.device = torch.device("cpu")

    shard = staticmethod(shard_cases)  # (B, L) ids: the cases along dim 0

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
        raise ConfigError(
            f"data.vocab_size must be > {len(SPECIALS)} (the specials), got {vocab_size}"
        )
    if not paths and not hf:
        raise ConfigError("set data.paths (folders or globs of text files) or data.hf")
    if isinstance(paths, str):
        paths = [paths]
    check_flag(verify)
    corpus = load_corpus(data_dir, paths, hf, format, vocab_size, max_len, cache, verify, num_proc)
    return BooksData(corpus, batch_size, val_triples, eval_batch_size, seed).to(device)


def synthetic_batch(cfg: dict, batch_size: int, generator: torch.Generator, length=None):
    """A batch of random triples as `books` yields it, without the corpus
    (lnrepro.contracts.SyntheticBatch): sentences of random words ending with <eos>, padded
    with <pad>, the first of each row `length` (default `max_len` + 1) tokens long."""
    from lnrepro.contracts import SyntheticBatch
    from lnrepro.data.text import EOS_ID, PAD_ID

    B, L, V = batch_size, length or cfg.get("max_len", 30) + 1, cfg.get("vocab_size", 20000)

    def sentences() -> torch.Tensor:
        ids = torch.randint(len(SPECIALS), V, (B, L), generator=generator)
        n = torch.randint(max(1, L // 3), L + 1, (B,), generator=generator)
        n[0] = L
        ids[torch.arange(B), n - 1] = EOS_ID
        return ids.masked_fill(torch.arange(L) >= n[:, None], PAD_ID)

    return SyntheticBatch(Triples(sentences(), sentences(), sentences()), {"vocab_size": V}, None)
