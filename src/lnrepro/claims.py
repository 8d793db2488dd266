"""The paper's claims as data, checked by code from the committed results.

Each `experiments/<figure>.yaml` holds a `claims:` list; every claim quotes the paper (Ba, Kiros,
Hinton 2016, or a follow-up that gives the number) and names one check from a small vocabulary.
This module reads ONLY what is committed: `results/<figure>.csv` (one row per run, final values)
and `results/<figure>_curves.csv` (every logged value: norm, seed, grid keys, step, epoch, metric,
value; written by `scripts/figure.py plot`), never the git-ignored run folders, and decides each
verdict from the seeds with a 95 % interval. `scripts/claims.py` writes results/claims.md,
results/claims.csv and the README's experiments table from it.

Metrics are lower-is-better (errors, NLL, BPC, perplexity, s/update) unless the figure's
`metrics:` entry says `higher_is_better: true` (accuracies, correlations, recalls). Checks, with A
and B the claim's two norms (A the one the paper favours):

- final_lower: the final value of A is below B's. Effect: mean(A) - mean(B) (or, with
  `log: true`, the ratio of geometric means), Welch t interval. final_higher: the same for a
  higher-is-better metric, A above B.
- faster: A reaches B's level in at most `max_ratio` of B's updates. The level is the worst
  final value among B's seeds (the highest, or the lowest of a higher-is-better metric), so that
  every seed of B reaches it; each seed's updates-to-level is the first evaluation that reaches it. Effect: the ratio of geometric means
  of the updates, a Welch interval on their logarithms. A seed that never reaches the level
  makes the claim inconclusive.
- setting_lower: one norm A, its final value at one grid setting below its value at another
  (`settings: {key: [x, y]}`, e.g. LN gains initialised to 1.0 vs 0.1). Effect: mean(x) - mean(y).
- lower_at: A is below B at the first evaluation at or after `at` (`x`: step or epoch).
- robust: going from one setting to another (`between: {key: [from, to]}`, e.g. batch 128 -> 4),
  A's value rises less than B's. Effect: (A_to - A_from) - (B_to - B_from), a
  Welch-Satterthwaite interval over the four independent groups of seeds.
- comparable: A and B are equal within a margin stated in advance (`margin`: in the metric's
  units, or a ratio > 1 with `log: true`): an equivalence test with the 95 % interval.
- not_testable: a claim about converged values that the CPU budget cannot reach (`reason`).

Verdicts: supported (the interval lies on the claim's side of its threshold), contradicted (on
the other side), inconclusive (it straddles the threshold, fewer than 2 seeds on a side, or a
seed never reaches a `faster` level), not testable at this scale. Never a bootstrap: with 3 seeds
it has 10 distinct resamples and covers far less than 95 %.

The t quantile comes from scipy, which the pinned requirements install (optuna, through
hydra-optuna-sweeper, depends on it); the tests check it against tabulated values.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from scipy import stats

CHECKS = (
    "final_lower",
    "final_higher",
    "final_below",
    "setting_lower",
    "faster",
    "lower_at",
    "robust",
    "comparable",
    "not_testable",
)
LOWER_ONLY = ("final_lower", "final_below", "setting_lower", "lower_at", "robust")
ONE_NORM = ("final_below", "setting_lower")  # checks of "lower is better"
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_TESTABLE = "not testable at this scale"
LEVEL = 0.95
BEGIN, END = "<!-- claims:begin", "<!-- claims:end -->"
PAPER = (
    'Sections, figures and tables are those of Ba, Kiros, Hinton 2016 ("Layer '
    'Normalization") unless another paper is named.'
)


# ---- statistics -------------------------------------------------------------------------------
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df (possibly fractional) degrees of freedom."""
    return float(stats.t.ppf(p, df))


@dataclass
class Interval:
    effect: float
    low: float
    high: float
    df: float


