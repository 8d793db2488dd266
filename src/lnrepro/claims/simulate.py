"""Can a speed claim fail? The rule of `speed` simulated on a real evaluation grid.

Model: a seed's curve falls as a power of the updates, value = (t / tau)^-BETA, times a small
log-normal evaluation noise (NOISE), so it is not linear in log t between evaluations and can
wiggle across a level. log tau is normal per arm with spread sigma (the spread of log crossing
times of that arm); the favoured arm A has its log tau shifted by log(ratio) (ratio 2: A is
twice as slow). One replication draws n exploratory seeds per arm, fixes the level from them by
the spec's rule (`speed.level_rule`: what every seed of both arms reached by 60 % of the
budget), then draws n fresh seeds per arm that decide, exactly as a figure's confirmatory
seeds would. `level_at` replaces the rule by the level that a median seed (tau = 1) crosses at
that step, to put seeds on the grid's edges (censored). The OLD rule (the level: the worst final
value among B's seeds; a seed's crossing: the first evaluation at or past it, no
interpolation, no grid variance; a seed that never reaches it: inconclusive) is simulated on
the same draws, for comparison.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from lnrepro.claims.speed import LEVEL_FRACTION, crossings, speed_test
from lnrepro.claims.stats import CONTRADICTED, INCONCLUSIVE, LEVEL, SUPPORTED

BETA, NOISE = 1.0, 0.01
REPS, SEED = 2000, 20160721  # the paper's arXiv date


def log_spaced(grid, budget: int | None = None) -> list[int]:
    """`grid` with the evaluations of trainer.eval_log_spaced added: 1, 2, 4, ..., 64 % of the
    budget (its last step), as lnrepro.trainer.eval_steps places them."""
    budget = budget or int(max(grid))
    return sorted({int(s) for s in grid} | {max(1, round(2**k / 100 * budget)) for k in range(7)})


def _curves(rng, grid, mu, sigma, reps, n):
    logt = np.log(grid)
    tau = mu + sigma * rng.standard_normal((reps, n))
    noise = NOISE * rng.standard_normal((reps, n, len(grid)))
    return np.exp(-BETA * (logt - tau[..., None]) + noise)


def _level(grid, a, b):
    """The rule on the exploratory draws, per replication: the worst over both arms' seeds of
    each seed's best value by LEVEL_FRACTION of the budget (lower is better)."""
    early = np.asarray(grid, float) <= LEVEL_FRACTION * grid[-1] + 1e-9
    both = np.concatenate([a, b], axis=1)[..., early]
    return both.min(axis=-1).max(axis=-1)


def old_rule(grid, a, b, threshold: float) -> np.ndarray:
    """The verdicts of the old rule (own-worst level of B, first evaluation, plain Welch)."""
    level = b[..., -1].max(axis=-1)[:, None, None]
    logt = np.log(np.asarray(grid, float))
    ra, rb = a <= level, b <= level
    xa, xb = logt[np.argmax(ra, axis=-1)], logt[np.argmax(rb, axis=-1)]
    na, nb = xa.shape[-1], xb.shape[-1]
    va, vb = xa.var(axis=-1, ddof=1) / na, xb.var(axis=-1, ddof=1) / nb
    var = va + vb
    effect = xa.mean(axis=-1) - xb.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = var**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        half = np.where(var > 0, stats.t.ppf(0.5 + LEVEL / 2, df) * np.sqrt(var), 0.0)
    low, high = effect - half, effect + half  # var 0: the point itself
    verdict = np.where(
        high < threshold, SUPPORTED, np.where(low > threshold, CONTRADICTED, INCONCLUSIVE)
    )
    return np.where(ra.any(axis=-1).all(axis=-1), verdict, INCONCLUSIVE)


def simulate(
    grid,
    ratio: float = 1.0,
    sigma_a: float = 0.15,
    sigma_b: float | None = None,
    *,
    n: int = 3,
    threshold: float = 0.0,
    level_at: float | None = None,
    reps: int = REPS,
    seed: int = SEED,
) -> dict[str, dict[str, float]]:
    """{'new': {verdict: share}, 'old': {...}, 'censored': share of seeds} over `reps` replications: arm A's crossings
    `ratio` times B's, spreads sigma_a and sigma_b (default sigma_a), `n` seeds per arm,
    the claim `log(t_A / t_B) < threshold`."""
    rng = np.random.default_rng(seed)
    grid = np.asarray(sorted(grid), float)
    sigma_b = sigma_a if sigma_b is None else sigma_b
    mu_a = np.log(ratio)
    if level_at is None:
        level = _level(
            grid,
            _curves(rng, grid, mu_a, sigma_a, reps, n),
            _curves(rng, grid, 0.0, sigma_b, reps, n),
        )
    else:
        level = np.full(reps, float(level_at) ** -BETA)
    a = _curves(rng, grid, mu_a, sigma_a, reps, n)
    b = _curves(rng, grid, 0.0, sigma_b, reps, n)
    lv = level[:, None]
    ca, cb = crossings(grid, a, lv), crossings(grid, b, lv)
    new = speed_test(ca, cb, threshold).verdict
    old = old_rule(grid, a, b, threshold)
    share = lambda v: {k: float(np.mean(v == k)) for k in (SUPPORTED, CONTRADICTED)}
    censored = np.mean([c.left | c.right for c in (ca, cb)])
    return {"new": share(new), "old": share(old), "censored": float(censored)}


def power(grid, sigma_a: float, sigma_b: float, threshold: float = 0.0, n: int = 3) -> float:
    """The share of replications that read contradicted when the favoured arm is truly twice
    as slow (the new rule, the row's own spreads and grid)."""
    return simulate(grid, 2.0, sigma_a, sigma_b, n=n, threshold=threshold)["new"][CONTRADICTED]
