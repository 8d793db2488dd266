"""`debug=smoke` through the real entrypoint for every CPU-scale experiment (scripts/smoke.py):
a few updates and a tiny evaluation (a token SentEval for the skip-thought task), on the real
datasets under $LNREPRO_DATA; an experiment whose dataset is absent is skipped with the loader's
whole line. `make smoke` runs them two at a time and prints a line per experiment and totals."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from helpers import ROOT, TINY, load_script

smoke = load_script("smoke")


def test_smoke_covers_every_cpu_scale_experiment_config():
    """Every configs/experiment file is smoked, or is the paper scale of a `<name>_cpu` one:
    a new CPU-scale config (e.g. a variant such as lm_ptb_word_cpu_adam) cannot be missed."""
    files = {p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")}
    names = smoke.experiments()
    paper_scale = {n for n in files if f"{n}_cpu" in files}
    assert "lm_ptb_word_cpu_adam" in names and "pi_mnist_cpu" in names
    assert set(names) == files - paper_scale, sorted(files - paper_scale - set(names))


def test_smoke_list_is_derived_from_the_config_files(tmp_path):
    folder = tmp_path / "configs" / "experiment"
    folder.mkdir(parents=True)
    for stem in ("new", "new_cpu", "new_cpu_sgd", "other_cpu"):
        (folder / f"{stem}.yaml").write_text("# @package _global_\n")
    assert smoke.experiments(tmp_path) == ["new_cpu", "new_cpu_sgd", "other_cpu"]


def test_token_senteval_under_debug_smoke(compose):
    """debug=smoke turns the skip-thought task's SentEval into a token pass (2 small tasks,
    200 examples, 2 folds, one C); without it the full evaluation is unchanged."""
    cfg = compose(["experiment=skip_thoughts_cpu", "debug=smoke"])
    se = cfg.task.senteval
    assert list(se.tasks) == ["MR", "CR"] and se.max_examples == 200
    assert se.folds == 2 and se.inner_folds == 2 and list(se.cs) == [1] and se.max_iter == 20
    assert cfg.trainer.limit_eval_batches == 1 and cfg.threads == 1
    full = compose(["experiment=skip_thoughts_cpu"]).task.senteval
    assert list(full.tasks) == ["MR", "CR", "SUBJ", "MPQA", "TREC", "SICK"]
    assert full.folds == 10 and full.max_examples is None and list(full.cs) == [1, 4, 16, 64, 256]
    paper = compose(["experiment=skip_thoughts", "debug=smoke"]).task.senteval
    assert list(paper.tasks) == ["MR", "CR"]
    # the other tasks compose under debug=smoke as before (no senteval key leaks into them)
    assert "senteval" not in compose(["experiment=pi_mnist_cpu", "debug=smoke"]).task


def test_smoke_runs_two_at_a_time_costliest_first_and_reports_each(monkeypatch, tmp_path):
    running, most, started, reported = [0], [0], [], []
    lock = threading.Lock()

    def fake(name, norm, out, extra=(), fork=False):
        with lock:
            started.append(name)
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return smoke.Result(name, "ok", 0.05, "val/err=0.5")

    monkeypatch.setattr(smoke, "smoke", fake)
    names = ["pi_mnist_cpu", "skip_thoughts_cpu", "draw_cpu", "handwriting_cpu", "x_cpu"]
    results = smoke.run_all(names, "ln", 2, tmp_path, reported.append, fork=False)
    assert most[0] == 2 and started[:2] == ["skip_thoughts_cpu", "handwriting_cpu"]
    assert sorted(r.name for r in reported) == sorted(names) and reported == results
    line = smoke.totals(results, 0.2, 2)
    assert line.startswith("5 experiments: 5 ok, 0 skipped, 0 FAILED in 0.2 s (2 at a time")


def test_failed_run_shows_the_exception_not_hydras_hint():
    stderr = (
        "Error executing job with overrides: []\nTraceback (most recent call last):\n"
        '  File "x.py", line 1\nRuntimeError: shapes cannot be multiplied\n\n'
        "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n"
    )
    assert smoke.error_line(stderr) == "RuntimeError: shapes cannot be multiplied"
    logged = "[2026-01-01 00:00:00,000][lnrepro][ERROR] - data not found: x\n"
    assert smoke.error_line(logged) == "data not found: x"


@pytest.mark.slow  # end to end: a subprocess
def test_skip_reason_is_the_whole_loader_line(tmp_path, monkeypatch):
    monkeypatch.setenv("LNREPRO_DATA", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    r = smoke.smoke("order_embeddings_cpu", "ln", tmp_path / "out")
    assert r.status == "skipped", (r.detail, r.tail)
    assert len(r.detail) > 300 and r.detail.endswith("that has coco/"), r.detail
    assert r.line().endswith(r.detail)


@pytest.mark.slow  # end to end: the script, forked runs
def test_make_smoke_prints_a_line_per_experiment_and_totals(tiny_mnist, tmp_path):
    """scripts/smoke.py as `make smoke` runs it (fork server, 2 lanes), on the tiny MNIST."""
    tiny = [o for o in TINY if o.startswith("data.")]
    env = {**os.environ, "LNREPRO_DATA": str(tiny_mnist), "LNREPRO_OUTPUTS": str(tmp_path)}
    p = subprocess.run(
        [
            sys.executable,
            "scripts/smoke.py",
            "--only",
            "pi_mnist_cpu",
            "cnn_mnist_cpu",
            "--",
            *tiny,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    lines = p.stdout.splitlines()
    assert len(lines) == 3, lines
    for name in ("pi_mnist_cpu", "cnn_mnist_cpu"):
        (line,) = [ln for ln in lines if ln.startswith(name)]
        assert line.split()[1] == "ok" and " s)  val/err=" in line, line
    assert lines[-1].startswith("2 experiments: 2 ok, 0 skipped, 0 FAILED in "), lines[-1]
    assert "s of CPU)" in lines[-1], lines[-1]


@pytest.mark.realdata  # each experiment's own files: smoke.smoke says which are absent
@pytest.mark.parametrize("name", smoke.experiments())
def test_smoke_run(name, tmp_path):
    r = smoke.smoke(name, "bn", tmp_path)  # bn: the norm with the most ways to fail
    if r.status == "skipped":
        pytest.skip(r.detail)
    assert r.status == "ok", f"{r.detail}\n{r.tail}"
    rows = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    assert '"step": 5' in rows[-1] and any("val/" in r for r in rows), rows[-3:]
