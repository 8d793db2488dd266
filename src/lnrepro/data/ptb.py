"""Mikolov's Penn Treebank at word or character level, held in memory as token streams
(the paper's language-modelling experiments).

Files (Mikolov's RNNLM `simple-examples.tgz`, folder `data/`), under `<data_dir>/ptb/`:
  word level: ptb.{train,valid,test}.txt; one sentence a line, 10k-word vocabulary with <unk>.
  char level: ptb.char.{train,valid,test}.txt (or .txt.gz): characters separated by spaces,
  "_" between words. A char file that is missing is derived from the word file of the same split
  by the rule that reproduces Mikolov's char files byte for byte:
  T = "\\n".join("_".join(line.split()) for line in word_lines) + "\\n";
  char file = " ".join(T) + " ".
Before use, the files are checked against the recorded checksums of Mikolov's files
(lnrepro.data.verify): a truncated or altered file is one clear error, unless `verify=False`.
Both levels append an end-of-line symbol <eos> to every line; at char level it makes the 50th
symbol (49 characters + end of line).

The vocabulary is the sorted set of training symbols; a validation or test symbol outside it is a
DataError (Mikolov's files have none: rare words are <unk> already).

Optional source `hub` (`source: hub`, `hub_id` in the data config): the same splits through
`datasets.load_dataset(hub_id)` (cached by that library under $LNREPRO_CACHE/huggingface/), one
Mikolov line per row in `hub_column` (splits train / validation / test), read by the same rules
as the word files (the char level derived from the words). The default id, `ptb_text_only`, is
UNVERIFIED: written on machines without network; a hub copy is not checked against the recorded
checksums (the vocabulary check below still applies). Without network, one DataError line.

Batching as Zaremba et al. (2014): each split is cut into B contiguous streams
(`tokens[: B * L].view(B, L)`), read in segments of `bptt` steps; targets are the inputs shifted
by one. Segments are TIME-FIRST (T, B). The task carries the recurrent state from one segment to
the next of the same stream (truncated BPTT) and resets it where `first` is set.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from lnrepro.checks import positive_int
from lnrepro.data import common
from lnrepro.data.common import vocab_hash
from lnrepro.data.verify import verify_files
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EOS = "<eos>"
LEVELS = ("word", "char")
# the trainer's split names -> Mikolov's file names
FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
SOURCES = ("local", "hub")
# the trainer's split names -> the hub dataset's
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}


class Segment(NamedTuple):
    """One truncated-BPTT segment of B streams: x, y (T, B) token ids, y = x shifted by one."""

    x: torch.Tensor
    y: torch.Tensor
    first: bool  # the first segment of its pass over the streams: start from a zero state


def _positive_int(name: str, value) -> int:
    return positive_int(value, f"data.{name}")


def _missing_message(ptb: Path, level: str, missing: list[str]) -> str:
    char = (
        " The character level reads ptb.char.{train,valid,test}.txt (or .txt.gz) and derives "
        "any that is missing from the word file of the same split."
        if level == "char"
        else ""
    )
    return (
        f"Penn Treebank not found: {', '.join(missing)} missing in {ptb}/.{char} The files come "
        "in Mikolov's simple-examples.tgz (folder data/; RNNLM toolkit, "
        "www.fit.vutbr.cz/~imikolov/rnnlm/): copy ptb.train.txt, ptb.valid.txt and ptb.test.txt "
        f"(and the ptb.char.* files) to {ptb}/, or point LNREPRO_DATA at a folder that has ptb/"
    )


def _read(path: Path) -> str:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); corrupt file?") from None
    if not text.strip():
        raise DataError(f"{path} is empty")
    return text


def _lines(text: str) -> list[str]:
    """Lines split at "\\n" only (str.splitlines would also split at \\x1c, \\x85, ...)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def word_symbols(text: str) -> list[str]:
    """Word-level symbols: each line's words, then <eos>."""
    out: list[str] = []
    for line in _lines(text):
        out += line.split()
        out.append(EOS)
    return out