def linear_interval(samples: list[list[float]], coefs: list[float]) -> Interval:
    """95 % interval of sum_i c_i * mean(samples_i) over independent samples of >= 2 values each:
    standard error from the sample variances, Welch-Satterthwaite degrees of freedom
    df = (sum v_i)^2 / sum v_i^2 / (n_i - 1), with v_i = c_i^2 s_i^2 / n_i."""
    effect = sum(c * statistics.fmean(s) for c, s in zip(coefs, samples))
    parts = [(c * c * statistics.variance(s) / len(s), len(s)) for c, s in zip(coefs, samples)]
    var = sum(v for v, _ in parts)
    if var == 0:  # no spread in any group: the interval is the point itself
        return Interval(effect, effect, effect, math.inf)
    df = var**2 / sum(v * v / (n - 1) for v, n in parts)
    half = t_quantile(0.5 + LEVEL / 2, df) * math.sqrt(var)
    return Interval(effect, effect - half, effect + half, df)


def welch_interval(a: list[float], b: list[float]) -> Interval:
    """Welch's t interval for mean(a) - mean(b) (unequal variances)."""
    return linear_interval([a, b], [1.0, -1.0])


def decide_lower(iv: Interval, threshold: float = 0.0) -> str:
    """The claim is `effect < threshold`."""
    if iv.high < threshold:
        return SUPPORTED
    return CONTRADICTED if iv.low > threshold else INCONCLUSIVE


def decide_higher(iv: Interval) -> str:
    """The claim is `effect > 0`."""
    return decide_lower(Interval(-iv.effect, -iv.high, -iv.low, iv.df))


def higher_is_better(spec: dict, metric: str) -> bool:
    """Whether the figure declares `metric` higher-is-better (its `metrics:` entry)."""
    return any(
        m.get("key") == metric and m.get("higher_is_better") for m in spec.get("metrics") or []
    )


def decide_within(iv: Interval, margin: float) -> str:
    """The claim is `|effect| < margin` (equivalence, with the same 95 % interval)."""
    if -margin < iv.low and iv.high < margin:
        return SUPPORTED
    return CONTRADICTED if iv.low >= margin or iv.high <= -margin else INCONCLUSIVE


# ---- the committed results of one figure --------------------------------------------------------
@dataclass
class FigureData:
    """The completed runs of results/<stem>.csv and, if committed, their curves."""

    spec: dict
    stem: str
    runs: list[dict]
    curves: dict | None  # (norm, seed, grid values) -> metric -> [(step, epoch, value)]
    missing: str = ""  # why there are no runs at all

    @property
    def grid_keys(self) -> list[str]:
        return list(self.spec.get("grid") or {})

    def key(self, row: dict) -> tuple:
        return (row["norm"], str(row["seed"]), tuple(str(row[k]) for k in self.grid_keys))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_figure(results: Path, spec: dict, scale: str = "cpu") -> FigureData:
    stem = spec["name"] if scale == "cpu" else f"{spec['name']}_{scale}"
    table = results / f"{stem}.csv"
    if not table.exists():
        return FigureData(spec, stem, [], None, f"no results/{stem}.csv")
    runs = [r for r in read_csv(table) if r.get("status") == "completed"]
    data = FigureData(spec, stem, runs, None)
    curves_file = results / f"{stem}_curves.csv"
    if curves_file.exists():
        data.curves = {}
        for row in read_csv(curves_file):
            point = (int(row["step"]), _float(row["epoch"]), _float(row["value"]))
            data.curves.setdefault(data.key(row), {}).setdefault(row["metric"], []).append(point)
    return data


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def matching(data: FigureData, norm: str, where: dict) -> list[dict]:
    """Completed runs of one norm at the given grid values, by seed."""
    rows = [
        r
        for r in data.runs
        if r["norm"] == norm and all(str(r.get(k)) == str(v) for k, v in where.items())
    ]
    return sorted(rows, key=lambda r: int(r["seed"]))


