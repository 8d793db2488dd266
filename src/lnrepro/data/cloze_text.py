"""Cloze questions from running text: the construction of the Gutenberg stand-in for the CNN
corpus of Hermann et al. 2015 (the paper's Sec. 6.2), pure functions on one book.

Steps, each a function below:
  * `book_sentences`: sentences of a book (lnrepro.data.text.document_sentences), tokenised
    with case kept (`\\w+|[^\\w\\s]`, underscores of italics dropped, `` and '' read as ");
    for drama, the speaker tags and bracketed stage directions removed first (`strip_drama`).
  * `character_names`: a capitalised token (upper-case first letter, then lower case, at least
    2 letters) that occurs at least `min_count` times NOT sentence-initial (first word of a
    sentence, or after an opening quote or bracket), whose lower-case form occurs less than
    `max_lower_ratio` times as often as its capitalised form (this drops "Law", "Congress",
    ...), and that is not on the stop list (titles, months, days, "I"-like words, ...).
  * `mentions`: a maximal run of consecutive name tokens is one mention ("Frank Churchill");
    its entity is the run's text.
  * `questions`: for each sentence with at least `min_context` preceding sentences and each
    entity mentioned in it: the query is the sentence with EVERY mention of that entity replaced
    by @placeholder; the context is the `top_k` of the `window` preceding sentences that share
    most content words (lower-cased, stop words and punctuation left out) with the query (ties:
    the nearer sentence), kept in reading order (Cooijmans et al.'s "top4" setting); the
    question is kept only when the answer occurs in the context and the context names at least
    `min_candidates` entities (the candidates).
  * `anonymise`: every entity of the question becomes @entityK, K from a fresh random
    permutation of range(n_entities) per question, as in the CNN corpus (Hermann et al. 2015,
    Sec. 3); words are lower-cased.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from lnrepro.data.text import document_sentences

PLACEHOLDER = "@placeholder"
_TOKEN = re.compile(r"\w+|[^\w\s]")
_OPENERS = {'"', "'", "`", "(", "[", "-", ":", ";"}
# Not character names although capitalised and rarely lower-case: titles and forms of address,
# months, days, religious and interjection words, pronoun-like words.
STOP_NAMES = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "miss",
        "sir",
        "madam",
        "madame",
        "monsieur",
        "mademoiselle",
        "mme",
        "mlle",
        "lady",
        "lord",
        "dr",
        "doctor",
        "professor",
        "prof",
        "captain",
        "capt",
        "colonel",
        "col",
        "general",
        "gen",
        "major",
        "lieutenant",
        "sergeant",
        "admiral",
        "prince",
        "princess",
        "count",
        "countess",
        "duke",
        "duchess",
        "king",
        "queen",
        "emperor",
        "empress",
        "baron",
        "baroness",
        "marquis",
        "tsar",
        "czar",
        "uncle",
        "aunt",
        "father",
        "mother",
        "mamma",
        "papa",
        "brother",
        "sister",
        "saint",
        "st",
        "rev",
        "reverend",
        "master",
        "mistress",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "christmas",
        "easter",
        "god",
        "lord",
        "heaven",
        "christ",
        "jesus",
        "providence",
        "oh",
        "ah",
        "ay",
        "o",
        "sire",
        "majesty",
        "highness",
        "excellency",
        "honour",
    ]
)
# Left out of the word overlap between query and context sentences (function words).
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "at",
        "by",
        "for",
        "with",
        "about",
        "against",
        "between",
        "into",
        "through",
        "during",
        "before",
        "after",
        "above",
        "below",
        "to",
        "from",
        "up",
        "down",
        "in",
        "out",
        "on",
        "off",
        "over",
        "under",
        "again",
        "further",
        "then",
        "once",
        "here",
        "there",
        "when",
        "where",
        "why",
        "how",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "no",
        "nor",
        "not",
        "only",
        "own",
        "same",
        "so",
        "than",
        "too",
        "very",
        "s",
        "t",
        "can",
        "will",
        "just",
        "don",
        "should",
        "now",
        "i",
        "me",
        "my",
        "myself",
        "we",
        "our",
        "ours",
        "you",
        "your",
        "he",
        "him",
        "his",
        "she",
        "her",
        "hers",
        "it",
        "its",
        "they",
        "them",
        "their",
        "what",
        "which",
        "who",
        "whom",
        "this",
        "that",
        "these",
        "those",
        "am",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "have",
        "has",
        "had",
        "having",
        "do",
        "does",
        "did",
        "doing",
        "would",
        "could",
        "ought",
        "as",
        "until",
        "while",
        "said",
        "says",
        "say",
        "upon",
        "one",
    ]
)


def tokenize_cased(sentence: str) -> list[str]:
    """Words and punctuation marks with their case: "Don't, _Sir_!" -> Don ' t , Sir !"""
    text = sentence.replace("``", '"').replace("''", '"').replace("_", " ")
    return _TOKEN.findall(text)


