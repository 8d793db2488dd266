"""The tables of the claims report: runs per figure, claims with their verdicts, the speed
claims' details, and the CSV of every claim."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter

from lnrepro.claims.results import _float
from lnrepro.claims.text import _cell, label, num, summary
from lnrepro.claims.verdicts import Result

POWER_WANTED = 0.8  # a speed row whose power at its own spread is lower runs 5 seeds per arm


def runs_table(rep, prefix: str) -> list[str]:
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


def pfmt(p: float | None) -> str:
    return "–" if p is None else f"{p:.2g}"


def verdict_cells(r: Result) -> list[str]:
    """[exploratory verdict, confirmatory verdict (raw; Holm)]: a row fills one of them, and a
    confirmatory row shows beside it the exploratory verdict of the seeds it replaced."""
    if r.confirmatory:
        return [r.earlier or "–", f"**{r.verdict_text()}; Holm: {r.holm}**"]
    return [f"**{r.verdict_text()}**", "–"]


def claims_table(results: list[Result]) -> list[str]:
    lines = [
        (
            "| figure | paper | the paper says | claim tested (threshold fixed in advance) "
            "| we get: mean ± sd (n seeds) | effect [95 % interval] | p for / against "
            "(one-sided) | verdict: exploratory | verdict: confirmatory (raw; Holm) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    previous = None
    for r in results:
        fig = r.figure if r.figure != previous else ""
        previous = r.figure
        cells = [
            fig,
            r.claim["section"],
            _cell(r.claim["quote"]),
            _cell(r.tested),
            _cell(r.measured),
            _cell(r.effect_text()),
            f"{pfmt(r.p_support)} / {pfmt(r.p_contradict)}" if r.p_support is not None else "–",
            *verdict_cells(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def auc_text(r: Result) -> str:
    if not r.speed or not r.speed["auc"]:
        return "–"
    iv, log = r.speed["auc"]
    f = math.exp if log else (lambda v: v)
    a, b = (label(n) for n in r.claim["norms"])
    name = f"mean log {r.claim['metric']}: {a} / {b} (ratio)" if log else f"{a} - {b}"
    return f"{name} = {num(f(iv.effect), 3)} [{num(f(iv.low), 3)}, {num(f(iv.high), 3)}]"


def speed_table(results: list[Result]) -> list[str]:
    """One row per `faster` claim: the fixed level, each seed's updates to it (a censored seed
    as its bounds), the spread of log crossings per arm, the power to contradict a favoured
    arm twice as slow at that spread, and the AUC (reported, never deciding)."""
    lines = [
        (
            "| claim | level (fixed in the spec) | updates to the level, per seed ((a, b]: "
            "censored) | spread of log crossings | power at 2x slower (own spread) "
            "| AUC over updates (not deciding) |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.claim["check"] != "faster" or not r.speed:
            continue
        s, (a, b) = r.speed, r.claim["norms"]
        spread = "; ".join(
            f"{label(n)} {num(s['sigma'][n], 2) if s['sigma'][n] is not None else '–'}"
            for n in (a, b)
        )
        bounds = "; ".join(f"{label(n)} {', '.join(s['bounds'][n])}" for n in (a, b))
        power = "–"
        if s["power"] is not None:
            power = f"{s['power']:.0%}"
            if s["power"] < POWER_WANTED:
                power += " (below 80 %: 5 seeds per arm"
                power += f", {s['power5']:.0%} with 5)" if s.get("power5") is not None else ")"
        span = r.claim.get("auc", {}).get("steps")
        auc = auc_text(r) + (f", updates {span[0]}-{span[1]}" if span else "")
        cells = [r.claim["id"], num(s["level"]), bounds, spread, power, auc]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def sanity_table(gates) -> list[str]:
    """One row per arm and metric of every figure's sanity gate."""
    lines = [
        (
            "| figure | arm | metric | floor | we get: mean ± sd (n seeds) | beats the floor by "
            "[95 % interval] | seeds not past the floor | gate |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in gates:
        fig = g.figure
        for a in g.checks:
            iv = a.interval
            by = (
                "–"
                if iv is None
                else f"{num(-iv.effect, 3)} [{num(-iv.high, 3)}, {num(-iv.low, 3)}]"
            )
            cells = [
                fig,
                a.name(),
                a.metric,
                a.floor,
                summary("", a.values).strip(),
                by,
                f"{a.stuck} of {len(a.values)}",
                ("passes" if a.passed else "**fails**") + (f" ({a.reason})" if a.reason else ""),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            fig = ""
        if not g.checks:
            lines.append(f"| {fig} | – | – | – | – | – | – | no arm enters a testable comparison |")
    return lines


def claims_csv(results: list[Result]) -> str:
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
            "p_support",
            "p_contradict",
            "status",
            "holm_verdict",
            "level",
            "power_2x_slower",
            "auc_effect",
            "auc_low",
            "auc_high",
        ]
    )
    for r in results:
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
                *_extra(r),
            ]
        )
    return out.getvalue()


def _extra(r: Result) -> list[str]:
    """The CSV's p values, status, Holm verdict, level, power and AUC of one row."""
    g = lambda v: "" if v is None else f"{v:.4g}"
    status = "confirmatory" if r.confirmatory else "exploratory"
    status = "gate" if r.claim["check"] == "sanity" else status
    s = r.speed or {}
    auc = ["", "", ""]
    if s.get("auc"):
        iv, log = s["auc"]
        f = math.exp if log else float
        auc = [f"{f(v):.6g}" for v in (iv.effect, iv.low, iv.high)]
    return [
        g(r.p_support),
        g(r.p_contradict),
        status,
        r.holm,
        g(s.get("level")),
        g(s.get("power")),
        *auc,
    ]
