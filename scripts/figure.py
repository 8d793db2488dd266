"""Run, collect and draw one paper figure from its experiments/<figure>.yaml.

    python scripts/figure.py run  experiments/figure6_pi_mnist.yaml [--scale cpu] [--launcher parallel]
    python scripts/figure.py plot experiments/figure6_pi_mnist.yaml [--scale cpu]
    python scripts/figure.py draw experiments/figure6_pi_mnist.yaml [--scale cpu]
    python scripts/figure.py draw --all
    python scripts/figure.py run|plot experiments/figure6_pi_mnist.yaml --confirmatory

`run` launches the whole grid (norms x grid x seeds) as ONE Hydra multirun into
outputs/figures/<name>/<scale>/<overrides>/ with resume=true, so running it again continues killed runs
and leaves finished ones as they are. `plot` reads those run directories (metrics.jsonl) and
writes results/<name>.csv (every run, one row each) and results/<name>_curves.csv (every logged
value of the figure's metrics: norm, seed, grid keys, step, epoch, metric, value), from which
scripts/claims.py recomputes the paper's claims, then draws results/<name>.png from those two
CSVs. `draw` redraws the PNG from the CSVs alone (no run folder: the committed figures are
redrawn from the committed CSVs); `draw --all` every figure whose CSVs are in results/.
Each row of results/<name>.csv carries its run's provenance (lnrepro.claims.provenance: commit,
config hash, metrics.jsonl digest, start time, load average); `run` samples the 1-minute load
average into <sweep folder>/loadavg.jsonl while the grid runs.

How a figure reads (`render`, `_draw_panel`): the compared conditions of a panel in one axes,
one colour each; with several seeds the mean and a 95 % t-interval band, or one thin line per
seed where the seeds split (`_seeds_split`); markers at the evaluations; the paper's values
dashed in the norm's colour and the floors of results/floors.csv grey dotted; y-ranges from the
trained part of the curves (`_auto_ylim`); one legend per figure; a caption of two lines.

`--confirmatory` runs (and plots) exactly the scale's `confirmatory_seeds` (e.g. [11, 12, 13]) for
every norm of the grid except the extra curves of `seeds_by_norm`; without it, `run` and `plot`
take the scale's `seeds` (and `seeds_by_norm`) only, so that the two sets never mix in one CSV
(lnrepro.claims.confirm decides which claims the confirmatory CSV makes confirmatory).

The PNG carries a fingerprint (`lnrepro-figure` text field) of what drew it: the drawing code
of this file, the spec's plotting keys, the two CSVs beside it and its rows of
results/floors.csv. `check` recomputes it for every committed figure and lists the stale ones
(tests/test_figures_fresh.py runs it):

    python scripts/figure.py check
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import re
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
from lnrepro.runlog import git_commit
from lnrepro.runs import COLORS, Run, fmt_value, load_spec, spec_runs, sweep_dir
from lnrepro.trainer import hms

EXPLORATORY = "exploratory"  # results/exploratory/: seeds replaced by confirmatory ones
XLABELS = {
    "step": "updates",
    "time": "wall-clock time (s, at each run's mean pace)",
    "epoch": "epoch",
}
# How a figure is drawn (`_auto_ylim`, `_t_band`, `_arms`, `_draw_panel`):
HEAD_FRACTION = 0.15  # y-ranges leave out the first 15 % of the x-range (the untrained start)
PAD_FRACTION = 0.1  # padding above and below a y-range, a fraction of its span
REF_REACH = 1.0  # a reference line within this many spans of the curves widens the y-range
TAIL_FRACTION = 0.2  # a seed's final value: its mean over the last 20 % of the x-range
SPLIT_FRACTION = 1 / 3  # seeds split when two groups lie a third of the panel's span apart
MAX_MARKERS = 60  # markers at the evaluations of a line of at most this many points
BAND_LEVEL = 0.95  # the band: a 95 % t-interval of the mean over seeds
ARM_COLORS = ("tab:purple", "tab:green", "tab:brown", "tab:olive", "tab:cyan")
FLOOR_STYLE = {"color": "0.45", "ls": ":", "lw": 1.2}  # floors (and paper lines: lw)
FLOORS_CSV = "floors.csv"  # results/floors.csv: figure, scale, metric, floor, model
# what a figure is drawn from (`fingerprint`): these functions and constants, these keys of its
# spec (tests/test_figures_fresh.py checks that every function `draw` calls is listed here)
PLOT_CODE = ("draw", "render", "read_results", "read_floors", "Curves", "_float", "_stem")
PLOT_CODE += ("_columns", "_layout", "_arms", "_t_band", "_seeds_split", "_split_arms")
PLOT_CODE += ("_draw_panel",)
PLOT_CODE += ("_auto_ylim", "_note_refs", "_legend", "_seed_text", "_caption")
PLOT_CONSTANTS = ("XLABELS", "HEAD_FRACTION", "PAD_FRACTION", "REF_REACH", "TAIL_FRACTION")
PLOT_CONSTANTS += ("SPLIT_FRACTION", "MAX_MARKERS", "BAND_LEVEL")
PLOT_CONSTANTS += ("ARM_COLORS", "FLOOR_STYLE", "FLOORS_CSV")
PLOT_KEYS = ("name", "title", "dataset", "grid", "norms", "panels", "x", "xs", "norm_columns")
PLOT_KEYS += ("metrics", "metric_columns", "paper_scale", "table", "labels", "arms", "arm_labels")


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
    if confirmatory and git_commit().endswith("+dirty"):  # lnrepro.claims.confirm, rule (b)
        raise SystemExit(
            "error: confirmatory runs from uncommitted changes would count as exploratory: "
            "commit first, or run them from a clean checkout (git worktree add ../confirm HEAD)"
        )
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
    """Collects the figure's runs from their folders into results/<stem>.csv and
    results/<stem>_curves.csv, then draws results/<stem>.png from those two CSVs (`draw`)."""
    root, runs = spec_runs(spec, scale)
    runs = planned(spec, scale, runs, confirmatory)
    if not runs:
        print(
            f"no runs under {root}: run `python scripts/figure.py run experiments/{spec['name']}.yaml` (or its "
            f"make target, see `make help`) first; `draw` redraws the figure from results/ alone",
            file=sys.stderr,
        )
        return 1
    out_dir = destination(spec, scale, Path(out_dir), confirmatory)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / f"{_stem(spec, scale)}.csv"
    curves = out_dir / f"{_stem(spec, scale)}_curves.csv"
    write_table(spec, runs, table, scale)
    write_curves(spec, runs, curves)
    print(f"wrote {table} and {curves} from {len(runs)} runs under {root}")
    return draw(spec, scale, out_dir)


def destination(spec: dict, scale: str, out_dir: Path, confirmatory: bool) -> Path:
    """Where `plot` writes: results/, except that a figure's exploratory seeds give way to its
    confirmatory ones. The first confirmatory plot moves the exploratory CSVs it finds in
    results/ to results/exploratory/ (the claims engine still checks them there, in their own
    column); from then on an exploratory plot writes there, never over the confirmatory CSVs."""
    aside, stem = out_dir / EXPLORATORY, _stem(spec, scale)
    if not confirmatory:
        return aside if (aside / f"{stem}.csv").exists() else out_dir
    table = out_dir / f"{stem}.csv"
    if table.exists() and not (aside / f"{stem}.csv").exists():
        registered = {str(s) for s in spec["scales"][scale].get("confirmatory_seeds") or []}
        with open(table, newline="") as f:
            if {r["seed"] for r in csv.DictReader(f)} - registered:
                aside.mkdir(parents=True, exist_ok=True)
                for name in (f"{stem}.csv", f"{stem}_curves.csv"):
                    if (out_dir / name).exists():
                        (out_dir / name).rename(aside / name)
                print(f"moved the exploratory {stem}.csv and {stem}_curves.csv to {aside}")
    return out_dir


def _stem(spec: dict, scale: str) -> str:
    """results/<stem>.png, .csv, _curves.csv: the spec's name, + _<scale> but at the CPU scale."""
    return spec["name"] if scale == "cpu" else f"{spec['name']}_{scale}"


