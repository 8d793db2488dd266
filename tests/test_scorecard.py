"""The norm scorecard (scripts/scorecard.py, lnrepro.scorecard, lnrepro.claims.scorecard).

End to end on a tiny figure (pi_mnist_cpu on the tiny MNIST of helpers.py, 20 updates) whose
baseline rows are CSV fixtures written here: DyT from examples/norms through the open norm
axis, and a norm that diverges. Fast: the suite's tiers, the decisions and Holm, both stale
rules in a temporary git repository (a rerun is launched and reported), DyT as a plug-in.
"""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT

from lnrepro.claims import scorecard as S
from lnrepro.claims.confirm import Git
from lnrepro.claims.provenance import NOT_RECORDED, config_hash
from lnrepro.claims.text import summary
from lnrepro.errors import ConfigError
from lnrepro.runs import load_run
from lnrepro.scorecard import baselines as bl
from lnrepro.scorecard import card, launch
from lnrepro.scorecard.suite import entries, load_suite

EXAMPLES = ROOT / "examples" / "norms"
TINY_OVERRIDES = [
    "data.val_size=40", "data.train_eval_size=null", "data.eval_batch_size=64",
    "model.hidden=[32,32]", "trainer.epochs=2", "trainer.evals_per_epoch=2",
    "trainer.log_every=5", "threads=1", "data.verify=false",
]  # fmt: skip
FIGURE = {
    "name": "tiny",
    "title": "tiny pi-MNIST",
    "scales": {
        "cpu": {
            "experiment": "pi_mnist_cpu",
            "seeds": [1, 2],
            "confirmatory_seeds": [1, 2, 3],
            "overrides": TINY_OVERRIDES,
        }
    },
    "grid": {"data.batch_size": [16, 8]},
    "norms": ["ln", "bn", "none"],
    "metrics": [{"key": "test/nll", "label": "test NLL"}],
    "table": ["test/nll", "train/nll"],
}
SUITE = {
    "seeds": 2,
    "baselines": ["ln", "bn", "none"],
    "references": ["ln", "none"],
    "titles": {"none": "none"},
    "cost": {"warmup": 1, "steps": 2, "repeats": 2},
    "tiers": {
        "quick": [
            {
                "figure": "tiny",
                "setting": {"data.batch_size": 16},
                "primary": {"metric": "test/nll", "direction": "lower", "margin": {"ratio": 1.5}},
                "why": "a margin for the tests",
                "secondary": [{"metric": "train/nll", "log": True}],
                "speed": {"metric": "test/nll", "steps": [10, 20], "log": True},
            }
        ]
    },
}
# each baseline's final test/nll (seeds 1, 2) in the fixture CSV; curves start at 2.3 (step 0)
FINALS = {"ln": [1.25, 1.27], "bn": [1.55, 1.6], "none": [1.9, 1.95]}
STEPS = [0, 5, 10, 15, 20]


class Repo:
    """A temporary git repository: commits of plain files, tests/golden/ among them."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q")

    def git(self, *args: str) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
        env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
        cmd = ["git", "-C", str(self.root), *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout

    def commit(self, path: str, text: str) -> str:
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        (self.root / path).write_text(text)
        self.git("add", path)
        self.git("commit", "-q", "-m", path)
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path) -> tuple[Repo, dict[str, str]]:
    """old -> golden (changes tests/golden/) -> new on main; side branches off old."""
    r = Repo(tmp_path / "repo")
    c = {"old": r.commit("a.txt", "1"), "golden": r.commit("tests/golden/x.json", "{}")}
    c["new"] = r.commit("a.txt", "2")
    r.git("checkout", "-q", "-b", "side", c["old"])
    c["side"] = r.commit("b.txt", "side")
    r.git("checkout", "-q", "-")
    return r, c


@pytest.fixture
def tiny(tmp_path) -> dict[str, Path]:
    """The tiny figure spec and suite, an empty results folder."""
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "tiny.yaml").write_text(yaml.safe_dump(FIGURE))
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    (tmp_path / "results").mkdir()
    return {
        "experiments": tmp_path / "experiments",
        "suite": tmp_path / "suite.yaml",
        "results": tmp_path / "results",
    }


def tiny_entry(tiny):
    return entries(load_suite(tiny["suite"]), "quick", tiny["experiments"])[0]


def write_baselines(results: Path, rows: list[dict]) -> None:
    """results/tiny.csv (the given rows, completed, FINALS values) and its curves CSV."""
    head = ["scale", "experiment", "norm", "data.batch_size", "seed", "status", "steps"]
    head += ["final_test/nll", "final_train/nll", "commit", "config_hash", "run_dir"]
    curves = []
    with open(results / "tiny.csv", "w", newline="") as f:
        w = csv.DictWriter(f, head, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            final = FINALS[row["norm"]][int(row["seed"]) - 1]
            full = {"scale": "cpu", "experiment": "pi_mnist_cpu", "data.batch_size": 16}
            full |= {"status": "completed", "steps": 20, "final_test/nll": final}
            full |= {"final_train/nll": final, "run_dir": "gone", **row}
            w.writerow(full)
            for k, step in enumerate(STEPS):
                value = 2.3 + (final - 2.3) * k / (len(STEPS) - 1)
                for m in ("test/nll", "train/nll"):
                    curves.append([row["norm"], row["seed"], 16, step, step / 10, m, value])
    with open(results / "tiny_curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["norm", "seed", "data.batch_size", "step", "epoch", "metric", "value"])
        w.writerows(curves)


def md_row(md: str, start: str) -> str:
    """The line of the scorecard's Markdown that starts with `start`."""
    return next(line for line in md.splitlines() if line.startswith(start))


