"""One scorecard from start to end (scripts/scorecard.py, `make scorecard`): the candidate
norm through every entry of a tier of the suite, beside the suite's baselines (LN, BN and no
normalization in experiments/scorecard/suite.yaml).

1. For every entry: which committed baselines are reused and which rerun (`baselines.plan`);
   the candidate's runs and the reruns launched as ordinary multiruns (`launch`).
2. For every entry: the runs collected with the reused rows (`results.entry_data`), the cost
   per update against the suite's main reference timed (`cost.measure`), the engine's numbers
   against each reference (`results.evaluate`).
3. Holm over the primary comparisons of all entries, then results/scorecards/<name>.md and
   <name>.png.

Exit 0 when every run finished (completed or diverged: a diverging norm is a result), 1 when a
run did not (its row says so; running the same command again continues it), 2 for a bad
argument (one line).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from lnrepro import REPO_ROOT
from lnrepro.artifacts import atomic_write_text
from lnrepro.claims.sanity import load_floors
from lnrepro.runlog import git_commit
from lnrepro.scorecard import baselines as bl
from lnrepro.scorecard import cost, forest, launch
from lnrepro.scorecard.report import Header, markdown
from lnrepro.scorecard.results import EntryResult, entry_data, evaluate, holm
from lnrepro.scorecard.suite import EXPERIMENTS, SUITE, Entry, entries, load_suite

RESULTS = REPO_ROOT / "results"


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--norm", required=True, help="a norm config (rms, wn) or module.Class")
    p.add_argument("--tier", default="quick", help="a tier of the suite: quick or full")
    p.add_argument("--seeds", help="comma-separated, for every entry (default: the suite's)")
    p.add_argument("--name", help="the scorecard's name (default: <kind>_<tier>)")
    p.add_argument("--launcher", help="hydra/launcher: parallel, basic, ... (default: parallel "
                   "with 2 cores or more)")  # fmt: skip
    p.add_argument("--suite", type=Path, default=SUITE)
    p.add_argument("--experiments", type=Path, default=EXPERIMENTS, help="the figure specs")
    p.add_argument("--results", type=Path, default=RESULTS, help="committed CSVs, floors.csv")
    p.add_argument("--out", type=Path, default=RESULTS / "scorecards")
    p.add_argument("--repo", type=Path, default=REPO_ROOT, help="git repository of the commits")
    p.add_argument("--no-cost", action="store_true", help="skip the cost-per-update timing")
    p.add_argument("overrides", nargs="*", help="more overrides of the candidate's runs, e.g. "
                   "+norm.alpha_init=0.7")  # fmt: skip
    return p.parse_args(argv)


def candidate_kind(entry: Entry, norm_args: list[str]) -> str:
    """The candidate's short name, after composing and building its norm once (a bad name or
    class is one line here, before anything runs)."""
    from lnrepro.build import build_norm
    from lnrepro.distributed import World

    cfg = bl.compose(bl.run_overrides(entry, norm_args))
    build_norm(cfg, cfg.data.get("batch_size"), World())
    return str(cfg.norm.kind)


def run_entry(entry: Entry, args, name: str, kind: str, norm_args: list[str]) -> list[bl.Baseline]:
    """Plans the entry's baselines and launches what has not finished: the candidate's seeds,
    then the stale or missing baselines (norms that miss the same seeds in one multirun)."""
    expected = {n: bl.expected_hash(entry, bl.norm_overrides(n)) for n in entry.baselines}
    plan = bl.plan(entry, args.results, expected, args.repo)
    root, group = launch.entry_dir(name, entry), f"scorecard/{name}"
    jobs = [(norm_args, launch.pending(root, kind, entry.seeds))]
    by_seeds: dict[tuple, list[str]] = {}
    for norm in entry.baselines:
        stale = [b.seed for b in plan if b.norm == norm and not b.reused]
        todo = tuple(launch.pending(root, norm, stale))
        if todo:
            by_seeds.setdefault(todo, []).append(norm)
    jobs += [([f"norm={','.join(norms)}"], list(seeds)) for seeds, norms in by_seeds.items()]
    for overrides, seeds in jobs:
        if seeds:
            cmd = launch.command(entry, overrides, seeds, root, group, args.launcher)
            launch.launch(cmd)
    return plan


def collect(entry: Entry, args, name: str, kind: str, plan: list[bl.Baseline]) -> EntryResult:
    """The entry's runs (the candidate's and the reruns) with the reused rows."""
    root = launch.entry_dir(name, entry)
    runs = {(kind, s): launch.load(root, kind, s) for s in entry.seeds}
    runs |= {(b.norm, b.seed): launch.load(root, b.norm, b.seed) for b in plan if not b.reused}
    data, statuses = entry_data(entry, args.results, plan, runs)
    return EntryResult(entry, kind, data, statuses, plan)


def time_entry(entry: Entry, norm_args: list[str]) -> cost.Cost:
    """The candidate's cost per update against the entry's main reference (the suite's
    `cost`)."""
    reference = bl.norm_overrides(entry.main_reference)
    cfgs = {
        cost.CANDIDATE: bl.compose(bl.run_overrides(entry, norm_args)),
        cost.REFERENCE: bl.compose(bl.run_overrides(entry, reference)),
    }
    return cost.measure(cfgs, **entry.cost)


def main(argv=None) -> int:
    args = parse(argv)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    args.launcher = None if args.launcher == "basic" else args.launcher or launch.default_launcher()
    norm_args = bl.norm_overrides(args.norm) + list(args.overrides)
    try:
        todo = entries(load_suite(args.suite), args.tier, args.experiments, seeds)
        kind = candidate_kind(todo[0], norm_args)
    except Exception as e:  # noqa: BLE001  (a bad suite, norm or override: one line)
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if kind in todo[0].columns:
        print(f"error: {kind} is a baseline of the suite, not a candidate", file=sys.stderr)
        return 2
    name = args.name or f"{kind}_{args.tier}"
    plans = [run_entry(e, args, name, kind, norm_args) for e in todo]
    results = [collect(e, args, name, kind, p) for e, p in zip(todo, plans)]
    floors = load_floors(args.results / "floors.csv")
    for res in results:
        res.cost = None if args.no_cost else time_entry(res.entry, norm_args)
        evaluate(res, floors)
    family = holm(results)
    write(args, name, kind, results, len(family))
    unfinished = [
        (r.entry.name, n, s)
        for r in results
        for n, by_seed in r.statuses.items()
        for s, st in by_seed.items()
        if st not in bl.FINISHED
    ]
    for entry_name, n, s in unfinished:
        print(f"not finished: {entry_name} {n} seed {s} (run the same command to continue)")
    return 1 if unfinished else 0


def write(args, name: str, kind: str, results: list[EntryResult], family: int) -> None:
    """results/scorecards/<name>.md and <name>.png."""
    args.out.mkdir(parents=True, exist_ok=True)
    md, png = args.out / f"{name}.md", args.out / f"{name}.png"
    header = Header(
        name=name,
        norm=args.norm,
        kind=kind,
        tier=args.tier,
        command=make_command(args, name),
        commit=git_commit(),
        date=datetime.date.today().isoformat(),
        png=png.name,
    )
    atomic_write_text(md, markdown(header, results, family))
    forest.draw(results, kind, png)
    print(f"wrote {md} and {png}")


def make_command(args, name: str) -> str:
    """The `make scorecard` line that writes this scorecard again."""
    out = f"make scorecard NORM={args.norm} TIER={args.tier}"
    out += f" SEEDS={args.seeds}" if args.seeds else ""
    out += f" NAME={name}" if args.name else ""
    return out + (f' ARGS="{" ".join(args.overrides)}"' if args.overrides else "")
