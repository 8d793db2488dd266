"""Run and draw one paper figure from its experiments/<figure>.yaml.

    python scripts/figure.py run  experiments/figure6_pi_mnist.yaml [--scale cpu] [--launcher parallel]
    python scripts/figure.py plot experiments/figure6_pi_mnist.yaml [--scale cpu]
    python scripts/figure.py run|plot experiments/figure6_pi_mnist.yaml --confirmatory

`run` launches the whole grid (norms x grid x seeds) as ONE Hydra multirun into
outputs/figures/<name>/<scale>/<overrides>/ with resume=true, so running it again continues killed runs
and leaves finished ones as they are. `plot` reads those run directories (metrics.jsonl) and
writes results/<name>.png (with several seeds: the mean, and a band from the min to the max
over seeds, as the caption says), results/<name>.csv (every run, one row each) and
results/<name>_curves.csv (every logged value of the figure's metrics: norm, seed, grid keys,
step, epoch, metric, value), from which scripts/claims.py recomputes the paper's claims.
Each row of results/<name>.csv carries its run's provenance (lnrepro.claims.provenance: commit,
config hash, metrics.jsonl digest, start time, load average); `run` samples the 1-minute load
average into <sweep folder>/loadavg.jsonl while the grid runs.

`--confirmatory` runs (and plots) exactly the scale's `confirmatory_seeds` (e.g. [11, 12, 13]) for
every norm of the grid except the extra curves of `seeds_by_norm`; without it, `run` and `plot`
take the scale's `seeds` (and `seeds_by_norm`) only, so that the two sets never mix in one CSV
(lnrepro.claims.confirm decides which claims the confirmatory CSV makes confirmatory).

The PNG carries a fingerprint (`lnrepro-figure` text field) of what drew it: the plotting code
of this file, the spec's plotting keys and the two CSVs written beside it. `check` recomputes
it for every committed figure and lists the stale ones (tests/test_figures_fresh.py runs it):

    python scripts/figure.py check
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

from lnrepro import REPO_ROOT as ROOT
from lnrepro.artifacts import png_text, save_figure, write_csv
from lnrepro.claims.confirm import confirmatory_norms
from lnrepro.claims.provenance import COLUMNS as PROVENANCE
from lnrepro.claims.provenance import LOAD_SAMPLES, read_load_samples, run_provenance
from lnrepro.runs import COLORS, Run, fmt_value, load_spec, spec_runs, sweep_dir
from lnrepro.trainer import hms

XLABELS = {"step": "updates", "time": "wall-clock time (s)", "epoch": "epoch"}
# what a figure is drawn from (`fingerprint`): these functions, these keys of its spec
PLOT_CODE = ("run_order", "plot", "_columns", "_layout", "_draw_panel", "_caption", "write_table")
PLOT_CODE += ("write_curves", "_num")
PLOT_KEYS = ("name", "title", "dataset", "grid", "norms", "panels", "x", "xs", "norm_columns")
PLOT_KEYS += ("metrics", "metric_columns", "paper_scale", "table", "labels")


def run_order(run, grid_keys: list[str]) -> tuple:
    """Rows of the CSVs: by norm, then the grid values, then the seed."""
    return (str(run.get("norm.kind")), *[str(run.get(k)) for k in grid_keys], run.get("seed") or 0)


def multiruns(spec: dict, scale: str, confirmatory: bool = False) -> list[tuple[list[str], list]]:
    """(norms, seeds) per multirun: the scale's `seeds` for every norm, except the norms that
    `seeds_by_norm` gives fewer or other seeds (e.g. Figure 5's BN, an extra curve with no claim:
    `seeds_by_norm: {bn: [1]}`); norms sharing a seed list run as one multirun. `confirmatory`:
    the scale's `confirmatory_seeds` for every norm but those extra curves, as one multirun."""
    sc = spec["scales"][scale]
    if confirmatory:
        if not sc.get("confirmatory_seeds"):
            raise SystemExit(f"{spec['name']}: scales.{scale} has no confirmatory_seeds")
        return [(confirmatory_norms(spec, scale), list(sc["confirmatory_seeds"]))]
    by_norm = sc.get("seeds_by_norm") or {}
    groups: dict[tuple, list[str]] = {}
    for norm in sc.get("norms", spec["norms"]):  # a scale may run fewer
        groups.setdefault(tuple(by_norm.get(norm, sc["seeds"])), []).append(norm)
    return [(norms, list(seeds)) for seeds, norms in groups.items()]