def verdict_cells(md: str) -> list[str]:
    """The cells of the tiny entry's row of the verdicts table."""
    row = md_row(md, "| tiny (batch_size 16) | test/nll")
    return [x.strip() for x in row.split("|")[1:-1]]


def fresh_rows(entry, commit: str, norms=("ln", "bn", "none")) -> list[dict]:
    """Rows each baseline would reuse: the config hash it would run now, a fresh commit."""
    rows = []
    for n in norms:
        h = bl.expected_hash(entry, bl.norm_overrides(n))
        rows += [{"norm": n, "seed": s, "commit": commit, "config_hash": h} for s in (1, 2)]
    return rows


# ---- the suite ---------------------------------------------------------------------------
def test_quick_tier_is_the_five_benchmarks_at_three_confirmatory_seeds():
    quick = entries(load_suite(), "quick")
    assert [(e.figure, e.setting) for e in quick] == [
        ("figure6_pi_mnist", {"data.batch_size": 128}),
        ("figure6_pi_mnist", {"data.batch_size": 4}),
        ("lm_ptb_char", {}),
        ("cnn_mnist", {"data.batch_size": 128}),
        ("figure2_reader", {}),
    ]
    for e in quick:
        assert e.seeds == e.spec["scales"]["cpu"]["confirmatory_seeds"][:3]
        assert e.experiment == e.spec["scales"]["cpu"]["experiment"] and e.why
        assert e.overrides()[: len(e.spec["scales"]["cpu"]["overrides"])] == list(
            e.spec["scales"]["cpu"]["overrides"]
        )


def test_full_tier_is_every_cpu_scale_figure_that_compares_norms():
    full = {e.figure for e in entries(load_suite(), "full")}
    figures = {p.stem for p in (ROOT / "experiments").glob("*.yaml")}
    assert full == figures - {"figure2_reader_gain", "table2_order_embeddings"}


def test_a_setting_outside_the_figures_grid_is_one_line(tiny):
    suite = load_suite(tiny["suite"])
    suite["tiers"]["quick"][0]["setting"] = {"data.batch_size": 32}
    with pytest.raises(Exception, match=r"data.batch_size=32 is not in the figure's grid"):
        entries(suite, "quick", tiny["experiments"])


def test_the_references_are_data_of_the_suite(tiny):
    entry = tiny_entry(tiny)
    assert entry.references == ["ln", "none"] and entry.main_reference == "ln"
    assert entry.columns == entry.baselines == ["ln", "bn", "none"]
    assert [entry.title(n) for n in entry.columns] == ["LN", "BN", "none"]
    for bad, match in [
        ({"references": []}, r"references must be a non-empty list"),
        ({"references": None}, r"references must be a non-empty list"),
        (
            {"references": ["ln", "rms"]},
            r"references \['rms'\] are not among the suite's baselines",
        ),
        ({"titles": {"rms": "RMS"}}, r"titles \['rms'\] are not among the suite's baselines"),
    ]:
        suite = {**load_suite(tiny["suite"]), **bad}
        with pytest.raises(ConfigError, match=match):
            entries(suite, "quick", tiny["experiments"])
    suite = {**load_suite(tiny["suite"]), "references": ["none", "bn"]}
    other = entries(suite, "quick", tiny["experiments"])[0]
    assert other.main_reference == "none" and other.references == ["none", "bn"]


