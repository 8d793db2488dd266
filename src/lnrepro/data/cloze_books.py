"""The Gutenberg stand-in for the CNN corpus, built through HF `datasets` and cached as Arrow.

The construction of one book is lnrepro.data.cloze_text (names, queries, top-4 contexts,
anonymisation); this module picks the books and their split from the config, checks them,
and runs the construction as `Dataset.from_generator` (one row per book) + `Dataset.map(batched=
True)` (one row per question), written to ONE Arrow file under $LNREPRO_CACHE/cloze/ (default
~/.cache/lnrepro), named by the sha256 of the books' content and every construction setting;
never in the data folder. A later run opens that file (`Dataset.from_file`) without reading the
books again (they are still checked against their recorded checksums).

Determinism: book k's questions draw their entity permutations from
numpy.random.default_rng([build_seed, k]) in reading order, so the corpus is a function of the
books, the settings and `build_seed` (not of the run's seed).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from lnrepro.data import common
from lnrepro.data.books_corpus import read_text
from lnrepro.data.cloze_text import anonymise, book_sentences, character_names, questions
from lnrepro.data.verify import file_digests, verify_files
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the construction changes: older cache files are then ignored
SPLITS = ("train", "val", "test")
COLUMNS = ("split", "book", "doc", "query", "answer", "candidates")


def book_files(data_dir: str | Path, books: dict) -> list[dict]:
    """[{name, path, split, drama}] for every book a split names (`books.<split>`: names
    relative to <data_dir>/books/, without .txt.gz). Every file of the folders must be in a
    split or in `books.excluded`, so a new file is never dropped silently; a missing one is one
    DataError line."""
    root = Path(data_dir).expanduser() / "books"
    named = {n: s for s in SPLITS for n in books.get(s) or []}
    excluded = set(books.get("excluded") or {})
    both = sorted(set(named) & excluded)
    if both:
        raise ConfigError(f"data.books: {', '.join(both)} both excluded and in a split")
    missing = [n for n in named if not (root / f"{n}.txt.gz").is_file()]
    if missing:
        raise DataError(
            f"the book corpus is incomplete: {len(missing)} book(s) missing under {root} "
            f"({', '.join(f'{n}.txt.gz' for n in missing[:3])}{' ...' if len(missing) > 3 else ''}); "
            "point LNREPRO_DATA at the folder holding books/ (see data/README of this project)"
        )
    folders = {str(Path(n).parent) for n in named}
    extra = sorted(
        str(p.relative_to(root))[: -len(".txt.gz")]
        for f in folders
        for p in (root / f).glob("*.txt.gz")
    )
    unlisted = [n for n in extra if n not in named and n not in excluded]
    if unlisted:
        raise ConfigError(
            f"data.books: {', '.join(unlisted)} in {root} is in no split and not "
            "excluded; list it in data.books.<split> or data.books.excluded"
        )
    drama = set(books.get("drama") or [])
    return [
        {"name": n, "path": str(root / f"{n}.txt.gz"), "split": named[n], "drama": n in drama}
        for n in sorted(named)
    ]


def _book_rows(files: list[dict]):
    """One dataset row per book (a generator for Dataset.from_generator)."""
    for k, f in enumerate(files):
        yield {
            "index": k,
            "book": f["name"],
            "split": f["split"],
            "drama": f["drama"],
            "text": read_text(Path(f["path"])),
        }


def _book_questions(batch: dict, settings: dict) -> dict:
    """Dataset.map(batched=True): the books of `batch` -> their questions (COLUMNS)."""
    out: dict[str, list] = {c: [] for c in COLUMNS}
    for k, book, split, drama, text in zip(
        batch["index"], batch["book"], batch["split"], batch["drama"], batch["text"]
    ):
        sents = book_sentences(text, drama)
        names = character_names(sents, settings["min_name_count"], settings["max_lower_ratio"])
        rng = np.random.default_rng([settings["build_seed"], k])
        for q in questions(
            sents,
            names,
            settings["window"],
            settings["top_k"],
            settings["min_context"],
            settings["min_candidates"],
            settings["max_sentence_tokens"],
        ):
            a = anonymise(q, settings["n_entities"], rng)
            if a is not None:
                for c in ("doc", "query", "answer", "candidates"):
                    out[c].append(a[c])
                out["split"].append(split)
                out["book"].append(book)
    return out


def cache_key(files: list[dict], settings: dict) -> str:
    h = hashlib.sha256(repr(sorted(settings.items())).encode())
    h.update(f"v{CACHE_VERSION}".encode())
    for f in files:
        h.update(
            f"{f['name']} {f['split']} {f['drama']} "
            f"{file_digests(Path(f['path']))['sha256']}\n".encode()
        )
    return h.hexdigest()[:20]


def build(data_dir: str | Path, books: dict, settings: dict, verify: bool = True):
    """The stand-in as a datasets.Dataset with COLUMNS (built once, then from the cache)."""
    import datasets

    files = book_files(data_dir, books)
    verify_files(
        "the book corpus",
        Path(data_dir).expanduser() / "books",
        [Path(f["path"]) for f in files],
        verify,
    )
    path = common.cache_dir("cloze") / f"books_{cache_key(files, settings)}.arrow"
    if path.exists():
        try:
            log.info("cloze stand-in from the cache %s", path)
            return datasets.Dataset.from_file(str(path))
        except Exception as e:  # noqa: BLE001  (a truncated cache is rebuilt)
            log.warning("ignoring the unreadable cache file %s (%s)", path, e)
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("building the cloze stand-in from %d books (once; cached in %s)", len(files), path)
    source = datasets.Dataset.from_generator(
        _book_rows, gen_kwargs={"files": files}, cache_dir=str(common.cache_dir("huggingface"))
    )
    try:
        return source.map(
            _book_questions,
            batched=True,
            batch_size=1,
            remove_columns=source.column_names,
            fn_kwargs={"settings": settings},
            cache_file_name=str(path),
            desc="cloze questions",
        )
    except OSError as e:
        raise DataError(
            f"cannot write the cloze cache {path} ({e}); set LNREPRO_CACHE to a writable folder"
        ) from None