def planned(spec: dict, scale: str, runs: list[Run], confirmatory: bool = False) -> list[Run]:
    """The runs of `multiruns` (norm and seed) among `runs`: a plot never mixes the
    exploratory seeds with the confirmatory ones."""
    want = {
        (n, int(s))
        for norms, seeds in multiruns(spec, scale, confirmatory)
        for n in norms
        for s in seeds
    }
    return [r for r in runs if (r.get("norm.kind"), int(r.get("seed") or 0)) in want]


def run(
    spec: dict, scale: str, launcher: str | None, extra: list[str], confirmatory: bool = False
) -> int:
    sc = spec["scales"][scale]
    grid_size = math.prod(len(v) for v in spec.get("grid", {}).values())
    groups = multiruns(spec, scale, confirmatory)
    watch = GridProgress(
        sweep_dir(spec, scale),
        sum(len(n) * len(s) for n, s in groups) * grid_size,
        sample_load=launcher != "slurm",  # slurm jobs run on other machines
    )
    for norms, seeds in groups:
        cmd = [
            sys.executable,
            "-m",
            "lnrepro.train",
            "-m",
            f"experiment={sc['experiment']}",
            "norm=" + ",".join(norms),
            "seed=" + ",".join(str(s) for s in seeds),
        ]
        cmd += [
            f"{k}=" + ",".join(str(v) for v in vals) for k, vals in spec.get("grid", {}).items()
        ]
        cmd += list(sc.get("overrides", []))
        # one directory per grid point, named by its overrides only (no job number), so adding a
        # seed or a norm to the grid later resumes the finished runs instead of renumbering them
        cmd += [
            f"hydra.sweep.dir={sweep_dir(spec, scale)}",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            "resume=true",
        ]
        if launcher:
            cmd += [f"hydra/launcher={launcher}"]
        cmd += extra
        print("+", " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, cwd=ROOT)
        while proc.poll() is None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            watch.report()
        watch.report()
        if proc.returncode:
            return proc.returncode
    return 0


class GridProgress:
    """Prints `run k/N done (name), elapsed, estimated time left` as each run of the grid ends
    (its summary.json says completed); runs finished before this call count as done already
    and do not enter the estimate, which is the mean wall time of the runs finished since."""

    LOAD_EVERY = 30.0  # seconds between two samples of the 1-minute load average

    def __init__(self, root: Path, total: int, sample_load: bool = False):
        self.root, self.total, self.t0 = Path(root), total, time.monotonic()
        self.before = self._finished()
        self.seen = set(self.before)
        self.sample_load, self.last_sample = sample_load and hasattr(os, "getloadavg"), -math.inf

    def _sample_load(self) -> None:
        """Appends {time, load1} to <root>/loadavg.jsonl every LOAD_EVERY seconds: the rows of
        results/<figure>.csv give each run the mean of the samples taken while it ran."""
        if not self.sample_load or time.monotonic() - self.last_sample < self.LOAD_EVERY:
            return
        self.last_sample = time.monotonic()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / LOAD_SAMPLES, "a") as f:
                f.write(
                    json.dumps({"time": round(time.time(), 1), "load1": os.getloadavg()[0]}) + "\n"
                )
        except OSError:  # a sample is a nicety: never stop the grid for it
            self.sample_load = False

    def _finished(self) -> set[str]:
        done = set()
        for f in self.root.glob("*/summary.json"):
            try:
                if json.loads(f.read_text()).get("status") == "completed":
                    done.add(f.parent.name)
            except (OSError, ValueError):  # being written
                continue
        return done

    def report(self) -> None:
        self._sample_load()
        for name in sorted(self._finished() - self.seen):
            self.seen.add(name)
            elapsed = time.monotonic() - self.t0
            new = len(self.seen) - len(self.before)
            left = self.total - len(self.seen)
            eta = elapsed / new * left if new else math.inf
            print(
                f"run {len(self.seen)}/{self.total} done ({name}), elapsed {hms(elapsed)}, "
                f"estimated time left {hms(eta)}",
                flush=True,
            )


