"""Sanity gates: before "A beats B" means anything, B must have learned something.

One gate per figure, not a claim of the paper: every arm (a norm at a grid setting) that enters
a comparison claim must beat a trivial floor of each metric it enters with, on its seed mean
with a 95 % interval. The floors:

- results/floors.csv (`scripts/floors.py`, `lnrepro.eval.floors`): what a model that learned
  nothing useful scores on exactly the evaluated examples: the unigram perplexity or bpc of the
  PTB training text, a logistic-regression classifier's error on MNIST, the best of the
  attentive reader's three floors as an error rate. A fixed number: the one-sample t interval
  of mean(final) - floor (n - 1 degrees of freedom) must lie below 0 (above, for a
  higher-is-better metric).
- Where floors.csv has no row for the figure's metric (the generative models, skip-thoughts,
  training NLLs): the arm's own first evaluation in results/<figure>_curves.csv (the untrained
  model where step 0 is logged; a curve with no evaluation before its last gives none). Paired
  per seed: the interval of mean(final - first) must lie
  below 0.
- A metric with neither (seconds per update) has no floor and is not gated.

Seeds stuck at the floor count in the mean; they do not by themselves fail the gate. An arm
fails when any metric's interval does not clear its floor, or when it has fewer than 2 seeds
(no interval). Every comparison that involves a failing arm reads "invalid baseline"
(`apply_gate`), never supported or contradicted; its interval and p values stay in the table.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from lnrepro.claims.results import FigureData, _float, matching
from lnrepro.claims.specs import claim_higher
from lnrepro.claims.stats import NOT_TESTABLE, SUPPORTED, Interval, decide_lower, linear_interval
from lnrepro.claims.text import label, num, setting, summary
from lnrepro.claims.verdicts import Result

INVALID = "invalid baseline"
PASSED, FAILED = "gate passed", "gate failed"
GATED = ("final_below", "not_testable")  # checks whose arms are not compared (not gated)


def load_floors(path: Path, scale: str = "cpu") -> dict[str, dict[str, tuple[float, str]]]:
    """{figure: {metric: (floor, model)}} of results/floors.csv at `scale`; {} without it."""
    if not path.exists():
        return {}
    out: dict[str, dict[str, tuple[float, str]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["scale"] == scale:
                out.setdefault(row["figure"], {})[row["metric"]] = (
                    float(row["floor"]),
                    row["model"],
                )
    return out


def arms(spec: dict) -> list[tuple[str, dict, str, bool]]:
    """(norm, grid setting, metric, higher is better) of every arm of every comparison claim."""
    out = []
    for c in spec.get("claims") or []:
        if c["check"] in GATED:
            continue
        where, higher = dict(c.get("where") or {}), claim_higher(spec, c)
        settings = [where]
        for key in ("between", "settings"):
            if c.get(key):
                ((k, values),) = c[key].items()
                settings = [{**where, k: v} for v in values]
        for n in c["norms"]:
            for w in settings:
                if (n, w, c["metric"], higher) not in out:
                    out.append((n, w, c["metric"], higher))
    return out


def arm_key(norm: str, where: dict) -> tuple:
    return norm, tuple(sorted((k, str(v)) for k, v in where.items()))


@dataclass
class ArmCheck:
    """One arm's metric against its floor."""

    norm: str
    where: dict
    metric: str
    floor: str  # how the floor was obtained, in words
    values: list[float] = field(default_factory=list)  # each seed's final value
    interval: Interval | None = None  # of mean(final - floor), oriented: < 0 beats the floor
    stuck: int = 0  # seeds whose final value does not beat their floor
    passed: bool = False
    reason: str = ""

    def name(self) -> str:
        return f"{label(self.norm)}{' (' + setting(self.where) + ')' if self.where else ''}"

    def text(self) -> str:
        head = f"{self.name()} {self.metric}: {summary('', self.values).strip()} vs {self.floor}"
        if self.interval is not None:
            iv = self.interval
            head += f", beats it by {num(-iv.effect, 3)} [{num(-iv.high, 3)}, {num(-iv.low, 3)}]"
        if self.stuck:
            head += f", {self.stuck} of {len(self.values)} seeds not below it"
        return head + (f" ({self.reason})" if self.reason else "")


