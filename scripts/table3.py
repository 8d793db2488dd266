"""Table 3 (skip-thoughts, Sec. 6.3) from the figure3 runs: the paper's rows beside ours.

    python scripts/table3.py [--scale cpu|paper] [--spec experiments/figure3_skip_thoughts.yaml]
                             [--out results/table3_skip_thoughts.md]

Reads the runs that `python scripts/figure.py run experiments/figure3_skip_thoughts.yaml` made
(outputs/figures/figure3_skip_thoughts/<scale>/...), takes each run's FINAL evaluation
(summary.json "final": the last SentEval pass, after the last update), in the paper's units
(accuracy %, Pearson r, Spearman rho, MSE), averages them over seeds (mean ± sample std), and
writes a Markdown table in the layout of the paper's Table 3, with the paper's rows
(Ba et al. 2016, Sec. 6.3) first and ours labelled by scale, corpus and number of updates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from lnrepro import REPO_ROOT as ROOT
from lnrepro.artifacts import atomic_write_text
from lnrepro.runs import load_spec, spec_runs

COLUMNS = ["SICK r", "SICK ρ", "SICK MSE", "MR", "CR", "SUBJ", "MPQA", "TREC"]
# Ba et al. 2016, Sec. 6.3, Table 3 (BookCorpus, 2400-d uni-skip; † = 1 month, ~1.7M updates).
# TREC is not in the LN paper's table; Kiros et al.'s uni-skip TREC is 91.4 (Kiros et al. 2015, Table 5).
PAPER_ROWS = [
    (
        "Original [Kiros 2015] (uni-skip), BookCorpus",
        [0.848, 0.778, 0.287, 75.5, 79.3, 92.1, 86.9, None],
    ),
    ("Ours (paper), BookCorpus, 1M updates", [0.842, 0.767, 0.298, 77.3, 81.8, 92.6, 87.9, None]),
    (
        "Ours + LN (paper), BookCorpus, 1M updates",
        [0.854, 0.785, 0.277, 79.5, 82.6, 93.4, 89.0, None],
    ),
    (
        "Ours + LN † (paper), BookCorpus, ~1.7M updates",
        [0.858, 0.788, 0.270, 79.4, 83.1, 93.7, 89.3, None],
    ),
]
LABELS = {"none": "Ours (GRU)", "ln": "Ours + LN", "bn": "Ours + BN (not in the paper)"}


def row_of(final: dict) -> list:
    keys = [
        "sick_r",
        "sick_rho",
        "sick_mse",
        "mr_acc",
        "cr_acc",
        "subj_acc",
        "mpqa_acc",
        "trec_acc",
    ]
    return [final.get(f"senteval/{k}") for k in keys]


def fmt(v, col: str) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if col.startswith("SICK") else f"{v:.1f}"


def mean_sd(values: list, col: str) -> str:
    """Mean ± sample std of one column over seeds (the mean alone with one seed)."""
    vs = [v for v in values if v is not None]
    if not vs:
        return "–"
    if len(vs) == 1:
        return fmt(vs[0], col)
    return f"{fmt(statistics.mean(vs), col)} ± {fmt(statistics.stdev(vs), col)}"


def corpus_of(run) -> str:
    hf = run.get("data.hf")
    if hf:
        return f"HF {hf.get('name')}"
    paths = run.get("data.paths") or []
    return "Gutenberg stand-in (" + ", ".join(str(p) for p in paths) + ")"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", default="cpu")
    p.add_argument("--spec", default=str(ROOT / "experiments" / "figure3_skip_thoughts.yaml"))
    p.add_argument("--out", default=None, help="default: results/table3_skip_thoughts[_<scale>].md")
    args = p.parse_args(argv)
    spec = load_spec(args.spec)
    root, runs = spec_runs(spec, args.scale)
    if not runs:
        print(f"no runs under {root}: run `make figure3` first", file=sys.stderr)
        return 1
    lines = [
        f"# Table 3: skip-thought vectors, SentEval ({args.scale} scale vs the paper)",
        "",
        "| Method | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for name, vals in PAPER_ROWS:
        lines.append(f"| {name} | " + " | ".join(fmt(v, c) for v, c in zip(vals, COLUMNS)) + " |")
    order = {"none": 0, "ln": 1, "bn": 2}
    by_norm: dict = {}
    for r in sorted(runs, key=lambda r: (order.get(r.get("norm.kind"), 9), r.get("seed") or 0)):
        by_norm.setdefault(r.get("norm.kind"), []).append(r)
    for norm, group in by_norm.items():  # one row per norm: mean ± sample std over its seeds
        r = group[0]
        seeds = ", ".join(str(g.get("seed")) for g in group)
        statuses = ", ".join(sorted({g.status for g in group}))
        label = (
            f"{LABELS.get(norm, norm)} ({args.scale} scale: {r.get('model.hidden_size')}-d "
            f"encoder, vocab {r.get('data.vocab_size')}, {corpus_of(r)}, {r.steps} updates, "
            f"mean ± sd over seeds {seeds}, {statuses})"
        )
        finals = [row_of(g.summary.get("final") or {}) for g in group]
        cells = [mean_sd([f[k] for f in finals], c) for k, c in enumerate(COLUMNS)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            "SICK: Pearson r, Spearman ρ, MSE on SICK test; MR/CR/SUBJ/MPQA: 10-fold CV "
            "accuracy (%); TREC: test accuracy (%). Our rows: mean ± sample std over seeds of "
            "each run's final SentEval "
            "pass (lnrepro.eval.senteval: nested CV with 3 inner folds, C in 2^0,2^2,..,2^8; "
            "Kiros et al.: 10 inner folds, C in 2^0..2^8). The paper trains a 2400-d encoder "
            "on BookCorpus for 1M updates; CPU-scale rows are far smaller and shorter, so only "
            "the LN-vs-GRU comparison is meaningful, not the absolute numbers."
        ),
        "",
    ]
    out = (
        Path(args.out)
        if args.out
        else ROOT
        / "results"
        / (
            "table3_skip_thoughts.md"
            if args.scale == "cpu"
            else f"table3_skip_thoughts_{args.scale}.md"
        )
    )
    atomic_write_text(out, "\n".join(lines))
    print(f"wrote {out} from {len(runs)} runs under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
