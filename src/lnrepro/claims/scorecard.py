"""The scorecard's decisions: a candidate norm against a reference norm (LN, no normalization)
on one final metric, as better, worse, equivalent within a margin, or undecided; and the same
after Holm's correction over the scorecard's family of primary comparisons.

Nothing here is a new statistic: the interval is the engine's Welch interval of the
difference of seed means (`verdicts.compare_groups`; on logarithms for a ratio), the raw
verdicts are `stats.decide_lower` / `decide_higher` / `decide_within` at the 95 % level, the
one-sided p values are `stats.p_values` (for `final_lower` / `final_higher`, and for
`comparable` with the margin: the larger one-sided p of the equivalence test), and the
correction is `stats.holm` at 0.025 per kind of verdict, as `render.apply_holm` does per
direction for the paper's claims.

A verdict in words: **equivalent** when the interval lies inside (-margin, +margin) (for a
ratio margin r: inside (1/r, r)); else **better** or **worse** when it lies on one side of 0;
else **undecided**. Equivalence comes first: a difference shown to be smaller than the margin
is, by the margin's definition, one that does not matter, even where the interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lnrepro.claims.stats import (
    CONTRADICTED,
    SUPPORTED,
    Interval,
    decide_higher,
    decide_lower,
    decide_within,
    holm,
    p_values,
)
from lnrepro.claims.verdicts import Result, compare_groups

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
KINDS = (BETTER, WORSE, EQUIVALENT)  # the three Holm families, each at 0.025


@dataclass
class Comparison:
    """The candidate's seeds against a reference's on one metric: effect = candidate -
    reference (log candidate - log reference with `log`), oriented by `higher`."""

    log: bool
    higher: bool
    margin: float | None  # as written in the spec: a ratio (> 1) with `log`, else absolute
    interval: Interval | None = None
    p: dict[str, float | None] = field(default_factory=dict)  # kind -> one-sided p
    raw: str = UNDECIDED  # from the interval alone, before the correction
    holm: str = UNDECIDED  # after Holm over the family (`holm_verdicts`)
    blocked: str = ""  # why it is never rejected (a diverged candidate, a failed gate)
    reasons: list[str] = field(default_factory=list)  # why there is no interval (n=1, ...)

    @property
    def ratio(self) -> tuple[float, float, float] | None:
        """(effect, low, high) on the scale a reader reads: a ratio with `log`, else the
        difference; None without an interval."""
        if self.interval is None:
            return None
        f = math.exp if self.log else (lambda v: v)
        iv = self.interval
        return f(iv.effect), f(iv.low), f(iv.high)


def margin_on_effect(margin: float, log: bool) -> float:
    """The margin on the effect's scale: log(ratio) for a ratio margin, else itself."""
    return math.log(margin) if log else margin


def verdict_of(better: bool, worse: bool, equivalent: bool) -> str:
    """Equivalent first, then better or worse, else undecided (see the module's text)."""
    if equivalent:
        return EQUIVALENT
    return BETTER if better else WORSE if worse else UNDECIDED


def compare(
    candidate: list[float],
    reference: list[float],
    log: bool,
    higher: bool,
    margin: float | None = None,
) -> Comparison:
    """Welch interval of the effect, its raw verdict and its one-sided p values (better,
    worse, and with a margin equivalent). Fewer than 2 seeds on a side, or a log of a value
    <= 0, leaves it undecided with the reason."""
    c = Comparison(log, higher, margin)
    res = Result("scorecard", {"id": "scorecard"}, "")
    decide = decide_higher if higher else decide_lower
    compare_groups(res, {"candidate": candidate, "reference": reference}, [1.0, -1.0], log, decide)
    c.reasons = res.reasons
    if res.interval is None:
        return c
    iv = c.interval = res.interval
    side = p_values({"check": "final_higher" if higher else "final_lower"}, iv)
    c.p = {BETTER: side[0], WORSE: side[1]}
    equivalent = False
    if margin is not None:
        c.p[EQUIVALENT] = p_values({"check": "comparable", "margin": margin, "log": log}, iv)[0]
        equivalent = decide_within(iv, margin_on_effect(margin, log)) == SUPPORTED
    c.raw = verdict_of(res.verdict == SUPPORTED, res.verdict == CONTRADICTED, equivalent)
    return c


def holm_verdicts(family: list[Comparison]) -> None:
    """Each comparison's verdict after Holm's correction at 0.025 per kind (better, worse,
    equivalent) over `family`. A blocked comparison, or one without an interval, counts in the
    family's size but is never rejected; a blocked one reads its reason."""
    rejected = {
        kind: holm([None if c.blocked else c.p.get(kind) for c in family]) for kind in KINDS
    }
    for i, c in enumerate(family):
        hit = {kind: rejected[kind][i] for kind in KINDS}
        c.holm = c.blocked or verdict_of(hit[BETTER], hit[WORSE], hit[EQUIVALENT])
