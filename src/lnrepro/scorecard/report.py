"""The scorecard as Markdown (results/scorecards/<name>.md): the primary verdicts with their
intervals, the speed, the secondary metrics, the sanity gates, which baselines were reused and
which rerun (and why), the cost per update, and the margins with how each was chosen.

The arms and comparisons are the suite's (experiments/scorecard/suite.yaml): a column per
baseline (`Entry.columns`), a comparison per reference (`Entry.references`), each titled as the
suite's `titles` say (`Entry.title`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lnrepro.claims.scorecard import Comparison
from lnrepro.claims.text import label, num, summary
from lnrepro.scorecard.cost import CANDIDATE, REFERENCE
from lnrepro.scorecard.results import EntryResult, seed_aucs


@dataclass
class Header:
    """What the scorecard is of and how it was made."""

    name: str
    norm: str  # as given: a norm config name or module.Class
    kind: str  # its short name
    tier: str
    command: str
    commit: str
    date: str
    png: str  # the forest plot's file name, beside the .md


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def effect_text(c: Comparison, ratio: bool | None = None) -> str:
    """`0.93 [0.81, 1.07]` (a ratio) or `-0.0031 [-0.0072, 0.001]` (a difference), or why
    there is no interval. `ratio`: shown as exp(.) (default: the comparison's own `log`)."""
    if c.interval is None:
        return "– (" + "; ".join(c.reasons or ["no interval"]) + ")"
    iv = c.interval
    if c.log if ratio is None else ratio:
        lo, hi = num(math.exp(iv.low), 3), num(math.exp(iv.high), 3)
        return f"{num(math.exp(iv.effect), 3)} [{lo}, {hi}]"
    sign = "+" if iv.effect > 0 else ""
    return f"{sign}{num(iv.effect, 3)} [{num(iv.low, 3)}, {num(iv.high, 3)}]"


def verdict_text(c: Comparison) -> str:
    """The Holm verdict in bold, the raw one beside it where the correction changed it."""
    if c.blocked:
        return f"**{c.blocked}**"
    out = f"**{c.holm}**"
    return out + (f" (raw: {c.raw})" if c.raw != c.holm else "")


def _arm_text(res: EntryResult, norm: str, metric: str) -> str:
    """mean ± sd (n) of a norm's finals, with its seeds that did not complete."""
    text = summary("", res.values(norm, metric)).strip()
    other = {s: st for s, st in res.statuses.get(norm, {}).items() if st != "completed"}
    if other:
        text += "; " + ", ".join(f"seed {s} {st}" for s, st in sorted(other.items()))
    return text


def _arm_or_absent(res: EntryResult, norm: str, metric: str) -> str:
    if norm in res.norms:
        return _arm_text(res, norm, metric)
    return "– (not in this figure)"


def _titles(results: list[EntryResult], which: str) -> list[str]:
    """The titles of the suite's `columns` (its baselines) or `references`, as every entry
    carries them."""
    if not results:
        return []
    e = results[0].entry
    return [e.title(n) for n in getattr(e, which)]


def _main_title(results: list[EntryResult]) -> str:
    """The title of the suite's main reference (the cost's)."""
    return (_titles(results, "references") or ["the reference"])[0]


def verdict_table(results: list[EntryResult], kind: str) -> list[str]:
    me = label(kind)
    versus = [x for t in _titles(results, "references") for x in (f"{me} vs {t}", "verdict")]
    head = [
        "entry", "metric (margin)", me, *_titles(results, "columns"), *versus,
        f"gate ({me})", f"cost / update vs {_main_title(results)}",
    ]  # fmt: skip
    rows = []
    for r in results:
        p = r.entry.primary
        way = "higher" if p.higher else "lower"
        gate = r.gates.get(r.candidate)
        rows.append(
            [
                r.entry.name,
                f"{p.key} ({way} is better; margin {r.entry.margin_text})",
                *(_arm_or_absent(r, n, p.key) for n in (r.candidate, *r.entry.columns)),
                *(t(r.vs[x]) for x in r.entry.references for t in (effect_text, verdict_text)),
                "–" if gate is None else ("passed" if gate.passed else "failed"),
                r.cost.text() if r.cost else "not measured",
            ]
        )
    return _table(head, rows)


def speed_table(results: list[EntryResult], kind: str) -> list[str]:
    me = label(kind)
    refs = _titles(results, "references")
    head = ["entry", "AUC of", me, *refs, *(f"{me} vs {t}" for t in refs)]
    rows = []
    for r in results:
        sp = r.entry.speed
        lo, hi = sp["steps"]
        what = f"{'log ' if sp.get('log') else ''}{sp['metric']}, updates {lo:,}-{hi:,}"
        norms = (r.candidate, *r.entry.references)
        arms = [summary("", seed_aucs(r, n, [])).strip() for n in norms]
        log = bool(sp.get("log"))
        rows.append(
            [r.entry.name, what, *arms,
             *(effect_text(r.speed[x], log) for x in r.entry.references)]
        )  # fmt: skip
    return _table(head, rows)


def secondary_table(results: list[EntryResult], kind: str) -> list[str]:
    me = label(kind)
    versus = [f"{me} vs {t}" for t in _titles(results, "references")]
    head = ["entry", "metric", me, *_titles(results, "columns"), *versus]
    rows = []
    for r in results:
        for m, cmp in r.secondary:
            arms = [_arm_or_absent(r, n, m.key) for n in (r.candidate, *r.entry.columns)]
            way = "higher" if m.higher else "lower"
            rows.append(
                [r.entry.name, f"{m.key} ({way} is better)", *arms,
                 *(effect_text(cmp[x]) for x in r.entry.references)]
            )  # fmt: skip
    return _table(head, rows)


def gate_table(results: list[EntryResult]) -> list[str]:
    head = ["entry", "arm", "gate", "seed mean against the floor"]
    rows = []
    for r in results:
        for n in r.norms:
            g = r.gates.get(n)
            if g is None:
                rows.append([r.entry.name, label(n), "no floor", "–"])
            else:
                rows.append([r.entry.name, label(n), "passed" if g.passed else "failed", g.text()])
    return _table(head, rows)


def runs_table(results: list[EntryResult], kind: str) -> list[str]:
    head = ["entry", "norm", "seed", "source", "status", "why rerun"]
    rows = []
    for r in results:
        for s, st in sorted(r.statuses.get(r.candidate, {}).items()):
            rows.append([r.entry.name, label(kind), s, "scorecard run", st, ""])
        for b in r.baselines:
            st = r.statuses.get(b.norm, {}).get(b.seed, "–")
            source = f"reused: results/{r.entry.figure}.csv" if b.reused else "rerun"
            rows.append([r.entry.name, label(b.norm), b.seed, source, st, b.reason])
    return _table(head, rows)


def cost_table(results: list[EntryResult], kind: str) -> list[str]:
    me = label(kind)
    ref = _main_title(results)
    head = [
        "entry",
        f"{me} ms / update",
        f"{ref} ms / update",
        "ratio [95 %] (range)",
        "load 1 min",
    ]
    rows = []
    for r in results:
        c = r.cost
        if c is None or c.error:
            rows.append([r.entry.name, "–", "–", c.text() if c else "not measured", "–"])
            continue
        ms = {k: summary("", [1000 * v for v in vs]).strip() for k, vs in c.seconds.items()}
        load = f"{c.load[0]:.2f} -> {c.load[1]:.2f}" if c.load else "–"
        rows.append([r.entry.name, ms[CANDIDATE], ms[REFERENCE], c.text(), load])
    return _table(head, rows)


def margin_table(results: list[EntryResult]) -> list[str]:
    head = ["entry", "primary metric", "margin", "how it was chosen"]
    rows = [[r.entry.name, r.entry.primary.key, r.entry.margin_text, r.entry.why] for r in results]
    return _table(head, rows)


def _table(head: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(str(c)) for c in row) + " |" for row in rows]
    return lines