def final_values(data: FigureData, norm: str, where: dict, metric: str) -> list[float]:
    """Each seed's final value (column final_<metric>, or <metric> such as s_per_update)."""
    col = f"final_{metric}"
    vals = [_float(r.get(col, r.get(metric, ""))) for r in matching(data, norm, where)]
    return [v for v in vals if math.isfinite(v)]


def seed_curves(
    data: FigureData, norm: str, where: dict, metric: str, reasons: list[str]
) -> dict[str, list]:
    """Seed -> the metric's finite points [(step, epoch, value)] after the first update; a
    completed run without any is named in `reasons`."""
    out = {}
    for r in matching(data, norm, where):
        points = (data.curves or {}).get(data.key(r), {}).get(metric, [])
        points = sorted(p for p in points if p[0] > 0 and math.isfinite(p[2]))
        if points:
            out[r["seed"]] = points
        else:
            reasons.append(f"{label(norm)} seed {r['seed']} has no {metric} curve")
    return out


# ---- checks -------------------------------------------------------------------------------------
@dataclass
class Result:
    figure: str
    claim: dict
    tested: str
    measured: str = "–"
    effect_name: str = ""
    interval: Interval | None = None
    ratio: bool = False  # the interval is on a log scale: show exp(.)
    verdict: str = INCONCLUSIVE
    reasons: list[str] = field(default_factory=list)

    def effect_text(self) -> str:
        if self.interval is None:
            return "–"
        f = math.exp if self.ratio else (lambda v: v)
        iv = self.interval
        low, high = num(f(iv.low), 3), num(f(iv.high), 3)
        return f"{self.effect_name} = {num(f(iv.effect), 3)} [{low}, {high}]"

    def verdict_text(self) -> str:
        return f"{self.verdict} ({'; '.join(self.reasons)})" if self.reasons else self.verdict


def label(norm: str) -> str:
    """A norm's name in the claims tables, as its class declares it (LN, BN, baseline; others
    their short name)."""
    from lnrepro.nn.norm import display  # (torch: only when a table is written)

    return display(norm)[0]


def setting(where: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]} {v}" for k, v in where.items())


def num(v: float, sig: int = 4) -> str:
    """A number for the tables: `sig` significant digits, thousands separated, no exponent
    above 1000."""
    if not math.isfinite(v):
        return str(v)
    text = f"{v:.{sig}g}"
    return f"{v:,.0f}" if "e+" in text or abs(v) >= 1000 else text


def summary(name: str, values: list[float]) -> str:
    """`LN 0.0223 ± 0.0025 (n=3)`: mean ± sample standard deviation over seeds."""
    if not values:
        return f"{name} – (n=0)"
    if len(values) == 1:
        return f"{name} {num(values[0])} (n=1)"
    return (
        f"{name} {num(statistics.fmean(values))} ± {num(statistics.stdev(values), 2)} "
        f"(n={len(values)})"
    )


def too_few(groups: dict[str, list]) -> list[str]:
    """`n=1` (or n=0) when a group has fewer than 2 seeds: no interval can be computed."""
    n = min(len(v) for v in groups.values())
    return [f"n={n}"] if n < 2 else []


def _transform(values: list[float], log: bool) -> list[float]:
    return [math.log(v) for v in values] if log else values


def compare_groups(
    res: Result, groups: dict[str, list[float]], coefs: list[float], log: bool, decide
) -> Result:
    """Effect sum_i c_i mean_i (on logs with `log`), its interval and verdict (if n >= 2)."""
    res.reasons += too_few(groups)
    res.ratio = log
    if not res.reasons:
        if log and any(v <= 0 for vals in groups.values() for v in vals):
            res.reasons.append("log of a value <= 0")
            return res
        res.interval = linear_interval([_transform(v, log) for v in groups.values()], coefs)
        res.verdict = decide(res.interval)
    return res


