"""Which claims are confirmatory: computed from git history and the rows' provenance, never
declared. A claim is confirmatory only if

(a) its spec is byte-identical from a registration commit R to HEAD: R is the oldest commit of
    an unbroken run of commits of experiments/<figure>.yaml, ending at HEAD, in which the
    claim's canonical text (`canonical`: the claim itself and the protocol that decides its
    runs: the scale's experiment, overrides and confirmatory seeds, the grid and the norms, as
    sorted YAML) is what the working tree holds;
(b) every run of its arms in results/<figure>.csv recorded a clean commit (not `<sha>+dirty`:
    uncommitted code can be anything) that descends from R and started after R's commit time;
(c) none of those runs' seeds appears in an earlier version of results/<figure>.csv in git
    history, except as the same run (same metrics_sha256) committed after R;
(d) every run registered at R (the figure's confirmatory seeds x grid x the claim's norms, from
    the spec at R: `registered_runs`) is in the CSV, completed or diverged, and no other run is.

Anything else is exploratory, with the first failing condition as its reason.
"""

from __future__ import annotations

import csv
import io
import itertools
import subprocess
from functools import cached_property
from pathlib import Path

import yaml

from lnrepro.claims.provenance import NOT_RECORDED, parse_iso

SCALE = "cpu"
FINISHED = ("completed", "diverged")  # a crash is resumed until it ends; a divergence counts


def confirmatory_norms(spec: dict, scale: str = SCALE) -> list[str]:
    """The norms that run the confirmatory seeds: the scale's norms but the extra curves that
    `seeds_by_norm` gives fewer seeds (no claim)."""
    sc = spec["scales"][scale]
    extra = set(sc.get("seeds_by_norm") or {})
    return [n for n in sc.get("norms", spec["norms"]) if n not in extra]


def grid_points(spec: dict) -> list[tuple[str, ...]]:
    grid = spec.get("grid") or {}
    return [tuple(str(v) for v in p) for p in itertools.product(*grid.values())]


def registered_runs(spec: dict, claim: dict | None = None, scale: str = SCALE) -> set[tuple]:
    """(norm, seed, grid values) of the confirmatory runs a spec registers, those of `claim`'s
    norms and `where` only when given."""
    seeds = (spec.get("scales", {}).get(scale) or {}).get("confirmatory_seeds") or []
    norms = confirmatory_norms(spec, scale)
    runs = {(n, str(s), p) for n in norms for s in seeds for p in grid_points(spec)}
    return {r for r in runs if claim is None or _in_arms(r, claim, list(spec.get("grid") or {}))}


def _in_arms(key: tuple, claim: dict, grid_keys: list[str]) -> bool:
    norm, _, point = key
    where = claim.get("where") or {}
    values = dict(zip(grid_keys, point))
    return norm in (claim.get("norms") or []) and all(
        str(values.get(k)) == str(v) for k, v in where.items()
    )


def canonical(spec: dict, claim_id: str, scale: str = SCALE) -> str | None:
    """The claim and the protocol of its runs as sorted YAML; None when the spec has no such
    claim."""
    claim = next((c for c in spec.get("claims") or [] if c.get("id") == claim_id), None)
    if claim is None:
        return None
    sc = (spec.get("scales") or {}).get(scale) or {}
    protocol = {
        "experiment": sc.get("experiment"),
        "overrides": sc.get("overrides"),
        "confirmatory_seeds": sc.get("confirmatory_seeds"),
        "seeds_by_norm": sc.get("seeds_by_norm"),
        "norms": sc.get("norms", spec.get("norms")),
        "grid": spec.get("grid"),
    }
    return yaml.safe_dump({"claim": claim, "protocol": protocol}, sort_keys=True)