# ---- decisions: the engine's interval, equivalence within the margin, Holm ---------------
def test_better_worse_equivalent_undecided_from_the_interval():
    lower = [1.0, 1.02, 0.98]
    assert S.compare([0.5, 0.51, 0.49], lower, log=True, higher=False, margin=1.1).raw == S.BETTER
    assert S.compare([2.0, 2.02, 1.98], lower, log=True, higher=False, margin=1.1).raw == S.WORSE
    same = S.compare([1.01, 1.0, 0.99], lower, log=True, higher=False, margin=1.1)
    assert same.raw == S.EQUIVALENT and 1 / 1.1 < same.ratio[1] < same.ratio[2] < 1.1
    # 3 % lower, surely, but inside the 10 % margin: equivalent first (the margin is what
    # matters), not better
    small = S.compare([0.97, 0.971, 0.969], [1.0, 1.001, 0.999], True, False, 1.1)
    assert small.ratio[2] < 1 and small.raw == S.EQUIVALENT
    wide = S.compare([0.5, 1.5, 1.0], lower, log=True, higher=False, margin=1.1)
    assert wide.raw == S.UNDECIDED
    # a higher-is-better metric: above the reference is better; an absolute margin
    assert S.compare([0.7, 0.71, 0.69], [0.5, 0.52, 0.48], False, True, 0.02).raw == S.BETTER
    assert S.compare([0.5, 0.501, 0.499], [0.5, 0.502, 0.498], False, True, 0.02).raw == (
        S.EQUIVALENT
    )
    one = S.compare([0.5], lower, log=True, higher=False, margin=1.1)
    assert one.interval is None and one.reasons == ["n=1"] and one.raw == S.UNDECIDED


def test_holm_over_the_family_and_blocked_comparisons_are_never_rejected():
    # raw better (p just under 0.025); among 9 undecided comparisons, Holm tests it at 0.025 / 10
    ref = [1.0, 1.1, 0.9, 1.05, 0.95]
    near = S.compare([0.86, 0.96, 0.76, 0.91, 0.81], ref, log=False, higher=False, margin=0.01)
    assert near.raw == S.BETTER and 0.025 / 10 < near.p[S.BETTER] < 0.025
    vague = [S.compare([0.5, 1.5, 1.0], [1.0, 1.01, 0.99], False, False, 0.1) for _ in range(9)]
    S.holm_verdicts([near, *vague])
    assert near.holm == S.UNDECIDED and all(c.holm == S.UNDECIDED for c in vague)
    S.holm_verdicts([near])  # a family of one: Holm is the raw decision
    assert near.holm == S.BETTER
    clear = [S.compare([0.0, 0.01, -0.01], [1.0, 1.01, 0.99], False, False, 0.1) for _ in range(3)]
    clear[0].blocked = "diverged (1 of 3 seeds)"
    S.holm_verdicts(clear)
    assert clear[0].holm == "diverged (1 of 3 seeds)" and clear[1].holm == S.BETTER


# ---- stale baselines ----------------------------------------------------------------------
def test_commit_rule_in_a_git_repository(repo):
    r, c = repo
    git = Git(r.root)
    golden = bl.golden_commit(git)
    assert golden == c["golden"]
    assert bl.commit_problem(c["golden"], golden, git) == ""
    assert bl.commit_problem(c["new"], golden, git) == ""
    assert "predates the last change of tests/golden/" in bl.commit_problem(c["old"], golden, git)
    assert "does not contain the last change" in bl.commit_problem(c["side"], golden, git)
    assert "uncommitted" in bl.commit_problem(c["new"] + "+dirty", golden, git)
    assert "not recorded" in bl.commit_problem(NOT_RECORDED, golden, git)
    assert "not a commit of this repository" in bl.commit_problem("f" * 40, golden, git)