def compare_pair(c: dict, res: Result, groups: dict[str, list[float]], decide) -> Result:
    """Norm A against norm B: mean(A) - mean(B), or with `log: true` the ratio of geometric
    means."""
    a, b = c["norms"]
    res.measured = "; ".join(summary(label(n), v) for n, v in groups.items())
    res.effect_name = f"{label(a)} / {label(b)}" if c.get("log") else f"{label(a)} - {label(b)}"
    return compare_groups(res, groups, [1.0, -1.0], c.get("log", False), decide)


def pair_finals(c: dict, data: FigureData) -> dict[str, list[float]]:
    return {n: final_values(data, n, c.get("where", {}), c["metric"]) for n in c["norms"]}


def check_final_lower(c: dict, data: FigureData, res: Result) -> Result:
    return compare_pair(c, res, pair_finals(c, data), decide_lower)


def check_final_higher(c: dict, data: FigureData, res: Result) -> Result:
    return compare_pair(c, res, pair_finals(c, data), decide_higher)


def check_final_below(c: dict, data: FigureData, res: Result) -> Result:
    """One norm's final metric against a fixed bar (a sanity floor set before the runs): the
    one-sample t interval of mean - bar (n - 1 degrees of freedom) must lie below 0."""
    (a,) = c["norms"]
    values = final_values(data, a, c.get("where", {}), c["metric"])
    res.measured = summary(label(a), values)
    res.effect_name = f"{label(a)} - {c['value']}"
    return compare_groups(res, {a: [v - c["value"] for v in values]}, [1.0], False, decide_lower)


def check_setting_lower(c: dict, data: FigureData, res: Result) -> Result:
    """One norm at two grid settings: mean(x) - mean(y) < 0."""
    (a,) = c["norms"]
    ((key, (x, y)),) = c["settings"].items()
    short = key.split(".")[-1]
    groups = {
        f"{short} {v}": final_values(data, a, {**c.get("where", {}), key: v}, c["metric"])
        for v in (x, y)
    }
    res.measured = "; ".join(summary(f"{label(a)} {n}", v) for n, v in groups.items())
    res.effect_name = f"{short} {x} - {short} {y}"
    return compare_groups(res, groups, [1.0, -1.0], c.get("log", False), decide_lower)


def check_comparable(c: dict, data: FigureData, res: Result) -> Result:
    margin = math.log(c["margin"]) if c.get("log") else c["margin"]
    return compare_pair(c, res, pair_finals(c, data), lambda iv: decide_within(iv, margin))


def check_robust(c: dict, data: FigureData, res: Result) -> Result:
    a, b = c["norms"]
    ((key, (frm, to)),) = c["between"].items()
    where = c.get("where", {})
    groups, parts = {}, []
    for n in (a, b):
        for v in (to, frm):
            groups[f"{n} {v}"] = final_values(data, n, {**where, key: v}, c["metric"])
        parts.append(
            f"{label(n)}: " + ", ".join(summary(f"{v}:", groups[f"{n} {v}"]) for v in (frm, to))
        )
    res.measured = "; ".join(parts)
    short = key.split(".")[-1]
    res.effect_name = f"rise {short} {frm} -> {to}, {label(a)} - {label(b)}"
    if c.get("log"):
        res.effect_name = f"rise {short} {frm} -> {to} (ratio), {label(a)} / {label(b)}"
    return compare_groups(res, groups, [1.0, -1.0, -1.0, 1.0], c.get("log", False), decide_lower)


def check_lower_at(c: dict, data: FigureData, res: Result) -> Result:
    if data.curves is None:
        return _no_curves(res, data)
    x, at = c.get("x", "epoch"), c["at"]
    col = 0 if x == "step" else 1
    groups = {}
    for n in c["norms"]:
        groups[n] = []
        for seed, points in seed_curves(
            data, n, c.get("where", {}), c["metric"], res.reasons
        ).items():
            later = [p for p in points if p[col] >= at - 1e-9]
            if later:
                groups[n].append(later[0][2])
            else:
                res.reasons.append(f"{label(n)} seed {seed} has no evaluation at {x} >= {at}")
    return compare_pair(c, res, groups, decide_lower)