class Git:
    """The few git questions the rule asks of the repository at `root`, cached."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._shown: dict[tuple, object] = {}

    def __call__(self, *args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(self.root), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    @cached_property
    def ok(self) -> bool:
        return self("rev-parse", "HEAD") is not None

    def history(self, path: str) -> list[str]:
        """Commits that changed `path`, newest first (HEAD's ancestors only)."""
        out = self("log", "--format=%H", "HEAD", "--", path)
        return out.split() if out else []

    def show(self, commit: str, path: str) -> str | None:
        if (commit, path) not in self._shown:
            self._shown[(commit, path)] = self("show", f"{commit}:{path}")
        return self._shown[(commit, path)]

    def spec(self, commit: str, path: str) -> dict:
        """experiments/<figure>.yaml at `commit`, parsed ({} if absent or unreadable)."""
        if ("spec", commit, path) not in self._shown:
            self._shown[("spec", commit, path)] = _load(self.show(commit, path))
        return self._shown[("spec", commit, path)]

    def descends(self, commit: str, ancestor: str) -> bool:
        out = self("merge-base", "--is-ancestor", ancestor, commit)
        return out is not None

    def time(self, commit: str) -> float:
        return float(self("show", "-s", "--format=%ct", commit).strip())


def _load(text: str | None) -> dict:
    try:
        spec = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _rows(text: str | None) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text))) if text else []


def _key(row: dict, grid_keys: list[str]) -> tuple:
    return (row.get("norm"), str(row.get("seed")), tuple(str(row.get(k)) for k in grid_keys))


def registration(git: Git, spec_path: str, claim_id: str, current: str | None) -> str | None:
    """R: the oldest commit of the unbroken run of commits of `spec_path`, from its newest (what
    HEAD holds) back, in which the claim's canonical text is `current`; None if HEAD's is not."""
    reg = None
    for commit in git.history(spec_path):  # newest first
        if current is None or canonical(git.spec(commit, spec_path), claim_id) != current:
            break
        reg = commit
    return reg


def claim_status(root: Path, spec: dict, claim: dict, git: Git | None = None) -> str:
    """'' when the claim is confirmatory, else why it is exploratory (one reason)."""
    git = git or Git(root)
    if claim.get("check") == "not_testable":
        return "not testable"
    if not git.ok:
        return "no git history"
    spec_path = f"experiments/{spec['name']}.yaml"
    csv_path = f"results/{spec['name']}.csv"
    # both sides parsed alike (YAML 1.1): the working tree's text, each commit's text
    path = Path(root) / spec_path
    current = canonical(_load(path.read_text() if path.exists() else None), claim["id"])
    reg = registration(git, spec_path, claim["id"], current)
    if reg is None:  # (a)
        return "(a) the claim's spec differs from every commit's (uncommitted change)"
    short = reg[:7]
    spec_at_r = git.spec(reg, spec_path)
    registered = registered_runs(spec_at_r, claim)
    if not registered:
        return f"(d) no confirmatory seeds registered at R={short}"
    grid_keys = list(spec.get("grid") or {})
    table = Path(root) / csv_path
    every = _rows(table.read_text()) if table.exists() else []
    rows = [r for r in every if _in_arms(_key(r, grid_keys), claim, grid_keys)]
    if not rows:
        return f"(d) no runs of its arms in {csv_path}"
    r_time = git.time(reg)
    for r in rows:  # (b)
        commit = r.get("commit") or NOT_RECORDED
        name = f"{r['norm']} seed {r['seed']}"
        if commit == NOT_RECORDED:
            return f"(b) {name}: commit not recorded"
        if commit.endswith("+dirty"):
            return f"(b) {name}: ran from uncommitted changes ({commit[:7]}+dirty)"
        if not git.descends(commit, reg):
            return f"(b) {name}: commit {commit[:7]} does not descend from R={short}"
        started = parse_iso(r.get("started", ""))
        if started is None:
            return f"(b) {name}: start time not recorded"
        if started <= r_time:
            return f"(b) {name}: started before R={short} was committed"
    seen = _seen_earlier(git, csv_path, reg, rows, claim, grid_keys)  # (c)
    if seen:
        return f"(c) seed {', '.join(sorted(seen, key=int))} in an earlier {csv_path}"
    keys = {_key(r, grid_keys) for r in rows if r.get("status") in FINISHED}
    missing = sorted(registered - keys)  # (d)
    if missing:
        n, s, _ = missing[0]
        return f"(d) {len(missing)} run(s) registered at R={short} not finished in the CSV ({n} seed {s}, ...)"
    extra = sorted({_key(r, grid_keys) for r in rows} - registered)
    if extra:
        n, s, _ = extra[0]
        return f"(d) {len(extra)} run(s) not registered at R={short} ({n} seed {s}, ...)"
    return ""