def char_symbols_from_words(text: str) -> list[str]:
    """Char-level symbols derived from word-level text: each line's words joined by "_", one
    symbol per character, then <eos> (what ptb.char.* holds, read by `char_symbols`)."""
    out: list[str] = []
    for line in _lines(text):
        out += "_".join(line.split())
        out.append(EOS)
    return out


def char_symbols(text: str, path: Path) -> list[str]:
    """Char-level symbols of a ptb.char.* file: space-separated characters, <eos> per line."""
    out: list[str] = []
    # " ".join(T) + " " leaves one space after the final newline: not a line of its own
    for n, line in enumerate(_lines(text.rstrip(" ")), 1):
        chars = line.split()
        long = next((c for c in chars if len(c) != 1), None)
        if long is not None:
            raise DataError(
                f"{path} line {n}: token {long[:20]!r} is not one character; is this a "
                "word-level file?"
            )
        out += chars
        out.append(EOS)
    return out


def load_ptb_symbols(data_dir: str | Path, level: str, verify: bool = True) -> dict[str, list[str]]:
    """Symbols of each split {"train", "val", "test"} at `level` ("word" | "char"), from files
    that match the recorded checksums (`verify=False`: any copy, with a warning)."""
    if level not in LEVELS:
        raise ConfigError(f"data.level must be one of {', '.join(LEVELS)}, got {level!r}")
    ptb = Path(data_dir).expanduser() / "ptb"
    sources, missing = {}, []
    for split, name in FILE_SPLITS.items():
        word = ptb / f"ptb.{name}.txt"
        found = None
        if level == "char":
            found = next(
                (
                    p
                    for p in (ptb / f"ptb.char.{name}.txt", ptb / f"ptb.char.{name}.txt.gz")
                    if p.exists()
                ),
                None,
            )
        if found is None and word.exists():
            found = word
        if found is None:
            char = f"ptb.char.{name}.txt[.gz] (or {word.name})"
            missing.append(word.name if level == "word" else char)
        sources[split] = found
    if missing:
        raise DataError(_missing_message(ptb, level, missing))
    verify_files("Penn Treebank", ptb, sources.values(), verify)
    out = {}
    for split, path in sources.items():
        text = _read(path)
        if level == "word":
            out[split] = word_symbols(text)
        elif path.name.startswith("ptb.char."):
            out[split] = char_symbols(text, path)
        else:
            log.info("%s: no ptb.char file, deriving the characters from %s", split, path.name)
            out[split] = char_symbols_from_words(text)
    return out


def load_hub_symbols(
    hub_id: str, level: str, hub_config: str | None = None, hub_column: str = "sentence"
) -> dict[str, list[str]]:
    """Symbols of each split from a Hugging Face Hub copy of PTB (one line per row), by the
    rules of the word files (`word_symbols`, `char_symbols_from_words`)."""
    if level not in LEVELS:
        raise ConfigError(f"data.level must be one of {', '.join(LEVELS)}, got {level!r}")
    if not hub_id or not isinstance(hub_id, str):
        raise ConfigError(f"data.source=hub needs data.hub_id (a Hub dataset id), got {hub_id!r}")
    try:
        import datasets
    except ImportError as e:
        raise DataError(f"data.source=hub needs the `datasets` package ({e})") from None
    try:
        dd = datasets.load_dataset(
            hub_id, hub_config, cache_dir=str(common.cache_dir("huggingface"))
        )
    except Exception as e:  # noqa: BLE001  (no network, unknown id, ...)
        why = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"cannot load the Penn Treebank from the Hugging Face Hub id {hub_id!r} "
            f"(data.source=hub; {type(e).__name__}: {why}); without network use "
            "data.source=local and the files under <data_dir>/ptb/"
        ) from None
    out = {}
    for split, name in HUB_SPLITS.items():
        if name not in dd:
            raise DataError(
                f"the Hub dataset {hub_id!r} has no {name!r} split (splits: {', '.join(dd)})"
            )
        if hub_column not in dd[name].column_names:
            raise DataError(
                f"the Hub dataset {hub_id!r} has no column {hub_column!r} "
                f"(columns: {', '.join(dd[name].column_names)}); set data.hub_column"
            )
        text = "".join(f"{line}\n" for line in dd[name][hub_column])
        if not text.strip():
            raise DataError(f"the {name} split of the Hub dataset {hub_id!r} is empty")
        out[split] = word_symbols(text) if level == "word" else char_symbols_from_words(text)
    return out


