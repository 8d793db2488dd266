"""DeepMind's CNN question files (Hermann et al. 2015): the corpus of the paper's Sec. 6.2.

Layout (as distributed, cnn.tgz): `<data_dir>/cnn/questions/{training,validation,test}/
<hash>.question`, each file: the article URL, a blank line, the context (one line, tokenised,
entities as @entityN), a blank line, the question (with one @placeholder), a blank line, the
answer (@entityN), a blank line, then one `@entityN:name` line per entity.

"top4" (Cooijmans et al. 2016, App. C, after the Attentive_reader preprocessing): the context is
cut into sentences at ". ! ?" tokens and only the `top_k` sentences that share most content words
with the question (lnrepro.data.cloze_text.top_k_context) are kept, in order. The candidates are
the entities of the whole article (Hermann et al.'s candidate set), so the answer is always one
of them even where top4 dropped its sentence (which caps accuracy: Cooijmans et al. report 57 %
at most on validation).
"""

from __future__ import annotations

from pathlib import Path

from lnrepro.data.cloze_text import top_k_context
from lnrepro.errors import DataError

SPLIT_DIRS = {"train": "training", "val": "validation", "test": "test"}
_ENDS = {".", "!", "?"}


def questions_dir(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / "cnn" / "questions"


def check_corpus(data_dir: str | Path) -> dict[str, list[Path]]:
    """The .question files of each split; one DataError line naming what is missing."""
    root = questions_dir(data_dir)
    files = {s: sorted((root / d).glob("*.question")) for s, d in SPLIT_DIRS.items()}
    missing = [f"{root / SPLIT_DIRS[s]}/*.question" for s, f in files.items() if not f]
    if missing:
        raise DataError(
            f"the CNN corpus (Hermann et al. 2015) is missing: no {', '.join(missing)}. Point "
            "LNREPRO_DATA at the folder that holds cnn/questions/{training,validation,test}/ "
            "(DeepMind Q&A, cnn.tgz), or run experiment=reader_cpu (the Gutenberg stand-in)"
        )
    return files


def parse_question(text: str, source: str = "<text>") -> dict:
    """One .question file -> {"doc", "query", "answer", "candidates", "names"}."""
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) < 7 or lines[1].strip() or lines[3].strip() or lines[5].strip():
        raise DataError(
            f"{source} is not a CNN .question file (URL, context, question, answer "
            "and @entity lines, separated by blank lines)"
        )
    doc, query, answer = lines[2].split(), lines[4].split(), lines[6].strip()
    names = dict(ln.split(":", 1) for ln in lines[8:] if ln.startswith("@entity") and ":" in ln)
    if "@placeholder" not in query or not answer.startswith("@entity"):
        raise DataError(
            f"{source}: the question has no @placeholder or the answer is not an "
            f"@entity ({answer!r})"
        )
    cands = list(dict.fromkeys(t for t in doc if t.startswith("@entity")))
    return {"doc": doc, "query": query, "answer": answer, "candidates": cands, "names": names}


def sentences(doc: list[str]) -> list[list[str]]:
    """The context cut after each . ! ? token."""
    out, cur = [], []
    for t in doc:
        cur.append(t)
        if t in _ENDS:
            out.append(cur)
            cur = []
    return out + ([cur] if cur else [])


def top_k(doc: list[str], query: list[str], k: int) -> list[str]:
    """The k sentences sharing most content words with the query, in reading order."""
    sents = sentences(doc)
    return [t for i in top_k_context(query, sents, k) for t in sents[i]]


def rows(files: list[tuple[str, str]], top: int | None):
    """Dataset rows {split, doc, query, answer, candidates} of (split, path) pairs (a generator
    for datasets.Dataset.from_generator)."""
    for split, path in files:
        q = parse_question(Path(path).read_text(encoding="utf-8", errors="replace"), path)
        doc = top_k(q["doc"], q["query"], top) if top else q["doc"]
        yield {
            "split": split,
            "doc": doc,
            "query": q["query"],
            "answer": q["answer"],
            "candidates": q["candidates"],
        }


def build(data_dir: str | Path, top: int | None):
    """The corpus as a datasets.Dataset (Dataset.from_generator, cached as Arrow under
    $LNREPRO_CACHE/huggingface/, keyed by the file list and `top`)."""
    import datasets

    from lnrepro.data.common import cache_dir

    files = check_corpus(data_dir)
    pairs = [(s, str(p)) for s, fs in files.items() for p in fs]
    return datasets.Dataset.from_generator(
        rows, gen_kwargs={"files": pairs, "top": top}, cache_dir=str(cache_dir("huggingface"))
    )