def updates_to(points: list, level: float, higher: bool = False) -> int | None:
    """The step of the first evaluation at or below `level` (at or above it with `higher`;
    None: never)."""
    sign = -1.0 if higher else 1.0
    return next((step for step, _, value in points if sign * value <= sign * level), None)


def check_faster(c: dict, data: FigureData, res: Result) -> Result:
    a, b = c["norms"]
    if data.curves is None:
        return _no_curves(res, data)
    curves = {n: seed_curves(data, n, c.get("where", {}), c["metric"], res.reasons) for n in (a, b)}
    if not curves[b]:
        res.reasons.append(f"no {label(b)} curve of {c['metric']}")
        return res
    higher = higher_is_better(data.spec, c["metric"])
    level = (min if higher else max)(pts[-1][2] for pts in curves[b].values())
    res.tested += f" (level: {num(level)})"
    groups = {}
    for n in (a, b):
        steps = {seed: updates_to(pts, level, higher) for seed, pts in curves[n].items()}
        res.reasons += [
            f"{label(n)} seed {s} never reaches it" for s, t in steps.items() if t is None
        ]
        groups[n] = [t for t in steps.values() if t is not None]
    res.measured = "updates: " + "; ".join(summary(label(n), v) for n, v in groups.items())
    res.effect_name = f"{label(a)} / {label(b)} updates"
    return compare_groups(
        res, groups, [1.0, -1.0], True, lambda iv: decide_lower(iv, math.log(c["max_ratio"]))
    )


def _no_curves(res: Result, data: FigureData) -> Result:
    res.reasons.append(f"no results/{data.stem}_curves.csv")
    return res


CHECK_FUNCTIONS = {
    "final_lower": check_final_lower,
    "final_higher": check_final_higher,
    "final_below": check_final_below,
    "setting_lower": check_setting_lower,
    "faster": check_faster,
    "lower_at": check_lower_at,
    "robust": check_robust,
    "comparable": check_comparable,
}


def describe(c: dict, spec: dict) -> str:
    """The claim as we test it, thresholds included, in words."""
    kind, m = c["check"], c.get("metric")
    if kind == "not_testable":
        return f"not testable: {c['reason']}"
    at = f" ({setting(c['where'])})" if c.get("where") else ""
    if kind == "final_below":
        return f"final {m}{at}: {label(c['norms'][0])} < {c['value']} (fixed bar)"
    if kind == "setting_lower":
        ((key, (x, y)),) = c["settings"].items()
        short = key.split(".")[-1]
        return f"final {m}{at}, {label(c['norms'][0])}: {short} {x} < {short} {y}"
    a, b = (label(n) for n in c["norms"])
    if kind in ("final_lower", "final_higher"):
        return f"final {m}{at}: {a} {'<' if kind == 'final_lower' else '>'} {b}"
    if kind == "lower_at":
        return f"{m} at {c.get('x', 'epoch')} {c['at']}{at}: {a} < {b}"
    if kind == "faster":
        reach = ">=" if higher_is_better(spec, m) else "<="
        return f"updates until {m} {reach} {b}'s worst final{at}: {a} / {b} < {c['max_ratio']}"
    if kind == "robust":
        ((key, (frm, to)),) = c["between"].items()
        return f"final {m}{at}, rise from {key.split('.')[-1]} {frm} to {to}: {a}'s < {b}'s"
    if kind == "comparable":
        band = (
            f"{a} / {b} within [{num(1 / c['margin'], 3)}, {c['margin']}]"
            if c.get("log")
            else f"|{a} - {b}| < {c['margin']}"
        )
        return f"{m}{at}: {band}"
    raise ValueError(kind)


