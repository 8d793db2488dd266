"""Statistics and sanity floors of the attentive reader's data (Sec. 6.2) -> a Markdown file.

    python scripts/reader_data.py [--experiment reader_cpu] [--out results/figure2_reader_data.md]

Builds (or reads from the cache) the experiment's cloze corpus exactly as training does, and
writes: questions per split and per book, document and query lengths, candidates per question,
and on validation and test the floors of lnrepro.data.cloze_stats (a random candidate, the most
frequent entity of the document, the most recently mentioned one) with one reference heuristic.
A reader that does not beat the highest validation floor by 5 points has not learned to read.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from lnrepro import REPO_ROOT as ROOT

FLOOR_NAMES = {
    "random": "random candidate",
    "frequent": "most frequent entity in the document",
    "recent": "most recently mentioned entity",
}


def load(experiment: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import lnrepro  # noqa: F401  (the ${lnrepro_root:} resolver)
    from lnrepro.data import cloze

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", *overrides])
    d = cfg.data
    build = {**(d.build or {}), "n_entities": d.n_entities}
    table = cloze.window_docs(
        cloze.load_table(d.source, d.data_dir, d.books, build, d.top_k, d.verify),
        d.get("doc_window"),
    )
    vocab = cloze.build_vocab(table, d.n_entities, d.vocab_size)
    splits = cloze.encode(table, vocab, d.n_entities, d.exclude_query_entities)
    return cfg, table, splits


def report(cfg, table, splits, title: str) -> str:
    from lnrepro.data.cloze_stats import floors, statistics

    d = cfg.data
    lines = [
        f"## {title}",
        "",
        (
            f"`experiment={cfg.name}`: source {d.source}, top_k {d.top_k}, "
            f"n_entities {d.n_entities}, doc_window {d.get('doc_window')}, vocabulary "
            f"{d.vocab_size}, exclude_query_entities {d.exclude_query_entities}."
        ),
        "",
        (
            "| split | questions | document tokens: mean / median / max | query tokens: "
            "mean / max | candidates: mean / max |"
        ),
        "|---|---|---|---|---|",
    ]
    for name, s in splits.items():
        st = statistics(s)
        lines.append(
            f"| {name} | {st['questions']:,} | {st['doc_mean']:.1f} / "
            f"{st['doc_median']:.0f} / {st['doc_max']} | {st['query_mean']:.1f} / "
            f"{st['query_max']} | {st['candidates_mean']:.2f} / {st['candidates_max']} |"
        )
    if "book" in table.column_names:
        books = Counter(zip(table["split"].to_pylist(), table["book"].to_pylist()))
        total = sum(books.values())
        lines += ["", "| split | book | questions | share |", "|---|---|---|---|"]
        for (split, book), n in sorted(
            books.items(), key=lambda kv: (kv[0][0] != "train", kv[0][0], -kv[1])
        ):
            lines.append(f"| {split} | {book} | {n:,} | {100 * n / total:.1f} % |")
    # with the query's entities left out, the reference heuristic is the "frequent" floor itself
    ref = not d.exclude_query_entities
    lines += [
        "",
        (
            "Floors (accuracy over the candidates; a reader must beat the highest validation floor "
            "by 5 points):"
        ),
        "",
        "| split | "
        + " | ".join(FLOOR_NAMES.values())
        + " | highest floor + 5 points |"
        + (" (reference) most frequent entity not in the query |" if ref else ""),
        "|---" * (5 + ref) + "|",
    ]
    for name in ("val", "test"):
        if name not in splits:
            continue
        f = floors(splits[name], d.n_entities)
        top = max(f[k] for k in FLOOR_NAMES)
        lines.append(
            f"| {name} | "
            + " | ".join(f"{100 * f[k]:.1f} %" for k in FLOOR_NAMES)
            + f" | {100 * (top + 0.05):.1f} % (error {100 * (0.95 - top):.1f} %) |"
            + (f" {100 * f['frequent_not_in_query']:.1f} % |" if ref else "")
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--experiment", default="reader_cpu")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "figure2_reader_data.md")
    p.add_argument(
        "--full",
        action="store_true",
        help="also the whole corpus (data.n_entities=50, data.doc_window=null)",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. data.n_entities=24")
    args = p.parse_args(argv)
    from lnrepro.errors import LnreproError

    parts = [("as the experiment reads it", args.overrides)]
    if args.full:
        parts.insert(
            0, ("the whole corpus", [*args.overrides, "data.n_entities=50", "data.doc_window=null"])
        )
    text = (
        "# Data of the attentive reader (Sec. 6.2)\n\nWritten by `python scripts/"
        "reader_data.py` (run by `make figure2`) from the corpus exactly as training builds "
        "it (lnrepro.data.cloze; floors: lnrepro.data.cloze_stats).\n"
    )
    for title, overrides in parts:
        try:
            cfg, table, splits = load(args.experiment, overrides)
        except LnreproError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        text += "\n" + report(cfg, table, splits, title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
