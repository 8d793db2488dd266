"""The table a multirun prints at its end (lnrepro.callbacks.SweepSummary, registered in
configs/train.yaml): the overrides that differ between its jobs, each job's final and best
metrics, and the jobs that failed; also written to <sweep dir>/summary.md."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from helpers import TINY

from lnrepro.callbacks import SUMMARY_FILE, sweep_summary
from lnrepro.runs import find_runs, fmt_value

FAST = [o for o in TINY if o != "threads=1"] + ["trainer.max_steps=3"]


def _rows(text: str) -> list[list[str]]:
    """The table's rows (header first, the --- line left out) as lists of cells."""
    rows = [
        [c.strip() for c in ln.strip().strip("|").split("|")]
        for ln in text.splitlines()
        if ln.startswith("|")
    ]
    return [rows[0], *rows[2:]]


def _job(root: Path, name: str, overrides: list[str], summary: dict | None, rows=()) -> Path:
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_summary_of_fixture_jobs(tmp_path):
    """Differing overrides only; final (best) from summary.json, or from metrics.jsonl for a
    job without one; failed jobs listed with why; an earlier multirun's job left out."""
    root = tmp_path / "sweep"
    common = ["experiment=pi_mnist_cpu", "seed=1"]
    ok = {"status": "completed", "step": 30, "wall_time": 12.5}
    _job(root, "0_optim.lr=0.001", [*common, "optim.lr=0.001"],
         {**ok, "final": {"val/err": 0.2, "train/nll": 0.5}, "best": {"val/err": 0.15}})  # fmt: skip
    _job(root, "1_optim.lr=0.01", [*common, "optim.lr=0.01"],
         {"status": "diverged", "step": 7, "final": {"val/err": 0.9}, "best": {"val/err": 0.8},
          "reason": "training loss is nan at step 8"})  # fmt: skip
    crashed = _job(root, "2_optim.lr=0.1", [*common, "optim.lr=0.1"], None,
                   rows=[{"step": 5, "val/err": 0.7}, {"step": 10, "val/err": 0.6}])  # fmt: skip
    (crashed / "train.log").write_text(
        "[2026-01-01 00:00:00,000][lnrepro][ERROR] - MNIST not found in /data\n"
    )
    since = time.time()
    old = _job(root, "3_optim.lr=1", [*common, "optim.lr=1"], ok)
    os.utime(old / ".hydra" / "overrides.yaml", (since - 3600, since - 3600))
    for d in root.iterdir():
        if d != old:
            os.utime(d / ".hydra" / "overrides.yaml", (since + 1, since + 1))

    text = sweep_summary(root, since)
    header, *rows = _rows(text)
    assert header == [
        "job", "optim.lr", "status", "step", "time (s)", "val/err final (best)",
    ]  # fmt: skip
    assert rows == [
        ["0", "0.001", "completed", "30", "12.5", "0.2 (0.15)"],
        ["1", "0.01", "diverged", "7", "-", "0.9 (0.8)"],
        ["2", "0.1", "failed (no summary.json)", "10", "-", "0.6 (0.6)"],
    ]
    assert "Not completed: 2 of 3 jobs" in text
    assert "- job 1 (optim.lr=0.01): diverged: training loss is nan at step 8" in text
    assert "- job 2 (optim.lr=0.1): no summary.json: MNIST not found in /data" in text
    assert len(_rows(sweep_summary(root))) == 5  # without `since`: every job in the folder


@pytest.mark.slow  # end to end: a subprocess
def test_multirun_prints_a_table_of_its_jobs(cli, tmp_path):
    sweep = tmp_path / "sweep"
    p = cli(*FAST, "optim.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep}", multirun=True)
    assert p.returncode == 0, p.stderr[-3000:]
    written = (sweep / SUMMARY_FILE).read_text()
    assert written in p.stdout
    header, *rows = _rows(written)
    assert header[:5] == ["job", "optim.lr", "status", "step", "time (s)"]
    assert "val/err final (best)" in header and not any(h.startswith("train/") for h in header)
    runs = {str(r.get("optim.lr")): r for r in find_runs(sweep)}
    assert [row[1] for row in rows] == ["0.001", "0.003"] and len(runs) == 2
    col = header.index("val/err final (best)")
    for row, lr in zip(rows, (0.001, 0.003), strict=True):
        run = runs[str(lr)]
        assert row[2] == "completed" and row[3] == "3"
        final, best = run.summary["final"]["val/err"], run.summary["best"]["val/err"]
        assert row[col] == f"{fmt_value(final)} ({fmt_value(best)})"
    assert "Not completed" not in written


@pytest.mark.slow  # end to end: a subprocess
def test_multirun_summary_lists_a_failed_job(cli, tmp_path):
    """BN cannot train on batches of one: that job fails with its one line, the sweep goes on,
    exits 2, and its table lists the job as failed with that line."""
    sweep = tmp_path / "sweep"
    p = cli(*FAST, "norm=ln,bn", "data.batch_size=1", f"hydra.sweep.dir={sweep}", multirun=True)
    assert p.returncode == 2, p.stderr[-3000:]
    written = (sweep / SUMMARY_FILE).read_text()
    assert written in p.stdout
    _, *rows = _rows(written)
    assert [r[:3] for r in rows] == [
        ["0", "ln", "completed"],
        ["1", "bn", "failed (no summary.json)"],
    ]
    assert "Not completed: 1 of 2 jobs" in written
    (line,) = [ln for ln in written.splitlines() if ln.startswith("- job 1 (norm=bn)")]
    assert "norm=bn cannot train with data.batch_size=1" in line


@pytest.mark.slow  # end to end: a subprocess
def test_multirun_summary_names_a_crashed_job(cli, tmp_path):
    """A job that raises something other than lnrepro's one-line errors stops the sweep
    (Hydra's traceback); the table is still printed, with the exception."""
    sweep = tmp_path / "sweep"
    p = cli(*FAST, "+trainer.bogus=0,1", f"hydra.sweep.dir={sweep}", multirun=True)
    assert p.returncode == 1
    written = (sweep / SUMMARY_FILE).read_text()
    assert written in p.stdout and "Not completed: 2 of 2 jobs" in written
    assert "- job 0 (trainer.bogus=0): no summary.json: TypeError: " in written
