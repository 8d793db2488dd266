"""The claims report: results/claims.md, results/claims.csv and README.md's experiments block."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lnrepro.claims.blocks import note_files
from lnrepro.claims.confirm import confirmatory, readme_lines, status_lines
from lnrepro.claims.results import FigureData, load_figure
from lnrepro.claims.sanity import INVALID, Gate, apply_gate, claim_arms, gate, load_floors
from lnrepro.claims.specs import load_family, load_specs, make_targets
from lnrepro.claims.stats import CONTRADICTED, INCONCLUSIVE, LEVEL, NOT_TESTABLE, SUPPORTED, holm
from lnrepro.claims.tables import claims_csv, claims_table, runs_table, sanity_table, speed_table
from lnrepro.claims.verdicts import Result, evaluate

FAMILY = "experiments/claims_family.txt"
# where a figure's exploratory CSVs go when its confirmatory runs replace them in results/
EXPLORATORY = "results/exploratory"

BEGIN, END = "<!-- claims:begin", "<!-- claims:end -->"
PAPER = (
    'Sections, figures and tables are those of Ba, Kiros, Hinton 2016 ("Layer '
    'Normalization") unless another paper is named.'
)

SPEED = (
    "Each `faster` row in detail: the level fixed in its spec (read off the exploratory "
    "curves: what every exploratory seed of both arms reached by 60 % of its budget, "
    "`scripts/claims_levels.py`), each seed's updates to it, the spread (sd) of the log "
    "crossings per arm, and the power of the rule at that spread: the share of 2,000 "
    "simulated replications on this row's evaluation grid (with the log-spaced early "
    "evaluations) that read contradicted when the favoured arm is truly twice as slow "
    "(`src/lnrepro/claims/simulate.py`; the rule's error rates: "
    "[claims_simulation.md](claims_simulation.md)). A row below 80 % runs 5 seeds per arm. The "
    "AUC (mean of the metric, of its log for NLL, bpc, perplexity, over a span fixed in the "
    "spec) is reported beside it and decides nothing."
)

SANITY = (
    "Each gate in detail: every arm (a norm at a setting) that enters a comparison, on each "
    "metric it is compared on, against its floor: the floor and where it comes from, the arm's "
    "final values, how far the seed mean is below the floor (above, for a higher-is-better "
    "metric) with its 95 % t interval, and the seeds that end at or past the floor."
)


@dataclass
class Report:
    specs: list[dict]
    data: dict[str, FigureData]
    results: list[Result]
    targets: dict[str, str]
    notes: set[str] = field(default_factory=set)  # stems with a results/<stem>.md discussion
    family: list[str] = field(default_factory=list)  # claim ids registered for Holm
    gates: list[Gate] = field(default_factory=list)  # one sanity gate per figure
    exploratory: dict[str, str] = field(default_factory=dict)  # claim id -> why (confirm)
    earlier: list[Result] = field(default_factory=list)  # claims on results/exploratory/


def build(root: Path) -> Report:
    """Every claim of experiments/*.yaml checked against results/ (CPU scale)."""
    targets, order = make_targets(root / "Makefile")
    specs = load_specs(root / "experiments", order)
    data = {s["name"]: load_figure(root / "results", s) for s in specs}
    floors = load_floors(root / "results" / "floors.csv")
    results, gates = check(specs, data, floors)
    notes = {d.stem for d in data.values() if (root / "results" / f"{d.stem}.md").exists()}
    family = load_family(root / FAMILY, specs)
    confirmed, why = confirmatory(root, specs)  # computed from git history, never declared
    apply_holm(results, family, confirmatory=confirmed)
    # the exploratory seeds of figures whose confirmatory runs replaced them in results/
    replaced = [s for s in specs if (root / EXPLORATORY / f"{s['name']}.csv").exists()]
    old = {s["name"]: load_figure(root / EXPLORATORY, s) for s in replaced}
    earlier, _ = check(replaced, old, floors)
    by_id = {r.claim["id"]: r for r in earlier}
    for r in results:
        if r.claim["id"] in by_id:
            r.earlier = by_id[r.claim["id"]].verdict_text()
    return Report(specs, data, results, targets, notes, family, gates, why, earlier)


def check(specs: list[dict], data: dict[str, FigureData], floors: dict):
    """Every claim and sanity gate of `specs` on `data`: (results, one gate per figure)."""
    results, gates = [], []
    for s in specs:
        rows, g = evaluate(s, data[s["name"]]), gate(s, data[s["name"]], floors)
        results += [*rows, apply_gate(s, rows, g)]
        gates.append(g)
    return results, gates


def apply_holm(results: list[Result], family: list[str], confirmatory: set[str]) -> None:
    """Mark the family's confirmatory rows and give each its Holm verdict: Holm at 0.025 per
    direction over their one-sided p values (for the claim, against it). `confirmatory`: the
    ids whose runs were registered before they ran and unseen before. Every claim of the
    family counts in m from the start: one not confirmatory yet (its runs still to come), or
    with an invalid baseline, has no p and is never rejected, so a Holm verdict given now can
    only stay or turn more lenient as the other confirmatory runs land, never flip to a
    rejection made on a smaller family."""
    rows = [r for r in results if r.claim["id"] in family]
    ok = [r.claim["id"] in confirmatory and r.verdict != INVALID for r in rows]
    for_ = holm([r.p_support if v else None for r, v in zip(rows, ok)])
    against = holm([r.p_contradict if v else None for r, v in zip(rows, ok)])
    for r, s, c, v in zip(rows, for_, against, ok):
        if r.claim["id"] not in confirmatory:
            continue
        r.confirmatory = True
        r.holm = INVALID if not v else SUPPORTED if s else CONTRADICTED if c else INCONCLUSIVE


def note(rep: Report) -> list[str]:
    """How verdicts are decided, the Holm family, and how many false ones to expect."""
    tested = sum(r.verdict != NOT_TESTABLE and r.claim["check"] != "sanity" for r in rep.results)
    confirmatory = sum(r.confirmatory for r in rep.results)
    rules = (
        "Verdicts are computed by `src/lnrepro/claims/`: **supported** when the 95 % "
        "interval of the effect lies on the claim's side of its threshold, **contradicted** "
        "when it lies on the other side, **inconclusive** when it straddles the threshold or "
        "when a side has fewer than 2 seeds (n=1: no interval); **not testable at this scale** "
        "for claims about converged values that the CPU budget cannot reach. Intervals: Welch "
        "t for differences of seed means (Welch-Satterthwaite degrees of freedom), on "
        "logarithms for ratios; no bootstrap. Speed claims (`faster`): the level is a number "
        "fixed in the spec, read off the exploratory curves of both arms; each seed's crossing "
        "is interpolated in log updates and carries at least the grid's variance "
        "(Δ log t)²/12; a seed past the level at its first evaluation, or never reaching it, "
        "is censored and the verdict takes the conservative end (supported needs A's upper and "
        "B's lower ends below the threshold, contradicted A's lower and B's upper ends above "
        "it); Welch's standard error with min(n) - 1 degrees of freedom (Hsu). The AUC beside "
        "it (section below) is reported and never decides."
    )
    p_text = (
        "p for / against: one-sided p values from the row's t statistic at its threshold "
        "(comparable: the larger one-sided p of the equivalence test); a raw verdict is "
        "supported exactly when p for < 0.025 and contradicted when p against < 0.025."
    )
    family = (
        f"Multiplicity: the Holm family is the {len(rep.family)} claims listed in `{FAMILY}`, "
        "with Holm's correction at 0.025 per direction; a listed claim that is not "
        "confirmatory yet counts in m without a p value (never rejected). "
        f"Confirmatory rows: {confirmatory}. "
        + (
            "**No row is confirmatory yet: every run in results/ was seen before these rules "
            "and levels were fixed, so every verdict above is exploratory and none is "
            "Holm-adjusted.** With 3 seeds per arm and this family, expect more inconclusive "
            "rows once the confirmatory seeds run."
            if not confirmatory
            else "Exploratory rows keep their own column and are not in the family."
        )
    )
    chance = (
        f"With n = 3 seeds per norm an interval is wide, so **inconclusive** is a likely "
        f"outcome. With {tested} claims checked at 95 %, about "
        f"{tested * (1 - LEVEL):.1f} false verdict(s) are expected by chance alone (about "
        f"one in 20 claims) among the exploratory verdicts."
    )
    return [rules, "", p_text, "", family, "", chance, "", *sanity_note(rep)]


def sanity_note(rep: Report) -> list[str]:
    """The gates in words, and every failing arm with its numbers."""
    text = (
        "Sanity gates (one row per figure, not claims of the paper, not in the Holm family): "
        "every arm that enters a comparison must beat a trivial floor of each metric it is "
        "compared on, its seed mean with a 95 % interval (results/floors.csv: the unigram "
        "model of the PTB training text, a logistic-regression classifier on MNIST, the "
        "reader's best floor; elsewhere the arm's own first evaluation, paired per seed). "
        "Seeds stuck at the floor count in the mean. A comparison with an arm that fails its "
        "gate reads **invalid baseline**, whatever its interval says."
    )
    failed = []
    for spec, g in zip(rep.specs, rep.gates):
        for key, arms in g.failing().items():
            ids = [c["id"] for c in spec["claims"] if key in claim_arms(spec, c)]
            failed += [
                f"**{g.figure}: {'; '.join(a.text() for a in arms)}**: an invalid baseline for "
                + (", ".join(f"`{i}`" for i in ids) or "no comparison")
                + "."
            ]
    return [text + (" Failing arms:" if failed else " Every arm passes its gate."), "", *failed]


def claims_md(rep: Report) -> str:
    intro = (
        "Generated by `make claims` (`python scripts/claims.py`) from the committed "
        "`results/<figure>.csv` and `results/<figure>_curves.csv` and the `claims:` lists "
        "of `experiments/*.yaml`; do not edit by hand. Metrics are lower-is-better "
        "unless the claim says final_higher or reaches a level with >=."
    )
    lines = [
        "# The paper's claims, checked against our runs (CPU scale)",
        "",
        intro,
        "",
        "## Runs",
        "",
        *runs_table(rep, ""),
        "",
        "## Claims",
        "",
        PAPER,
        "",
        *claims_table(rep.results),
        "",
        *note(rep),
        "",
        "## Speed claims",
        "",
        SPEED,
        "",
        *speed_table(rep.results),
        "",
        "## Sanity gates",
        "",
        SANITY,
        "",
        *sanity_table(rep.gates),
        "",
        "## Confirmatory or exploratory",
        "",
        *status_lines(rep.results, rep.exploratory),
        "",
    ]
    if rep.earlier:
        lines += [
            "## Exploratory seeds replaced by confirmatory runs",
            "",
            (
                "The claims on the exploratory seeds of the figures whose confirmatory runs now "
                f"fill results/: their CSVs moved to `{EXPLORATORY}/`. Seen before the levels "
                "and thresholds were fixed; never Holm-adjusted."
            ),
            "",
            *claims_table(rep.earlier),
            "",
        ]
    return "\n".join(lines)


def readme_block(rep: Report) -> str:
    head = (
        f"{BEGIN}: generated by `make claims` from results/ (scripts/claims.py --readme); "
        "do not edit by hand -->"
    )
    links = (
        "The paper's claims, each checked by code against our seeds "
        "([results/claims.md](results/claims.md), [csv](results/claims.csv)). " + PAPER
    )
    lines = [
        head,
        "",
        *runs_table(rep, "results/"),
        "",
        links,
        "",
        *readme_lines(rep.results, rep.exploratory),
        "",
        *note(rep),
        END,
    ]
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    """README text with the part between the claims markers replaced by `block`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no '{BEGIN} ... -->' / '{END}' markers")
    return readme[:start] + block + readme[end + len(END) :]


def outputs(root: Path, readme: bool = False) -> dict[Path, str]:
    """{file: its generated text}: results/claims.md, results/claims.csv and, with readme,
    README.md with its experiments table regenerated and the figure notes with their generated
    blocks (lnrepro.claims.blocks)."""
    rep = build(root)
    files = {
        root / "results" / "claims.md": claims_md(rep),
        root / "results" / "claims.csv": claims_csv(rep.results),
    }
    if readme:
        path = root / "README.md"
        files[path] = replace_block(path.read_text(), readme_block(rep))
        files.update(note_files(root, rep.specs, rep))
    return files