def draw(spec: dict, scale: str, out_dir: Path) -> int:
    """results/<stem>.png from results/<stem>.csv and results/<stem>_curves.csv alone (and the
    floors of results/floors.csv): no run folder is read. The PNG carries its fingerprint."""
    import matplotlib.pyplot as plt

    png = Path(out_dir) / f"{_stem(spec, scale)}.png"
    try:
        fig = render(spec, scale, Path(out_dir))
    except FileNotFoundError as e:
        print(f"{spec['name']}: cannot draw {png.name}: {e}", file=sys.stderr)
        return 1
    save_figure(fig, png, metadata={"lnrepro-figure": fingerprint(spec, png)})
    plt.close(fig)
    print(f"drew {png} from {png.with_suffix('.csv').name} and {png.stem}_curves.csv")
    return 0


def draw_all(out_dir: Path, scale: str = "cpu") -> int:
    """`draw` for every experiments/*.yaml whose two CSVs are in `out_dir` at `scale`."""
    failed = 0
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        spec = load_spec(path)
        stem = _stem(spec, scale)
        if scale not in spec.get("scales", {}) or not (out_dir / f"{stem}_curves.csv").exists():
            continue
        failed += draw(spec, scale, out_dir) != 0
    return 1 if failed else 0


class Curves:
    """One run as results/ has it: its row of <stem>.csv (`info`: steps, epochs, wall time, ...)
    and its evaluations of <stem>_curves.csv (`points`: metric -> [(step, epoch, value)])."""

    def __init__(self, norm: str, seed: int, grid: dict):
        self.norm, self.seed, self.grid = norm, seed, grid
        self.info: dict = {}
        self.points: dict = defaultdict(list)

    def get(self, key: str):
        """A key of the figure's grid, `norm.kind` or `seed` (as the CSVs spell its value)."""
        return {"norm.kind": self.norm, "seed": self.seed}.get(key, self.grid.get(key))

    def series(self, key: str, x: str) -> list[tuple[int, float, float]]:
        """[(step, x, value)] of metric `key` in the order of the steps. x = `time` is the step
        times the run's wall-clock seconds per update (wall_time_s / steps of its CSV row): the
        curves CSV has no clock, so a time axis is the updates at each run's mean pace."""
        pts = sorted(self.points.get(key, []))
        if x == "time":
            wall, steps = _float(self.info.get("wall_time_s")), _float(self.info.get("steps"))
            if wall is None or not steps:
                return []
            return [(s, s * wall / steps, v) for s, _, v in pts]
        if x == "epoch":
            return [(s, e, v) for s, e, v in pts if e is not None]
        return [(s, float(s), v) for s, _, v in pts]