def plot(spec: dict, scale: str, out_dir: Path, confirmatory: bool = False) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root, runs = spec_runs(spec, scale)
    runs = planned(spec, scale, runs, confirmatory)
    if not runs:
        print(
            f"no runs under {root}: run `python scripts/figure.py run experiments/{spec['name']}.yaml` (or its "
            f"make target, see `make help`) first",
            file=sys.stderr,
        )
        return 1
    columns = _columns(spec, runs)
    fig, axes, ncols = _layout(plt, len(spec["metrics"]), columns, spec.get("metric_columns"))
    panel_key = spec.get("panels")
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        groups[(r.get(panel_key) if panel_key else None, r.get("norm.kind"))].append(r)
    banded = False  # some line is a mean over seeds, drawn with a min..max band
    for j, (pv, x, norms) in enumerate(columns):
        for i, m in enumerate(spec["metrics"]):
            banded |= _draw_panel(axes[i][j], spec, groups, pv, x, m, norms)
            if norms and len(columns) > 1:  # one column per group of norms (Figure 5)
                axes[i][j].set_title(" vs ".join(spec["labels"].get(n, n) for n in norms))
    fig.suptitle(
        f"{spec['title']}\n" + textwrap.fill(_caption(spec, scale, runs, banded), int(60 * ncols)),
        fontsize=9,
    )
    stem = spec["name"] if scale == "cpu" else f"{spec['name']}_{scale}"
    png = out_dir / f"{stem}.png"
    write_table(spec, runs, png.with_suffix(".csv"), scale)
    curves = out_dir / f"{stem}_curves.csv"
    write_curves(spec, runs, curves)
    save_figure(fig, png, metadata={"lnrepro-figure": fingerprint(spec, png)})
    print(f"wrote {png}, {png.with_suffix('.csv')} and {curves} from {len(runs)} runs under {root}")
    return 0


def _columns(spec: dict, runs: list[Run]) -> list[tuple]:
    """(panel value, x axis, norms or None for all) per column: one per value of `panels` (e.g.
    batch size, largest first), or one per x-axis in `xs`, or one per group of `norm_columns`
    (e.g. [[ln, none], [bn]]: the paper's two curves, then the extra one)."""
    if spec.get("norm_columns"):
        x = (spec.get("xs") or [spec.get("x", "step")])[0]
        present = {r.get("norm.kind") for r in runs}
        return [(None, x, g) for g in spec["norm_columns"] if present & set(g)]
    if spec.get("xs"):
        return [(None, x, None) for x in spec["xs"]]
    values = sorted(
        {r.get(spec.get("panels")) for r in runs},
        key=lambda v: -v if isinstance(v, (int, float)) else 0,
    )
    return [(v, spec.get("x", "epoch"), None) for v in values]


