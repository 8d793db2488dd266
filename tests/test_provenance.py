"""Provenance of the figure CSVs (lnrepro.claims.provenance, scripts/figure.py write_table) and
`make claims-check` (scripts/claims.py --check): it writes nothing and names, one line each,
every generated file or block that a hand edit made disagree with the CSVs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import ROOT, load_script
from omegaconf import OmegaConf

from lnrepro.claims import provenance as P
from lnrepro.runs import find_runs

figure = load_script("figure")
claims = load_script("claims")


def resolved(compose, *overrides) -> dict:
    return OmegaConf.to_container(compose(["experiment=pi_mnist_cpu", *overrides]), resolve=True)


def test_config_hash_is_one_per_arm(compose):
    one = resolved(compose, "seed=1")
    two = resolved(compose, "seed=2", "paths.output_dir=/elsewhere", "logger=none")
    two["data"]["data_dir"] = "/other/data"  # paths.data_dir under another name
    assert one != two and P.config_hash(one) == P.config_hash(two)
    assert len(P.config_hash(one)) == 64
    lr = resolved(compose, "seed=1", "optim.lr=3e-4")
    batch = resolved(compose, "seed=1", "data.batch_size=4")
    assert len({P.config_hash(c) for c in (one, lr, batch)}) == 3


def test_config_hash_ignores_key_order_not_values():
    a = {"seed": 1, "optim": {"lr": 0.001, "betas": [0.9, 0.999]}, "hydra": {"x": 1}}
    b = {"optim": {"betas": [0.9, 0.999], "lr": 0.001}, "seed": 7, "logger": {"mode": "off"}}
    assert P.config_hash(a) == P.config_hash(b)
    assert P.config_hash(a) != P.config_hash({**a, "optim": {"lr": 0.001, "betas": [0.9, 0.99]}})


def write_run(path: Path, seed: int, commit: str | None, log: bool = True) -> None:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(
        f"name: toy\nseed: {seed}\nnorm: {{kind: ln}}\ndata: {{batch_size: 8}}\n"
        f"paths: {{output_dir: /out/{seed}}}\n"
    )
    (path / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/nll": 0.5 + seed}) + "\n")
    summary = {"status": "completed", "step": 1, "final": {"train/nll": 0.5 + seed}}
    if commit:
        summary["git_commit"] = commit
    (path / "summary.json").write_text(json.dumps(summary))
    if log:
        (path / "train.log").write_text(
            "[2026-12-07 10:00:00,250][lnrepro][INFO] - toy\n"
            "[2026-12-07 10:05:00,000][lnrepro][INFO] - step 1/1\n"
        )


def test_every_row_carries_its_provenance(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "s1", 1, "a" * 40 + "+dirty")
    write_run(sweep / "s2", 2, None, log=False)  # an older run: no commit, no log
    start = P.started_at(sweep / "s1")
    metrics = sweep / "s1" / "metrics.jsonl"
    end = metrics.stat().st_mtime
    samples = [(start - 60, 9.0), (start + 1, 1.0), (start + 2, 2.0), (end + 60, 9.0)]
    (sweep / P.LOAD_SAMPLES).write_text(
        "".join(json.dumps({"time": t, "load1": v}) + "\n" for t, v in samples) + "cut li"
    )
    spec = {"name": "toy", "metrics": [{"key": "train/nll"}], "table": ["train/nll"]}
    figure.write_table(spec, find_runs(sweep), tmp_path / "toy.csv", "cpu")
    with open(tmp_path / "toy.csv", newline="") as f:
        rows = {r["seed"]: r for r in csv.DictReader(f)}
    one, two = rows["1"], rows["2"]
    assert one["commit"] == "a" * 40 + "+dirty"  # a dirty tree shows
    assert one["config_hash"] == two["config_hash"] != P.NOT_RECORDED  # seeds of one arm
    assert one["metrics_sha256"] == P.file_sha256(metrics) != two["metrics_sha256"]
    assert one["started"].startswith("2026-12-07T10:00:00")
    assert P.parse_iso(one["started"]) == int(start)  # (to the second)
    assert one["load_avg_1m"] == "1.50"  # the two samples taken while it ran
    for column in ("commit", "started", "load_avg_1m"):
        assert two[column] == P.NOT_RECORDED
    assert list(rows["1"])[-6:] == [*P.COLUMNS, "run_dir"]


def test_committed_csvs_say_not_recorded_for_runs_whose_folders_are_gone():
    for path in sorted((ROOT / "results").glob("*.csv")):
        with open(path, newline="") as f:
            head = next(csv.reader(f))
        if "run_dir" not in head:
            continue  # not a figure's runs table (claims.csv, sweeps)
        assert head[-6:] == [*P.COLUMNS, "run_dir"], path.name


# ---- make claims-check ----------------------------------------------------------------------
@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of what the claims read (no git history: every row exploratory), with every
    generated file and block written by the code."""
    for name in ("results", "experiments"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("*.png"))
    for name in ("Makefile", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for f, text in claims.generated(tmp_path, readme=True).items():
        f.write_text(text)
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path.name, old)
    path.write_text(text.replace(old, new, 1))