def _float(v) -> float | None:
    """A CSV cell as a float: None when empty; `nan`, `inf` as floats."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read_results(spec: dict, scale: str, results: Path) -> list[Curves]:
    """The runs of results/<stem>.csv and results/<stem>_curves.csv, by norm, grid values, seed."""
    stem = _stem(spec, scale)
    grid_keys = list(spec.get("grid") or {})
    table, curves = results / f"{stem}.csv", results / f"{stem}_curves.csv"
    for f in (table, curves):
        if not f.exists():
            raise FileNotFoundError(f"no {f} (`plot` writes it from the run folders)")
    runs: dict[tuple, Curves] = {}

    def run_of(row: dict) -> Curves:
        seed = int(_float(row.get("seed")) or 0)
        key = (row["norm"], tuple(row.get(k, "") for k in grid_keys), seed)
        if key not in runs:
            runs[key] = Curves(row["norm"], seed, dict(zip(grid_keys, key[1], strict=True)))
        return runs[key]

    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            run_of(row).info = row
    with open(curves, newline="") as f:
        for row in csv.DictReader(f):
            value = _float(row["value"])
            if value is not None:
                point = (int(_float(row["step"]) or 0), _float(row["epoch"]), value)
                run_of(row).points[row["metric"]].append(point)
    return [runs[k] for k in sorted(runs)]


def read_floors(results: Path, name: str, scale: str) -> list[dict]:
    """The rows of results/floors.csv (figure, scale, metric, floor, model) of this figure."""
    path = results / FLOORS_CSV
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {"metric": r["metric"], "floor": float(r["floor"]), "model": r["model"]}
            for r in csv.DictReader(f)
            if r.get("figure") == name and r.get("scale") == scale and _float(r.get("floor"))
        ]


def render(spec: dict, scale: str, results: Path):
    """The figure (a matplotlib Figure, not saved) from the CSVs of results/: one row of panels
    per metric, one column per `_columns` entry, every compared condition of a panel in it with
    its own colour (`_arms`), one legend for the figure below the panels, and a caption of at
    most two lines under the title (`_caption`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in read_results(spec, scale, results) if r.norm in spec["norms"]]
    if not runs:
        raise FileNotFoundError(f"no run of the norms {spec['norms']} in the CSVs")
    columns = _columns(spec, runs)
    fig, axes, _ = _layout(plt, len(spec["metrics"]), columns, spec.get("metric_columns"))
    floors = read_floors(results, spec["name"], scale)
    drawn: dict = {}  # what the caption explains: "band", "split"
    for j, (pv, x, norms) in enumerate(columns):
        split = _split_arms(spec, runs, pv, x, norms)
        for i, m in enumerate(spec["metrics"]):
            _draw_panel(axes[i][j], spec, runs, pv, x, m, norms, floors, drawn, split)
            if norms and len(columns) > 1:  # one column per group of norms (`norm_columns`)
                axes[i][j].set_title(" vs ".join(spec["labels"].get(n, n) for n in norms))
    width = fig.get_figwidth()
    _legend(fig, [ax for row in axes for ax in row], width, drawn.get("styles") or {})
    fig.suptitle(f"{spec['title']}\n{_caption(spec, scale, runs, drawn, width)}", fontsize=9)
    return fig


