"""Confirmatory, computed not declared (lnrepro.claims.confirm): a tiny git repository in a
temporary folder where a claim is registered, its confirmatory runs made and committed, and then
each of the four conditions broken in turn; each break makes the row exploratory with its
reason."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import load_script

from lnrepro.claims import confirm as K
from lnrepro.claims.provenance import COLUMNS, NOT_RECORDED, iso

R_TIME = 2_000_000_000  # when the claim is registered (POSIX seconds)


def spec(confirmatory=(11, 12), margin=None) -> dict:
    claim = {
        "id": "toy_ln_lower",
        "section": "s",
        "quote": "q",
        "check": "final_lower",
        "metric": "test/err",
        "norms": ["ln", "bn"],
        "where": {"data.batch_size": 8},
    }
    if margin is not None:
        claim["note"] = margin
    cpu = {"experiment": "toy_cpu", "seeds": [1, 2]}
    if confirmatory:
        cpu["confirmatory_seeds"] = list(confirmatory)
    return {
        "name": "toy",
        "scales": {"cpu": cpu},
        "grid": {"data.batch_size": [8]},
        "norms": ["ln", "bn", "none"],
        "claims": [claim],
    }


def rows(seeds, commit: str, started: float, tag: str = "") -> list[dict]:
    out = []
    for norm in ("bn", "ln", "none"):
        for seed in seeds:
            out.append(
                {
                    "norm": norm,
                    "data.batch_size": "8",
                    "seed": str(seed),
                    "status": "completed",
                    "final_test/err": "0.1",
                    "commit": commit,
                    "config_hash": "c" * 64,
                    "metrics_sha256": f"{norm}{seed}{tag}".ljust(64, "0"),
                    "started": iso(started) if started else NOT_RECORDED,
                    "load_avg_1m": NOT_RECORDED,
                }
            )
    return out


class Repo:
    def __init__(self, root: Path):
        self.root, self.t = root, R_TIME - 1000
        self.git("init", "-q")

    def git(self, *args: str, when: int | None = None) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
        }
        env["GIT_COMMITTER_EMAIL"] = "t@t"
        if when is not None:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
        return subprocess.run(
            ["git", "-C", str(self.root), *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def write(self, spec_: dict | None = None, table: list[dict] | None = None) -> None:
        if spec_ is not None:
            (self.root / "experiments").mkdir(exist_ok=True)
            (self.root / "experiments" / "toy.yaml").write_text(yaml.safe_dump(spec_))
        if table is not None:
            (self.root / "results").mkdir(exist_ok=True)
            with open(self.root / "results" / "toy.csv", "w", newline="") as f:
                head = ["norm", "data.batch_size", "seed", "status", "final_test/err", *COLUMNS]
                w = csv.DictWriter(f, head)
                w.writeheader()
                w.writerows(table)

    def commit(self, when: int, spec_=None, table=None) -> str:
        self.write(spec_, table)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"at {when}", when=when)
        return self.git("rev-parse", "HEAD")

    def status(self) -> str:
        return K.claim_status(self.root, spec(), spec()["claims"][0])


@pytest.fixture
def repo(tmp_path) -> tuple[Repo, str]:
    """Exploratory seeds 1-2 committed, then the confirmatory seeds registered (R), then their
    runs made after R and committed: a confirmatory claim."""
    (tmp_path / "repo").mkdir()
    r = Repo(tmp_path / "repo")
    first = r.commit(R_TIME - 1000, spec(confirmatory=()), rows([1, 2], NOT_RECORDED, 0))
    reg = r.commit(R_TIME, spec())
    r.commit(R_TIME + 1000, table=rows([11, 12], reg, R_TIME + 500))
    return r, reg, first


def test_a_run_from_uncommitted_changes_is_exploratory(repo):
    r, reg, _ = repo
    r.commit(R_TIME + 2000, table=rows([11, 12], reg + "+dirty", R_TIME + 500))
    assert r.status() == f"(b) bn seed 11: ran from uncommitted changes ({reg[:7]}+dirty)"


def test_registered_then_run_unseen_and_complete_is_confirmatory(repo):
    r, reg, _ = repo
    assert r.status() == ""
    assert (
        K.registration(
            K.Git(r.root),
            "experiments/toy.yaml",
            "toy_ln_lower",
            K.canonical(spec(), "toy_ln_lower"),
        )
        == reg
    )
    ids, reasons = K.confirmatory(r.root, [spec()])
    assert ids == {"toy_ln_lower"} and reasons == {}
    # the claim's arms only: the baseline's runs (not in the claim) may be anything
    table = [x for x in rows([11, 12], reg, R_TIME + 500) if x["norm"] != "none"]
    r.write(table=table + rows([5], "f" * 40, 0)[2:])
    assert r.status() == ""


def test_a_spec_changed_in_the_working_tree_is_exploratory(repo):
    r, _, _ = repo
    r.write(spec(margin="a changed threshold"))
    assert r.status().startswith("(a) the claim's spec differs from every commit's")


def test_a_spec_changed_after_the_runs_moves_r_past_them(repo):
    r, _, _ = repo
    later = r.commit(R_TIME + 2000, spec(margin="changed after the runs"))
    r.write(spec())  # and back: R is now the commit that restored it
    back = r.commit(R_TIME + 3000, spec())
    status = r.status()
    assert status.startswith("(b) bn seed 11: commit") and "does not descend" in status
    assert back[:7] in status and later != back


def test_a_run_before_r_or_off_its_history_is_exploratory(repo):
    r, reg, first = repo
    r.write(table=rows([11, 12], reg, R_TIME - 10))
    assert r.status() == f"(b) bn seed 11: started before R={reg[:7]} was committed"
    r.write(table=rows([11, 12], first, R_TIME + 500))
    assert r.status() == f"(b) bn seed 11: commit {first[:7]} does not descend from R={reg[:7]}"
    r.write(table=rows([11, 12], NOT_RECORDED, R_TIME + 500))
    assert r.status() == "(b) bn seed 11: commit not recorded"
    r.write(table=rows([11, 12], reg, 0))
    assert r.status() == "(b) bn seed 11: start time not recorded"


def test_a_seed_seen_in_an_earlier_csv_is_exploratory(repo):
    r, reg, _ = repo
    # a pilot of seed 11 committed after R, then rerun: the earlier version shows seed 11
    r.commit(R_TIME + 2000, table=rows([11], reg, R_TIME + 1500, tag="pilot"))
    r.write(table=rows([11, 12], reg, R_TIME + 2500))
    assert r.status() == "(c) seed 11 in an earlier results/toy.csv"
    # the exploratory seeds: in the CSV committed before R
    r.write(table=rows([1, 2], reg, R_TIME + 2500))
    assert r.status().startswith("(c) seed 1, 2 in an earlier")


def test_a_missing_or_unregistered_run_is_exploratory(repo):
    r, reg, _ = repo
    table = rows([11, 12], reg, R_TIME + 500)
    r.write(table=[x for x in table if (x["norm"], x["seed"]) != ("bn", "12")])
    assert (
        r.status()
        == f"(d) 1 run(s) registered at R={reg[:7]} not finished in the CSV (bn seed 12, ...)"
    )
    table[0]["status"] = "incomplete"  # a crash is resumed, not dropped
    r.write(table=table)
    assert r.status().startswith("(d) 1 run(s) registered")
    table[0]["status"] = "diverged"  # a divergence counts
    r.write(table=table)
    assert r.status() == ""
    r.write(table=rows([11, 12, 13], reg, R_TIME + 500))
    assert r.status() == f"(d) 2 run(s) not registered at R={reg[:7]} (bn seed 13, ...)"


def test_no_confirmatory_seeds_no_history_not_testable(tmp_path, repo):
    r, _, _ = repo
    r.commit(R_TIME + 5000, spec(confirmatory=()))
    ids, reasons = K.confirmatory(r.root, [spec(confirmatory=())])
    assert not ids and reasons["toy_ln_lower"].startswith("(d) no confirmatory seeds registered")
    other = tmp_path / "plain"
    other.mkdir()
    assert K.claim_status(other, spec(), spec()["claims"][0]) == "no git history"
    assert K.claim_status(other, spec(), {"id": "x", "check": "not_testable"}) == "not testable"


def test_figure_run_confirmatory_launches_exactly_the_confirmatory_seeds(monkeypatch, tmp_path):
    figure = load_script("figure")
    launched = []

    class Ended:
        def __init__(self, cmd, cwd):
            launched.append(cmd)
            self.returncode = 0

        def poll(self):
            return 0

    monkeypatch.setattr(figure.subprocess, "Popen", Ended)
    monkeypatch.setattr(figure, "git_commit", lambda: "a" * 40)  # a clean checkout
    monkeypatch.setenv("LNREPRO_OUTPUTS", str(tmp_path))
    s = spec(confirmatory=(11, 12, 13))
    s["scales"]["cpu"]["seeds_by_norm"] = {"none": [1]}  # an extra curve: no confirmatory runs
    assert figure.run(s, "cpu", None, [], confirmatory=True) == 0
    (cmd,) = launched
    assert "seed=11,12,13" in cmd and "norm=ln,bn" in cmd
    assert K.registered_runs(s) == {(n, str(x), ("8",)) for n in ("ln", "bn") for x in (11, 12, 13)}
    launched.clear()
    assert figure.run(s, "cpu", None, []) == 0
    assert [c for c in launched[0] if c.startswith("seed=")] == ["seed=1,2"]


def test_figure_run_refuses_confirmatory_runs_from_uncommitted_changes(monkeypatch, tmp_path):
    figure = load_script("figure")
    monkeypatch.setattr(figure.subprocess, "Popen", lambda *a, **k: pytest.fail("launched"))
    monkeypatch.setattr(figure, "git_commit", lambda: "a" * 40 + "+dirty")
    monkeypatch.setenv("LNREPRO_OUTPUTS", str(tmp_path))
    with pytest.raises(SystemExit, match="would count as exploratory: commit first"):
        figure.run(spec(confirmatory=(11, 12, 13)), "cpu", None, [], confirmatory=True)
