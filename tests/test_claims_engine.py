"""The claims engine's statistics and verdict rules, function by function, at their boundaries
(src/lnrepro/claims/stats.py, speed.py, verdicts.py): what `make mutation` holds them to. Fast:
no files beyond tmp_path, no simulation."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats as sps

from lnrepro import claims as C
from lnrepro.claims import speed as C_speed
from lnrepro.claims.stats import holm, p_values

IV = C.Interval


# ---- stats: the decisions at their boundaries --------------------------------------------------
@pytest.mark.parametrize(
    "low, high, verdict",
    [(-2.0, -1.0, C.SUPPORTED), (-1.0, 0.0, C.INCONCLUSIVE), (0.0, 1.0, C.INCONCLUSIVE),
     (1e-9, 1.0, C.CONTRADICTED), (-1.0, 1.0, C.INCONCLUSIVE)],
)  # fmt: skip
def test_decide_lower_is_strict_at_the_threshold(low, high, verdict):
    assert C.decide_lower(IV(0.0, low, high, 3.0)) == verdict
    assert C.decide_lower(IV(0.0, low + 2, high + 2, 3.0), threshold=2.0) == verdict


@pytest.mark.parametrize(
    "low, high, verdict",
    [(1.0, 2.0, C.SUPPORTED), (0.0, 1.0, C.INCONCLUSIVE), (-1.0, 0.0, C.INCONCLUSIVE),
     (-1.0, -1e-9, C.CONTRADICTED), (-1.0, 1.0, C.INCONCLUSIVE)],
)  # fmt: skip
def test_decide_higher_is_strict_at_zero(low, high, verdict):
    assert C.decide_higher(IV(9.0, low, high, 3.0)) == verdict


@pytest.mark.parametrize(
    "low, high, verdict",
    [(-0.5, 0.5, C.SUPPORTED), (-1.0, 0.5, C.INCONCLUSIVE), (-0.5, 1.0, C.INCONCLUSIVE),
     (1.0, 2.0, C.CONTRADICTED), (-2.0, -1.0, C.CONTRADICTED), (0.99, 2.0, C.INCONCLUSIVE),
     (-2.0, -0.99, C.INCONCLUSIVE), (-2.0, 2.0, C.INCONCLUSIVE)],
)  # fmt: skip
def test_decide_within_at_the_margins(low, high, verdict):
    assert C.decide_within(IV(0.0, low, high, 3.0), margin=1.0) == verdict


def test_linear_interval_scales_the_variance_by_the_squared_coefficient():
    a, b = [1.0, 2.0, 4.0], [0.0, 1.0, 5.0, 6.0]
    iv = C.linear_interval([a, b], [2.0, -0.5])
    va, vb = 4 * np.var(a, ddof=1) / 3, 0.25 * np.var(b, ddof=1) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    half = C.t_quantile(0.975, df) * math.sqrt(va + vb)
    assert iv.effect == pytest.approx(2 * np.mean(a) - 0.5 * np.mean(b))
    assert (iv.df, iv.se) == pytest.approx((df, math.sqrt(va + vb)))
    assert (iv.low, iv.high) == pytest.approx((iv.effect - half, iv.effect + half))


# ---- stats: one-sided p values at each check's threshold ---------------------------------------
def t_p(effect, se, df, thr, side):
    z = (effect - thr) / se
    return sps.t.cdf(z, df) if side == "below" else sps.t.sf(z, df)


@pytest.mark.parametrize("effect", [-0.3, 0.2])
def test_p_values_of_a_difference(effect):
    iv = IV(effect, 0.0, 0.0, 4.0, 0.1)
    lower = p_values({"check": "final_lower"}, iv)
    assert lower == pytest.approx(
        (t_p(effect, 0.1, 4, 0, "below"), t_p(effect, 0.1, 4, 0, "above"))
    )
    higher = p_values({"check": "final_higher"}, iv)
    assert higher == pytest.approx(lower[::-1])


def test_p_values_of_a_ratio_of_updates_are_at_log_max_ratio():
    iv = IV(-0.2, 0.0, 0.0, 2.0, 0.1)
    thr = math.log(0.67)
    got = p_values({"check": "faster", "max_ratio": 0.67}, iv)
    assert got == pytest.approx((t_p(-0.2, 0.1, 2, thr, "below"), t_p(-0.2, 0.1, 2, thr, "above")))


@pytest.mark.parametrize("log, margin, m", [(True, 1.25, math.log(1.25)), (False, 0.3, 0.3)])
@pytest.mark.parametrize("effect", [0.05, -0.1, 0.5])
def test_p_values_of_comparable_take_the_larger_equivalence_p(log, margin, m, effect):
    iv = IV(effect, 0.0, 0.0, 3.0, 0.08)
    p_for = max(t_p(effect, 0.08, 3, -m, "above"), t_p(effect, 0.08, 3, m, "below"))
    p_against = min(t_p(effect, 0.08, 3, m, "above"), t_p(effect, 0.08, 3, -m, "below"))
    got = p_values({"check": "comparable", "margin": margin, "log": log}, iv)
    assert got == pytest.approx((p_for, p_against))


@pytest.mark.parametrize("se", [0.0, math.inf, math.nan])
def test_no_p_value_without_a_finite_spread(se):
    assert p_values({"check": "final_lower"}, IV(1.0, 1.0, 1.0, math.inf, se)) == (None, None)


# ---- stats: Holm -------------------------------------------------------------------------------
def test_holm_steps_down_from_the_smallest_p():
    # m = 4, alpha 0.025: 0.001 <= 0.025/4, 0.008 <= 0.025/3, 0.0125 <= 0.025/2, 0.03 > 0.025
    assert holm([0.03, 0.0125, 0.001, 0.008]) == [False, True, True, True]
    assert holm([0.0125, 0.001, 0.0251]) == [True, True, False]  # 0.0125 <= 0.025/2: rejected
    assert holm([0.00625, 0.0124]) == [True, True]
    assert holm([0.013, 0.02, 0.0001]) == [False, False, True]  # stops at 0.013 > 0.025/2


def test_holm_counts_missing_p_values_and_never_rejects_them():
    assert holm([None, 0.02]) == [False, False]  # m = 2: 0.02 > 0.0125
    assert holm([None, 0.01, None, 0.001]) == [False, False, False, True]  # 0.01 > 0.025/3
    assert holm([0.001, None, None]) == [True, False, False]
    assert holm([]) == [] and holm([0.025]) == [True] and holm([0.0251]) == [False]
    assert holm([(1 - C.LEVEL) / 2]) == [True]  # p exactly at alpha is rejected (<=)


# ---- speed: crossings, the censoring rule, the level rule, the AUC -----------------------------
STEPS = [100, 200, 300, 900]  # log gaps: log 2, log 1.5, log 3


def test_a_crossing_is_interpolated_in_log_updates_with_the_grid_variance():
    x = C_speed.crossings(STEPS, [1.0, 0.8, 0.4, 0.2], 0.5)
    want = math.log(200) + 0.75 * math.log(1.5)  # (0.8 - 0.5) / (0.8 - 0.4) of the way
    assert (float(x.low), float(x.high)) == pytest.approx((want, want))
    assert float(x.grid_var) == pytest.approx(math.log(1.5) ** 2 / 12)
    assert not x.left and not x.right
    hit = C_speed.crossings(STEPS, [1.0, 0.8, 0.5, 0.2], 0.5)  # reaches it at an evaluation
    assert float(hit.low) == pytest.approx(math.log(300))
    up = C_speed.crossings(STEPS, [0.1, 0.2, 0.6, 0.8], 0.5, higher=True)
    assert float(up.low) == pytest.approx(math.log(200) + 0.75 * math.log(1.5))
    late = C_speed.crossings(STEPS, [1.0, 0.9, 0.8, 0.5], 0.5, higher=False)
    assert float(late.high) == pytest.approx(math.log(900))
    assert float(late.grid_var) == pytest.approx(math.log(3) ** 2 / 12)


def test_a_rising_curve_reaches_the_level_at_an_evaluation_equal_to_it():
    up = C_speed.crossings(STEPS, [0.1, 0.2, 0.5, 0.8], 0.5, higher=True)
    assert float(up.low) == float(up.high) == pytest.approx(math.log(300))
    assert float(up.grid_var) == pytest.approx(math.log(1.5) ** 2 / 12)


def test_a_seed_that_never_crosses_carries_its_last_gaps_variance():
    steps = [100, 200, 300, 600, 1800]  # log gaps: log 2, log 1.5, log 2, log 3
    never = C_speed.crossings(steps, [1.0, 0.9, 0.8, 0.7, 0.6], 0.5)
    assert (float(never.low), float(never.high)) == (pytest.approx(math.log(1800)), math.inf)
    assert float(never.grid_var) == pytest.approx(math.log(3) ** 2 / 12)


def test_censored_crossings_are_bounds_with_their_gaps_variance():
    left = C_speed.crossings(STEPS, [0.4, 0.3, 0.2, 0.1], 0.5)
    assert (float(left.low), float(left.high)) == (-math.inf, pytest.approx(math.log(100)))
    assert float(left.grid_var) == pytest.approx(math.log(2) ** 2 / 12) and left.left
    right = C_speed.crossings(STEPS, [1.0, 0.9, 0.8, 0.7], 0.5)
    assert (float(right.low), float(right.high)) == (pytest.approx(math.log(900)), math.inf)
    assert float(right.grid_var) == pytest.approx(math.log(3) ** 2 / 12) and right.right
    both = C_speed.crossings(
        STEPS, [[0.4, 0.3, 0.2, 0.1], [1.0, 0.9, 0.8, 0.7], [1.0, 0.8, 0.4, 0.2]], [0.5, 0.5, 0.5]
    )
    assert both.left.tolist() == [True, False, False]
    assert both.right.tolist() == [False, True, False]
    assert both.high.tolist() == pytest.approx(
        [math.log(100), math.inf, math.log(200) + 0.75 * math.log(1.5)]
    )


def test_crossings_raise_no_warnings_at_censored_or_exact_first_values():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for first in (0.4, 0.5, 0.9):  # below, at, and (never reaching) above the level
            C_speed.crossings(STEPS, [first, first, first, first], 0.5)


def test_welch_logs_over_replications_uses_each_rows_grid_variance_and_hsu_df():
    xa = np.array([[0.0, 0.1, 0.2], [1.0, 1.0, 1.0]])
    va = np.array([[0.0, 0.0, 0.0], [0.3, 0.3, 0.6]])
    xb = np.array([[0.0, 0.0, 0.0, 0.0]] * 2)
    vb = np.array([[0.01, 0.01, 0.01, 0.01], [0.0, 0.0, 0.0, 0.0]])
    effect, se, df = C_speed.welch_logs(xa, va, xb, vb)
    assert effect.tolist() == pytest.approx([0.1, 1.0])
    assert se.tolist() == pytest.approx([math.sqrt(0.01 / 3 + 0.01 / 4), math.sqrt(0.4 / 3)])
    assert df.shape == (2,) and df.tolist() == [2.0, 2.0]


def crossings_of(*logs):
    x = np.array(logs, float)
    return C_speed.Crossings(x, x.copy(), np.full(x.shape, 1e-6))


@pytest.mark.parametrize("threshold", [0.0, math.log(0.67)])
def test_speed_test_by_hand(threshold):
    a, b = crossings_of(5.0, 5.2, 5.4), crossings_of(6.0, 6.1, 6.2)
    t = C_speed.speed_test(a, b, threshold)
    se = math.sqrt(0.04 / 3 + 0.01 / 3)
    q = sps.t.ppf(0.975, 2)
    assert float(t.effect) == pytest.approx(-0.9) and float(t.df) == 2
    assert (float(t.low), float(t.high)) == pytest.approx((-0.9 - q * se, -0.9 + q * se))
    assert float(t.p_support) == pytest.approx(sps.t.cdf((-0.9 - threshold) / se, 2))
    assert float(t.p_contradict) == pytest.approx(sps.t.sf((-0.9 - threshold) / se, 2))
    assert str(t.verdict) == (C.SUPPORTED if -0.9 + q * se < threshold else C.INCONCLUSIVE)
    # at the interval's own ends the rule is strict: an end at the threshold decides nothing
    assert str(C_speed.speed_test(a, b, float(t.high)).verdict) == C.INCONCLUSIVE
    assert str(C_speed.speed_test(b, a, float(C_speed.speed_test(b, a, 0).low)).verdict) == (
        C.INCONCLUSIVE
    )


def test_speed_test_censoring_takes_the_conservative_end_without_warnings():
    import warnings

    inf = math.inf
    a = C_speed.Crossings(np.array([5.0, 5.1, 5.2]), np.array([5.0, 5.1, inf]), np.full(3, 1e-4))
    b = crossings_of(4.0, 4.1, 4.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = C_speed.speed_test(a, b, 0.0)
    assert float(t.high) == inf and float(t.p_support) == 1.0 and float(t.low) > 0
    assert str(t.verdict) == C.CONTRADICTED and float(t.df) == 2
    assert float(t.effect) == pytest.approx(1.0)  # the finite (fast) end when the slow is not
    left = C_speed.Crossings(np.array([-inf] * 3), np.array([4.0] * 3), np.full(3, 1e-4))
    t = C_speed.speed_test(left, crossings_of(6.0, 6.1, 6.2), 0.0)
    assert float(t.low) == -inf and float(t.p_contradict) == 1.0 and str(t.verdict) == C.SUPPORTED


def test_the_level_is_what_every_curve_reached_by_60_percent_of_its_budget():
    steps = [1000, 2880, 2881, 4800]  # 0.6 * 4800 = 2880 (up to rounding): 2881 is later
    assert C_speed.reached_by(steps, [0.9, 0.5, 0.1, 0.05]) == 0.5
    assert C_speed.reached_by(steps, [0.1, 0.5, 0.9, 0.95], higher=True) == 0.5
    assert C_speed.reached_by(steps, [0.9, 0.5, 0.1, 0.05], fraction=1.0) == 0.05
    with pytest.raises(ValueError, match="no evaluation by 60% of the budget"):
        C_speed.reached_by([3000, 4800], [0.5, 0.1])
    s = [100, 200, 300, 400, 500]
    curves = [(s, [0.9, 0.4, 0.1, 0.05, 0.01]), (s, [0.8, 0.6, 0.3, 0.2, 0.1])]
    assert C_speed.level_rule(curves) == 0.3  # the worst of the bests by update 300: 0.1, 0.3
    up = [(s, [1 - v for v in vs]) for s, vs in curves]
    assert C_speed.level_rule(up, higher=True) == pytest.approx(0.7)
    assert C_speed.level_rule(curves, fraction=1.0) == 0.1


def test_auc_is_the_mean_of_the_curve_over_the_span():
    steps, values = [0, 100, 200, 400], [4.0, 2.0, 1.0, 1.0]
    # over [50, 300]: linear between evaluations: 3 at 50, 2 at 100, 1 at 200, 1 at 300
    want = (2.5 * 50 + 1.5 * 100 + 1.0 * 100) / 250
    assert C_speed.auc(steps, values, (50, 300)) == pytest.approx(want)
    assert C_speed.auc(steps, values, (0, 400)) == pytest.approx((300 + 150 + 200) / 400)
    y = np.log(values)
    logs = ((y[0] + y[1]) / 2 * 100 + (y[1] + y[2]) / 2 * 100 + y[2] * 200) / 400
    assert C_speed.auc(steps, values, (0, 400), log=True) == pytest.approx(logs)
    assert C_speed.auc(steps, values, (100, 200)) == pytest.approx(1.5)


@pytest.mark.parametrize("span, values", [((0, 500), [4.0, 2, 1, 1]), ((-1, 400), [4.0, 2, 1, 1])])
def test_auc_is_nan_when_the_curve_does_not_cover_the_span(span, values):
    assert math.isnan(C_speed.auc([0, 100, 200, 400], values, span))


def test_auc_of_the_log_is_nan_at_a_zero_value():
    assert math.isnan(C_speed.auc([0, 100], [1.0, 0.0], (0, 100), log=True))
    assert C_speed.auc([0, 100], [1.0, 0.0], (0, 100)) == 0.5


# ---- verdicts: what each check reads, and how the row says it ----------------------------------
from test_claims import FINAL_LOWER as FINAL
from test_claims import LOWER_AT, finals, lower_at_runs, run_claim
from test_claims import SPEC as SPEC_T

from lnrepro.claims.text import num
from lnrepro.claims.verdicts import value_at

ROBUST = {"check": "robust", "metric": "test/err", "norms": ["ln", "bn"]}


def test_robust_on_a_log_scale_reads_only_its_setting_and_says_so(tmp_path):
    runs = finals({"ln": [0.02, 0.021, 0.019], "bn": [0.010, 0.011, 0.009]}, bs=128)
    runs += finals({"ln": [0.03, 0.031, 0.029], "bn": [0.040, 0.041, 0.039]}, bs=4)
    runs += [{"norm": "ln", "bs": 4, "seed": 9, "final": {"test/err": 9.0}, "status": "failed"}]
    claim = {**ROBUST, "between": {"data.batch_size": [128, 4]}, "log": True}
    res = run_claim(tmp_path, claim, runs)
    logs = lambda vs: [math.log(v) for v in vs]
    iv = C.linear_interval(
        [logs([0.03, 0.031, 0.029]), logs([0.02, 0.021, 0.019]),
         logs([0.040, 0.041, 0.039]), logs([0.010, 0.011, 0.009])],
        [1.0, -1.0, -1.0, 1.0],
    )  # fmt: skip
    assert res.interval.effect == pytest.approx(iv.effect) and res.ratio
    assert res.effect_name == "rise batch_size 128 -> 4 (ratio), LN / BN"
    assert res.measured == (
        "LN: 128: 0.02 ± 0.001 (n=3), 4: 0.03 ± 0.001 (n=3); "
        "BN: 128: 0.01 ± 0.001 (n=3), 4: 0.04 ± 0.001 (n=3)"
    )
    assert res.verdict == C.SUPPORTED and res.verdict_text() == C.SUPPORTED
    plain = run_claim(tmp_path, {**claim, "log": False}, runs)
    assert plain.effect_name == "rise batch_size 128 -> 4, LN - BN" and not plain.ratio


def test_setting_lower_reads_its_where_and_its_log(tmp_path):
    spec_runs = []
    for bs, shift in ((128, 0.0), (4, 5.0)):  # batch 4 must not be read
        for i, (one, tenth) in enumerate([(0.10, 0.20), (0.11, 0.22), (0.09, 0.18)]):
            spec_runs.append(
                {"norm": "ln", "bs": bs, "seed": i + 1, "final": {"test/err": one + shift}}
            )
    claim = {
        "check": "setting_lower",
        "metric": "test/err",
        "norms": ["ln"],
        "settings": {"data.batch_size": [128, 4]},
    }
    res = run_claim(tmp_path, claim, spec_runs)
    assert res.effect_name == "batch_size 128 - batch_size 4"
    assert res.measured == "LN batch_size 128 0.1 ± 0.01 (n=3); LN batch_size 4 5.1 ± 0.01 (n=3)"
    assert res.interval.effect == pytest.approx(-5.0) and not res.ratio
    res = run_claim(tmp_path, {**claim, "log": True}, spec_runs)
    assert res.ratio and res.interval.effect == pytest.approx(
        statistics.fmean(math.log(v) for v in (0.10, 0.11, 0.09))
        - statistics.fmean(math.log(v) for v in (5.10, 5.11, 5.09))
    )


def test_final_below_reads_its_where_and_names_the_bar(tmp_path):
    runs = finals({"ln": [0.40, 0.41, 0.42]}, bs=128) + finals({"ln": [0.9, 0.9, 0.9]}, bs=4)
    claim = {"check": "final_below", "metric": "test/err", "norms": ["ln"], "value": 0.5,
             "where": {"data.batch_size": 128}}  # fmt: skip
    res = run_claim(tmp_path, claim, runs)
    assert res.measured == "LN 0.41 ± 0.01 (n=3)" and res.effect_name == "LN - 0.5"
    assert res.interval.effect == pytest.approx(-0.09) and res.verdict == C.SUPPORTED


def test_comparable_without_log_uses_the_margin_in_units(tmp_path):
    runs = [{"norm": "none", "seed": i + 1, "spu": v} for i, v in enumerate([1.0, 1.01, 0.99])]
    runs += [{"norm": "ln", "seed": i + 1, "spu": v} for i, v in enumerate([1.1, 1.11, 1.09])]
    claim = {"check": "comparable", "metric": "s_per_update", "norms": ["ln", "none"]}
    assert run_claim(tmp_path, {**claim, "margin": 0.2}, runs).verdict == C.SUPPORTED
    assert run_claim(tmp_path, {**claim, "margin": 0.05}, runs).verdict == C.CONTRADICTED


def test_lower_at_reads_epochs_unless_told_steps(tmp_path):
    claim = {k: v for k, v in LOWER_AT.items() if k != "x"}
    res = run_claim(tmp_path, claim, lower_at_runs((0.5, 1.0, 1.5)))
    assert "; read at epoch 1: evaluated there" in res.measured and res.verdict == C.SUPPORTED
    res = run_claim(tmp_path / "bare", claim, lower_at_runs(), curves=False)
    assert res.reasons == ["no results/toy_curves.csv"] and res.figure == "toy"


def test_value_at_the_tolerance_and_the_ends():
    pts = [(0, 0.0, 5.0), (1, 1e-9, 7.0), (2, 1.0, 9.0)]
    assert value_at(pts, 1, 0.0) == (5.0, "evaluated there")
    assert value_at(pts[1:], 1, 0.0) == (7.0, "evaluated there")  # 1e-9 away: the same point
    assert value_at(pts, 1, 0.5) == (pytest.approx(8.0), "interpolated between 1e-09 and 1")
    assert value_at(pts, 1, 1.5) is None and value_at(pts[2:], 1, 0.5) is None
    assert value_at(pts, 0, 1.5)[0] == pytest.approx(8.0)


def test_a_speed_rows_spread_and_power_are_its_own(tmp_path):
    """sigma: the sd of each arm's exact log crossings (censored seeds left out, the other arm's
    where an arm has fewer than 2); power at those spreads and this grid, and with 5 seeds."""
    from test_claims import FASTER, crossing, faster_runs

    from lnrepro.claims.simulate import log_spaced, power

    claim = {**FASTER, "max_ratio": 0.8, "auc": {"steps": [100, 1000]}}
    res = run_claim(tmp_path, claim, faster_runs([200, 300, 500], [800, 1000, 900]))
    s = res.speed
    x_ln = [crossing(t, 1.0, 0.05, 0.5) for t in (200, 300, 500)]
    x_bn = [crossing(t, 1.0, 0.10 + 0.01 * i, 0.5) for i, t in enumerate((800, 1000, 900))]
    assert s["level"] == 0.5 and res.ratio
    assert (s["sigma"]["ln"], s["sigma"]["bn"]) == pytest.approx(
        (statistics.stdev(x_ln), statistics.stdev(x_bn))
    )
    grid = log_spaced(range(100, 1001, 100))
    args = (grid, s["sigma"]["ln"], s["sigma"]["bn"], math.log(0.8))
    assert s["power"] == power(*args, 3) and s["power5"] == power(*args, 5)
    assert s["power"] < s["power5"]
    iv, log = s["auc"]
    assert not log and iv.high < 0  # linear: LN's mean NLL over the span is lower
    one = run_claim(tmp_path / "one", claim, faster_runs([200, None, None], [800, 1000, 900]))
    assert one.speed["sigma"]["ln"] is None
    assert one.speed["power"] == power(grid, one.speed["sigma"]["bn"], one.speed["sigma"]["bn"],
                                       math.log(0.8), 3)  # fmt: skip
    five = run_claim(tmp_path / "five", claim, faster_runs([200] * 5, [800, 1000, 900, 850, 950]))
    assert five.speed["power"] is not None and five.speed["power5"] is None
    assert five.speed["sigma"]["ln"] == 0  # ties: below the floor of 0.01 used for the power
    assert five.speed["power"] == power(grid, 0.01, five.speed["sigma"]["bn"], math.log(0.8), 5)


def test_the_effect_as_the_row_writes_it():
    r = C.Result(
        "toy", {}, "t", effect_name="LN - BN", interval=C.Interval(-0.0123, -0.02, -0.00456, 2)
    )
    assert r.effect_text() == "LN - BN = -0.0123 [-0.02, -0.00456]"
    r.ratio, r.interval = True, C.Interval(math.log(0.5), math.log(0.25), math.log(0.9), 2)
    assert r.effect_text() == "LN - BN = 0.5 [0.25, 0.9]"
    r.interval = C.Interval(math.nan, -math.inf, math.log(0.6), 2)
    assert r.effect_text() == "LN - BN within [0, 0.6]"
    assert C.Result("toy", {}, "t").effect_text() == "–"
    assert C.Result("toy", {}, "t", verdict=C.SUPPORTED).verdict_text() == C.SUPPORTED


def test_a_pairs_row_and_a_log_of_zero(tmp_path):
    res = run_claim(tmp_path, FINAL, finals({"ln": [0.01, 0.02, 0.03], "bn": [0.02, 0.03, 0.04]}))
    assert res.measured == "LN 0.02 ± 0.01 (n=3); BN 0.03 ± 0.01 (n=3)"
    assert res.effect_name == "LN - BN" and not res.ratio and res.figure == "toy"
    res = run_claim(
        tmp_path,
        {**FINAL, "log": True},
        finals({"ln": [0.0, 0.02, 0.03], "bn": [0.02, 0.03, 0.04]}),
    )
    assert res.reasons == ["log of a value <= 0"] and res.interval is None
    assert res.effect_name == "LN / BN" and res.ratio


def test_a_figure_without_results_names_what_is_missing(tmp_path):
    spec = {**SPEC_T, "claims": [{"id": "c", "section": "s", "quote": "q", **FINAL}]}
    (res,) = C.evaluate(spec, C.load_figure(tmp_path, spec))
    assert res.reasons == ["no results/toy.csv"] and res.figure == "toy"


def test_a_rows_reasons_are_all_written_out():
    r = C.Result("toy", {}, "t", reasons=["n=1", "LN 1 of 3 censored"])
    assert r.verdict_text() == "inconclusive (n=1; LN 1 of 3 censored)"


def test_the_interval_is_written_to_three_significant_digits():
    r = C.Result(
        "toy", {}, "t", effect_name="LN - BN", interval=IV(-0.012345, -0.023456, -0.0045678, 2)
    )
    assert r.effect_text() == "LN - BN = -0.0123 [-0.0235, -0.00457]"
    r.ratio, r.interval = True, IV(math.log(0.51234), math.log(0.25678), math.log(0.98765), 2)
    assert r.effect_text() == "LN - BN = 0.512 [0.257, 0.988]"


def test_final_below_without_a_where_reads_every_run(tmp_path):
    claim = {"check": "final_below", "metric": "test/err", "norms": ["ln"], "value": 0.5}
    res = run_claim(tmp_path, claim, finals({"ln": [0.40, 0.41, 0.42], "bn": [0.9, 0.9, 0.9]}))
    assert res.measured == "LN 0.41 ± 0.01 (n=3)" and res.verdict == C.SUPPORTED


# A figure swept over two settings, one of them three levels deep (model.rnn.hidden_size):
# `where` fixes the other, and a row names a setting by its last part.
GRID2 = {"data.batch_size": [128, 4], "model.rnn.hidden_size": [64, 256]}


def grid2_figure(values: dict[tuple[str, int, int], list[float]], claim: dict):
    """FigureData of results whose final test/err per (norm, batch, hidden) are `values` (one
    per seed); the claim validated against the spec."""
    from lnrepro.claims.results import FigureData

    runs = [
        {"norm": n, "seed": str(i + 1), "status": "completed", "data.batch_size": str(bs),
         "model.rnn.hidden_size": str(h), "final_test/err": str(v)}
        for (n, bs, h), vs in values.items()
        for i, v in enumerate(vs)
    ]  # fmt: skip
    spec = {**SPEC_T, "grid": GRID2, "claims": [{"id": "c", "section": "s", "quote": "q", **claim}]}
    C.validate(spec, "toy.yaml")
    return spec, FigureData(spec, "toy", runs, None)


def test_setting_lower_fixes_the_other_settings_by_its_where():
    claim = {
        "check": "setting_lower",
        "metric": "test/err",
        "norms": ["ln"],
        "settings": {"model.rnn.hidden_size": [256, 64]},
        "where": {"data.batch_size": 128},
    }
    spec, data = grid2_figure(
        {
            ("ln", 128, 256): [0.10, 0.11, 0.12],
            ("ln", 128, 64): [0.20, 0.21, 0.22],
            ("ln", 4, 256): [0.90, 0.91, 0.92],
            ("ln", 4, 64): [0.30, 0.31, 0.32],
        },
        claim,
    )
    (res,) = C.evaluate(spec, data)
    assert res.effect_name == "hidden_size 256 - hidden_size 64"
    assert res.measured == (
        "LN hidden_size 256 0.11 ± 0.01 (n=3); LN hidden_size 64 0.21 ± 0.01 (n=3)"
    )
    assert res.interval.effect == pytest.approx(-0.1) and res.verdict == C.SUPPORTED


def test_robust_fixes_the_other_settings_by_its_where():
    """At batch 128 LN's error rises less than BN's from hidden 256 to 64 (supported); at batch
    4, which the claim does not read, it rises more."""
    claim = {
        **ROBUST,
        "between": {"model.rnn.hidden_size": [256, 64]},
        "where": {"data.batch_size": 128},
    }
    v = lambda x: [x - 0.01, x, x + 0.01]
    spec, data = grid2_figure(
        {
            ("ln", 128, 256): v(0.10),
            ("ln", 128, 64): v(0.12),
            ("bn", 128, 256): v(0.10),
            ("bn", 128, 64): v(0.30),
            ("ln", 4, 256): v(0.10),
            ("ln", 4, 64): v(0.90),
            ("bn", 4, 256): v(0.10),
            ("bn", 4, 64): v(0.11),
        },
        claim,
    )
    (res,) = C.evaluate(spec, data)
    assert res.effect_name == "rise hidden_size 256 -> 64, LN - BN"
    assert res.interval.effect == pytest.approx(0.02 - 0.20) and res.verdict == C.SUPPORTED
    assert res.measured.startswith("LN: 256: 0.1 ± 0.01 (n=3), 64: 0.12 ± 0.01 (n=3); BN: ")


def lower_at_curves(ln_epochs, bn_epochs=((0.5, 1.0, 1.5),) * 3, bs=128, ln_early=0.10):
    """lower_at_runs with each seed's own evaluation epochs: 1.0 at the first evaluation, LN
    `ln_early` + 0.01 i and BN 0.30 + 0.01 i at the second, LN 0.05 and BN 0.01 at the third."""
    runs = []
    for norm, grids, early, late in (
        ("ln", ln_epochs, ln_early, 0.05),
        ("bn", bn_epochs, 0.30, 0.01),
    ):
        for i, epochs in enumerate(grids):
            values = (1.0, early + 0.01 * i, late)
            pts = [(50 * (k + 1), e, v) for k, (e, v) in enumerate(zip(epochs, values))]
            runs.append({"norm": norm, "seed": i + 1, "bs": bs, "curve": {"train/nll": pts}})
    return runs


def test_lower_at_names_how_each_seed_was_read_and_every_refused_seed(tmp_path):
    even, odd = (0.5, 1.0, 1.5), (0.5, 0.9, 1.3)
    res = run_claim(tmp_path, LOWER_AT, lower_at_curves([even, odd, even]))
    assert res.verdict == C.SUPPORTED and not res.reasons
    w = (1 - 0.9) / (1.3 - 0.9)  # LN seed 2 between 0.11 at 0.9 and 0.05 at 1.3
    assert res.measured == (
        f"LN {num(statistics.fmean([0.10, 0.11 + w * (0.05 - 0.11), 0.12]))} ± "
        f"{num(statistics.stdev([0.10, 0.11 + w * (0.05 - 0.11), 0.12]), 2)} (n=3); "
        "BN 0.31 ± 0.01 (n=3); read at epoch 1: evaluated there (LN 1, LN 3, BN 1, BN 2, BN 3); "
        "interpolated between 0.9 and 1.3 (LN 2)"
    )
    short = (0.25, 0.5, 0.75)  # stops before epoch 1
    res = run_claim(tmp_path, LOWER_AT, lower_at_curves([short, short, even]))
    assert res.reasons == [
        "LN seed 1: epoch 1 outside its evaluations",
        "LN seed 2: epoch 1 outside its evaluations",
        "n=1",
    ]
    assert res.verdict == C.INCONCLUSIVE and res.interval is None
    assert res.measured.startswith("LN 0.12 (n=1); BN 0.31 ± 0.01 (n=3); read at epoch 1: ")
    assert "(LN 3, BN 1, BN 2, BN 3)" in res.measured


def test_lower_at_with_no_seed_read_says_nothing_of_how(tmp_path):
    late = ((2.0, 3.0, 4.0),) * 3
    res = run_claim(tmp_path, LOWER_AT, lower_at_curves(late, late))
    assert res.measured == "LN – (n=0); BN – (n=0)" and res.verdict == C.INCONCLUSIVE
    assert len(res.reasons) == 7 and res.reasons[-1] == "n=0"


def test_lower_at_reads_its_where_and_names_a_run_without_a_curve(tmp_path):
    """Batch 4's curves (LN far higher there) must not be read; a completed run of batch 128
    without the metric's curve is named."""
    even = [(0.5, 1.0, 1.5)] * 3
    runs = lower_at_curves(even) + lower_at_curves(even, bs=4, ln_early=5.0)
    claim = {**LOWER_AT, "where": {"data.batch_size": 128}}
    res = run_claim(tmp_path, claim, runs)
    assert res.verdict == C.SUPPORTED and res.measured.startswith("LN 0.11 ± 0.01 (n=3); ")
    runs.append({"norm": "bn", "seed": 4, "bs": 128, "curve": {"train/acc": [(50, 0.5, 0.9)]}})
    res = run_claim(tmp_path / "gap", claim, runs)
    assert res.reasons == ["BN seed 4 has no train/nll curve"] and res.interval is None