def test_stale_reason_names_every_rule_that_applies(repo):
    r, c = repo
    git, golden = Git(r.root), c["golden"]
    fresh = {"status": "completed", "config_hash": "a" * 64, "commit": c["new"]}
    assert bl.stale_reason(fresh, "a" * 64, golden, git) == ""
    assert "config hash aaaaaaaaaaaa differs" in bl.stale_reason(fresh, "b" * 64, golden, git)
    both = bl.stale_reason({**fresh, "commit": c["old"]}, "b" * 64, golden, git)
    assert "config hash" in both and "predates" in both
    unrecorded = {**fresh, "config_hash": NOT_RECORDED}
    assert "config hash is not recorded" in bl.stale_reason(unrecorded, "a" * 64, golden, git)
    assert "interrupted" in bl.stale_reason(
        {**fresh, "status": "interrupted"}, "a" * 64, golden, git
    )
    assert bl.stale_reason(None, "a" * 64, golden, git) == "no committed row at this seed"


@pytest.mark.slow  # ~3 s: four configs composed by Hydra
def test_stale_baselines_are_rerun_and_reported(tiny, repo, monkeypatch, tmp_path):
    """A row whose config hash is not what the scorecard would run now, and a row whose commit
    predates the last tests/golden change, are each rerun (same seed, in one multirun) and
    named with their reason in the scorecard; the fresh rows are reused."""
    r, c = repo
    entry = tiny_entry(tiny)
    rows = fresh_rows(entry, c["golden"])
    other = bl.expected_hash(entry, ["norm=bn", "optim.lr=0.5"])  # another config's hash
    assert other != rows[2]["config_hash"]
    rows[2]["config_hash"] = other  # bn, seed 1: the config changed since it ran
    rows[4]["commit"] = c["old"]  # none, seed 1: from before the last golden change
    write_baselines(tiny["results"], rows)
    launched = []
    monkeypatch.setattr(launch, "launch", lambda cmd: launched.append(cmd) or 0)
    monkeypatch.setenv("LNREPRO_OUTPUTS", str(tmp_path / "outputs"))
    code = card.main(
        ["--norm", "rms", "--suite", str(tiny["suite"]), "--experiments", str(tiny["experiments"]),
         "--results", str(tiny["results"]), "--out", str(tmp_path / "cards"), "--repo",
         str(r.root), "--no-cost", "--launcher", "basic"]
    )  # fmt: skip
    assert code == 1  # nothing ran (launch is stubbed): the runs are not finished
    runs = [(next(a for a in cmd if a.startswith("norm=")), cmd[cmd.index("resume=true") + 1])
            for cmd in launched]  # fmt: skip
    assert runs == [("norm=rms", "seed=1,2"), ("norm=bn,none", "seed=1")]
    md = (tmp_path / "cards" / "rms_quick.md").read_text()
    bn = md_row(md, "| tiny (batch_size 16) | BN | 1 |")
    assert "| rerun |" in bn and f"its config hash {other[:12]} differs" in bn
    none = md_row(md, "| tiny (batch_size 16) | baseline | 1 |")
    assert "| rerun |" in none and f"its commit {c['old'][:12]} predates" in none
    reused = [line for line in md.splitlines() if "| reused: results/tiny.csv |" in line]
    assert len(reused) == 4


# ---- end to end ---------------------------------------------------------------------------
def run_scorecard(tiny, tmp_path, norm: str, pythonpath: Path, repo: Path, name: str):
    """scripts/scorecard.py as `make scorecard` runs it (its own process), on the tiny data."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "LNREPRO_DATA": str(tmp_path / "data")}
    env |= {"LNREPRO_OUTPUTS": str(tmp_path / "outputs"), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "scripts/scorecard.py", "--norm", norm, "--name", name]
    cmd += ["--suite", str(tiny["suite"]), "--experiments", str(tiny["experiments"])]
    cmd += ["--results", str(tiny["results"]), "--out", str(tmp_path / "cards")]
    cmd += ["--repo", str(repo), "--launcher", "basic"]
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture
def plugin_path(monkeypatch):
    """examples/norms importable in this process (the expected hashes compose DyT)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("dyt", None)
    importlib.invalidate_caches()
    yield EXAMPLES
    sys.modules.pop("dyt", None)


