"""Which baseline runs (LN, BN, no normalization) a scorecard reuses from the committed
results/<figure>.csv and which it reruns, and why.

A committed row of a baseline norm at the entry's setting and one of its seeds is reused only
when it is fresh; a stale or missing one is rerun with the same seed, never skipped. A row is
stale when

1. its run did not finish (status neither completed nor diverged), or
2. its `config_hash` (lnrepro.claims.provenance.config_hash of the run's resolved config,
   without seed, paths, hydra and logger keys) is not recorded, or differs from the hash of the
   config the scorecard would run for that norm now: the figure's experiment and CPU-scale
   overrides at the setting with `norm=<baseline>` and resume=true, composed by Hydra's
   compose API as `python -m lnrepro.train` composes it, or
3. its `commit` does not contain the last commit that changed tests/golden/ (G, `git log -1
   --format=%H -- tests/golden`): fresh only when G is the commit itself or one of its
   ancestors (`git merge-base --is-ancestor G <commit>`). So a commit that predates G (one of
   G's strict ancestors) is stale, and so is one on a branch without G. A golden re-recording
   is the repository's record that the numerics of some run moved, so a run from before it
   may not be what the code computes now. Also stale: a commit not recorded, one recorded as
   `<sha>+dirty` (uncommitted changes: any code), and one this repository does not know.
   Without any commit of tests/golden (another checkout) this rule checks only those three.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from lnrepro import REPO_ROOT
from lnrepro.claims.confirm import Git
from lnrepro.claims.provenance import NOT_RECORDED, config_hash
from lnrepro.claims.results import read_csv
from lnrepro.scorecard.suite import Entry

GOLDEN = "tests/golden"
FINISHED = ("completed", "diverged")


def norm_overrides(norm: str) -> list[str]:
    """The overrides that pick a norm: `norm=<name>` for a config of configs/norm/ (ln, rms,
    ...), `norm=own +norm._target_=<module.Class>` for a class named by its import path."""
    if "." in norm:
        return ["norm=own", f"+norm._target_={norm}"]
    return [f"norm={norm}"]


def run_overrides(entry: Entry, norm_args: list[str]) -> list[str]:
    """What a scorecard run of `entry` gets on the command line, seed and folders aside."""
    return [f"experiment={entry.experiment}", *norm_args, *entry.overrides(), "resume=true"]


def compose(overrides: list[str]):
    """The config `python -m lnrepro.train <overrides>` would run (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
            return hydra_compose("train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def expected_hash(entry: Entry, norm_args: list[str]) -> str:
    """config_hash of the resolved config a scorecard run of `entry` with this norm has."""
    cfg = compose(run_overrides(entry, norm_args))
    return config_hash(OmegaConf.to_container(cfg, resolve=True))


@dataclass
class Baseline:
    """One baseline run of an entry: reused from the CSV (`reason` empty) or rerun."""

    norm: str
    seed: int
    row: dict | None  # the committed row, when there is one
    reason: str = ""  # why it is rerun

    @property
    def reused(self) -> bool:
        return not self.reason


def committed_rows(results: Path, entry: Entry) -> dict[tuple[str, int], dict]:
    """(norm, seed) -> the row of results/<figure>.csv of a baseline norm at the entry's
    setting and one of its seeds (the last such row)."""
    path = Path(results) / f"{entry.figure}.csv"
    if not path.exists():
        return {}
    out = {}
    for row in read_csv(path):
        if row.get("scale", "cpu") != "cpu" or row.get("norm") not in entry.baselines:
            continue
        if any(str(row.get(k)) != str(v) for k, v in entry.setting.items()):
            continue
        seed = int(float(row["seed"]))
        if seed in entry.seeds:
            out[(row["norm"], seed)] = row
    return out


def golden_commit(git: Git) -> str | None:
    """The last commit that changed tests/golden/ (None without one)."""
    out = (git("log", "-1", "--format=%H", "--", GOLDEN) or "").strip()
    return out or None


def commit_problem(commit: str | None, golden: str | None, git: Git) -> str:
    """Why a run's recorded commit makes it stale ('' when it does not): rule 3 above."""
    if commit in (None, "", NOT_RECORDED):
        return "its commit is not recorded"
    if commit.endswith("+dirty"):
        return f"it ran from uncommitted changes ({commit[:12]}+dirty)"
    if git("cat-file", "-e", f"{commit}^{{commit}}") is None:
        return f"its commit {commit[:12]} is not a commit of this repository"
    if golden is None or git.descends(commit, golden):
        return ""
    if git.descends(golden, commit):
        return f"its commit {commit[:12]} predates the last change of {GOLDEN}/ ({golden[:12]})"
    return f"its commit {commit[:12]} does not contain the last change of {GOLDEN}/ ({golden[:12]})"


def stale_reason(row: dict | None, expected: str, golden: str | None, git: Git) -> str:
    """Why a committed row cannot be reused ('' when it can), every reason that applies."""
    if row is None:
        return "no committed row at this seed"
    reasons = []
    if row.get("status") not in FINISHED:
        reasons.append(f"its run is {row.get('status') or 'of unknown status'}")
    got = row.get("config_hash") or NOT_RECORDED
    if got == NOT_RECORDED:
        reasons.append("its config hash is not recorded")
    elif got != expected:
        reasons.append(
            f"its config hash {got[:12]} differs from the config it would run now ({expected[:12]})"
        )
    problem = commit_problem(row.get("commit"), golden, git)
    return "; ".join([*reasons, problem] if problem else reasons)


def plan(
    entry: Entry, results: Path, expected: dict[str, str], repo: Path = REPO_ROOT
) -> list[Baseline]:
    """Every baseline run of the entry (its baseline norms x its seeds), reused or rerun.
    `expected`: norm -> the config hash a run of it would have now (`expected_hash`)."""
    rows = committed_rows(results, entry)
    git = Git(repo)
    golden = golden_commit(git)
    out = []
    for norm in entry.baselines:
        for seed in entry.seeds:
            row = rows.get((norm, seed))
            out.append(Baseline(norm, seed, row, stale_reason(row, expected[norm], golden, git)))
    return out
