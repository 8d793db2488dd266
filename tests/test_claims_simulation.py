"""Can a speed claim fail? The rule of src/lnrepro/claims/speed.py simulated
(src/lnrepro/claims/simulate.py: fixed RNG seed, 2,000 replications, 3 seeds per arm) on a real
evaluation grid, Figure 2's reader (an evaluation every 300 of 4,800 updates) with the
log-spaced early evaluations (trainer.eval_log_spaced), the level fixed by the spec's rule from
separate exploratory seeds. A few seconds in all."""

from __future__ import annotations

import pytest

from lnrepro.claims.simulate import log_spaced, simulate

GRID = log_spaced(range(300, 4801, 300))
DECIDED = ("supported", "contradicted")


def test_the_grid_is_the_trainers():
    from lnrepro.trainer import TrainerConfig, eval_steps

    cfg = TrainerConfig(max_steps=4800, eval_every=300, eval_log_spaced=True)
    assert sorted(eval_steps(cfg, 4800, 300) - {0}) == GRID


def test_a_twice_slower_favoured_arm_reads_contradicted():
    out = simulate(GRID, ratio=2.0, sigma_a=0.15)
    assert out["new"]["contradicted"] >= 0.80
    assert out["new"]["supported"] == 0
    assert out["old"]["contradicted"] == 0  # the old rule (own-worst level) could not fail


@pytest.mark.parametrize("sigma", [0.05, 0.15, 0.3])
def test_no_difference_is_rarely_decided(sigma):
    out = simulate(GRID, ratio=1.0, sigma_a=sigma)
    assert sum(out["new"][k] for k in DECIDED) <= 0.05


@pytest.mark.parametrize("sigma_a, sigma_b", [(0.02, 0.3), (0.3, 0.02)])
def test_no_difference_at_unequal_spreads_is_rarely_decided(sigma_a, sigma_b):
    out = simulate(GRID, ratio=1.0, sigma_a=sigma_a, sigma_b=sigma_b)
    assert sum(out["new"][k] for k in DECIDED) <= 0.05


@pytest.mark.parametrize("where", [GRID[0], GRID[-1]], ids=["before_first", "at_budget"])
def test_no_difference_with_censored_seeds_is_rarely_decided(where):
    """The level put where a median seed crosses at the first evaluation (about half the seeds
    left-censored) or at the budget (about half never reach it)."""
    out = simulate(GRID, ratio=1.0, sigma_a=0.3, level_at=where)
    assert out["censored"] > 0.3
    assert sum(out["new"][k] for k in DECIDED) <= 0.05


def test_the_simulation_is_reproducible():
    assert simulate(GRID, 2.0, 0.3, reps=200) == simulate(GRID, 2.0, 0.3, reps=200)