def _columns(spec: dict, runs: list) -> list[tuple]:
    """(panel value, x axis, norms or None for all) per column: one per value of `panels` (e.g.
    batch size, largest first), or one per x-axis in `xs`, or one per group of `norm_columns`
    (e.g. [[ln, none], [bn]]: the norms of a group in one panel; the committed figures keep every
    norm in one panel, as the paper's figures compare them)."""
    if spec.get("norm_columns"):
        x = (spec.get("xs") or [spec.get("x", "step")])[0]
        present = {r.get("norm.kind") for r in runs}
        return [(None, x, g) for g in spec["norm_columns"] if present & set(g)]
    if spec.get("xs"):
        return [(None, x, None) for x in spec["xs"]]
    values = {
        str(v) if spec.get("panels") else None for v in (r.get(spec.get("panels")) for r in runs)
    }
    return [
        (v, spec.get("x", "epoch"), None)
        for v in sorted(values, key=lambda v: -(_float(v) or 0) if v is not None else 0)
    ]


def _layout(plt, n_metrics: int, columns: list, metric_columns):
    """The figure and axes[metric][column]: one row per metric and one column per `columns`
    entry; with a single column, `metric_columns: k` wraps the metrics into a grid of k columns
    instead (unused cells hidden). Returns (fig, axes, number of grid columns)."""
    wrap = int(metric_columns or 1) if len(columns) == 1 else 1
    nrows, ncols = math.ceil(n_metrics / wrap), len(columns) * wrap
    fig, grid = plt.subplots(
        nrows,
        ncols,
        figsize=(max(7.0, 5.2 * ncols), 3.3 * nrows + 1.0),
        squeeze=False,
        layout="constrained",  # keeps the title, the caption and the legend clear of the panels
    )
    axes = (
        [[grid[i // wrap][i % wrap] for _ in columns] for i in range(n_metrics)]
        if wrap > 1
        else grid
    )
    for k in range(n_metrics, nrows * wrap):
        grid[k // wrap][k % wrap].set_visible(False)
    return fig, axes, ncols


def _arms(spec: dict, runs: list, pv, norms) -> list[tuple[str, str | None, list]]:
    """The compared conditions of one panel as (legend name, colour, runs): one per norm (in
    the spec's order, its colour), or, where the spec names `arms: <grid key>` (the gain
    ablation of Sec. 6.2: `arms: norm.gain_init`), one per norm and value of that key, in the
    grid's order: the first value in the norm's colour, the others in ARM_COLORS, named by
    `arm_labels: {value: name}` (else `<norm label>, <key> = <value>`)."""
    key, panel = spec.get("arms"), spec.get("panels")
    values = [str(v) for v in (spec.get("grid") or {}).get(key, [])] if key else [None]
    names = {str(k): v for k, v in (spec.get("arm_labels") or {}).items()}
    out = []
    for norm in norms or spec["norms"]:
        for k, value in enumerate(values):
            members = [
                r
                for r in runs
                if r.norm == norm
                and (pv is None or str(r.get(panel)) == pv)
                and (key is None or str(r.get(key)) == value)
            ]
            if not members:
                continue
            name = spec["labels"].get(norm, norm)
            if key:
                name = names.get(value, f"{name}, {key.split('.')[-1]} = {value}")
            colour = COLORS.get(norm) if k == 0 else ARM_COLORS[(k - 1) % len(ARM_COLORS)]
            out.append((name, colour, members))
    return out


def _t_band(values, log: bool = False):
    """Per row of `values` (evaluations x seeds): the mean over the seeds and its 95 % t-interval,
    mean -+ t_{0.975, n-1} * sd / sqrt(n) (sd with n - 1 degrees of freedom; no band for one
    seed). On a log axis the same on the logs of the values, back-transformed: a geometric mean
    whose band stays positive. Returns (mean, low, high) as numpy arrays."""
    import numpy as np
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(v > 0, np.log(v), np.nan)
    n = v.shape[1]
    mean = v.mean(axis=1)
    half = t.ppf(BAND_LEVEL / 2 + 0.5, n - 1) * v.std(axis=1, ddof=1) / math.sqrt(n) if n > 1 else 0
    back = np.exp if log else np.asarray
    return back(mean), back(mean - half), back(mean + half)


def _seeds_split(finals: list[float], span: float) -> bool:
    """Whether the seeds of an arm split: then each is drawn as a thin line of its own instead
    of a mean that sits where no seed is (Figure 2's reader at the CPU scale: two LSTM seeds
    learn, one stays near the floor). `finals`: each seed's mean over its evaluations in the
    last TAIL_FRACTION (20 %) of the x-range (less noisy than one evaluation); `span`: how far
    the panel's values range (every evaluation of every seed of every arm: what training moves
    the metric by); both on the axis's scale (logs on a log axis). They split when, sorted,
      (a) one gap between consecutive final values is at least twice every other gap (two
          groups, not an even spread; with two seeds, the one gap), and
      (b) that gap is at least SPLIT_FRACTION (1/3) of the span.
    One seed never splits."""
    v = sorted(f for f in finals if math.isfinite(f))
    if len(v) < 2 or len(v) < len(finals) or not span > 0:
        return False
    gaps = sorted((b - a for a, b in itertools.pairwise(v)), reverse=True)
    if len(gaps) > 1 and gaps[0] < 2 * gaps[1]:
        return False
    return gaps[0] >= SPLIT_FRACTION * span


def _split_arms(spec: dict, runs: list, pv, x: str, norms) -> set[str]:
    """The arms (`_arms` names) of a column whose seeds split (`_seeds_split`), decided on the
    spec's first metric (its first series: the figure's headline curve, e.g. Figure 2's
    validation error), so that an arm is drawn alike in every panel of its column."""
    m = spec["metrics"][0]
    key = (m.get("series") or [m])[0]["key"]

    def scaled(v: float) -> float:
        if m.get("log"):
            return math.log(v) if v > 0 else math.nan
        return v

    arms = []
    for name, _, members in _arms(spec, runs, pv, norms):
        curves = [c for c in (r.series(key, x) for r in members) if c]
        if curves:
            arms.append((name, curves))
    values = [scaled(p[2]) for _, cs in arms for c in cs for p in c]
    values = [v for v in values if math.isfinite(v)]
    span = max(values) - min(values) if values else 0.0
    split = set()
    for name, curves in arms:
        x0 = min(c[0][1] for c in curves)
        cut = max(c[-1][1] for c in curves) - TAIL_FRACTION * (max(c[-1][1] for c in curves) - x0)
        finals = []
        for c in curves:
            tail = [scaled(p[2]) for p in c if p[1] >= cut] or [scaled(c[-1][2])]
            finals.append(sum(tail) / len(tail))
        if _seeds_split(finals, span):
            split.add(name)
    return split


def _draw_panel(ax, spec, runs, pv, x, m, norms, floors, drawn, split=frozenset()) -> None:
    """One metric against `x` for every arm of the panel (`_arms`; `series: [{key, name, ls}]`
    where a panel shows several metrics, Figure 5: train dashed, validation solid, the line
    styles explained once in the legend). An arm of several seeds is its mean with a 95 %
    t-interval band (`_t_band`), or, for the arms in `split` (`_split_arms`), one thin line per
    seed; markers at the evaluations (not on lines of more than MAX_MARKERS points, e.g. the
    mini-batch losses). Reference lines: the paper's values (`paper: {norm: value}`) dashed in
    the norm's colour, the floors of results/floors.csv for this metric grey dotted, labelled
    with the floor's model. Axes: the metric's `log` (as the paper's figure: Figure 6 of Ba et
    al. 2016 plots the training NLL on a log axis and the test error on a linear one), error
    rates (keys ending in /err) in percent, plain numbers on log axes, the y-range by
    `_auto_ylim` unless the metric gives `ylim: [low, high]`."""
    from matplotlib.ticker import FuncFormatter, LogFormatter

    class PlainLog(LogFormatter):  # 0.03, 200 on a log axis instead of 3 x 10^-2, 2 x 10^2
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:.3g}"

    log = bool(m.get("log"))
    series = m.get("series") or [{"key": m["key"]}]
    solid = next((s for s in series if s.get("ls", "-") == "-"), series[0])
    lines = []  # (xs, ys) of every line drawn: what the y-range is read from
    for ser, (name, colour, members) in itertools.product(series, _arms(spec, runs, pv, norms)):
        seeds = [(r.seed, r.series(ser["key"], x)) for r in members]
        seeds = [(s, c) for s, c in seeds if c]
        if not seeds:
            continue
        ls = ser.get("ls", "-")
        if ser.get("name"):  # the series' line style, once in the legend
            drawn.setdefault("styles", {})[ser["name"]] = ls
        steps = sorted(set.intersection(*({p[0] for p in c} for _, c in seeds)))
        if len(seeds) > 1 and (name in split or not steps):
            drawn["split"] = True
            label = f"{name} ({len(seeds)} seeds, each drawn: they split)"
            for k, (_, c) in enumerate(seeds):
                sx, sy = [p[1] for p in c], [p[2] for p in c]
                ax.plot(
                    sx,
                    sy,
                    color=colour,
                    ls=ls,
                    lw=0.9,
                    marker="o" if len(sx) <= MAX_MARKERS else None,
                    ms=2,
                    alpha=0.85,
                    label=label if k == 0 and ser is solid else "_",
                )
                lines.append((sx, sy))
            continue
        by_step = [{p[0]: p for p in c} for _, c in seeds]
        xs = [sum(b[s][1] for b in by_step) / len(by_step) for s in steps]
        mean, lo, hi = _t_band([[b[s][2] for b in by_step] for s in steps], log)
        label = f"{name} (1 seed)"
        if len(seeds) > 1:
            drawn["band"] = True
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.18, lw=0)
            label = f"{name} (mean of {len(seeds)} seeds)"
        ax.plot(
            xs,
            list(mean),
            color=colour,
            ls=ls,
            lw=1.5,
            marker="o" if len(xs) <= MAX_MARKERS else None,
            ms=2.5,
            label=label if ser is solid else "_",
        )
        lines.append((xs, list(mean)))
    percent = not log and all(s["key"].endswith("/err") for s in series)
    refs = []  # reference lines: (value, colour, style, legend label, note at the edge)
    shown = norms or spec["norms"]
    for norm, value in (m.get("paper") or {}).items():  # the paper's final values, dashed
        if norm in shown:
            name = spec["labels"].get(norm, norm)
            label = f"{name}: paper ({spec.get('paper_scale', 'paper scale')})"
            refs.append((value, COLORS.get(norm), "--", label, ("paper", name)))
    keys = {s["key"] for s in series}
    for f in floors:  # the floors of results/floors.csv (e.g. the unigram), grey dotted
        if f["metric"] in keys:
            style = FLOOR_STYLE["ls"]
            refs.append((f["floor"], FLOOR_STYLE["color"], style, f["model"], (f["model"], "")))
    for value, colour, style, label, _ in refs:
        ax.axhline(value, color=colour, ls=style, lw=FLOOR_STYLE["lw"], label=label)
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PlainLog())
        ax.yaxis.set_minor_formatter(PlainLog(labelOnlyBase=False))
    elif percent:  # error rates in percent: readable ticks (1.5 %, 2 %)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.3g} %"))
    if m.get("logx"):
        ax.set_xscale("log")
    if m.get("ylim"):  # [low, high]: the spec's own range
        ax.set_ylim(*m["ylim"])
    else:
        ylim = _auto_ylim(lines, [r[0] for r in refs], log, bool(m.get("logx")))
        if ylim:
            ax.set_ylim(*ylim)
    _note_refs(ax, refs, percent)
    ax.set_xlabel(XLABELS.get(x, x))
    ax.set_ylabel(m["label"])
    if pv is not None:
        ax.set_title(f"{spec['panels'].split('.')[-1].replace('_', ' ')} = {pv}", fontsize=10)
    ax.grid(alpha=0.3)


def _auto_ylim(lines, refs, log: bool = False, logx: bool = False):
    """The y-range of a panel from the region that matters, not from the untrained model's
    first evaluation: the values of the drawn lines (means, single seeds) from HEAD_FRACTION
    (15 %) of the panel's x-range on (the x-range from 0, the start of training, to the last
    evaluation; on a log-x axis in logs, from the first evaluation after 0; all values when
    none lies there), widened to every reference value (a paper value, a floor)
    that lies within REF_REACH (1) spans of them, then padded by PAD_FRACTION (10 %) of the span
    on each side. On a log y axis all of this is done on the logs. A reference line further
    away stays off the panel and is noted at its edge (`_note_refs`). None when nothing is
    drawn. A metric's `ylim: [low, high]` in the spec replaces this rule."""

    def scale(v, is_log):
        v = float(v)
        if is_log:
            return math.log10(v) if v > 0 else math.nan
        return v

    pts = [(scale(a, logx), scale(b, log)) for xs, ys in lines for a, b in zip(xs, ys, strict=True)]
    pts = [p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1])]
    if not pts:
        return None
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    x0 = x0 if logx else min(x0, 0.0)  # training starts at 0 updates (epochs, seconds)
    cut = x0 + HEAD_FRACTION * (x1 - x0)
    ys = [y for x, y in pts if x >= cut] or [y for _, y in pts]
    lo, hi = min(ys), max(ys)
    reach = REF_REACH * ((hi - lo) or abs(hi) * 0.1 or 1.0)
    for r in (scale(r, log) for r in refs):
        if math.isfinite(r) and lo - reach <= r <= hi + reach:
            lo, hi = min(lo, r), max(hi, r)
    pad = PAD_FRACTION * ((hi - lo) or abs(hi) * 0.1 or 1.0)
    lo, hi = lo - pad, hi + pad
    return (10**lo, 10**hi) if log else (lo, hi)