def markdown(h: Header, results: list[EntryResult], family: int) -> str:
    """The whole scorecard."""
    me = label(h.kind)
    seeds = sorted({s for r in results for s in r.entry.seeds})
    machine = next((r.cost.machine for r in results if r.cost and r.cost.machine), "unknown")
    timing = next((r.cost for r in results if r.cost and not r.cost.error), None)
    count = f"{len(results)} entr{'y' if len(results) == 1 else 'ies'}"
    out = [
        f"# Scorecard: {me} (`{h.norm}`), {h.tier} tier",
        "",
        (
            f"Written by `{h.command}` on {h.date} at commit {h.commit}. {count}, "
            f"seeds {', '.join(map(str, seeds))}; the runs are in `outputs/scorecards/{h.name}/` "
            f'(W&B group `scorecard/{h.name}`: `make compare ARGS="--group scorecard/{h.name}"`). '
            "How verdicts, margins, stale baselines and the cost are decided: "
            "[docs/scorecard.md](../../docs/scorecard.md)."
        ),
        "",
        f"## Verdicts: {me} against {' and against '.join(_titles(results, 'references'))}",
        "",
        (
            "The primary metric of each entry at the end of its budget: seed mean ± sd (n); "
            f"effects {me} / reference (ratio of geometric means) or {me} - reference "
            "(difference) with 95 % Welch intervals. Verdicts are Holm-adjusted at 0.025 per "
            "kind (better, worse, equivalent within the margin) over the "
            f"{family} comparisons of this table; **undecided** when the interval allows more "
            "than one. A comparison with a diverged candidate, or with a reference that fails "
            "its sanity gate (invalid baseline), counts in the family and has no verdict."
        ),
        "",
        *verdict_table(results, h.kind),
        "",
        f"![{me} against {_main_title(results)}, in units of each entry's margin]({h.png})",
        "",
        "## Speed (AUC; outside the Holm family)",
        "",
        (
            "The mean of the metric (of its log, shown as a ratio of geometric means) over the "
            "span of the figure's speed claim, per seed; Welch intervals, no verdict."
        ),
        "",
        *speed_table(results, h.kind),
        "",
        "## Secondary metrics (outside the Holm family)",
        "",
        *secondary_table(results, h.kind),
        "",
        "## Sanity gates (the primary metric)",
        "",
        (
            "Each arm's seed mean must beat its trivial floor with its 95 % interval "
            "(results/floors.csv, else the arm's first evaluation; lnrepro.claims.sanity). A "
            "reference that fails makes its comparisons an invalid baseline; the candidate's own "
            "gate is reported."
        ),
        "",
        *gate_table(results),
        "",
        "## Runs and baselines",
        "",
        (
            "A committed baseline row is reused only when its config hash is that of the config "
            "the scorecard would run now and its commit contains the last change of tests/golden/; "
            "otherwise it is rerun with the same seed."
        ),
        "",
        *runs_table(results, h.kind),
        "",
        "## Cost per update",
        "",
        f"Measured in this invocation on {machine}: "
        + (
            f"{timing.warmup} warm-up and {timing.steps} timed updates per norm and repeat, "
            "interleaved, one thread, one synthetic batch of the entry's size; ratio: geometric "
            "mean over the repeats with a 95 % t interval of the log ratios"
            if timing
            else "no entry could be timed"
        )
        + ". The load average is the machine's, with whatever else ran on it.",
        "",
        *cost_table(results, h.kind),
        "",
        "## Margins",
        "",
        *margin_table(results),
        "",
    ]
    return "\n".join(out)
