"""A scorecard entry's numbers, every one from the claims engine: the runs of each arm (the
candidate, its baselines reused from results/ or rerun) as one lnrepro.claims.FigureData, then
the primary comparisons against each of the suite's references (`Entry.references`: LN and no
normalization in experiments/scorecard/suite.yaml; `lnrepro.claims.scorecard`), the speed
(AUC, `lnrepro.claims.speed.auc`), the secondary metrics and the sanity gates
(`lnrepro.claims.sanity.check_arm`); `holm` adjusts the primary verdicts over the scorecard."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from lnrepro.claims.results import FigureData, final_values, load_figure, seed_curves
from lnrepro.claims.sanity import INVALID, ArmCheck, check_arm
from lnrepro.claims.scorecard import Comparison, compare, holm_verdicts
from lnrepro.claims.speed import auc
from lnrepro.runs import Run
from lnrepro.scorecard.baselines import Baseline
from lnrepro.scorecard.cost import Cost
from lnrepro.scorecard.suite import Entry, Metric

DIVERGED = "diverged"


@dataclass
class EntryResult:
    """Everything the scorecard says about one entry."""

    entry: Entry
    candidate: str  # the candidate's short name (norm.kind)
    data: FigureData  # the completed runs of every arm, with their curves
    statuses: dict[str, dict[int, str]]  # norm -> seed -> status
    baselines: list[Baseline]
    vs: dict[str, Comparison] = field(default_factory=dict)  # reference -> primary comparison
    speed: dict[str, Comparison] = field(default_factory=dict)  # reference -> AUC comparison
    secondary: list[tuple[Metric, dict[str, Comparison]]] = field(default_factory=list)
    gates: dict[str, ArmCheck | None] = field(default_factory=dict)  # norm -> primary's gate
    cost: Cost | None = None

    @property
    def norms(self) -> list[str]:
        """The candidate, then the baselines."""
        return [self.candidate, *self.entry.baselines]

    def values(self, norm: str, metric: str) -> list[float]:
        return final_values(self.data, norm, self.entry.setting, metric)

    def diverged(self) -> int:
        """How many of the candidate's seeds diverged."""
        return sum(s == DIVERGED for s in self.statuses.get(self.candidate, {}).values())


def metrics_of(entry: Entry) -> list[str]:
    """The metrics an entry reads: primary, secondary, speed."""
    keys = [entry.primary.key, *(m.key for m in entry.secondary), entry.speed["metric"]]
    return list(dict.fromkeys(keys))


def run_row(run: Run, grid_keys: list[str], metrics: list[str]) -> dict:
    """A run as a row of results/<figure>.csv: norm, seed, grid values, status, finals."""
    row = {"norm": run.get("norm.kind"), "seed": str(run.seed), "status": run.status}
    row.update({k: str(run.get(k)) for k in grid_keys})
    for m in metrics:
        v = run.metric(m, "final")
        row[f"final_{m}"] = "" if v is None else str(v)
    return row


def run_curves(run: Run, metrics: list[str]) -> dict[str, list]:
    """metric -> [(step, epoch, value)] of a run's metrics.jsonl, as the curves CSV holds."""
    out: dict[str, list] = {}
    for r in run.rows:
        for m in metrics:
            v = r.get(m)
            if isinstance(v, (int, float)):
                out.setdefault(m, []).append((int(r["step"]), r.get("epoch"), float(v)))
    return out