def evaluate(spec: dict, data: FigureData) -> list[Result]:
    """One Result per claim of the figure, in the yaml's order."""
    out = []
    for c in spec.get("claims") or []:
        res = Result(spec["name"], c, describe(c, spec))
        if c["check"] == "not_testable":
            res.verdict, res.reasons = NOT_TESTABLE, []
        elif data.missing:
            res.reasons.append(data.missing)
        else:
            CHECK_FUNCTIONS[c["check"]](c, data, res)
        out.append(res)
    return out


# ---- the claims lists ------------------------------------------------------------------------
def validate(spec: dict, source: str) -> None:
    """Every claim names a known check and what it needs, stated before any result is seen."""
    ids = set()
    for i, c in enumerate(spec.get("claims") or []):
        where = f"{source}: claim {c.get('id', i)}"
        need = {"id", "section", "quote", "check"}
        if c.get("check") == "not_testable":
            need |= {"reason"}
        else:
            need |= {"metric", "norms"}
            need |= {
                "faster": {"max_ratio"},
                "lower_at": {"at"},
                "robust": {"between"},
                "comparable": {"margin"},
                "final_below": {"value"},
                "setting_lower": {"settings"},
            }.get(c.get("check"), set())
        missing = sorted(k for k in need if c.get(k) in (None, ""))
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if c["check"] not in CHECKS:
            raise ValueError(f"{where}: check must be one of {', '.join(CHECKS)}")
        if c["id"] in ids:
            raise ValueError(f"{where}: duplicate id")
        ids.add(c["id"])
        count = 1 if c["check"] in ONE_NORM else 2
        words = {1: "one", 2: "two"}
        if "norms" in c and (len(c["norms"]) != count or not set(c["norms"]) <= set(spec["norms"])):
            raise ValueError(f"{where}: norms must be {words[count]} of {spec['norms']}")
        if c["check"] == "robust" and (
            len(c["between"]) != 1 or len(next(iter(c["between"].values()))) != 2
        ):
            raise ValueError(f"{where}: between must be {{key: [from, to]}}")
        if c["check"] == "setting_lower" and (
            len(c["settings"]) != 1 or len(next(iter(c["settings"].values()))) != 2
        ):
            raise ValueError(f"{where}: settings must be {{key: [x, y]}}")
        if c["check"] == "lower_at" and c.get("x", "epoch") not in ("step", "epoch"):
            raise ValueError(f"{where}: x must be step or epoch")
        higher = higher_is_better(spec, c.get("metric"))
        if higher and c["check"] in LOWER_ONLY:
            raise ValueError(f"{where}: {c['metric']} is higher-is-better: use final_higher")
        if not higher and c["check"] == "final_higher":
            raise ValueError(f"{where}: {c['metric']} is lower-is-better: use final_lower")
        if c["check"] == "comparable" and c.get("log") and c["margin"] <= 1:
            raise ValueError(f"{where}: with log: true the margin is a ratio > 1")


def load_specs(experiments: Path, order: list[str] | None = None) -> list[dict]:
    """The experiments/*.yaml that have claims, in `order` (figure names) first, then by name."""
    specs = []
    for path in sorted(experiments.glob("*.yaml")):
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if spec.get("claims"):
            validate(spec, f"experiments/{path.name}")
            specs.append(spec)
    rank = {name: i for i, name in enumerate(order or [])}
    return sorted(specs, key=lambda s: (rank.get(s["name"], len(rank)), s["name"]))


