"""One check per claim: the groups of seeds it compares, the interval and the verdict."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from lnrepro.claims.results import FigureData, final_values, seed_curves
from lnrepro.claims.simulate import log_spaced, power
from lnrepro.claims.specs import claim_higher, describe
from lnrepro.claims.speed import Crossings, auc, crossings, speed_test
from lnrepro.claims.stats import (
    INCONCLUSIVE,
    NOT_TESTABLE,
    Interval,
    decide_higher,
    decide_lower,
    decide_within,
    linear_interval,
    p_values,
    welch_interval,
)
from lnrepro.claims.text import label, num, summary


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
    p_support: float | None = None  # one-sided p of the claim's side at its threshold
    p_contradict: float | None = None  # ... of the other side
    speed: dict | None = None  # faster: level, crossing bounds, spreads, power, AUC
    confirmatory: bool = False  # in the Holm family (registered, runs unseen before)
    holm: str = ""  # the verdict after Holm's correction (confirmatory rows)
    earlier: str = ""  # the exploratory verdict of results/exploratory/ (seeds it replaced)

    def effect_text(self) -> str:
        if self.interval is None:
            return "–"
        f = math.exp if self.ratio else (lambda v: v)
        iv = self.interval
        low, high = num(f(iv.low), 3), num(f(iv.high), 3)
        if not math.isfinite(iv.effect):  # every seed of a side censored: only the bounds
            return f"{self.effect_name} within [{low}, {high}]"
        return f"{self.effect_name} = {num(f(iv.effect), 3)} [{low}, {high}]"

    def verdict_text(self) -> str:
        return f"{self.verdict} ({'; '.join(self.reasons)})" if self.reasons else self.verdict


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


def value_at(points: list, col: int, at: float) -> tuple[float, str] | None:
    """A curve's value at x = `at` (column `col` of its points: 0 step, 1 epoch): the
    evaluation there, else linear between the evaluations around it; None outside the curve."""
    xs = [p[col] for p in points]
    for i, x in enumerate(xs):
        if abs(x - at) <= 1e-9:
            return points[i][2], "evaluated there"
        if x > at:
            if i == 0:
                return None
            x0, v0, v1 = xs[i - 1], points[i - 1][2], points[i][2]
            w = (at - x0) / (x - x0)
            return v0 + w * (v1 - v0), f"interpolated between {num(x0)} and {num(x)}"
    return None


def check_lower_at(c: dict, data: FigureData, res: Result) -> Result:
    """A below B at x = `at` exactly: each seed's evaluation there, or its value interpolated
    linearly between the evaluations around it; a seed whose curve does not cover `at` is
    refused (named in the reasons). How each value was read is stated in the row."""
    if data.curves is None:
        return _no_curves(res, data)
    x, at = c.get("x", "epoch"), c["at"]
    col = 0 if x == "step" else 1
    groups, how = {}, {}
    for n in c["norms"]:
        groups[n] = []
        for seed, points in seed_curves(
            data, n, c.get("where", {}), c["metric"], res.reasons
        ).items():
            got = value_at(points, col, at)
            if got is None:
                res.reasons.append(f"{label(n)} seed {seed}: {x} {at} outside its evaluations")
                continue
            groups[n].append(got[0])
            how.setdefault(got[1], []).append(f"{label(n)} {seed}")
    compare_pair(c, res, groups, decide_lower)
    read = "; ".join(f"{k} ({', '.join(v)})" for k, v in how.items())
    res.measured += f"; read at {x} {at}: {read}" if read else ""
    return res


def _arrays(points: list) -> tuple[list[int], list[float]]:
    return [p[0] for p in points], [p[2] for p in points]


def check_faster(c: dict, data: FigureData, res: Result) -> Result:
    """A reaches the spec's fixed `level` in at most `max_ratio` of B's updates: crossings
    interpolated in log updates, censored ends, Hsu-df Welch on the logs (`speed`); the AUC
    and the power at the row's own spread are reported beside it (`res.speed`)."""
    a, b = c["norms"]
    if data.curves is None:
        return _no_curves(res, data)
    where = c.get("where", {})
    curves = {n: seed_curves(data, n, where, c["metric"], res.reasons) for n in (a, b)}
    higher = claim_higher(data.spec, c)
    level, threshold = c["level"], math.log(c["max_ratio"])
    cross = {n: [crossings(*_arrays(p), level, higher) for p in curves[n].values()] for n in curves}
    unusable = bool(res.reasons) or bool(too_few(curves))  # a run without a curve, n < 2
    res.reasons += too_few(curves)
    res.ratio = True
    res.effect_name = f"{label(a)} / {label(b)} updates"
    info = {"level": level, "bounds": {}, "sigma": {}, "auc": None, "power": None, "power5": None}
    for n in (a, b):
        ends = [(math.exp(x.low), math.exp(x.high)) for x in cross[n]]
        info["bounds"][n] = [
            num(lo) if lo == hi else f"({num(lo)}, {num(hi)}]" if lo == 0 else f"[{num(lo)}, inf)"
            for lo, hi in ends
        ]
        exact = [math.log(lo) for lo, hi in ends if lo == hi]
        info["sigma"][n] = statistics.stdev(exact) if len(exact) > 1 else None
        res.reasons += [f"{label(n)} {len(ends) - len(exact)} of {len(ends)} censored"] * (
            len(exact) < len(ends)
        )
    res.measured = "updates to level: " + "; ".join(
        f"{label(n)} {', '.join(info['bounds'][n])}" for n in (a, b)
    )
    res.speed = info
    if unusable:
        return res

    def stack(n):
        return Crossings(*(np.array([getattr(x, k) for x in cross[n]]) for k in KEYS))

    test = speed_test(stack(a), stack(b), threshold)
    res.interval = Interval(float(test.effect), float(test.low), float(test.high), float(test.df))
    res.verdict = str(test.verdict)
    res.p_support, res.p_contradict = float(test.p_support), float(test.p_contradict)
    sig = [s for s in info["sigma"].values() if s is not None]
    if sig:
        sa, sb = (info["sigma"][n] if info["sigma"][n] is not None else max(sig) for n in (a, b))
        grid = log_spaced(_arrays(next(iter(curves[a].values())))[0])
        n_min = min(len(cross[a]), len(cross[b]))
        sa, sb = max(sa, 0.01), max(sb, 0.01)
        info["power"] = power(grid, sa, sb, threshold, n_min)
        info["power5"] = power(grid, sa, sb, threshold, 5) if n_min < 5 else None
    if c.get("auc"):
        lo, hi = c["auc"]["steps"]
        log = c["auc"].get("log", False)
        groups = [[auc(*_arrays(p), (lo, hi), log) for p in curves[n].values()] for n in (a, b)]
        if all(math.isfinite(v) for g in groups for v in g):
            info["auc"] = (welch_interval(*groups), log)
    return res


KEYS = ("low", "high", "grid_var")


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
            if res.interval is not None and res.p_support is None:
                res.p_support, res.p_contradict = p_values(c, res.interval)
        out.append(res)
    return out
