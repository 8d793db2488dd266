"""The scorecard's picture (results/scorecards/<name>.png): a forest plot of the candidate's
effect against the suite's main reference (its first `references` entry: LN in
experiments/scorecard/suite.yaml) on every entry's primary metric, with its 95 % interval and
the entry's equivalence margin.

Entries have different metrics and margins, so one axis holds them all in units of their own
margin: the effect (log ratio, or difference) divided by the margin (log r, or m), oriented
so that left is better for the candidate whatever the metric's direction. The grey band from
-1 to 1 is every entry's equivalence region; a point's colour is its Holm verdict; the right
margin names the effect in the metric's own units."""

from __future__ import annotations

from pathlib import Path

from lnrepro.artifacts import save_figure
from lnrepro.claims.scorecard import BETTER, EQUIVALENT, UNDECIDED, WORSE, margin_on_effect
from lnrepro.claims.text import label
from lnrepro.scorecard.report import effect_text
from lnrepro.scorecard.results import EntryResult

COLORS = {BETTER: "tab:green", WORSE: "tab:red", EQUIVALENT: "tab:blue", UNDECIDED: "0.35"}


def scaled(res: EntryResult) -> tuple[float, float, float] | None:
    """(effect, low, high) against the main reference in units of the margin, left = better;
    None without an interval."""
    c = res.vs[res.entry.main_reference]
    if c.interval is None:
        return None
    m = margin_on_effect(res.entry.margin, c.log)
    sign = -1.0 if c.higher else 1.0
    lo, hi = sorted((sign * c.interval.low / m, sign * c.interval.high / m))
    return sign * c.interval.effect / m, lo, hi


def draw(results: list[EntryResult], kind: str, path: Path) -> None:
    """The forest plot of `results` (top to bottom in the suite's order), saved to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    me = label(kind)
    ref = results[0].entry.title(results[0].entry.main_reference) if results else ""
    n = len(results)
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.55 * n), layout="constrained")
    ax.axvspan(-1, 1, color="0.88", lw=0, label="equivalence margin (each entry's own)")
    ax.axvline(0, color="0.3", lw=0.8)
    reach = 2.0
    for i, r in enumerate(results):
        y = n - 1 - i
        c = r.vs[r.entry.main_reference]
        verdict = c.blocked or c.holm
        point = scaled(r)
        if point is None:
            ax.text(0, y, verdict if c.blocked else "no interval", ha="center", va="center",
                    fontsize=8, color="tab:red" if c.blocked else "0.35")  # fmt: skip
        else:
            effect, lo, hi = point
            colour = COLORS.get(c.holm, "0.35") if not c.blocked else "tab:red"
            ax.plot([lo, hi], [y, y], color=colour, lw=2)
            ax.plot([effect], [y], "o", color=colour, ms=6)
            reach = max(reach, abs(lo), abs(hi))
        text = f"{effect_text(c)}  {verdict}"
        ax.text(1.01, y, text, transform=ax.get_yaxis_transform(), va="center", fontsize=7.5)
    ax.set_yticks(range(n), [r.entry.name for r in reversed(results)], fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlim(-1.1 * reach, 1.1 * reach)
    ax.set_xlabel(f"effect against {ref} / margin   (<- {me} better | {me} worse ->)")
    ax.set_title(
        f"{me} against {ref}: final primary metric per entry, 95 % interval, Holm verdict",
        fontsize=10,
    )
    for verdict, colour in COLORS.items():
        ax.plot([], [], "o-", color=colour, label=verdict)
    fig.legend(loc="outside lower center", ncols=5, fontsize=7.5, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, Path(path))
    plt.close(fig)