@pytest.mark.slow  # ~10 s: every figure's claims, twice
def test_claims_check_names_each_hand_edit_and_writes_nothing(repo, capsys):
    assert claims.main(["--check", "--root", str(repo)]) == 0
    assert capsys.readouterr().out == ""
    _edit(repo / "results" / "claims.md", "**supported**", "**contradicted**")
    _edit(repo / "results" / "claims.csv", ",supported,", ",contradicted,")
    readme = (repo / "README.md").read_text()
    start = readme.index("<!-- claims:begin")
    (repo / "README.md").write_text(readme[:start] + readme[start:].replace("min |", "h |", 1))
    _edit(
        repo / "results" / "figure6_pi_mnist.md",
        "| 1, 2, 3 | completed | 0.003018",
        "| 1, 2, 3 | completed | 0.001",
    )
    _edit(
        repo / "results" / "cnn_mnist.md",
        "LN / baseline updates = 0.",
        "LN / baseline updates = 1.",
    )
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert claims.main(["--check", "--root", str(repo)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before  # unchanged
    assert len(lines) == 5, lines
    assert lines[0].startswith("results/claims.md: differs from what results/ gives at line")
    assert lines[1].startswith("results/claims.csv: differs from what results/ gives at line")
    assert lines[2].startswith("README.md: the claims block differs")
    assert {line.split(" differs")[0] for line in lines[3:]} == {
        "results/cnn_mnist.md: generated block 'claims'",
        "results/figure6_pi_mnist.md: generated block 'runs'",
    }


def test_a_note_block_follows_its_csv(tmp_path):
    from lnrepro.claims import blocks

    spec = {"name": "toy", "grid": {"data.batch_size": [8]}, "table": ["test/err"]}
    rows = [
        {"norm": "ln", "seed": s, "status": "completed", "data.batch_size": "8",
         "final_test/err": v, "s_per_update": "0.1", "wall_time_s": "60", "commit": "not recorded",
         "config_hash": "ab" * 32}
        for s, v in ((1, "0.1"), (2, "0.3"))
    ]  # fmt: skip
    note = "intro\n<!-- generated:runs -->\nold numbers\n<!-- /generated -->\nprose 0.2\n"
    text = blocks.render(note, spec, rows)
    assert text.startswith("intro\n<!-- generated:runs -->\nFrom [toy.csv]") and text.endswith(
        "<!-- /generated -->\nprose 0.2\n"
    )
    assert (
        "| 8 | LN | 1, 2 | completed | 0.2 ± 0.14 | 0.1 | 1 | not recorded | `abababababab` |"
        in text
    )
    assert blocks.differing(note, text) == ["runs"] and blocks.differing(text, text) == []
    with pytest.raises(ValueError, match="unknown generated block"):
        blocks.render("<!-- generated:nope -->\n<!-- /generated -->", spec, rows)


def test_a_claims_block_shows_the_engines_rows_of_its_figure():
    from types import SimpleNamespace

    from lnrepro.claims import blocks
    from lnrepro.claims.stats import Interval
    from lnrepro.claims.verdicts import Result

    def result(figure, cid, verdict, **kw):
        claim = {"id": cid, "check": "final_lower"}
        iv = Interval(effect=-0.2, low=-0.3, high=-0.1, se=0.05, df=4.0)
        return Result(figure, claim, f"tested {cid}", "m", "LN - BN", iv, verdict=verdict, **kw)

    rep = SimpleNamespace(
        results=[
            result("toy", "a", "supported", confirmatory=True, holm="inconclusive", p_support=0.01,
                   p_contradict=0.99, earlier="supported"),
            result("toy", "b", "inconclusive"),
            result("other", "c", "contradicted"),
        ]
    )  # fmt: skip
    spec = {"name": "toy"}
    note = "x\n<!-- generated:claims -->\n<!-- /generated -->\n"
    with pytest.raises(ValueError, match="needs the claims report"):
        blocks.render(note, spec, [])
    text = blocks.render(note, spec, [], rep)
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows == [
        (
            "| `a` | tested a | m | LN - BN = -0.2 [-0.3, -0.1] | 0.01 / 0.99 | confirmatory: "
            "**supported**; Holm: **inconclusive** (exploratory seeds: supported) |"
        ),
        "| `b` | tested b | m | LN - BN = -0.2 [-0.3, -0.1] | – | exploratory: inconclusive |",
    ]