def entry_data(
    entry: Entry,
    results: Path,
    baselines: list[Baseline],
    runs: dict[tuple[str, int], Run | None],
) -> tuple[FigureData, dict[str, dict[int, str]]]:
    """The entry's FigureData (completed runs only, as the engine reads them) and every arm's
    status per seed: reused baselines from results/<figure>.csv and its curves, the rerun
    baselines and the candidate from their run folders (`runs`: (norm, seed) -> Run)."""
    committed = load_figure(Path(results), entry.spec)
    data = FigureData(entry.spec, committed.stem, [], {})
    metrics = metrics_of(entry)
    statuses: dict[str, dict[int, str]] = {}
    for b in baselines:
        if b.reused:
            statuses.setdefault(b.norm, {})[b.seed] = b.row["status"]
            if b.row["status"] == "completed":
                data.runs.append(b.row)
                data.curves[data.key(b.row)] = (committed.curves or {}).get(data.key(b.row), {})
    for (norm, seed), run in runs.items():
        statuses.setdefault(norm, {})[seed] = "not run" if run is None else run.status
        if run is not None and run.status == "completed":
            row = run_row(run, data.grid_keys, metrics)
            row["norm"] = norm  # the candidate's short name, as the scorecard names it
            data.runs.append(row)
            data.curves[data.key(row)] = run_curves(run, metrics)
    return data, statuses


def evaluate(res: EntryResult, floors: dict) -> EntryResult:
    """The entry's gates, primary comparisons (raw verdicts; `holm` adjusts them), speed and
    secondary comparisons. `floors`: lnrepro.claims.sanity.load_floors of results/floors.csv."""
    e, p = res.entry, res.entry.primary
    for norm in res.norms:
        res.gates[norm] = check_arm(
            res.data, norm, e.setting, p.key, p.higher, floors.get(e.figure, {})
        )
    cand = res.values(res.candidate, p.key)
    for ref in e.references:
        c = compare(cand, res.values(ref, p.key), p.log, p.higher, e.margin)
        c.blocked = _blocked(res, ref)
        res.vs[ref] = c
    res.speed = {ref: _speed(res, ref) for ref in e.references}
    res.secondary = [(m, _secondary(res, m)) for m in e.secondary]
    return res


def _secondary(res: EntryResult, m: Metric) -> dict[str, Comparison]:
    """The candidate against each reference on a secondary metric: an interval, no verdict."""
    cand = res.values(res.candidate, m.key)
    refs = res.entry.references
    return {ref: compare(cand, res.values(ref, m.key), m.log, m.higher) for ref in refs}


def _blocked(res: EntryResult, ref: str) -> str:
    """Why a primary comparison can have no verdict: the candidate diverged or did not finish,
    or the reference fails its sanity gate (the engine's invalid baseline)."""
    mine = res.statuses.get(res.candidate, {})
    if res.diverged():
        return f"{DIVERGED} ({res.diverged()} of {len(mine)} seeds)"
    unfinished = [s for s, st in mine.items() if st != "completed"]
    if unfinished:
        return f"not finished (seeds {', '.join(map(str, unfinished))})"
    gate = res.gates.get(ref)
    if gate is not None and not gate.passed:
        return INVALID
    return ""


def seed_aucs(res: EntryResult, norm: str, reasons: list[str]) -> list[float]:
    """Each seed's AUC of the speed metric over the entry's span (nan where the curve does not
    cover it)."""
    sp = res.entry.speed
    curves = seed_curves(res.data, norm, res.entry.setting, sp["metric"], reasons)
    return [
        auc([q[0] for q in pts], [q[2] for q in pts], tuple(sp["steps"]), sp.get("log", False))
        for pts in curves.values()
    ]


def _speed(res: EntryResult, ref: str) -> Comparison:
    """The candidate's AUC against the reference's (Welch; a difference of mean logs with
    `log`, shown as a ratio of geometric means)."""
    reasons: list[str] = []
    cand, other = seed_aucs(res, res.candidate, reasons), seed_aucs(res, ref, reasons)
    if not all(math.isfinite(v) for v in cand + other):
        reasons.append(f"a curve does not cover updates {res.entry.speed['steps']}")
        cand, other = [v for v in cand if math.isfinite(v)], [v for v in other if math.isfinite(v)]
    c = compare(cand, other, False, bool(res.entry.speed.get("higher")))
    c.reasons += reasons
    return c


def holm(results: list[EntryResult]) -> list[Comparison]:
    """Holm over the scorecard's family: every entry's primary comparison against each of its
    references. Returns the family."""
    family = [r.vs[ref] for r in results for ref in r.entry.references]
    holm_verdicts(family)
    return family