def strip_drama(text: str) -> str:
    """A play as prose: bracketed stage directions and speaker tags removed.

    Speaker tags are 1-3 capitalised words and a period that start a paragraph ("Ham. Ay,
    madam" in the Gutenberg copy), or, in a one-sentence-per-line copy, a line of their own
    ("Cask ."), or the end of a line ("... your Father Ham ."); a candidate counts as a tag when
    it starts a paragraph or stands alone at least 3 times in the file."""
    text = re.sub(r"\[[^\]]*\]", " ", text)
    lines = text.split("\n")
    blank = sum(1 for ln in lines if not ln.strip())
    if lines and blank >= 0.05 * len(lines):  # paragraphs: tag at the start of a paragraph
        lead = re.compile(r"^\s*((?:[A-Z][A-Za-z]*\.? ){0,2}[A-Z][A-Za-z]*)\.\s")
        tags = Counter(m.group(1) for ln in lines if (m := lead.match(ln)))
        keep = {t for t, n in tags.items() if n >= 3}
        return "\n".join(
            lead.sub("", ln) if (m := lead.match(ln)) and m.group(1) in keep else ln for ln in lines
        )
    alone = re.compile(r"^\s*((?:[A-Z][A-Za-z]* ){0,2}[A-Z][A-Za-z]*) \.\s*$")
    tags = Counter(m.group(1) for ln in lines if (m := alone.match(ln)))
    keep = sorted((t for t, n in tags.items() if n >= 3), key=len, reverse=True)
    if not keep:
        return text
    alt = "|".join(re.escape(t) for t in keep)
    out = []
    for ln in lines:
        if alone.match(ln) and alone.match(ln).group(1) in keep:
            continue
        ln = re.sub(rf"\s(?:{alt}) \.\s*$", " .", ln)  # a tag at the end: the sentence's end
        ln = re.sub(rf"^\s*(?:{alt}) \.\s", "", ln)
        out.append(ln)
    return "\n".join(out)


def book_sentences(text: str, drama: bool = False) -> list[list[str]]:
    """The tokenised sentences of a book (case kept), in reading order."""
    if drama:
        text = strip_drama(text)
    return [t for s in document_sentences(text, "auto") if (t := tokenize_cased(s))]


def _is_cap(tok: str) -> bool:
    return len(tok) >= 2 and tok.isalpha() and tok[0].isupper() and tok[1:].islower()


def _initial_flags(sentence: list[str]) -> list[bool]:
    """Whether each token is sentence-initial: the first word, or a word after an opener."""
    flags, seen_word = [], False
    for k, tok in enumerate(sentence):
        is_word = tok[0].isalnum()
        flags.append(is_word and (not seen_word or sentence[k - 1] in _OPENERS))
        seen_word = seen_word or is_word
    return flags


def character_names(
    sentences: list[list[str]], min_count: int = 5, max_lower_ratio: float = 0.1
) -> set[str]:
    """The book's character names by the heuristic of the module docstring."""
    mid, cap, low = Counter(), Counter(), Counter()
    for s in sentences:
        for tok, initial in zip(s, _initial_flags(s)):
            if _is_cap(tok):
                cap[tok] += 1
                if not initial:
                    mid[tok] += 1
            elif tok.islower():
                low[tok] += 1
    return {
        w
        for w, n in mid.items()
        if n >= min_count
        and w.lower() not in STOP_NAMES
        and low[w.lower()] < max_lower_ratio * cap[w]
    }


