"""Table 2 and Figure 1 (order embeddings on COCO, Sec. 6.1) from the table2 runs.

    python scripts/table2.py --check-data         exit 2 with one line if the COCO files are missing
    python scripts/table2.py [--scale cpu|paper]  Table 2 (Markdown) and Figure 1 (PNG)

Reads the runs that `python scripts/figure.py run experiments/table2_order_embeddings.yaml`
made (outputs/figures/table2_order_embeddings/<scale>/...). Each run's reported model is its
best validation point, as Vendrov et al. keep it: the evaluation with the highest val/rsum
(image-retrieval R@1 + R@5 + R@10 on the 1,000 validation images); its test metrics (5 folds of
1,000 images, logged at the same evaluation) are averaged over seeds. Figure 1: validation
image-retrieval R@1, R@5, R@10 against updates, as the paper's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from lnrepro import REPO_ROOT as ROOT
from lnrepro.artifacts import atomic_write_text, save_figure
from lnrepro.errors import DataError
from lnrepro.runs import COLORS, load_spec, spec_runs

SPEC = ROOT / "experiments" / "table2_order_embeddings.yaml"
COLUMNS = [f"{q}_{m}" for q in ("cap", "img") for m in ("r1", "r5", "r10", "mean_r")]
# Ba, Kiros, Hinton 2016, Table 2 (COCO, mean over 5 test folds of 1,000 images):
# caption retrieval R@1, R@5, R@10, mean r; image retrieval R@1, R@5, R@10, mean r
PAPER_ROWS = [
    ("Sym [Vendrov et al. 2016]", [45.4, None, 88.7, 5.8, 36.3, None, 85.8, 9.0]),
    ("OE [Vendrov et al. 2016]", [46.7, None, 88.9, 5.7, 37.9, None, 85.9, 8.1]),
    ("OE (paper's run)", [46.6, 79.3, 89.1, 5.2, 37.8, 73.6, 85.7, 7.9]),
    ("OE + LN (paper's run)", [48.5, 80.6, 89.8, 5.1, 38.9, 74.3, 86.3, 7.6]),
]


def check_data() -> int:
    from lnrepro.data.coco_features import check_files

    try:
        check_files(os.environ.get("LNREPRO_DATA") or ROOT / "data")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def best_point(run) -> dict | None:
    """The evaluation row with the highest val/rsum (the earliest on a tie)."""
    rows = [r for r in run.rows if isinstance(r.get("val/rsum"), (int, float))]
    return min(rows, key=lambda r: (-r["val/rsum"], r["step"])) if rows else None


def our_row(points: list[dict]) -> list[float | None]:
    """Mean over seeds of the test metrics, in the paper's units (R@K %, mean rank)."""
    out = []
    for c in COLUMNS:
        vals = [p[f"test/{c}"] for p in points if isinstance(p.get(f"test/{c}"), (int, float))]
        v = statistics.fmean(vals) if vals else None
        out.append(v)
    return out


def fmt(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def table(spec: dict, scale: str, by_norm: dict) -> str:
    head = [
        "Model",
        "Caption R@1",
        "R@5",
        "R@10",
        "Mean r",
        "Image R@1",
        "R@5",
        "R@10",
        "Mean r",
        "best validation at update",
    ]
    lines = [
        f"# Table 2: order embeddings on COCO ({scale} scale vs the paper)",
        "",
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
    ]
    lines += [f"| {n} | " + " | ".join(map(fmt, v)) + " | – |" for n, v in PAPER_ROWS]
    for norm, runs in by_norm.items():
        points = [p for p in map(best_point, runs) if p]
        if not points:
            continue
        steps = ", ".join(str(p["step"]) for p in points)
        label = (
            f"{spec['labels'].get(norm, norm)}, ours ({scale} scale, {len(points)} seed(s), "
            f"{max(r.steps or 0 for r in runs)} updates)"
        )
        lines.append(f"| {label} | " + " | ".join(map(fmt, our_row(points))) + f" | {steps} |")
    ref = next(r for runs in by_norm.values() for r in runs)
    folds, size = ref.get("data.test_folds"), ref.get("data.fold_images")
    note = (
        f"Paper: mean over 5 folds of 1,000 COCO test images. Ours: mean over {folds} "
        f"fold(s) of {size} test images, at each run's evaluation with the best validation "
        "image-retrieval R@1 + R@5 + R@10 (Vendrov et al.'s model selection), mean over seeds."
    )
    lines += ["", note, ""]
    return "\n".join(lines)


def figure1(spec: dict, scale: str, by_norm: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    for ax, k in zip(axes, (1, 5, 10)):
        for norm, runs in by_norm.items():
            curves = [r.series(f"val/img_r{k}", "step") for r in runs]
            curves = [c for c in curves if c[0]]
            if not curves:
                continue
            n = min(len(c[0]) for c in curves)
            ys = [statistics.fmean(c[1][i] for c in curves) for i in range(n)]
            ax.plot(
                curves[0][0][:n],
                ys,
                color=COLORS.get(norm),
                label=f"{spec['labels'].get(norm, norm)} ({len(curves)} seed(s))",
            )
        ax.set(xlabel="updates", ylabel=f"validation image retrieval R@{k} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Figure 1 (Sec. 6.1): order embeddings on COCO, {scale} scale", fontsize=9)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scale", default="cpu")
    p.add_argument("--check-data", action="store_true", help="only check the COCO files")
    p.add_argument("--out", default=str(ROOT / "results"))
    args = p.parse_args(argv)
    if args.check_data:
        return check_data()
    spec = load_spec(str(SPEC))
    root, runs = spec_runs(spec, args.scale)
    if not runs:
        print(f"no runs under {root}: run `make table2` first", file=sys.stderr)
        return 1
    by_norm = {n: [r for r in runs if r.get("norm.kind") == n] for n in spec["norms"]}
    suffix = "" if args.scale == "cpu" else f"_{args.scale}"
    out = Path(args.out)
    md, png = (
        out / f"table2_order_embeddings{suffix}.md",
        out / f"figure1_order_embeddings{suffix}.png",
    )
    atomic_write_text(md, table(spec, args.scale, by_norm))
    figure1(spec, args.scale, by_norm, png)
    print(f"wrote {md} and {png} from {len(runs)} runs under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
