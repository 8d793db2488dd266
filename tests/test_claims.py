"""The claims machinery (src/lnrepro/claims/, scripts/claims.py, the curves CSV of
scripts/figure.py): the Welch interval against hand computations and tabulated t quantiles,
every check kind on synthetic results, and the committed results/claims.md, results/claims.csv
and README table recomputed from results/ (any difference fails)."""

from __future__ import annotations

import csv
import difflib
import json
import math
import random
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, load_script
from scipy import stats

from lnrepro import claims as C
from lnrepro.claims import sanity as S
from lnrepro.claims.speed import auc as auc_of
from lnrepro.runs import find_runs


# ---- statistics ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "df, q",
    [
        (1, 12.7062),
        (2, 4.30265),
        (3, 3.18245),
        (5, 2.57058),
        (10, 2.22814),
        (30, 2.04227),
        (1e9, 1.95996),
    ],
)
def test_t_quantile_matches_the_tables(df, q):
    assert C.t_quantile(0.975, df) == pytest.approx(q, abs=5e-5)


def test_welch_interval_by_hand():
    # a: mean 2, var 1; b: mean 4, var 4 -> se^2 = 1/3 + 4/3 = 5/3,
    # df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = 50/17
    iv = C.welch_interval([1, 2, 3], [2, 4, 6])
    assert iv.effect == pytest.approx(-2) and iv.df == pytest.approx(50 / 17)
    half = C.t_quantile(0.975, 50 / 17) * math.sqrt(5 / 3)
    assert (iv.low, iv.high) == pytest.approx((-2 - half, -2 + half))
    assert 3.18245 < half / math.sqrt(5 / 3) < 4.30265  # between t(3) and t(2)
    ref = stats.ttest_ind([1, 2, 3], [2, 4, 6], equal_var=False).confidence_interval(0.95)
    assert (iv.low, iv.high) == pytest.approx((ref.low, ref.high))


def test_linear_interval_with_constant_groups_is_welch():
    """Groups without spread add their mean to the effect but nothing to the error or df."""
    a, b = [0.3, 0.5, 0.4, 0.9], [1.0, 1.4, 1.1]
    iv = C.welch_interval(a, b)
    iv4 = C.linear_interval([a, [2.0, 2.0], b, [0.5, 0.5, 0.5]], [1, -1, -1, 1])
    assert iv4.effect == pytest.approx(iv.effect - 1.5)
    assert iv4.df == pytest.approx(iv.df)
    assert iv4.high - iv4.low == pytest.approx(iv.high - iv.low)
    assert C.welch_interval([1.0, 1.0], [3.0, 3.0]) == C.Interval(-2.0, -2.0, -2.0, math.inf, 0.0)


@pytest.mark.slow  # > 1 s: 4000 simulated experiments
def test_welch_interval_covers_95_percent_with_three_seeds():
    """Unequal variances, n = 3 vs 4: the t interval covers the true difference ~95 % of the
    time (a normal quantile instead of t would cover only ~85 %)."""
    rng = random.Random(0)
    reps, hits = 4000, 0
    for _ in range(reps):
        a = [rng.gauss(1.0, 1.0) for _ in range(3)]
        b = [rng.gauss(0.0, 3.0) for _ in range(4)]
        iv = C.welch_interval(a, b)
        hits += iv.low <= 1.0 <= iv.high
    assert abs(hits / reps - 0.95) < 0.015, hits / reps


# ---- synthetic results -----------------------------------------------------------------------
SPEC = {
    "name": "toy",
    "title": "Toy figure",
    "norms": ["ln", "bn", "none"],
    "grid": {"data.batch_size": [128, 4]},
    "metrics": [{"key": "test/err"}, {"key": "test/acc", "higher_is_better": True}],
}


