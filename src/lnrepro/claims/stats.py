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


def decide_within(iv: Interval, margin: float) -> str:
    """The claim is `|effect| < margin` (equivalence, with the same 95 % interval)."""
    if -margin < iv.low and iv.high < margin:
        return SUPPORTED
    return CONTRADICTED if iv.low >= margin or iv.high <= -margin else INCONCLUSIVE