def encode(symbols: list[str], stoi: dict[str, int], where: str) -> torch.Tensor:
    try:
        return torch.tensor([stoi[s] for s in symbols], dtype=torch.long)
    except KeyError:
        unknown = sorted({s for s in symbols if s not in stoi})
        shown = ", ".join(repr(s) for s in unknown[:10])
        raise DataError(
            f"{where} holds {len(unknown)} symbol(s) not in the training vocabulary ({shown}); "
            "Mikolov's PTB files have none (rare words are <unk>): wrong or modified files?"
        ) from None


def _streams(tokens: torch.Tensor, batch: int) -> torch.Tensor:
    """(N,) -> (L, B): B contiguous streams of L = N // B tokens, stream b in column b."""
    length = len(tokens) // batch
    return tokens[: batch * length].view(batch, length).t().contiguous()


class TokenStreams:
    """Token-id streams of each split, sliced into truncated-BPTT segments.

    Every training epoch reads the B training streams in the same order, segment by segment
    (Zaremba et al. 2014; Cooijmans et al. crop at a random offset each epoch instead), so
    `train_batches(epoch, start)` is the same for every epoch and a resumed run replays exactly.
    The last `(L - 1) % bptt` training tokens of each stream are left out so that every step has
    the same length; evaluation scores every token of its streams, the last segment possibly
    shorter.

    Attributes:
        splits: evaluation split -> (L, B_eval) streams ("val", "test").
        vocab: the symbols; token id i is vocab[i].
        vocab_size, vocab_hash: len(vocab) and `vocab_hash(vocab)`.
        model_kwargs: what the model must know of the data (vocabulary size, and the hash that a
            resumed run checks against its checkpoint).
        steps_per_epoch: training segments per epoch.
    """

    def __init__(
        self,
        tokens: dict[str, torch.Tensor],
        vocab: list[str],
        batch_size: int,
        bptt: int,
        eval_batch_size: int = 10,
        eval_tokens: int | dict | None = None,
    ):
        self.batch_size = _positive_int("batch_size", batch_size)
        self.bptt = _positive_int("bptt", bptt)
        self.eval_batch_size = _positive_int("eval_batch_size", eval_batch_size)
        self.vocab, self.vocab_size, self.vocab_hash = vocab, len(vocab), vocab_hash(vocab)
        self.model_kwargs = {"vocab_size": self.vocab_size, "vocab_hash": self.vocab_hash}
        self.train = _streams(tokens["train"], self.batch_size)  # (L, B)
        if len(self.train) < self.bptt + 1:
            raise ConfigError(
                f"the training text ({len(tokens['train'])} tokens) is too short for "
                f"data.batch_size={self.batch_size} streams of data.bptt={self.bptt} + 1 tokens"
            )
        self.steps_per_epoch = (len(self.train) - 1) // self.bptt
        if isinstance(eval_tokens, dict) and set(eval_tokens) - {"val", "test"}:
            raise ConfigError(f"data.eval_tokens names unknown splits: {sorted(eval_tokens)}")
        self.splits = {}
        for split in ("val", "test"):
            cap = eval_tokens.get(split) if isinstance(eval_tokens, dict) else eval_tokens
            if cap is not None:
                _positive_int("eval_tokens", cap)
            streams = _streams(tokens[split][:cap], self.eval_batch_size)
            if len(streams) < 2:
                raise ConfigError(
                    f"the {split} text ({len(tokens[split][:cap])} tokens, data.eval_tokens="
                    f"{cap}) is too short for data.eval_batch_size={self.eval_batch_size} streams"
                )
            self.splits[split] = streams

    @staticmethod
    def shard(seg: Segment, rank: int, size: int) -> Segment:
        """Process `rank`'s streams of a (T, B) segment (lnrepro.contracts.DataModule.shard):
        each process carries the hidden state of its own streams from segment to segment."""
        streams = common.share(seg.x.shape[1], rank, size)
        return Segment(seg.x[:, streams], seg.y[:, streams], seg.first)

    def to(self, device) -> TokenStreams:
        self.train = self.train.to(device)
        self.splits = {k: v.to(device) for k, v in self.splits.items()}
        return self

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Segment]:
        """Segments `start, start+1, ...` of training epoch `epoch` (every epoch alike)."""
        T = self.bptt
        for i in range(start, self.steps_per_epoch):
            a = i * T
            yield Segment(self.train[a : a + T], self.train[a + 1 : a + T + 1], i == 0)

    def eval_batches(self, split: str) -> Iterator[Segment]:
        """All segments of an evaluation split, in order; y covers every token after the first."""
        streams = self.splits[split]  # (L, B_eval)
        n = len(streams) - 1
        for a in range(0, n, self.bptt):
            b = min(a + self.bptt, n)
            yield Segment(streams[a:b], streams[a + 1 : b + 1], a == 0)