def check_arm(data: FigureData, norm: str, where: dict, metric: str, higher: bool, floors: dict):
    """The gate of one arm on one metric: a fixed floor from floors.csv, else the first
    evaluation of each seed's own curve (paired); None when the metric has neither."""
    sign = -1.0 if higher else 1.0
    rows = matching(data, norm, where)
    col = f"final_{metric}"
    finals = [_float(r.get(col, r.get(metric, ""))) for r in rows]
    if metric in floors:
        value, model = floors[metric]
        arm = ArmCheck(norm, where, metric, f"{num(value)} ({model})")
        pairs = [(v, value) for v in finals if math.isfinite(v)]
    else:
        pairs, steps = [], set()
        for r, v in zip(rows, finals):
            points = sorted((data.curves or {}).get(data.key(r), {}).get(metric, []))
            points = [p for p in points if math.isfinite(p[2])]
            if len(points) > 1 and math.isfinite(v):  # an evaluation before the last one
                pairs.append((v, points[0][2]))
                steps.add(points[0][0])
        if not pairs:
            return None
        at = ", ".join("step 0" if s == 0 else f"update {s:,}" for s in sorted(steps))
        first = num(sum(f for _, f in pairs) / len(pairs))
        arm = ArmCheck(norm, where, metric, f"its first evaluation ({at}; mean {first})")
    arm.values = [v for v, _ in pairs]
    diffs = [sign * (v - f) for v, f in pairs]
    arm.stuck = sum(d >= 0 for d in diffs)
    if len(diffs) < 2:
        arm.reason = f"n={len(diffs)}: no interval"
        return arm
    arm.interval = linear_interval([diffs], [1.0])
    arm.passed = decide_lower(arm.interval) == SUPPORTED
    return arm


@dataclass
class Gate:
    figure: str
    checks: list[ArmCheck]

    def failing(self) -> dict[tuple, list[ArmCheck]]:
        out: dict[tuple, list[ArmCheck]] = {}
        for a in self.checks:
            if not a.passed:
                out.setdefault(arm_key(a.norm, a.where), []).append(a)
        return out

    @property
    def verdict(self) -> str:
        if not self.checks:
            return NOT_TESTABLE
        return FAILED if self.failing() else PASSED


def gate(spec: dict, data: FigureData, floors: dict) -> Gate:
    """The figure's gate over every arm that enters a comparison claim."""
    checks = []
    if not data.missing:
        for norm, where, metric, higher in arms(spec):
            arm = check_arm(data, norm, where, metric, higher, floors.get(spec["name"], {}))
            if arm is not None:
                checks.append(arm)
    return Gate(spec["name"], checks)


def claim_arms(spec: dict, c: dict) -> list[tuple]:
    return sorted({arm_key(n, w) for n, w, m, _ in arms({**spec, "claims": [c]})})


def invalid_reason(spec: dict, c: dict, g: Gate) -> str:
    """Why claim `c` compares with an arm that failed the gate ("" if it does not)."""
    failing = g.failing()
    bad = [a for k in claim_arms(spec, c) for a in failing.get(k, [])]
    if c["check"] in GATED or not bad:
        return ""
    names = sorted({a.name() for a in bad})
    return f"{', '.join(names)} fail{'s' if len(names) == 1 else ''} the sanity gate"


SANITY = {
    "section": "sanity gate (not a claim of the paper)",
    "quote": "every arm that enters a comparison has learned: it beats a trivial floor",
    "check": "sanity",
}


def apply_gate(spec: dict, results: list[Result], g: Gate) -> Result:
    """Mark the comparisons with a failing arm "invalid baseline" and return the gate's row."""
    for r in results:
        why = invalid_reason(spec, r.claim, g)
        if why and r.verdict != NOT_TESTABLE:
            r.verdict, r.reasons = INVALID, [*r.reasons, why]
    row = Result(
        g.figure,
        {"id": f"{g.figure}_sanity", **SANITY},
        "each compared arm's seed mean beats its floor with its 95 % interval (floors.csv, "
        "else the arm's first evaluation)",
    )
    row.verdict = g.verdict
    bad = [a for arms_ in g.failing().values() for a in arms_]
    if bad:
        row.measured = "; ".join(a.text() for a in bad)
        row.reasons = [f"{len(bad)} of {len(g.checks)} arm metrics do not clear the floor"]
    elif g.checks:
        closest = max(g.checks, key=lambda a: a.interval.high / max(abs(a.interval.effect), 1e-300))
        row.measured = (
            f"all {len(g.checks)} arm metrics clear their floors; closest: {closest.text()}"
        )
    else:
        row.measured = "no arm enters a testable comparison"
    return row