def _note_refs(ax, refs, percent: bool = False) -> None:
    """The reference lines off the panel's y-range, named with their values in one line of
    small text inside the panel's top (or bottom) edge, in the padding that `_auto_ylim` leaves
    free of the curves, with an arrow that points where they lie: `paper: LN-GRU 0.854, GRU
    0.842 \u2191`, `unigram of the training text 4.34 \u2191`."""
    low, high = sorted(ax.get_ylim())
    for side, group in (
        ("top", [r for r in refs if r[0] > high]),
        ("bottom", [r for r in refs if r[0] < low]),
    ):
        notes: dict[str, list[str]] = {}
        for value, _, _, _, (kind, name) in group:
            shown = f"{100 * value:.3g} %" if percent else f"{value:.4g}"
            notes.setdefault(kind, []).append(f"{name} {shown}".strip())
        if not notes:
            continue
        text = "; ".join(
            f"{k}: {', '.join(v)}" if k == "paper" else f"{k} {v[0]}" for k, v in notes.items()
        )
        colours = {r[1] for r in group}
        ax.text(
            0.99,
            0.985 if side == "top" else 0.015,
            text + (" \u2191" if side == "top" else " \u2193"),
            transform=ax.transAxes,
            ha="right",
            va=side,
            fontsize=6.5,
            color=colours.pop() if len(colours) == 1 else "0.25",
        )