# ---- verdicts: the speed row -------------------------------------------------------------------
def test_a_speed_row_with_one_seed_is_not_tested_and_reports_no_power(tmp_path):
    from test_claims import FASTER, faster_runs

    res = run_claim(tmp_path, FASTER, faster_runs([200], [800, 1000, 900]))
    assert res.reasons == ["n=1"] and res.verdict == C.INCONCLUSIVE
    assert res.interval is None and res.p_support is None
    s = res.speed
    assert (s["level"], s["auc"], s["power"], s["power5"]) == (0.5, None, None, None)
    assert s["sigma"]["ln"] is None and s["sigma"]["bn"] is not None


def test_two_exact_crossings_give_a_spread(tmp_path):
    from test_claims import FASTER, crossing, faster_runs

    res = run_claim(tmp_path, FASTER, faster_runs([200, 400, None], [800, 1000, 900]))
    assert res.reasons == ["LN 1 of 3 censored"] and res.verdict == C.INCONCLUSIVE
    x_ln = [crossing(t, 1.0, 0.05, 0.5) for t in (200, 400)]
    assert res.speed["sigma"]["ln"] == pytest.approx(statistics.stdev(x_ln))


def test_a_speed_rows_power_is_at_its_own_number_of_seeds(tmp_path):
    """Four seeds per arm, wide spreads: the power at n = 4 (not at the default 3), and at 5."""
    from test_claims import FASTER, faster_runs

    from lnrepro.claims.simulate import log_spaced, power

    res = run_claim(
        tmp_path,
        {**FASTER, "max_ratio": 1.0},
        faster_runs([200, 500, 300, 900], [300, 800, 200, 600]),
    )
    s = res.speed
    grid = log_spaced(range(100, 1001, 100))
    args = (grid, s["sigma"]["ln"], s["sigma"]["bn"], 0.0)
    assert s["power"] == power(*args, 4) and s["power5"] == power(*args, 5)
    assert s["power"] != power(*args, 3)  # the number of seeds matters at these spreads


def test_a_speed_rows_auc_on_the_log_scale_is_the_mean_log_metric(tmp_path):
    from test_claims import FASTER, faster_runs

    runs = faster_runs([200, 300, 200], [800, 1000, 900])
    claim = {**FASTER, "auc": {"steps": [100, 1000], "log": True}}
    iv, log = run_claim(tmp_path, claim, runs).speed["auc"]
    per_seed = {"ln": [], "bn": []}
    for r in runs:
        pts = r["curve"]["train/nll"]
        per_seed[r["norm"]].append(
            C_speed.auc([p[0] for p in pts], [p[2] for p in pts], (100, 1000), log=True)
        )
    want = C.welch_interval(per_seed["ln"], per_seed["bn"])
    assert log and (iv.effect, iv.low, iv.high) == pytest.approx((want.effect, want.low, want.high))