@pytest.mark.slow  # ~30 s: the candidate's two tiny runs and the timing
def test_dyt_scorecard_end_to_end(tiny, repo, tmp_path, tiny_mnist, plugin_path):
    """DyT from examples/norms (outside src/) through the whole scorecard, every baseline
    reused from the fixture CSVs: the .md's rows and the .png, ordinary run folders in the
    W&B group scorecard/<name> whose config hash is the one the scorecard composes."""
    r, c = repo
    (tmp_path / "data").symlink_to(tiny_mnist, target_is_directory=True)
    entry = tiny_entry(tiny)
    write_baselines(tiny["results"], fresh_rows(entry, c["new"]))
    p = run_scorecard(tiny, tmp_path, "dyt.DyT", plugin_path, r.root, "dyt_test")
    assert p.returncode == 0, p.stderr[-3000:]
    md = (tmp_path / "cards" / "dyt_test.md").read_text()
    png = tmp_path / "cards" / "dyt_test.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "![" in md and "dyt_test.png" in md
    assert md.startswith("# Scorecard: dyt (`dyt.DyT`), quick tier")
    cells = verdict_cells(md)
    assert cells[2].endswith("(n=2)")  # DyT's two seeds
    for k, n in enumerate(("ln", "bn", "none")):  # the fixture's rows, as the engine sums them
        assert cells[3 + k] == summary("", FINALS[n]).strip()
    assert cells[7].strip("*") in (S.BETTER, S.WORSE, S.EQUIVALENT, S.UNDECIDED)
    assert cells[11].endswith("repeats)")  # the cost against LN was measured
    assert md.count("| reused: results/tiny.csv |") == 6 and "| rerun |" not in md
    root = tmp_path / "outputs" / "scorecards" / "dyt_test" / "tiny" / "data.batch_size=16"
    for seed in (1, 2):
        run = load_run(root / f"dyt_s{seed}")
        assert run.status == "completed" and run.group == "scorecard/dyt_test"
        assert run.get("norm._target_") == "dyt.DyT"
        assert config_hash(run.config) == bl.expected_hash(entry, bl.norm_overrides("dyt.DyT"))


BLOWUP = """\
from lnrepro.nn.norm import Norm


class Scale(Norm):
    def __init__(self):
        pass

    def layer(self, num_features):
        return Times()


import torch


class Times(torch.nn.Module):
    def forward(self, x):
        return x * 1e30
"""


@pytest.mark.slow  # ~25 s: two tiny runs that diverge at their first update, and the timing
def test_a_diverging_norm_is_reported_as_diverged_and_the_scorecard_exits_0(
    tiny, repo, tmp_path, tiny_mnist, monkeypatch
):
    r, c = repo
    (tmp_path / "data").symlink_to(tiny_mnist, target_is_directory=True)
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "blowup.py").write_text(textwrap.dedent(BLOWUP))
    monkeypatch.syspath_prepend(str(folder))
    entry = tiny_entry(tiny)
    write_baselines(tiny["results"], fresh_rows(entry, c["new"]))
    p = run_scorecard(tiny, tmp_path, "blowup.Scale", folder, r.root, "blowup")
    assert p.returncode == 0, p.stderr[-3000:]
    md = (tmp_path / "cards" / "blowup.md").read_text()
    cells = verdict_cells(md)
    assert "seed 1 diverged, seed 2 diverged" in cells[2]
    assert cells[7] == cells[9] == "**diverged (2 of 2 seeds)**"
    assert (tmp_path / "cards" / "blowup.png").exists()
    root = tmp_path / "outputs" / "scorecards" / "blowup" / "tiny" / "data.batch_size=16"
    assert load_run(root / "scale_s1").status == "diverged"


# ---- DyT, a norm from outside the repository ---------------------------------------------
def test_dyt_is_a_plug_in_of_the_open_norm_axis(plugin_path):
    from lnrepro.nn.norm import build_norm

    norm = build_norm({"_target_": "dyt.DyT"})
    assert type(norm).__module__ == "dyt" and norm.kind == "dyt" and norm.alpha_init == 0.5
    layer = norm.layer(4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 2.0, -1.0, 0.5]))
        layer.bias.fill_(0.25)
    x = torch.randn(3, 4)
    assert torch.allclose(layer(x), layer.weight * torch.tanh(0.5 * x) + 0.25)


def test_nothing_in_src_imports_the_examples():
    grep = ["grep", "-rlE", r"import dyt|from dyt|examples/norms", "src/lnrepro", "--include=*.py"]
    out = subprocess.run(grep, cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 1, out.stdout  # grep: 1 = no file matched


def test_make_scorecard_puts_examples_norms_on_the_path():
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "scorecard", "NORM=dyt.DyT", "SEEDS=11,12"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if "scripts/scorecard.py" in x)
    assert f"PYTHONPATH={EXAMPLES}" in line
    assert "--norm dyt.DyT" in line and "--tier quick" in line and "--seeds 11,12" in line
