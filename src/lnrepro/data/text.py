"""Text of the book corpora: sentence splitting, tokenising and vocabularies (skip-thoughts,
Sec. 6.3; the cloze stand-in of the reader, Sec. 6.2; the captions of order embeddings, Sec. 6.1).

Documents -> sentences (`document_sentences`, `format: auto | paragraphs | lines`):
"paragraphs": blank lines separate paragraphs, the lines of a paragraph are joined, and each
paragraph is split into sentences by `split_sentences` (a regex: after . ! ? plus closing
quotes/brackets, before whitespace and an upper-case letter, digit or opening quote; not after a
title such as "Mr." or a one-letter initial). "lines": one sentence per line, as the NLTK copy.
"auto": "paragraphs" when at least 5 % of the file's lines are blank, else "lines".

Tokens: `tokenize` = lower-case, then the regex `\\w+|[^\\w\\s]` (words and single punctuation
marks); the same function tokenises the SentEval sentences (lnrepro.eval.senteval), so the
encoder sees the same kind of text in training and evaluation.
Vocabulary: <pad> (id 0), <eos> (1), <unk> (2), then the `vocab_size - 3` most frequent
words of the corpus (all its sentences; ties broken alphabetically).
"""

from __future__ import annotations

import re
from collections import Counter

from lnrepro.errors import ConfigError

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
FORMATS = ("auto", "paragraphs", "lines")

_TOKEN = re.compile(r"\w+|[^\w\s]")
# a sentence ends after . ! ? (and closing quotes / brackets) before whitespace and a capital,
# a digit or an opening quote / bracket; not after a title (Mr. Holmes) or an initial (J. Smith)
_NOT_AFTER = "".join(
    rf"(?<!\b{a})"
    for a in (
        "Mr",
        "Mrs",
        "Ms",
        "Dr",
        "St",
        "Messrs",
        "Mme",
        "Prof",
        "Capt",
        "Col",
        "Gen",
        "Rev",
        "[A-Z]",
    )
)
_SENT_END = re.compile(
    _NOT_AFTER + r"([.!?]+[\"'\u2019\u201d)\]]*)\s+(?=[\"'\u2018\u201c(\[]*[A-Z0-9])"
)


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