def make_targets(makefile: Path) -> tuple[dict[str, str], list[str]]:
    """{figure name: make target} from the figure table (`fig.spec.<target> := <name>`, read by
    FIGURE_RECIPE) and the other recipes that run experiments/<name>.yaml, and the figure names
    in the order of FIGURE_TARGETS (the order `make reproduce` runs them)."""
    targets, current = {}, None
    order_line = ""
    for line in makefile.read_text().splitlines():
        if line.startswith("FIGURE_TARGETS"):
            order_line = line.split("=", 1)[1]
        spec = re.match(r"^fig\.spec\.([A-Za-z0-9_-]+)\s*:?=\s*([A-Za-z0-9_]+)\s*$", line)
        if spec:
            targets[spec.group(2)] = spec.group(1)
            continue
        m = re.match(r"^([A-Za-z0-9_-]+):", line)
        if m:
            current = m.group(1)
        elif line.startswith("\t") and current:
            for name in re.findall(r" run experiments/([A-Za-z0-9_]+)\.yaml", line):
                targets[name] = current
    by_target = {t: n for n, t in targets.items()}
    return targets, [by_target[t] for t in order_line.split() if t in by_target]


# ---- reports ------------------------------------------------------------------------------------
@dataclass
class Report:
    specs: list[dict]
    data: dict[str, FigureData]
    results: list[Result]
    targets: dict[str, str]
    notes: set[str] = field(default_factory=set)  # stems with a results/<stem>.md discussion


def build(root: Path) -> Report:
    """Every claim of experiments/*.yaml checked against results/ (CPU scale)."""
    targets, order = make_targets(root / "Makefile")
    specs = load_specs(root / "experiments", order)
    data = {s["name"]: load_figure(root / "results", s) for s in specs}
    results = [r for s in specs for r in evaluate(s, data[s["name"]])]
    notes = {d.stem for d in data.values() if (root / "results" / f"{d.stem}.md").exists()}
    return Report(specs, data, results, targets, notes)