def _layout(plt, n_metrics: int, columns: list, metric_columns):
    """The figure and axes[metric][column]: one row per metric and one column per `columns`
    entry; with a single column, `metric_columns: k` wraps the metrics into a grid of k columns
    instead (unused cells hidden). Returns (fig, axes, number of grid columns)."""
    wrap = int(metric_columns or 1) if len(columns) == 1 else 1
    nrows, ncols = math.ceil(n_metrics / wrap), len(columns) * wrap
    fig, grid = plt.subplots(
        nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False, layout="constrained"
    )  # keeps the suptitle clear of the panels
    axes = (
        [[grid[i // wrap][i % wrap] for _ in columns] for i in range(n_metrics)]
        if wrap > 1
        else grid
    )
    for k in range(n_metrics, nrows * wrap):
        grid[k // wrap][k % wrap].set_visible(False)
    return fig, axes, ncols


def _draw_panel(ax, spec: dict, groups: dict, pv, x: str, m: dict, norms=None) -> bool:
    """One metric against `x` for every norm of the spec (or `norms`): one line per norm (the
    mean over seeds with a min..max band when there are several), one per entry of
    `series: [{key, name, ls}]` where a panel shows several metrics (Figure 5: train dashed,
    validation solid), and the paper's values as dashed lines where the metric gives them
    (`paper: {norm: value}`). Returns whether a band was drawn."""
    banded = False
    series = m.get("series") or [{"key": m["key"]}]
    for norm, ser in ((n, s) for n in norms or spec["norms"] for s in series):
        curves = [r.series(ser["key"], x) for r in groups.get((pv, norm), [])]
        curves = [c for c in curves if c[0]]
        if not curves:
            continue
        n = min(len(c[0]) for c in curves)
        xs = [sum(c[0][k] for c in curves) / len(curves) for k in range(n)]
        ys = [[c[1][k] for c in curves] for k in range(n)]
        mean = [sum(v) / len(v) for v in ys]
        name = spec["labels"].get(norm, norm) + (f", {ser['name']}" if ser.get("name") else "")
        label = f"{name} ({len(curves)} seed{'s' * (len(curves) > 1)})"
        if len(curves) > 1:
            label = f"{name} (mean of {len(curves)} seeds, band min..max)"
        ax.plot(xs, mean, color=COLORS.get(norm), ls=ser.get("ls", "-"), label=label)
        if len(curves) > 1:
            banded = True
            ax.fill_between(
                xs, [min(v) for v in ys], [max(v) for v in ys], color=COLORS.get(norm), alpha=0.2
            )
    for norm, value in (m.get("paper") or {}).items():  # the paper's final values, dashed
        if norm not in (norms or spec["norms"]):
            continue
        ax.axhline(
            value,
            color=COLORS.get(norm),
            ls="--",
            lw=1,
            label=f"{spec['labels'].get(norm, norm)}: paper ({spec.get('paper_scale', 'paper scale')})",
        )
    if m.get("log"):
        ax.set_yscale("log")
    if m.get("logx"):
        ax.set_xscale("log")
    if m.get("ylim"):  # [low, high]: where the curves differ, not the untrained model's start
        ax.set_ylim(*m["ylim"])
    ax.set_xlabel(XLABELS.get(x, x))
    ax.set_ylabel(m["label"])
    if pv is not None:
        ax.set_title(f"{spec.get('panels').split('.')[-1]} = {pv}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return banded


def _caption(spec: dict, scale: str, runs: list[Run], banded: bool) -> str:
    """The caption from what the runs actually were, not from what the spec hopes."""
    ref = runs[0]
    epochs = sorted({round(r.summary.get("epoch", float("nan")), 2) for r in runs if r.summary})
    seeds = sorted({r.get("seed") for r in runs})
    statuses = sorted({r.status for r in runs})
    sub = (
        f"{scale} scale ({ref.get('name')}), {spec.get('dataset', '')}; epochs trained: "
        f"{', '.join(map(str, epochs))}; seeds {seeds}; {len(runs)} runs ({', '.join(statuses)})"
    )
    if banded:
        sub += "; lines: mean over seeds, shaded bands: min..max over seeds"
    tr = ref.get("data.train_eval_size")
    if tr:
        sub += f"; training NLL on a fixed {tr}-image training subset"
    capped = {k: v for k, v in (ref.get("data.eval_tokens") or {}).items() if v}
    if capped:
        sub += "; evaluated on the first " + ", ".join(
            f"{v:,} tokens of {k}" for k, v in capped.items()
        )
    return sub


def write_table(spec: dict, runs: list[Run], path: Path, scale: str) -> None:
    keys = spec.get("table", [m["key"] for m in spec["metrics"]])
    grid_keys = list(spec.get("grid", {}))
    header = [
        "scale",
        "experiment",
        "norm",
        *grid_keys,
        "seed",
        "status",
        "steps",
        "epochs",
        "wall_time_s",
        "s_per_update",
    ]
    header += [f"final_{k}" for k in keys] + [f"best_{k}" for k in keys]
    header += [*PROVENANCE, "run_dir"]
    rows = []
    samples: dict[Path, list] = {}  # the load samples of a sweep folder, read once
    for r in sorted(runs, key=lambda r: run_order(r, grid_keys)):
        folder = Path(r.path).parent
        if folder not in samples:
            samples[folder] = read_load_samples(folder / LOAD_SAMPLES)
        prov = run_provenance(r, samples[folder])
        s = r.summary
        last = r.rows[-1] if r.rows else {}
        final = s.get("final") or {}
        best = s.get("best") or {}
        rows.append(
            [
                scale,
                r.get("name"),
                r.get("norm.kind"),
                *[r.get(k) for k in grid_keys],
                r.get("seed"),
                r.status,
                s.get("step", last.get("step")),
                _num(s.get("epoch", last.get("epoch"))),
                _num(s.get("wall_time", last.get("time"))),
                _num(s.get("s_per_step")),
            ]
            + [_num(final.get(k)) for k in keys]
            + [_num(best.get(k)) for k in keys]
            + [prov[c] for c in PROVENANCE]
            + [os.path.relpath(r.path, ROOT)]
        )
    write_csv(path, header, rows)


def write_curves(spec: dict, runs: list[Run], path: Path) -> None:
    """Every logged value of the figure's metrics (plotted, tabled, or named by a claim), one row
    per run, step and metric, so that claims about speed (faster, lower_at in
    src/lnrepro/claims.py) can be recomputed from results/ alone, without the run folders."""
    keys = [s["key"] for m in spec["metrics"] for s in m.get("series") or [m]]
    keys += list(spec.get("table", []))
    keys += [c["metric"] for c in spec.get("claims") or [] if c.get("metric")]
    keys = list(dict.fromkeys(keys))
    grid_keys = list(spec.get("grid", {}))
    rows = []
    for r in sorted(runs, key=lambda r: run_order(r, grid_keys)):
        head = [r.get("norm.kind"), r.get("seed"), *[r.get(k) for k in grid_keys]]
        for row in r.rows:
            for k in keys:
                v = row.get(k)
                if isinstance(v, (int, float)) or v in ("nan", "inf", "-inf"):
                    rows.append([*head, row.get("step"), _num(row.get("epoch")), k, _num(v)])
    write_csv(path, ["norm", "seed", *grid_keys, "step", "epoch", "metric", "value"], rows)


def fingerprint(spec: dict, png: Path) -> str:
    """What the figure `png` is drawn from: the plotting code (PLOT_CODE), the spec's plotting
    keys and the CSVs beside the PNG (their bytes), as a short sha256."""
    import hashlib
    import inspect

    h = hashlib.sha256()
    for name in PLOT_CODE:
        h.update(inspect.getsource(globals()[name]).encode())
    h.update(json.dumps({k: spec.get(k) for k in PLOT_KEYS}, sort_keys=True, default=str).encode())
    for f in (png.with_suffix(".csv"), png.with_name(f"{png.stem}_curves.csv")):
        h.update(f.read_bytes() if f.exists() else b"-")
    return h.hexdigest()[:16]


def stale_figures(results: Path = ROOT / "results") -> dict[str, str]:
    """Committed figures of experiments/*.yaml (CPU scale) whose fingerprint does not match
    what the code, spec and CSVs would draw now: name -> why."""
    stale = {}
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        spec = load_spec(path)
        png = results / f"{spec['name']}.png"
        if not png.exists():
            continue
        got = png_text(png).get("lnrepro-figure")
        if got is None:
            stale[spec["name"]] = "drawn before figures carried a fingerprint"
        elif got != fingerprint(spec, png):
            stale[spec["name"]] = "the plotting code, the spec or a CSV changed since it was drawn"
    return stale


def _num(v) -> str:
    return fmt_value(v, digits=6, none="")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=["run", "plot", "check"])
    p.add_argument("spec", nargs="?", help="experiments/<figure>.yaml (not for check)")
    p.add_argument("--scale", default="cpu")
    p.add_argument(
        "--launcher",
        default=None,
        help="hydra/launcher: parallel, local_submitit or slurm (configs/hydra/launcher)",
    )
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--norms", help="comma-separated norms for every scale, e.g. ln,bn,none,wn,rms")
    p.add_argument(
        "--confirmatory",
        action="store_true",
        help="run / plot exactly the scale's confirmatory_seeds (lnrepro.claims.confirm)",
    )
    args, extra = p.parse_known_args(argv)
    if args.action == "check":
        stale = stale_figures(Path(args.out))
        for name, why in stale.items():
            print(f"stale: results/{name}.png ({why}): rerun or `make figures` to redraw it")
        return 1 if stale else 0
    if not args.spec:
        p.error(f"{args.action} needs the spec: experiments/<figure>.yaml")
    spec = load_spec(args.spec)
    if args.norms:  # replaces the spec's norms (and any scale's own list)
        spec["norms"] = args.norms.split(",")
        for sc in spec["scales"].values():
            sc.pop("norms", None)
    if args.scale not in spec["scales"]:
        p.error(f"--scale must be one of {sorted(spec['scales'])}")
    if args.action == "run":
        return run(spec, args.scale, args.launcher, extra, args.confirmatory)
    return plot(spec, args.scale, Path(args.out), args.confirmatory)


if __name__ == "__main__":
    sys.exit(main())