def write_results(root: Path, runs: list[dict], curves: bool = True) -> C.FigureData:
    """results/toy.csv (and toy_curves.csv) as scripts/figure.py writes them. Each run:
    {norm, bs, seed, final: {metric: value}, curve: {metric: [(step, epoch, value)]}}."""
    results = root / "results"
    results.mkdir(parents=True, exist_ok=True)
    metrics = sorted({m for r in runs for m in r.get("final", {})})
    with open(results / "toy.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "scale",
                "norm",
                "data.batch_size",
                "seed",
                "status",
                "wall_time_s",
                "s_per_update",
                *[f"final_{m}" for m in metrics],
            ]
        )
        for r in runs:
            w.writerow(
                [
                    "cpu",
                    r["norm"],
                    r.get("bs", 128),
                    r["seed"],
                    r.get("status", "completed"),
                    60,
                    r.get("spu", 0.1),
                    *[r.get("final", {}).get(m, "") for m in metrics],
                ]
            )
    if curves:
        with open(results / "toy_curves.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["norm", "seed", "data.batch_size", "step", "epoch", "metric", "value"])
            for r in runs:
                for m, points in r.get("curve", {}).items():
                    for step, epoch, v in points:
                        w.writerow([r["norm"], r["seed"], r.get("bs", 128), step, epoch, m, v])
    return C.load_figure(results, SPEC)


def finals(values: dict[str, list[float]], metric="test/err", bs=128) -> list[dict]:
    return [
        {"norm": n, "bs": bs, "seed": i + 1, "final": {metric: v}}
        for n, vs in values.items()
        for i, v in enumerate(vs)
    ]


def run_claim(tmp_path, claim: dict, runs: list[dict], curves=True) -> C.Result:
    claim = {"id": "c", "section": "Sec. 0", "quote": "q", **claim}
    spec = {**SPEC, "claims": [claim]}
    C.validate(spec, "toy.yaml")
    (result,) = C.evaluate(spec, write_results(tmp_path, runs, curves))
    return result


FINAL_LOWER = {
    "check": "final_lower",
    "metric": "test/err",
    "norms": ["ln", "bn"],
    "where": {"data.batch_size": 128},
}


@pytest.mark.parametrize(
    "ln, verdict",
    [
        ([0.010, 0.011, 0.012], C.SUPPORTED),
        ([0.030, 0.031, 0.029], C.CONTRADICTED),
        ([0.015, 0.025, 0.020], C.INCONCLUSIVE),
    ],
)
def test_final_lower(tmp_path, ln, verdict):
    bn = [0.020, 0.021, 0.019]
    res = run_claim(tmp_path, FINAL_LOWER, finals({"ln": ln, "bn": bn}))
    assert res.verdict == verdict and not res.reasons
    iv = C.welch_interval(ln, bn)
    assert (res.interval.low, res.interval.high) == pytest.approx((iv.low, iv.high))
    assert res.measured.startswith(f"LN {C.num(statistics.fmean(ln))} ± ")


@pytest.mark.parametrize(
    "ln, verdict",
    [
        ([0.50, 0.51, 0.52], C.SUPPORTED),  # mean 0.51, t(2) half-width 0.025: below 0.562
        ([0.55, 0.56, 0.57], C.INCONCLUSIVE),  # [0.535, 0.585] straddles the bar
        ([0.60, 0.61, 0.62], C.CONTRADICTED),
    ],
)
def test_final_below_a_fixed_bar(tmp_path, ln, verdict):
    claim = {
        "check": "final_below",
        "metric": "test/err",
        "norms": ["ln"],
        "value": 0.562,
        "where": {"data.batch_size": 128},
    }
    res = run_claim(tmp_path, claim, finals({"ln": ln, "bn": [0.9, 0.9]}))
    assert res.verdict == verdict and not res.reasons
    half = C.t_quantile(0.975, 2) * statistics.stdev(ln) / 3**0.5
    mean = statistics.fmean(ln) - 0.562
    assert (res.interval.low, res.interval.high) == pytest.approx((mean - half, mean + half))
    assert res.tested == "final test/err (batch_size 128): LN < 0.562 (fixed bar)"


def test_final_lower_ignores_other_settings_and_unfinished_runs(tmp_path):
    runs = finals({"ln": [0.01, 0.011], "bn": [0.02, 0.021]})
    runs += finals({"ln": [0.5, 0.6], "bn": [0.0, 0.0]}, bs=4)  # another batch size
    runs += [{"norm": "ln", "seed": 9, "status": "incomplete", "final": {"test/err": 0.9}}]
    res = run_claim(tmp_path, FINAL_LOWER, runs)
    assert res.verdict == C.SUPPORTED and "(n=2)" in res.measured


def test_one_seed_is_inconclusive_and_says_n1(tmp_path):
    res = run_claim(tmp_path, FINAL_LOWER, finals({"ln": [0.001], "bn": [0.5, 0.5, 0.5]}))
    assert res.verdict == C.INCONCLUSIVE and res.reasons == ["n=1"] and res.interval is None
    assert res.verdict_text() == "inconclusive (n=1)"


def test_final_lower_on_a_log_scale_reports_a_ratio(tmp_path):
    ln, bn = [100.0, 110.0, 105.0], [200.0, 230.0, 210.0]
    res = run_claim(
        tmp_path,
        {**FINAL_LOWER, "metric": "test/ppl", "log": True},
        finals({"ln": ln, "bn": bn}, "test/ppl"),
    )
    geo = math.exp(statistics.fmean(map(math.log, ln)) - statistics.fmean(map(math.log, bn)))
    assert res.verdict == C.SUPPORTED and math.exp(res.interval.effect) == pytest.approx(geo)
    assert res.effect_text().startswith(f"LN / BN = {C.num(geo, 3)} [")


@pytest.mark.parametrize(
    "ln, verdict",
    [
        ([80.0, 81.0, 82.0], C.SUPPORTED),
        ([60.0, 61.0, 59.0], C.CONTRADICTED),
        ([65.0, 75.0, 70.0], C.INCONCLUSIVE),
    ],
)
def test_final_higher_for_a_higher_is_better_metric(tmp_path, ln, verdict):
    """An accuracy (declared higher_is_better in the figure's metrics): A above B is the claim;
    the effect is still mean(A) - mean(B), now positive when the claim holds."""
    bn = [70.0, 71.0, 69.0]
    claim = {**FINAL_LOWER, "check": "final_higher", "metric": "test/acc"}
    res = run_claim(tmp_path, claim, finals({"ln": ln, "bn": bn}, "test/acc"))
    assert res.verdict == verdict and not res.reasons
    iv = C.welch_interval(ln, bn)
    assert (res.interval.low, res.interval.high) == pytest.approx((iv.low, iv.high))
    assert res.tested == "final test/acc (batch_size 128): LN > BN"


def test_faster_on_a_higher_is_better_metric_rises_to_the_fixed_level(tmp_path):
    """Accuracy curves: a seed reaches the spec's level (50) when its curve is >= it."""
    runs = []
    for i, t in enumerate([800, 900, 1000]):
        pts = [(s, 10.0 if s < t else 70.0 + i) for s in range(100, 1001, 100)]
        runs.append({"norm": "bn", "seed": i + 1, "curve": {"test/acc": curve(pts)}})
    for i, t in enumerate([200, 300, 200]):
        pts = [(s, 10.0 if s < t else 75.0) for s in range(100, 1001, 100)]
        runs.append({"norm": "ln", "seed": i + 1, "curve": {"test/acc": curve(pts)}})
    res = run_claim(tmp_path, {**FASTER, "metric": "test/acc", "level": 50}, runs)
    assert res.verdict == C.SUPPORTED, res.verdict_text()
    assert res.tested == "updates until test/acc >= 50 (fixed level): LN / BN < 0.67"
    # crossing between t - 100 (10) and t (75 or 70 + i), interpolated in log updates
    ln = [crossing(t, 10.0, 75.0, 50) for t in (200, 300, 200)]
    bn = [crossing(t, 10.0, 70.0 + i, 50) for i, t in enumerate((800, 900, 1000))]
    assert res.interval.high == pytest.approx(hsu_high(ln, [200, 300, 200], bn, [800, 900, 1000]))


def test_setting_lower_compares_one_norm_at_two_grid_settings(tmp_path):
    """LN at batch 128 against LN at batch 4 (the claims of an ablation over a grid key)."""
    runs = finals({"ln": [0.50, 0.52, 0.51]}, bs=128) + finals({"ln": [0.60, 0.62, 0.61]}, bs=4)
    runs += finals({"bn": [0.0, 0.0]}, bs=128)  # another norm: not part of the check
    claim = {
        "check": "setting_lower",
        "metric": "test/err",
        "norms": ["ln"],
        "settings": {"data.batch_size": [128, 4]},
    }
    res = run_claim(tmp_path, claim, runs)
    assert res.verdict == C.SUPPORTED and not res.reasons
    iv = C.welch_interval([0.50, 0.52, 0.51], [0.60, 0.62, 0.61])
    assert (res.interval.low, res.interval.high) == pytest.approx((iv.low, iv.high))
    assert res.tested == "final test/err, LN: batch_size 128 < batch_size 4"
    res = run_claim(tmp_path, {**claim, "settings": {"data.batch_size": [4, 128]}}, runs)
    assert res.verdict == C.CONTRADICTED


def curve(steps_values: list[tuple[int, float]]) -> list[tuple[int, float, float]]:
    return [(s, s / 100, v) for s, v in steps_values]


def faster_runs(ln_reach: list[int | None], bn_reach: list[int]) -> list[dict]:
    """Curves that drop from 1.0 to their final value at the given step (BN's finals 0.10,
    0.11, 0.12; LN's 0.05); an LN seed with None stays at 0.6, above the level 0.5."""
    runs = []
    for i, t in enumerate(bn_reach):
        pts = [(s, 1.0 if s < t else 0.10 + 0.01 * i) for s in range(100, 1001, 100)]
        runs.append({"norm": "bn", "seed": i + 1, "curve": {"train/nll": curve(pts)}})
    for i, t in enumerate(ln_reach):
        pts = [(s, 0.6 if t is None else 1.0 if s < t else 0.05) for s in range(100, 1001, 100)]
        runs.append({"norm": "ln", "seed": i + 1, "curve": {"train/nll": curve(pts)}})
    return runs


FASTER = {
    "check": "faster",
    "metric": "train/nll",
    "norms": ["ln", "bn"],
    "max_ratio": 0.67,
    "level": 0.5,
}


def crossing(t: int, before: float, after: float, level: float) -> float:
    """log of the crossing between evaluations t - 100 and t, linear in log updates."""
    frac = (before - level) / (before - after)
    return math.log(t - 100) + frac * (math.log(t) - math.log(t - 100))


def hsu_high(ln: list[float], ln_t: list[int], bn: list[float], bn_t: list[int]) -> float:
    """The upper end by hand: each arm's variance at least the grid's, (log t - log(t - 100))²
    / 12 around each crossing, Welch's standard error, t with min(n) - 1 df."""

    def var(xs, ts):
        grid = [math.log(t / (t - 100)) ** 2 / 12 for t in ts]
        return max(statistics.variance(xs), statistics.fmean(grid)) / len(xs)

    se = math.sqrt(var(ln, ln_t) + var(bn, bn_t))
    q = C.t_quantile(0.975, min(len(ln), len(bn)) - 1)
    return statistics.fmean(ln) - statistics.fmean(bn) + q * se


def test_faster_supported_with_interpolated_crossings(tmp_path):
    ln, bn = [200, 300, 200], [800, 1000, 900]
    res = run_claim(tmp_path, FASTER, faster_runs(ln, bn))
    assert res.verdict == C.SUPPORTED and not res.reasons, res.verdict_text()
    x_ln = [crossing(t, 1.0, 0.05, 0.5) for t in ln]
    x_bn = [crossing(t, 1.0, 0.10 + 0.01 * i, 0.5) for i, t in enumerate(bn)]
    assert res.interval.high == pytest.approx(hsu_high(x_ln, ln, x_bn, bn))
    assert res.interval.df == 2
    assert "0.5 (fixed level)" in res.tested and res.measured.startswith("updates to level: LN 1")
    assert res.p_support < 0.025 < res.p_contradict


def test_faster_contradicted_when_clearly_slower_than_claimed(tmp_path):
    res = run_claim(
        tmp_path, {**FASTER, "max_ratio": 0.5}, faster_runs([700, 800, 700], [900, 1000, 900])
    )
    assert res.verdict == C.CONTRADICTED, res.verdict_text()
    assert res.p_contradict < 0.025


def test_faster_contradicted_when_the_favoured_arm_never_reaches_the_level(tmp_path):
    """The old rule read this as inconclusive ("never reaches"): now LN's crossing is at least
    its budget (1,000 updates) and BN's are at 200-300."""
    res = run_claim(
        tmp_path, {**FASTER, "max_ratio": 1.0}, faster_runs([None] * 3, [200, 300, 200])
    )
    assert res.verdict == C.CONTRADICTED, res.verdict_text()
    assert res.reasons == ["LN 3 of 3 censored"]
    assert res.measured.startswith("updates to level: LN [1000, inf), [1000, inf), [1000, inf)")
    assert math.isinf(res.interval.high) and res.interval.low > 0


def test_faster_inconclusive_when_a_favoured_seed_never_reaches_the_level(tmp_path):
    """An infinite upper end: the favourable side cannot be shown."""
    res = run_claim(tmp_path, FASTER, faster_runs([200, None, 200], [800, 1000, 900]))
    assert res.verdict == C.INCONCLUSIVE and res.reasons == ["LN 1 of 3 censored"]
    assert res.p_support == 1.0


def test_faster_left_censored_seeds_are_upper_bounds(tmp_path):
    """LN past the level at its first evaluation: crossed somewhere in (0, 100]; still
    supported (its upper ends decide), and the interval's low end is 0."""
    res = run_claim(tmp_path, FASTER, faster_runs([100, 100, 100], [800, 1000, 900]))
    assert res.verdict == C.SUPPORTED, res.verdict_text()
    assert "LN (0, 100], (0, 100], (0, 100]" in res.measured
    assert res.interval.low == -math.inf and res.effect_text().startswith("LN / BN updates = ")


def test_faster_ties_on_the_grid_never_give_a_zero_width_interval(tmp_path):
    res = run_claim(tmp_path, {**FASTER, "max_ratio": 1.0}, faster_runs([500] * 3, [500] * 3))
    assert res.interval.high - res.interval.low > 0.1
    assert res.verdict == C.INCONCLUSIVE


def test_faster_reports_the_auc_without_deciding(tmp_path):
    claim = {**FASTER, "auc": {"steps": [100, 1000], "log": True}}
    res = run_claim(tmp_path, claim, faster_runs([200, 300, 200], [800, 1000, 900]))
    iv, log = res.speed["auc"]
    assert log and iv.high < 0  # LN's mean log NLL is lower
    y = [math.log(1.0)] + [math.log(0.05)] * 9  # LN seed 1: 1.0 at 100, 0.05 from 200
    auc = sum((y[i] + y[i + 1]) / 2 * 100 for i in range(9)) / 900
    assert auc_of(
        [100 * (i + 1) for i in range(10)], [math.exp(v) for v in y], (100, 1000), True
    ) == pytest.approx(auc)
    assert res.verdict == C.SUPPORTED  # the crossing ratio decides, not the AUC


def test_faster_with_a_run_missing_from_the_curves_is_inconclusive(tmp_path):
    runs = faster_runs([200, 300, 200], [800, 1000, 900])
    runs.append({"norm": "ln", "seed": 4})  # in toy.csv, but no curve
    res = run_claim(tmp_path, FASTER, runs)
    assert res.verdict == C.INCONCLUSIVE and res.reasons == ["LN seed 4 has no train/nll curve"]


def test_faster_without_curves_is_inconclusive(tmp_path):
    res = run_claim(tmp_path, FASTER, faster_runs([200, 300], [800, 900]), curves=False)
    assert res.verdict == C.INCONCLUSIVE and res.reasons == ["no results/toy_curves.csv"]


LOWER_AT = {
    "check": "lower_at",
    "metric": "train/nll",
    "norms": ["ln", "bn"],
    "at": 1,
    "x": "epoch",
    "log": True,
}


def lower_at_runs(epochs=(0.5, 0.9977, 1.496)) -> list[dict]:
    """LN 0.1x and BN 0.3x at the second evaluation; at the third BN (0.01) is below LN (0.05)."""
    runs = []
    for i in range(3):
        for norm, early, late in (("ln", 0.10, 0.05), ("bn", 0.30, 0.01)):
            values = (1.0, early + 0.01 * i, late)
            pts = [(50 * (k + 1), e, v) for k, (e, v) in enumerate(zip(epochs, values))]
            runs.append({"norm": norm, "seed": i + 1, "curve": {"train/nll": pts}})
    return runs


def test_lower_at_reads_the_evaluation_at_the_named_epoch(tmp_path):
    res = run_claim(tmp_path, LOWER_AT, lower_at_runs((0.5, 1.0, 1.5)))
    assert res.verdict == C.SUPPORTED
    iv = C.welch_interval(*[[math.log(v + 0.01 * i) for i in range(3)] for v in (0.10, 0.30)])
    assert res.interval.effect == pytest.approx(iv.effect)
    assert res.measured.endswith(
        "read at epoch 1: evaluated there (LN 1, LN 2, LN 3, BN 1, BN 2, BN 3)"
    )


def test_lower_at_interpolates_between_the_evaluations_around_it(tmp_path):
    """Evaluations at epochs 0.9977 and 1.496 (Figure 6's grid at batch 128): epoch 1 is read
    between them, close to the first; the old rule read epoch 1.496, where BN is lower."""
    res = run_claim(tmp_path, LOWER_AT, lower_at_runs())
    assert res.verdict == C.SUPPORTED, res.verdict_text()
    w = (1 - 0.9977) / (1.496 - 0.9977)
    ln = [0.10 + 0.01 * i + w * (0.05 - 0.10 - 0.01 * i) for i in range(3)]
    bn = [0.30 + 0.01 * i + w * (0.01 - 0.30 - 0.01 * i) for i in range(3)]
    iv = C.welch_interval([math.log(v) for v in ln], [math.log(v) for v in bn])
    assert (res.interval.low, res.interval.high) == pytest.approx((iv.low, iv.high))
    assert "interpolated between 0.9977 and 1.496" in res.measured
    res = run_claim(tmp_path, {**LOWER_AT, "at": 1.49}, lower_at_runs())
    assert res.verdict == C.CONTRADICTED  # near 1.496 BN is lower


def test_lower_at_refuses_a_point_outside_the_evaluations(tmp_path):
    for at in (2, 0.25):
        res = run_claim(tmp_path, {**LOWER_AT, "at": at}, lower_at_runs())
        assert res.verdict == C.INCONCLUSIVE and res.interval is None
        assert res.reasons[0] == f"LN seed 1: epoch {at} outside its evaluations"
    res = run_claim(tmp_path, {**LOWER_AT, "x": "step", "at": 125}, lower_at_runs())
    assert res.verdict == C.SUPPORTED and "interpolated between 100 and 150" in res.measured


@pytest.mark.parametrize(
    "ln4, verdict",
    [
        ([0.021, 0.022, 0.023], C.SUPPORTED),
        ([0.061, 0.062, 0.063], C.CONTRADICTED),
        ([0.03, 0.05, 0.04], C.INCONCLUSIVE),
    ],
)
def test_robust(tmp_path, ln4, verdict):
    # BN rises by 0.03 from batch 128 to 4; LN by about 0.002, 0.042 or 0.02
    runs = finals({"ln": [0.019, 0.020, 0.021], "bn": [0.014, 0.015, 0.016]}, bs=128)
    runs += finals({"ln": ln4, "bn": [0.044, 0.045, 0.046]}, bs=4)
    claim = {
        "check": "robust",
        "metric": "test/err",
        "norms": ["ln", "bn"],
        "between": {"data.batch_size": [128, 4]},
    }
    res = run_claim(tmp_path, claim, runs)
    assert res.verdict == verdict
    rise = (statistics.fmean(ln4) - 0.020) - (0.045 - 0.015)
    assert res.interval.effect == pytest.approx(rise)


@pytest.mark.parametrize(
    "ln, verdict",
    [
        ([1.00, 1.02, 0.98], C.SUPPORTED),
        ([1.60, 1.62, 1.58], C.CONTRADICTED),
        ([0.9, 1.4, 1.15], C.INCONCLUSIVE),
    ],
)
def test_comparable(tmp_path, ln, verdict):
    runs = [{"norm": "none", "seed": i + 1, "spu": v} for i, v in enumerate([1.0, 1.01, 0.99])]
    runs += [{"norm": "ln", "seed": i + 1, "spu": v} for i, v in enumerate(ln)]
    claim = {
        "check": "comparable",
        "metric": "s_per_update",
        "norms": ["ln", "none"],
        "log": True,
        "margin": 1.25,
    }
    assert run_claim(tmp_path, claim, runs).verdict == verdict


def test_not_testable_needs_no_results(tmp_path):
    res = run_claim(tmp_path, {"check": "not_testable", "reason": "200 epochs"}, [])
    assert res.verdict == C.NOT_TESTABLE and res.tested == "not testable: 200 epochs"


@pytest.mark.parametrize(
    "claim, message",
    [
        ({"check": "sooner", "metric": "m", "norms": ["ln", "bn"]}, "check must be one of"),
        ({"check": "faster", "metric": "m", "norms": ["ln", "bn"]}, "missing level, max_ratio"),
        (
            {"check": "faster", "metric": "m", "norms": ["ln", "bn"], "max_ratio": 1, "level": "x"},
            "level must be a number",
        ),
        (
            {
                "check": "faster",
                "metric": "m",
                "norms": ["ln", "bn"],
                "max_ratio": 1,
                "level": 0.5,
                "auc": {"steps": [10]},
            },
            "auc must be",
        ),
        ({"check": "final_lower", "metric": "m", "norms": ["ln", "gn"]}, "norms must be two of"),
        ({"check": "not_testable"}, "missing reason"),
        (
            {
                "check": "comparable",
                "metric": "m",
                "norms": ["ln", "bn"],
                "log": True,
                "margin": 0.2,
            },
            "ratio > 1",
        ),
        ({"check": "final_lower", "metric": "test/acc", "norms": ["ln", "bn"]}, "use final_higher"),
        (
            {"check": "lower_at", "metric": "test/acc", "norms": ["ln", "bn"], "at": 1},
            "use final_higher",
        ),
        ({"check": "final_higher", "metric": "test/err", "norms": ["ln", "bn"]}, "use final_lower"),
        (
            {"check": "setting_lower", "metric": "m", "norms": ["ln"], "settings": {"k": [1]}},
            "settings must be",
        ),
    ],
)
def test_bad_claims_are_refused(claim, message):
    spec = {**SPEC, "claims": [{"id": "c", "section": "s", "quote": "q", **claim}]}
    with pytest.raises(ValueError, match=message):
        C.validate(spec, "toy.yaml")


# ---- the curves CSV of scripts/figure.py -----------------------------------------------------
def write_run(path: Path, norm: str, bs: int, seed: int, values: list[float]) -> None:
    (path / ".hydra").mkdir(parents=True)
    config = {"name": "toy_cpu", "seed": seed, "norm": {"kind": norm}, "data": {"batch_size": bs}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    rows = [
        {
            "step": 100 * (i + 1),
            "epoch": 0.5 * (i + 1),
            "time": 1.0,
            "train/nll": v,
            "batch/loss": 9.0,
        }
        for i, v in enumerate(values)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"status": "completed", "step": rows[-1]["step"], "final": {"train/nll": values[-1]}}
    (path / "summary.json").write_text(json.dumps(summary))


def test_curves_csv_from_run_folders_feeds_the_faster_check(tmp_path):
    figure = load_script("figure")
    out = tmp_path / "outputs"
    for seed in (1, 2, 3):  # LN reaches BN's worst final (0.3) after 200 updates, BN after 400
        write_run(out / f"ln{seed}", "ln", 128, seed, [0.5, 0.2, 0.1, 0.05])
        write_run(out / f"bn{seed}", "bn", 128, seed, [0.9, 0.7, 0.5, 0.3 - 0.01 * seed])
    write_run(out / "ln_bs4", "ln", 4, 1, [0.4])
    spec = {
        **SPEC,
        "metrics": [{"key": "train/nll"}],
        "table": ["train/nll"],
        "claims": [
            {
                "id": "c",
                "section": "s",
                "quote": "q",
                **FASTER,
                "max_ratio": 1.0,
                "level": 0.3,
                "where": {"data.batch_size": 128},
            }
        ],
    }
    results = tmp_path / "results"
    results.mkdir()
    runs = find_runs(out)
    figure.write_table(spec, runs, results / "toy.csv", "cpu")
    figure.write_curves(spec, runs, results / "toy_curves.csv")
    with open(results / "toy_curves.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["norm", "seed", "data.batch_size", "step", "epoch", "metric", "value"]
    assert rows[1] == ["bn", "1", "128", "100", "0.5", "train/nll", "0.9"]
    assert len(rows) == 1 + 6 * 4 + 1  # batch/loss is not a figure metric: not written
    (res,) = C.evaluate(spec, C.load_figure(results, spec))
    assert res.verdict == C.SUPPORTED and "<= 0.3 (fixed level)" in res.tested
    assert res.measured.startswith("updates to level: LN 158.7, 158.7, 158.7; BN 39")


# ---- the committed files ---------------------------------------------------------------------
@pytest.mark.slow  # > 1 s: every figure's claims from results/
def test_committed_claims_and_readme_table_are_what_results_give():
    """results/claims.md, results/claims.csv and README.md's block, recomputed from the
    committed results/ and experiments/*.yaml; run `make claims` after changing either."""
    for path, text in C.outputs(ROOT, readme=True).items():
        current = path.read_text() if path.exists() else ""
        diff = "".join(
            list(
                difflib.unified_diff(
                    current.splitlines(True), text.splitlines(True), str(path), "recomputed"
                )
            )[:40]
        )
        assert current == text, f"{path.name} is out of date (run `make claims`):\n{diff}"


@pytest.mark.slow  # > 1 s: every figure's claims from results/
def test_every_figure_has_claims_including_the_expected_failure():
    specs = {s["name"]: s for s in C.load_specs(ROOT / "experiments")}
    for name in (
        "figure3_skip_thoughts",
        "figure4_draw",
        "figure5_handwriting",
        "figure6_pi_mnist",
        "cnn_mnist",
        "lm_ptb_char",
        "lm_ptb_word",
    ):
        assert specs.get(name, {}).get("claims"), name
    fig6 = specs["figure6_pi_mnist"]["claims"]
    assert any(
        c["check"] == "final_lower"
        and c["metric"] == "test/err"
        and c["norms"] == ["ln", "bn"]
        and c["where"] == {"data.batch_size": 128}
        for c in fig6
    )
    kinds = {c["check"] for s in specs.values() for c in s["claims"]}
    assert {"final_lower", "faster", "lower_at", "robust", "not_testable"} <= kinds


@pytest.mark.slow  # > 1 s: every figure's claims from results/
def test_check_flag_catches_a_changed_result(tmp_path):
    for sub in ("experiments", "results"):
        shutil.copytree(ROOT / sub, tmp_path / sub, ignore=shutil.ignore_patterns("*.png"))
    for name in ("Makefile", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    script = load_script("claims")
    main = script.main
    # the copy has no git history, so every row reads exploratory for that reason: write what
    # the code gives the copy first (the committed files: the test above)
    for f, text in script.generated(tmp_path, readme=True).items():
        f.write_text(text)
    assert main(["--check", "--root", str(tmp_path)]) == 0
    table = tmp_path / "results" / "figure6_pi_mnist.csv"
    rows = list(csv.DictReader(table.open()))
    rows[0]["final_test/err"] = str(float(rows[0]["final_test/err"]) + 0.01)  # one run, 1 point
    with table.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["--check", "--root", str(tmp_path)]) == 1


# ---- sanity gates ----------------------------------------------------------------------------
PAIR = {"id": "p", "section": "s", "quote": "q", **FINAL_LOWER}


def gated(tmp_path, runs, floors, claims=(PAIR,)):
    """The toy figure's claims, its gate against `floors` ({metric: value}) and the gate row."""
    spec = {**SPEC, "claims": list(claims)}
    C.validate(spec, "toy.yaml")
    data = write_results(tmp_path, runs)
    rows = C.evaluate(spec, data)
    g = S.gate(spec, data, {"toy": {m: (v, "a floor") for m, v in floors.items()}})
    return rows, g, S.apply_gate(spec, rows, g)


def test_an_arm_above_its_floor_makes_the_comparison_an_invalid_baseline(tmp_path):
    """BN ends at 0.50 ± 0.01 against a floor of 0.49 (every seed stuck above it): LN's clear
    win over it reads invalid baseline, never supported; the interval stays in the row."""
    runs = finals({"ln": [0.10, 0.11, 0.12], "bn": [0.49, 0.50, 0.51]})
    (row,), g, gate_row = gated(tmp_path, runs, {"test/err": 0.49})
    assert row.verdict == S.INVALID and row.reasons == ["BN (batch_size 128) fails the sanity gate"]
    assert row.interval.high < 0 and row.p_support < 0.025  # what it would have said
    assert gate_row.verdict == S.FAILED and gate_row.claim["id"] == "toy_sanity"
    (bn,) = [a for a in g.checks if a.norm == "bn"]
    assert bn.stuck == 3 and not bn.passed  # 0.49 is not below the floor either
    half = C.t_quantile(0.975, 2) * 0.01 / math.sqrt(3)  # one sample: mean - 0.49, t(2)
    assert (bn.interval.effect, bn.interval.low, bn.interval.high) == pytest.approx(
        (0.01, 0.01 - half, 0.01 + half)
    )


@pytest.mark.parametrize(
    "bn, passes",
    [
        ([0.30, 0.31, 0.29], True),  # clearly below 0.49
        ([0.20, 0.47, 0.55], False),  # mean 0.407 below, but its interval reaches above
        ([0.10, 0.10, 0.11, 0.10, 0.50], True),  # one seed stuck: it counts, not decisive
    ],
)
def test_the_gate_is_the_seed_mean_with_its_interval(tmp_path, bn, passes):
    runs = finals({"ln": [0.10, 0.11, 0.12], "bn": bn})
    (row,), g, gate_row = gated(tmp_path, runs, {"test/err": 0.49})
    assert (row.verdict == S.INVALID) != passes
    assert gate_row.verdict == (S.PASSED if passes else S.FAILED)
    assert [a.stuck for a in g.checks if a.norm == "bn"] == [sum(v >= 0.49 for v in bn)]


def test_without_a_floor_the_first_evaluation_is_paired_per_seed(tmp_path):
    """No floors.csv row: each seed's final value against its own first evaluation."""
    runs = []
    for i, (first, last) in enumerate([(1.0, 0.5), (2.0, 0.6), (3.0, 2.9)]):
        pts = [(0, 0.0, first), (100, 1.0, (first + last) / 2), (200, 2.0, last)]
        runs.append(
            {"norm": "bn", "seed": i + 1, "final": {"test/err": last}, "curve": {"test/err": pts}}
        )
        runs.append(
            {"norm": "ln", "seed": i + 1, "final": {"test/err": 0.1}, "curve": {"test/err": pts}}
        )
    _, g, _ = gated(tmp_path, runs, {})
    (bn,) = [a for a in g.checks if a.norm == "bn"]
    diffs = [0.5 - 1.0, 0.6 - 2.0, 2.9 - 3.0]
    assert bn.interval.effect == pytest.approx(statistics.fmean(diffs))
    assert bn.interval.df == 2 and "its first evaluation (step 0; mean 2)" in bn.floor
    # unpaired, 2.9 would sit above the mean first value, 2: the pairing matters
    assert bn.interval.high == pytest.approx(
        statistics.fmean(diffs) + C.t_quantile(0.975, 2) * statistics.stdev(diffs) / math.sqrt(3)
    )


def test_a_curve_with_only_its_final_evaluation_gives_no_floor(tmp_path):
    runs = [
        {
            "norm": n,
            "seed": i + 1,
            "final": {"test/err": 0.2},
            "curve": {"test/err": [(200, 2.0, 0.2)]},
        }
        for n in ("ln", "bn")
        for i in range(3)
    ]
    (row,), g, gate_row = gated(tmp_path, runs, {})
    assert g.checks == [] and gate_row.verdict == C.NOT_TESTABLE and row.verdict != S.INVALID


def test_the_gate_of_a_higher_is_better_metric_looks_up(tmp_path):
    claim = {"id": "h", "section": "s", "quote": "q", "check": "final_higher", "metric": "test/acc",
             "norms": ["ln", "bn"]}  # fmt: skip
    runs = finals({"ln": [0.9, 0.91, 0.92], "bn": [0.5, 0.52, 0.51]}, metric="test/acc")
    (row,), g, _ = gated(tmp_path, runs, {"test/acc": 0.6}, [claim])
    assert row.verdict == S.INVALID and [a.passed for a in g.checks] == [True, False]
    (row,), g, _ = gated(tmp_path, runs, {"test/acc": 0.4}, [claim])
    assert row.verdict == C.SUPPORTED and all(a.passed for a in g.checks)


def test_every_arm_of_a_robust_claim_is_gated(tmp_path):
    claim = {"id": "r", "section": "s", "quote": "q", "check": "robust", "metric": "test/err",
             "norms": ["ln", "bn"], "between": {"data.batch_size": [128, 4]}}  # fmt: skip
    assert S.arms({**SPEC, "claims": [claim]}) == [
        ("ln", {"data.batch_size": 128}, "test/err", False),
        ("ln", {"data.batch_size": 4}, "test/err", False),
        ("bn", {"data.batch_size": 128}, "test/err", False),
        ("bn", {"data.batch_size": 4}, "test/err", False),
    ]
    runs = finals({"ln": [0.019, 0.020, 0.021], "bn": [0.014, 0.015, 0.016]}, bs=128)
    runs += finals({"ln": [0.02, 0.021, 0.022], "bn": [0.6, 0.6, 0.61]}, bs=4)
    (row,), _, _ = gated(tmp_path, runs, {"test/err": 0.5}, [claim])
    assert row.verdict == S.INVALID and "BN (batch_size 4)" in row.reasons[0]


def test_a_row_with_an_invalid_baseline_is_never_rejected_by_holm():
    def row(i, p, verdict):
        r = C.Result("toy", {"id": i, "check": "final_lower"}, "t", verdict=verdict)
        r.p_support, r.p_contradict = p, 1 - p
        return r

    rows = [row("a", 1e-6, S.INVALID), row("b", 0.02, C.SUPPORTED)]
    C.apply_holm(rows, ["a", "b"], confirmatory={"a", "b"})
    assert [r.holm for r in rows] == [S.INVALID, C.INCONCLUSIVE]  # a counts: 0.02 > 0.025 / 2
    C.apply_holm(rows[1:], ["b"], confirmatory={"b"})
    assert rows[1].holm == C.SUPPORTED
    # a listed claim whose confirmatory runs have not landed counts in m (no p)
    c = row("c", 0.02, C.SUPPORTED)
    C.apply_holm([c, row("d", 1e-9, C.SUPPORTED)], ["c", "d"], confirmatory={"c"})
    assert c.confirmatory and c.holm == C.INCONCLUSIVE  # 0.02 > 0.025 / 2


def test_a_claim_level_direction_only_for_a_metric_the_figure_does_not_list():
    base = {"id": "c", "section": "s", "quote": "q", "check": "final_higher", "norms": ["ln", "bn"]}
    C.validate({**SPEC, "claims": [{**base, "metric": "x/rho", "higher_is_better": True}]}, "t")
    with pytest.raises(ValueError, match="use final_lower"):
        C.validate({**SPEC, "claims": [{**base, "metric": "x/rho"}]}, "t")
    with pytest.raises(ValueError, match="higher_is_better is the figure's"):
        C.validate(
            {**SPEC, "claims": [{**base, "metric": "test/acc", "higher_is_better": True}]}, "t"
        )


@pytest.mark.slow  # > 1 s: every figure's claims from results/
def test_the_word_ptb_lstm_fails_its_gate_against_the_unigram():
    """The word-PTB seeds 1-3 (the compressed schedule; in results/, or in results/exploratory/
    once confirmatory runs replace them): their LSTM ends at a test perplexity of ~644, above the
    unigram model's ~639, so both word-PTB comparisons read invalid baseline, not supported."""
    from lnrepro.claims.render import check
    from lnrepro.claims.results import load_figure
    from lnrepro.claims.sanity import load_floors
    from lnrepro.claims.specs import load_specs

    (spec,) = [s for s in load_specs(ROOT / "experiments") if s["name"] == "lm_ptb_word"]
    moved = ROOT / "results" / "exploratory"
    results = moved if (moved / "lm_ptb_word.csv").exists() else ROOT / "results"
    data = {"lm_ptb_word": load_figure(results, spec)}
    assert {str(r["seed"]) for r in data["lm_ptb_word"].runs} == {"1", "2", "3"}
    found, gates = check([spec], data, load_floors(ROOT / "results" / "floors.csv"))
    rows = {r.claim["id"]: r for r in found}
    assert rows["lm_word_ln_beats_lstm"].verdict == S.INVALID
    assert rows["lm_word_faster"].verdict == S.INVALID
    assert rows["lm_ptb_word_sanity"].verdict == S.FAILED
    (g,) = gates
    (bad,) = [a for a in g.checks if not a.passed]
    assert (bad.norm, bad.metric) == ("none", "test/ppl") and "unigram" in bad.floor


@pytest.mark.slow  # > 1 s, and reads the repository's Makefile and results/
def test_exploratory_seeds_moved_aside_keep_their_verdicts(tmp_path):
    """When a figure's confirmatory runs replace results/<figure>.csv, its exploratory CSVs move
    to results/exploratory/: each claim row keeps their verdict beside the new one, and
    claims.md lists them in full."""
    root = tmp_path / "repo"
    (root / "experiments").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", root / "Makefile")
    shutil.copy(ROOT / "experiments" / "cnn_mnist.yaml", root / "experiments")
    moved = root / "results" / "exploratory"
    moved.mkdir(parents=True)
    for suffix in (".csv", "_curves.csv"):
        shutil.copy(ROOT / "results" / f"cnn_mnist{suffix}", moved)
        text = (ROOT / "results" / f"cnn_mnist{suffix}").read_text()
        if suffix == ".csv":  # the "new" runs: the baseline's final errors doubled
            rows = list(csv.DictReader(text.splitlines()))
            for r in rows:
                if r["norm"] == "none":
                    r["final_test/err"] = str(2 * float(r["final_test/err"]))
            with open(root / "results" / "cnn_mnist.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        else:
            (root / "results" / f"cnn_mnist{suffix}").write_text(text)
    rep = C.build(root)
    assert rep.earlier and {r.figure for r in rep.earlier} == {"cnn_mnist"}
    now = {r.claim["id"]: r for r in rep.results}
    for r in rep.earlier:
        assert now[r.claim["id"]].earlier == r.verdict_text()
    assert any(r.measured != now[r.claim["id"]].measured for r in rep.earlier)
    md = C.claims_md(rep)
    assert "## Exploratory seeds replaced by confirmatory runs" in md
    shutil.rmtree(moved)  # no figure moved aside: no such section
    assert "Exploratory seeds replaced" not in C.claims_md(C.build(root))
