"""Compare logged runs: a table of final and best metrics, steps, wall time and seeds, with
mean ± sample std over runs that differ only in the seed, and an optional overlay plot.

    python scripts/compare_runs.py                                  # every run under outputs/
    python scripts/compare_runs.py outputs/sweeps/pi_mnist_lr       # one sweep (any folders)
    python scripts/compare_runs.py --experiment pi_mnist_cpu --norm ln,bn --where data.batch_size=4
    python scripts/compare_runs.py --group pi_mnist_lr --metrics val/err,test/err --csv runs.csv
    python scripts/compare_runs.py --plot val/err --x epoch --logy --out val_err.png
    python scripts/compare_runs.py --plot val/err     # -> outputs/compare/val_err_<time>.png
    python scripts/compare_runs.py --wandb my-entity/lnrepro        # from the W&B API (online)
    make compare ARGS="--experiment pi_mnist_cpu --plot test/err --out cmp.png"

Runs are read from their directories (metrics.jsonl, summary.json, .hydra/config.yaml). A run
without summary.json (crashed, killed or still running) is shown as "incomplete" with what its
metrics.jsonl holds, never averaged with others and never dropped. A NaN metric (a diverged
run) shows as nan, and a mean over it is nan. A metrics.jsonl line that is not a row is skipped
with a warning naming the file and the line (so is an empty file). Exit 1 when no run matches.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from lnrepro import artifacts
from lnrepro.errors import LnreproError
from lnrepro.runs import (
    Run,
    differing_keys,
    find_runs,
    fmt_value,
    load_wandb_runs,
    mean_std,
    outputs_root,
    seed_groups,
    select_runs,
    wandb_filters,
)

PRIMARY = ("err", "bpc", "ppl")  # the metrics shown by default, per split, when logged


def default_metrics(runs: list[Run]) -> list[str]:
    """Validation and test metrics; of those, errors / BPC / perplexity when there are any."""
    logged = list(dict.fromkeys(m for r in runs for m in r.metrics()))
    split = [m for m in logged if m.split("/")[0] in ("val", "test")] or [
        m for m in logged if not m.startswith("batch/")
    ]
    primary = [m for m in split if m.split("/")[-1] in PRIMARY]
    return sorted(primary or split, key=lambda m: (not m.startswith("val/"), m))


def shown_keys(runs: list[Run]) -> list[str]:
    """Config keys that vary among runs of one experiment and one choice of their config
    group (norm.eps differing between ln and bn is not shown; a swept norm.eps is)."""
    out = []
    for k in differing_keys(runs):
        if k in ("name", "norm.kind"):
            continue
        top = k.split(".")[0]
        selectors = [s for s in (f"{top}.kind", f"{top}._target_") if s != k]
        buckets: dict[str, set] = {}
        for r in runs:
            b = repr((r.name, *[r.get(s) for s in selectors]))
            buckets.setdefault(b, set()).add(repr(r.get(k)))
        if any(len(v) > 1 for v in buckets.values()):
            out.append(k)
    return out


fmt = fmt_value  # 4 significant digits, "-" for None


def fmt_stat(values: list) -> str:
    vals = [v for v in values if isinstance(v, (int, float))]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt(float(vals[0]))
    m, s = mean_std([float(v) for v in vals])
    return f"{fmt(m)} ± {s:.2g}" if math.isfinite(s) else fmt(m)  # a NaN among them: nan


def fmt_range(values: list) -> str:
    vals = sorted({v for v in values if v is not None})
    if not vals:
        return "-"
    return fmt(vals[0]) if len(vals) == 1 else f"{fmt(vals[0])}..{fmt(vals[-1])}"


def table(runs: list[Run], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    keys = shown_keys(runs)
    header = ["experiment", "norm", *keys, "runs", "seeds", "status", "steps", "wall s"]
    header += [f"{w} {m}" for m in metrics for w in ("final", "best")]
    rows = []

    def order(g: list[Run]):  # by the shown values, completed rows before the others
        return [repr(g[0].get(k)) for k in ("name", "norm.kind", *keys)] + [
            g[0].status != "completed",
            str(g[0].seed),
        ]

    for g in sorted(seed_groups(runs), key=order):
        r0 = g[0]
        row = [
            fmt(r0.name),
            fmt(r0.get("norm.kind")),
            *[fmt(r0.get(k)) for k in keys],
            str(len(g)),
            ",".join(fmt(r.seed) for r in sorted(g, key=lambda r: str(r.seed))),
            r0.status,
            fmt_range([r.steps for r in g]),
            fmt_stat([r.wall_time for r in g]).split(" ±")[0],
        ]
        for m in metrics:
            row += [
                fmt_stat([r.metric(m, "final") for r in g]),
                fmt_stat([r.metric(m, "best") for r in g]),
            ]
        rows.append(row)
    return header, rows


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    print(line(header))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def write_csv(runs: list[Run], metrics: list[str], path: Path) -> None:
    keys = ["name", "norm.kind", *shown_keys(runs), "seed"]
    header = [
        *keys,
        "status",
        "steps",
        "wall_time_s",
        *[f"final {m}" for m in metrics],
        *[f"best {m}" for m in metrics],
        "run",
    ]
    artifacts.write_csv(
        path,
        header,
        (
            [r.get(k) for k in keys]
            + [r.status, r.steps, r.wall_time]
            + [r.metric(m, "final") for m in metrics]
            + [r.metric(m, "best") for m in metrics]
            + [str(r.path)]
            for r in runs
        ),
    )


def plot(runs: list[Run], metric: str, x: str, out: Path, logy: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = shown_keys(runs)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    for i, g in enumerate(seed_groups(runs)):
        for r in g:
            xs, ys = r.series(metric, x)
            if not xs:
                continue
            label = " ".join(
                [fmt(r.name), fmt(r.get("norm.kind"))]
                + [f"{k.split('.')[-1]}={fmt(r.get(k))}" for k in keys]
                + [f"seed {fmt(r.seed)}"]
                + ([r.status] if r.status != "completed" else [])
            )
            ax.plot(
                xs,
                ys,
                color=colors[i % len(colors)],
                label=label,
                linestyle="-" if r.status == "completed" else "--",
            )
            drawn += 1
    if not drawn:
        raise SystemExit(f"error: no selected run logged {metric!r} against {x!r}")
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(
        f"{metric} of {drawn} runs (one colour per configuration; dashed: not completed)",
        fontsize=9,
    )
    fig.tight_layout()
    artifacts.save_figure(fig, out)
    print(f"wrote {out}")


def split_values(values: list[str] | None) -> list[str] | None:
    """`--norm ln,bn --norm none` -> [ln, bn, none]."""
    return [v for arg in values for v in arg.split(",") if v] if values else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "paths",
        nargs="*",
        help="run directories or folders holding them (default: $LNREPRO_OUTPUTS, else outputs/)",
    )
    p.add_argument("--experiment", action="append", help="config `name`, e.g. pi_mnist_cpu")
    p.add_argument("--group", action="append", help="W&B group: the experiment, or the sweep")
    p.add_argument("--norm", action="append", help="ln, bn, none (comma-separated or repeated)")
    p.add_argument("--tag", action="append", help="a W&B tag of the run (logger.tags)")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=V[,V]",
        help="any config value, e.g. data.batch_size=4 or optim.lr=0.001,0.003",
    )
    p.add_argument(
        "--metrics",
        help="comma-separated, e.g. val/err,test/err "
        "(default: the validation and test errors / BPC / perplexity)",
    )
    p.add_argument("--csv", type=Path, help="also write one row per run to this CSV file")
    p.add_argument("--plot", metavar="METRIC", help="overlay METRIC of every selected run")
    p.add_argument("--x", default="step", choices=["step", "epoch", "time"])
    p.add_argument("--logy", action="store_true", help="the plot's y axis in log scale")
    p.add_argument(
        "--out",
        type=Path,
        help="the plot's file (default: <outputs>/compare/<metric>_<date>_<time>.png)",
    )
    p.add_argument(
        "--wandb",
        metavar="ENTITY/PROJECT",
        help="read runs from the W&B API instead of run directories (needs a key)",
    )
    return p


def parse_where(p: argparse.ArgumentParser, values: list[str]) -> dict[str, list[str]]:
    """`--where k=v1,v2` -> {k: [v1, v2]}; anything else is a usage error."""
    where = {}
    for w in values:
        key, eq, value = w.partition("=")
        if (not eq or not key) and p is not None:
            p.error(f"--where takes KEY=VALUE, got {w!r}")
        where[key] = split_values([value])
    return where


def load(args) -> tuple[list[Run], str]:
    """The runs (from W&B or from run directories) and where they came from; a missing
    directory is SystemExit(1) with one line."""
    if args.wandb:
        filters = wandb_filters(
            split_values(args.experiment),
            split_values(args.group),
            split_values(args.norm),
            split_values(args.tag),
            parse_where(None, args.where),
        )
        return load_wandb_runs(args.wandb, filters=filters), f"W&B project {args.wandb}"
    roots = args.paths or [str(outputs_root())]
    missing = [r for r in roots if not Path(r).exists()]
    if missing:
        print(f"no runs: {', '.join(missing)} does not exist", file=sys.stderr)
        raise SystemExit(1)
    return find_runs(*roots), ", ".join(map(str, roots))


def filters_shown(args, where: dict) -> str:
    """The filters as given, for the 'no runs match' line."""
    filters = " ".join(
        f"--{k} {','.join(v)}"
        for k, v in (
            ("experiment", split_values(args.experiment)),
            ("group", split_values(args.group)),
            ("norm", split_values(args.norm)),
            ("tag", split_values(args.tag)),
        )
        if v
    )
    filters += "".join(f" --where {k}={','.join(v)}" for k, v in where.items())
    return filters.strip()


def report(selected: list[Run], metrics: list[str], source: str) -> None:
    """The table, its footnote and the list of runs that did not complete."""
    header, rows = table(selected, metrics)
    print_table(header, rows)
    incomplete = [r for r in selected if r.status != "completed"]
    print(
        f"\n{len(selected)} runs in {len(rows)} rows from {source}; mean ± sample std (n-1) "
        "over runs that differ only in the seed; best = lowest value logged."
    )
    if incomplete:
        print(
            f"{len(incomplete)} not completed (shown on rows of their own, values as last "
            "logged; 'incomplete' = no summary.json: crashed, killed or still running):"
        )
        for r in incomplete:
            print(f"  {r.status}: {r.path} (step {fmt(r.steps)})")


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    where = parse_where(p, args.where)
    try:
        runs, source = load(args)
    except LnreproError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except SystemExit as e:
        return e.code
    selected = select_runs(
        runs,
        experiment=split_values(args.experiment),
        group=split_values(args.group),
        norm=split_values(args.norm),
        tag=split_values(args.tag),
        where=where,
    )
    if not selected:
        filters = filters_shown(args, where)
        print(
            f"no runs match{' ' + filters if filters else ''} in {source} ({len(runs)} runs there)",
            file=sys.stderr,
        )
        return 1
    metrics = args.metrics.split(",") if args.metrics else default_metrics(selected)
    report(selected, metrics, source)
    try:
        if args.csv:
            write_csv(selected, metrics, args.csv)
            print(f"wrote {args.csv}")
        if args.plot:
            plot(selected, args.plot, args.x, args.out or default_plot_path(args.plot), args.logy)
    except LnreproError as e:  # an unwritable file: one line
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def default_plot_path(metric: str) -> Path:
    """Where `--plot` without `--out` writes: the outputs folder (runs.outputs_root(), as the
    runs), never the current folder, one file per call: <outputs>/compare/<metric>_<time>.png."""
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in metric)
    return outputs_root() / "compare" / f"{name}_{time.strftime('%Y-%m-%d_%H-%M-%S')}.png"


if __name__ == "__main__":
    sys.exit(main())