def mentions(sentence: list[str], names: set[str]) -> list[tuple[int, int, str]]:
    """(start, end, entity) of each maximal run of name tokens."""
    out, k = [], 0
    while k < len(sentence):
        if sentence[k] in names:
            j = k
            while j < len(sentence) and sentence[j] in names:
                j += 1
            out.append((k, j, " ".join(sentence[k:j])))
            k = j
        else:
            k += 1
    return out


@dataclass
class Sentence:
    """A tokenised sentence with its entity mentions and content words."""

    tokens: list[str]
    spans: list[tuple[int, int, str]]

    @property
    def entities(self) -> list[str]:
        return list(dict.fromkeys(e for _, _, e in self.spans))

    def replaced(self, entity: str) -> list[str]:
        """The tokens with every mention of `entity` replaced by one @placeholder."""
        out, k = [], 0
        for a, b, e in self.spans:
            if e == entity:
                out += self.tokens[k:a] + [PLACEHOLDER]
                k = b
        return out + self.tokens[k:]


def content_words(tokens: list[str]) -> set[str]:
    """Lower-cased words (and CNN's @entityN tokens) of a sentence, stop words left out."""
    return {
        w
        for t in tokens
        if (t[0].isalnum() or t.startswith("@entity")) and (w := t.lower()) not in STOP_WORDS
    }


def top_k_context(query: list[str], previous: list[list[str]], k: int) -> list[int]:
    """Indices (into `previous`, in reading order) of the k sentences sharing most content
    words with the query; ties go to the sentence nearer the query."""
    q = content_words(query)
    scored = sorted(range(len(previous)), key=lambda i: (-len(q & content_words(previous[i])), -i))
    return sorted(scored[:k])


def questions(
    sentences: list[list[str]],
    names: set[str],
    window: int = 20,
    top_k: int = 4,
    min_context: int = 4,
    min_candidates: int = 2,
    max_sentence_tokens: int | None = None,
) -> list[dict]:
    """Raw questions of one book: {"context": [sentence tokens], "query": tokens with
    @placeholder, "answer": entity, "sentence": index of the query sentence}."""
    sents = [Sentence(s, mentions(s, names)) for s in sentences]
    cap = max_sentence_tokens or float("inf")

    def too_long(j: int) -> bool:
        return len(sentences[j]) > cap

    out = []
    for i, s in enumerate(sents):
        if i < min_context or not s.spans or too_long(i):
            continue
        pool = [j for j in range(max(0, i - window), i) if not too_long(j)]
        for answer in s.entities:
            query = s.replaced(answer)
            picked = [pool[j] for j in top_k_context(query, [sentences[j] for j in pool], top_k)]
            cands = list(dict.fromkeys(e for j in picked for e in sents[j].entities))
            if answer not in cands or len(cands) < min_candidates:
                continue
            out.append(
                {
                    "context": [sents[j] for j in picked],
                    "query_sentence": s,
                    "answer": answer,
                    "sentence": i,
                }
            )
    return out


def anonymise(q: dict, n_entities: int, rng: np.random.Generator) -> dict | None:
    """The question in the corpus' form: lower-cased tokens, entities as @entityK with a fresh
    permutation of range(n_entities); None when it names more than n_entities entities."""
    order: list[str] = []
    for s in q["context"]:
        order += s.entities
    order += q["query_sentence"].entities
    order = list(dict.fromkeys(order))
    if len(order) > n_entities:
        return None
    perm = rng.permutation(n_entities)
    ids = {e: f"@entity{perm[k]}" for k, e in enumerate(order)}

    def render(s: Sentence, skip: str | None = None) -> list[str]:
        out, k = [], 0
        for a, b, e in s.spans:
            out += [t.lower() for t in s.tokens[k:a]]
            out.append(PLACEHOLDER if e == skip else ids[e])
            k = b
        return out + [t.lower() for t in s.tokens[k:]]

    doc = [t for s in q["context"] for t in render(s)]
    cands = list(dict.fromkeys(ids[e] for s in q["context"] for e in s.entities))
    return {
        "doc": doc,
        "query": render(q["query_sentence"], q["answer"]),
        "answer": ids[q["answer"]],
        "candidates": cands,
    }