def _seen_earlier(
    git: Git, csv_path: str, reg: str, rows: list[dict], claim: dict, grid_keys
) -> set[str]:
    """Seeds of `rows` (the claim's arms) in an earlier committed version of the CSV, in a row
    of those arms: any version not descending from R; after R, a row that another run has
    replaced (same norm, seed and grid point, another metrics digest). A registered run
    committed after R and since dropped is (d)'s to name."""
    digest = {_key(r, grid_keys): r.get("metrics_sha256") for r in rows}
    registered = registered_runs(git.spec(reg, f"experiments/{Path(csv_path).stem}.yaml"), claim)
    seeds = {str(r["seed"]) for r in rows}
    seen = set()
    for commit in git.history(csv_path):
        after = git.descends(commit, reg)
        for old in _rows(git.show(commit, csv_path)):
            key = _key(old, grid_keys)
            if str(old.get("seed")) not in seeds or not _in_arms(key, claim, grid_keys):
                continue
            now = digest.get(key)
            same = now not in (None, "", NOT_RECORDED) and old.get("metrics_sha256") == now
            if after and key in registered and (same or key not in digest):
                continue
            seen.add(str(old.get("seed")))
    return seen


def confirmatory(root: Path, specs: list[dict]) -> tuple[set[str], dict[str, str]]:
    """(ids of the confirmatory claims, {id: why exploratory} for every other claim)."""
    git = Git(root)
    ids, reasons = set(), {}
    for spec in specs:
        for claim in spec.get("claims") or []:
            why = claim_status(root, spec, claim, git)
            if why:
                reasons[claim["id"]] = why
            else:
                ids.add(claim["id"])
    return ids, reasons


RULE = (
    "A row is **confirmatory** only when `make claims-check` computes it so "
    "(`src/lnrepro/claims/confirm.py`): (a) its claim spec, with the protocol of its runs, is "
    "identical as canonical YAML from a registration commit R to HEAD; (b) every run of its "
    "arms recorded a commit that descends from R and started after R was committed; (c) none "
    "of their seeds is "
    "in an earlier version of the figure's CSV in git history; (d) every run registered at R "
    "(its confirmatory seeds x grid x the claim's norms) is in the CSV, finished, and no other "
    "run is. Every other row is exploratory; results/claims.md names the first condition it "
    "fails."
)


def status_lines(results: list, reasons: dict[str, str]) -> list[str]:
    """claims.md: each claim's status and, for an exploratory one, why."""
    lines = [RULE, "", "| claim | status | why not confirmatory |", "|---|---|---|"]
    for r in results:
        cid = r.claim["id"]
        if r.confirmatory or cid in reasons:
            status = "confirmatory" if r.confirmatory else "exploratory"
            lines.append(f"| {cid} | {status} | {reasons.get(cid, '–')} |")
    return lines


def readme_lines(results: list, reasons: dict[str, str]) -> list[str]:
    """README: the confirmatory verdicts only, raw and Holm-adjusted (or that there are none);
    the exploratory ones stay in results/claims.md."""
    from lnrepro.claims.tables import claims_table  # (the tables import the verdicts)

    rows = [r for r in results if r.confirmatory]
    why = [reasons[r.claim["id"]] for r in results if r.claim["id"] in reasons]
    untestable = sum(w == "not testable" for w in why)
    exploratory = len(why) - untestable
    head = (
        "**Confirmatory verdicts** (raw, and Holm-adjusted over the confirmatory rows of "
        "`experiments/claims_family.txt`). " + RULE
    )
    if not rows:
        return [
            head,
            "",
            (
                f"**None yet**: all {exploratory} testable claims are exploratory ({untestable} "
                "more are not testable at this scale; their verdicts and the reason each is not "
                "confirmatory: [results/claims.md](results/claims.md)). "
                "The confirmatory seeds (`confirmatory_seeds` in each experiments/*.yaml) have "
                "not run."
            ),
        ]
    return [
        head,
        "",
        *claims_table(rows),
        "",
        f"{exploratory} exploratory claims: [results/claims.md](results/claims.md).",
    ]