def ptb(
    data_dir: str,
    level: str = "char",
    batch_size: int = 128,
    bptt: int = 100,
    eval_batch_size: int = 10,
    eval_tokens: int | dict | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    verify: bool = True,
    source: str = "local",
    hub_id: str | None = None,
    hub_config: str | None = None,
    hub_column: str = "sentence",
) -> TokenStreams:
    """Penn Treebank token streams (see the module docstring).

    Args:
        level: "word" (Zaremba et al.) or "char" (the paper's character-level models).
        batch_size: training streams B.
        bptt: steps per truncated-BPTT segment (training and evaluation).
        eval_batch_size: evaluation streams; each stream starts from a zero state, so fewer
            streams score slightly better (10 is the common choice).
        eval_tokens: evaluate only the first N tokens of each evaluation split (null: all), or
            a mapping split -> N | null; for CPU-scale runs.
        seed: unused: the order of the streams is fixed (part of the data interface).
        verify: check the files against the recorded checksums (false: a warning instead).
        source: "local" (the files under <data_dir>/ptb/) or "hub" (`datasets.load_dataset`).
        hub_id, hub_config, hub_column: the Hub dataset, its configuration and the column of
            its lines (source "hub" only; the default id is unverified).
    """
    for name, value in (
        ("batch_size", batch_size),
        ("bptt", bptt),
        ("eval_batch_size", eval_batch_size),
    ):
        _positive_int(name, value)  # before reading megabytes of text
    if source not in SOURCES:
        raise ConfigError(f"data.source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "hub":
        symbols = load_hub_symbols(hub_id, level, hub_config, hub_column)
    else:
        symbols = load_ptb_symbols(data_dir, level, verify)
    vocab = sorted(set(symbols["train"]))
    stoi = {s: i for i, s in enumerate(vocab)}
    tokens = {
        split: encode(syms, stoi, f"the PTB {FILE_SPLITS[split]} split ({level} level)")
        for split, syms in symbols.items()
    }
    return TokenStreams(tokens, vocab, batch_size, bptt, eval_batch_size, eval_tokens).to(device)


# Penn Treebank's training text as `ptb` reads it (<eos> included), and its vocabulary, counted
# with this module on Mikolov's files; only `synthetic_batch` uses them (no file read).
TRAIN_TOKENS = {"char": 5_017_482, "word": 929_589}
VOCAB_SIZE = {"char": 50, "word": 10_000}


def synthetic_batch(cfg: dict, batch_size: int, generator: torch.Generator, length=None):
    """A training segment of random token ids as `ptb` yields it (time-first, not the first
    segment of its pass: the task carries the state), without the files
    (lnrepro.contracts.SyntheticBatch); `length` replaces `bptt`."""
    from lnrepro.contracts import SyntheticBatch

    level = cfg.get("level", "char")
    if level not in LEVELS:
        raise ConfigError(f"data.level must be one of {', '.join(LEVELS)}, got {level!r}")
    bptt = cfg.get("bptt", 100)
    tokens = torch.randint(
        0, VOCAB_SIZE[level], ((length or bptt) + 1, batch_size), generator=generator
    )
    spe = (TRAIN_TOKENS[level] // batch_size - 1) // bptt
    return SyntheticBatch(
        Segment(tokens[:-1], tokens[1:], False), {"vocab_size": VOCAB_SIZE[level]}, spe
    )
