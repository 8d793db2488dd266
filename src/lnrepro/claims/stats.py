"""Statistics of the claims: Welch t intervals over seeds and the verdict each one gives.

Verdicts: supported (the interval lies on the claim's side of its threshold), contradicted (on
the other side), inconclusive (it straddles the threshold, fewer than 2 seeds on a side, or a
seed never reaches a `faster` level), not testable at this scale. Never a bootstrap: with 3 seeds
it has 10 distinct resamples and covers far less than 95 %.

The t quantile comes from scipy, which the pinned requirements install (optuna, through
hydra-optuna-sweeper, depends on it); the tests check it against tabulated values.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_TESTABLE = "not testable at this scale"
LEVEL = 0.95


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df (possibly fractional) degrees of freedom."""
    return float(stats.t.ppf(p, df))


@dataclass
class Interval:
    effect: float
    low: float
    high: float
    df: float
    se: float = math.nan  # standard error of the effect (0: no spread in any group)


def linear_interval(samples: list[list[float]], coefs: list[float]) -> Interval:
    """95 % interval of sum_i c_i * mean(samples_i) over independent samples of >= 2 values each:
    standard error from the sample variances, Welch-Satterthwaite degrees of freedom
    df = (sum v_i)^2 / sum v_i^2 / (n_i - 1), with v_i = c_i^2 s_i^2 / n_i."""
    effect = sum(c * statistics.fmean(s) for c, s in zip(coefs, samples))
    parts = [(c * c * statistics.variance(s) / len(s), len(s)) for c, s in zip(coefs, samples)]
    var = sum(v for v, _ in parts)
    if var == 0:  # no spread in any group: the interval is the point itself
        return Interval(effect, effect, effect, math.inf, 0.0)
    df = var**2 / sum(v * v / (n - 1) for v, n in parts)
    half = t_quantile(0.5 + LEVEL / 2, df) * math.sqrt(var)
    return Interval(effect, effect - half, effect + half, df, math.sqrt(var))


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
    if iv.low > 0:
        return SUPPORTED
    return CONTRADICTED if iv.high < 0 else INCONCLUSIVE


def decide_within(iv: Interval, margin: float) -> str:
    """The claim is `|effect| < margin` (equivalence, with the same 95 % interval)."""
    if -margin < iv.low and iv.high < margin:
        return SUPPORTED
    return CONTRADICTED if iv.low >= margin or iv.high <= -margin else INCONCLUSIVE


def p_values(claim: dict, iv: Interval) -> tuple[float | None, float | None]:
    """One-sided p values (for the claim, against it) from the interval's t statistic at the
    claim's threshold, as its verdict rule reads it: 0 for a difference, log(max_ratio) for a
    ratio of updates, +-margin for `comparable` (for: the larger of the two one-sided p's of
    the equivalence test; against: the smaller of the two sides beyond the margin). None
    without spread (se 0): a t statistic needs one, and no row gets p = 0."""
    if not (iv.se > 0 and math.isfinite(iv.se)):
        return None, None
    below = lambda thr: float(stats.t.cdf((iv.effect - thr) / iv.se, iv.df))
    above = lambda thr: float(stats.t.sf((iv.effect - thr) / iv.se, iv.df))
    kind = claim["check"]
    if kind == "final_higher":
        return above(0.0), below(0.0)
    if kind == "comparable":
        m = math.log(claim["margin"]) if claim.get("log") else claim["margin"]
        return max(above(-m), below(m)), min(above(m), below(-m))
    thr = math.log(claim["max_ratio"]) if kind == "faster" else 0.0
    return below(thr), above(thr)


def holm(p: list[float | None], alpha: float = (1 - LEVEL) / 2) -> list[bool]:
    """Holm's step-down rejections at family-wise level `alpha` (Holm 1979, Scand. J. Stat. 6):
    sort ascending, reject p_(i) while p_(i) <= alpha / (m - i); a missing p is never rejected
    but counts in m."""
    m = len(p)
    order = sorted((i for i in range(m) if p[i] is not None), key=lambda i: p[i])
    out = [False] * m
    for rank, i in enumerate(order):
        if p[i] > alpha / (m - rank):
            break
        out[i] = True
    return out