def runs_table(rep: Report, prefix: str) -> list[str]:
    """One row per figure: its make target, result files, runs and seeds, summed run time."""
    lines = [
        (
            "| figure | make target | results | runs | seeds per norm (fewest over the grid) "
            "| summed run time |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for s in rep.specs:
        d = rep.data[s["name"]]
        target = f"`make {rep.targets[s['name']]}`" if s["name"] in rep.targets else "–"
        if d.missing:
            notes = f"[notes]({prefix}{d.stem}.md)" if d.stem in rep.notes else "–"
            lines.append(f"| {s['title']} | {target} | {notes} | 0 | – | – |")
            continue
        links = [f"[png]({prefix}{d.stem}.png)", f"[csv]({prefix}{d.stem}.csv)"]
        if d.curves is not None:
            links.append(f"[curves]({prefix}{d.stem}_curves.csv)")
        if d.stem in rep.notes:
            links.append(f"[notes]({prefix}{d.stem}.md)")
        seeds = []
        for n in s["norms"]:
            grid = Counter(tuple(r.get(k) for k in d.grid_keys) for r in d.runs if r["norm"] == n)
            seeds.append(f"{label(n)} {min(grid.values()) if grid else 0}")
        minutes = sum(_float(r.get("wall_time_s", "")) for r in d.runs) / 60
        lines.append(
            f"| {s['title']} | {target} | {', '.join(links)} | {len(d.runs)} completed "
            f"| {', '.join(seeds)} | {minutes:.1f} min |"
        )
    return lines


def claims_table(rep: Report) -> list[str]:
    lines = [
        (
            "| figure | paper | the paper says | claim tested (threshold fixed in advance) "
            "| we get: mean ± sd (n seeds) | effect [95 % interval] | verdict |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    previous = None
    for r in rep.results:
        fig = r.figure if r.figure != previous else ""
        previous = r.figure
        cells = [
            fig,
            r.claim["section"],
            _cell(r.claim["quote"]),
            _cell(r.tested),
            _cell(r.measured),
            _cell(r.effect_text()),
            f"**{r.verdict_text()}**",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def note(rep: Report) -> list[str]:
    """How verdicts are decided, and how many false ones to expect."""
    tested = sum(r.verdict != NOT_TESTABLE for r in rep.results)
    rules = (
        "Verdicts are computed by `src/lnrepro/claims.py`: **supported** when the 95 % "
        "interval of the effect lies on the claim's side of its threshold, **contradicted** "
        "when it lies on the other side, **inconclusive** when it straddles the threshold, "
        "when a side has fewer than 2 seeds (n=1: no interval), or when a seed never reaches "
        "a `faster` level; **not testable at this scale** for claims about converged values "
        "that the CPU budget cannot reach. Intervals: Welch t for differences of seed means "
        "(Welch-Satterthwaite degrees of freedom), on logarithms for ratios and for "
        "updates-to-level; no bootstrap."
    )
    chance = (
        f"With n = 3 seeds per norm an interval is wide, so **inconclusive** is a likely "
        f"outcome. With {tested} claims checked at 95 %, about "
        f"{tested * (1 - LEVEL):.1f} false verdict(s) are expected by chance alone (about "
        f"one in 20 claims)."
    )
    return [rules, "", chance]


def claims_md(rep: Report) -> str:
    intro = (
        "Generated by `make claims` (`python scripts/claims.py`) from the committed "
        "`results/<figure>.csv` and `results/<figure>_curves.csv` and the `claims:` lists "
        "of `experiments/*.yaml`; do not edit by hand. Metrics are lower-is-better "
        "unless the claim says final_higher or reaches a level with >=."
    )
    lines = [
        "# The paper's claims, checked against our runs (CPU scale)",
        "",
        intro,
        "",
        "## Runs",
        "",
        *runs_table(rep, ""),
        "",
        "## Claims",
        "",
        PAPER,
        "",
        *claims_table(rep),
        "",
        *note(rep),
        "",
    ]
    return "\n".join(lines)


def claims_csv(rep: Report) -> str:
    """One row per claim; effect and interval as numbers (ratios already exponentiated)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "figure",
            "id",
            "section",
            "quote",
            "check",
            "metric",
            "norms",
            "claim_tested",
            "measured",
            "effect",
            "effect_kind",
            "ci_low",
            "ci_high",
            "df",
            "verdict",
            "reason",
        ]
    )
    for r in rep.results:
        c, iv = r.claim, r.interval
        numbers = [""] * 5
        if iv:
            f = math.exp if r.ratio else float
            numbers = [
                f"{f(iv.effect):.6g}",
                "ratio" if r.ratio else "difference",
                f"{f(iv.low):.6g}",
                f"{f(iv.high):.6g}",
                f"{iv.df:.4g}",
            ]
        w.writerow(
            [
                r.figure,
                c["id"],
                c["section"],
                _cell(c["quote"]),
                c["check"],
                c.get("metric", ""),
                "/".join(c.get("norms", [])),
                _cell(r.tested),
                r.measured,
                *numbers,
                r.verdict,
                "; ".join(r.reasons),
            ]
        )
    return out.getvalue()


def readme_block(rep: Report) -> str:
    head = (
        f"{BEGIN}: generated by `make claims` from results/ (scripts/claims.py --readme); "
        "do not edit by hand -->"
    )
    links = (
        "The paper's claims, each checked by code against our seeds "
        "([results/claims.md](results/claims.md), [csv](results/claims.csv)). " + PAPER
    )
    lines = [
        head,
        "",
        *runs_table(rep, "results/"),
        "",
        links,
        "",
        *claims_table(rep),
        "",
        *note(rep),
        END,
    ]
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    """README text with the part between the claims markers replaced by `block`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no '{BEGIN} ... -->' / '{END}' markers")
    return readme[:start] + block + readme[end + len(END) :]


def outputs(root: Path, readme: bool = False) -> dict[Path, str]:
    """{file: its generated text}: results/claims.md, results/claims.csv and, with readme,
    README.md with its experiments table regenerated."""
    rep = build(root)
    files = {
        root / "results" / "claims.md": claims_md(rep),
        root / "results" / "claims.csv": claims_csv(rep),
    }
    if readme:
        path = root / "README.md"
        files[path] = replace_block(path.read_text(), readme_block(rep))
    return files