def _legend(fig, axes: list, width: float, styles: dict) -> None:
    """One legend for the whole figure, below the panels: every label once, in drawing order,
    then the line style of each named series (Figure 5: train dashed, validation solid)."""
    from matplotlib.lines import Line2D

    handles: dict = {}
    for ax in axes:
        if not ax.get_visible():
            continue
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    for name, ls in styles.items():
        handles.setdefault(name, Line2D([], [], color="0.3", ls=ls, lw=1.5))
    if not handles:
        return
    longest = max(len(label) for label in handles)
    ncols = max(1, min(len(handles), int(width * 13 / (longest + 6))))
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncols=ncols,
        fontsize=8,
        frameon=False,
    )


def _seed_text(seeds) -> str:
    """1, 2, 3 -> '1-3'; 1, 3 -> '1, 3'."""
    s = sorted(seeds)
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ", ".join(map(str, s))


def _caption(spec: dict, scale: str, runs: list, drawn: dict, width: float) -> str:
    """At most two lines under the title, from what the CSVs say the runs were: the dataset
    (without its parentheses), the scale and experiment, the updates (and epochs) trained, the
    seeds, and what the lines and bands are. Shortened (experiment name dropped, then cut)
    when it does not fit two lines of the figure's width."""
    dataset = re.sub(r"\s+", " ", re.sub(r"\s*\([^()]*\)", "", spec.get("dataset", ""))).strip()
    experiments = sorted({r.info.get("experiment", "") for r in runs} - {""})
    trained = sorted(
        {
            (
                int(_float(r.info.get("steps")) or 0),
                float(f"{_float(r.info.get('epochs')) or 0:.3g}"),
            )
            for r in runs
        }
        - {(0, 0.0)}
    )
    trained = " / ".join(
        f"{s:,} updates" + (f" ({e:g} epoch{'s' * (e != 1)})" if e else "") for s, e in trained
    )
    by_norm: dict[str, set] = defaultdict(set)
    for r in runs:
        by_norm[spec["labels"].get(r.norm, r.norm)].add(r.seed)
    common = max(by_norm.values(), key=len)
    seeds = f"seeds {_seed_text(common)}"
    seeds += "".join(f", {n}: {_seed_text(s)}" for n, s in by_norm.items() if s != common)
    what = []
    if drawn.get("band"):
        what.append("lines: mean of the seeds, bands: 95\u00a0% t-interval")
    if drawn.get("split"):
        what.append("thin lines: seeds that split")
    incomplete = sum(r.info.get("status", "completed") != "completed" for r in runs)
    parts = [dataset, f"{scale} scale ({', '.join(experiments)})", trained, seeds, *what]
    if incomplete:
        parts.append(f"{incomplete} run{'s' * (incomplete > 1)} not completed")
    chars = int(width * 14)
    for attempt in range(2):
        lines = textwrap.wrap("; ".join(p for p in parts if p), chars)
        if len(lines) <= 2:
            return "\n".join(lines)
        parts[1] = f"{scale} scale" if attempt == 0 else parts[1]
    return "\n".join([lines[0], textwrap.shorten(" ".join(lines[1:]), chars, placeholder=" ...")])


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
    """What the figure `png` is drawn from: the drawing code (the source of PLOT_CODE, the
    values of PLOT_CONSTANTS), the spec's plotting keys, the CSVs beside the PNG (their bytes)
    and this figure's rows of the floors file beside them, as a short sha256."""
    import hashlib
    import inspect

    h = hashlib.sha256()
    for name in PLOT_CODE:
        obj = globals()[name]
        # a class: its docstring and methods (the source of a class needs its module in
        # sys.modules, which a script loaded by the tests is not)
        if inspect.isclass(obj):
            methods = [f for f in vars(obj).values() if inspect.isfunction(f)]
            h.update((obj.__doc__ or "").encode())
            h.update("".join(map(inspect.getsource, methods)).encode())
        else:
            h.update(inspect.getsource(obj).encode())
    h.update(repr([globals()[name] for name in PLOT_CONSTANTS]).encode())
    h.update(json.dumps({k: spec.get(k) for k in PLOT_KEYS}, sort_keys=True, default=str).encode())
    for f in (png.with_suffix(".csv"), png.with_name(f"{png.stem}_curves.csv")):
        h.update(f.read_bytes() if f.exists() else b"-")
    scale = png.stem[len(spec["name"]) + 1 :] or "cpu"
    h.update(json.dumps(read_floors(png.parent, spec["name"], scale), sort_keys=True).encode())
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
    p.add_argument("action", choices=["run", "plot", "draw", "check"])
    p.add_argument("spec", nargs="?", help="experiments/<figure>.yaml (not for check, draw --all)")
    p.add_argument(
        "--all",
        action="store_true",
        help="draw: every experiments/*.yaml whose CSVs are in --out (at --scale)",
    )
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
    if args.action == "draw" and args.all:
        return draw_all(Path(args.out), args.scale)
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
    if args.action == "draw":
        return draw(spec, args.scale, Path(args.out))
    return plot(spec, args.scale, Path(args.out), args.confirmatory)


if __name__ == "__main__":
    sys.exit(main())
