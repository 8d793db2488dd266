"""W&B as its users expect, read back from the offline run files W&B writes (no network):
the run name and job type, every curve against updates, summaries that do not select on the
test set (test metrics: the last value; validation: the best and the last), summary.json
mirrored, checkpoints as artifacts, the user's tags added to the automatic ones, two W&B lines
per run, and the `lnrepro-train` console script with Hydra's tab completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, TINY, run_cli, run_info

from lnrepro.runlog import RunLogger
from lnrepro.runs import load_run
from lnrepro.train import run

BIN = Path(sys.executable).parent  # the venv's bin: wandb, lnrepro-train

pytestmark = pytest.mark.slow  # whole training runs with W&B offline


def wandb_run(compose, data_dir, tmp_path, monkeypatch, caplog, *extra):
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [a for a in TINY if not a.startswith("logger=")]
    cfg = compose(
        [*args, f"paths.data_dir={data_dir}", "logger=wandb", "trainer.max_steps=12", *extra]
    )
    run(cfg, tmp_path)
    failed = [
        r.getMessage()
        for r in caplog.records
        if "W&B" in r.getMessage() and r.levelname == "WARNING"
    ]
    assert not failed, failed  # W&B turned itself off: the records below would be missing
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    # W&B's service process writes the file; on a loaded machine its last records can land a
    # moment after finish() returns (seen once in a parallel test run): wait for the run record
    for _ in range(60):
        info = run_info(files[0])
        if "name" in info:
            break
        time.sleep(1)
    return info


def wandb_inspect(run_dir: Path) -> dict:
    """The offline run in `run_dir/wandb/` as W&B itself reads it back (`wandb leet inspect
    --summary --json`: name, tags, the final summary; offline runs of wandb 0.31 write no
    wandb-summary.json)."""
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    p = subprocess.run(
        [str(BIN / "wandb"), "leet", "inspect", "--summary", "--json", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(p.stdout)


def test_run_name_job_type_metrics_summary(compose, tiny_mnist, tmp_path, monkeypatch, caplog):
    info = wandb_run(compose, tiny_mnist, tmp_path, monkeypatch, caplog, "norm=bn", "seed=3")
    assert info["name"] == "pi_mnist_cpu/bn_bs16_s3" and info["job_type"] == "train"
    assert info["group"] == "pi_mnist_cpu"
    m = info["metrics"]
    assert m["val/err"] == ("update", {"min", "last"}) and m["test/nll"] == ("update", {"last"})
    assert m["train/err"] == ("update", {"min", "last"})
    assert m["batch/loss"] == ("update", {"last"}) and m["epoch"][0] == "update"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert info["summary"]["status"] == "completed" == summary["status"]
    assert info["summary"]["best"] == summary["best"] and info["summary"]["step"] == 12
    assert info["artifacts"] == []  # logger.log_checkpoints is off by default


def test_checkpoints_as_artifacts(compose, tiny_mnist, tmp_path, monkeypatch, caplog):
    info = wandb_run(
        compose,
        tiny_mnist,
        tmp_path,
        monkeypatch,
        caplog,
        "logger.log_checkpoints=true",
        "logger.name=mine",
    )
    assert info["name"] == "mine"
    arts = info["artifacts"]
    assert arts and all(t == "model" and n.startswith("checkpoint-") for n, t in arts)


def test_summary_is_last_for_test_and_best_and_last_for_validation(tmp_path, monkeypatch):
    """The runs table must not select on the test set: a test metric (and a metric of a split
    evaluated only at the end) summarises as its final value, a validation or train-eval metric
    as its best, in the task's direction, and its last."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    config = {"name": "pi_mnist_cpu", "trainer": {"final_eval_splits": ["heldout"]}}
    meta = {"seed": 1, "norm": "ln", "batch_size": 16}
    logger = RunLogger(tmp_path, config, {"project": "lnrepro"}, meta, higher_is_better={"acc"})
    for step, v in ((4, 0.5), (8, 0.2), (12, 0.3)):
        row = {"val/err": v, "val/acc": 1 - v, "train/nll": v, "test/err": v - 0.05}
        logger.log(step, step / 12, 0.0, {**row, "batch/loss": v})
    logger.log(12, 1.0, 0.0, {"heldout/err": 0.4})
    logger.close()
    s = wandb_inspect(tmp_path)["summary"]
    assert s["test/err"] == {"last": pytest.approx(0.25)}  # not its minimum, 0.15
    assert s["heldout/err"] == {"last": 0.4}
    assert s["val/err"] == {"min": 0.2, "last": 0.3}
    assert s["val/acc"] == {"max": 0.8, "last": pytest.approx(0.7)}
    assert s["train/nll"] == {"min": 0.2, "last": 0.3}
    assert s["batch/loss"] == {"last": 0.3}


def test_own_tags_are_added_to_the_automatic_ones(
    compose, tiny_mnist, tmp_path, monkeypatch, caplog
):
    wandb_run(compose, tiny_mnist, tmp_path, monkeypatch, caplog, "logger.tags=[mine,other]")
    auto = ["pi_mnist_cpu", "ln", "bs16", "seed1"]
    assert wandb_inspect(tmp_path)["tags"] == [*auto, "mine", "other"]
    assert load_run(tmp_path).tags == [*auto, "mine", "other"]  # compare_runs --tag, locally


def test_wandb_prints_at_most_two_lines(tiny_mnist, tmp_path, monkeypatch):
    """W&B's banner and footer (about 30 lines) are silenced: what is left is where the offline
    run is and how to upload it."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)  # this process's W&B service, if any
    args = [a for a in TINY if not a.startswith("logger=")]
    run_dir = tmp_path / "run"
    p = run_cli(
        [*args, "logger=wandb", "trainer.max_steps=6", f"hydra.run.dir={run_dir}"],
        tmp_path,
        tiny_mnist,
        env={"WANDB_MODE": "offline"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    lines = (p.stdout + p.stderr).splitlines()
    from_wandb = [ln for ln in lines if ln.startswith("wandb:") or "W&B" in ln]
    assert len(from_wandb) <= 2, "\n".join(from_wandb)
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    assert any(f"wandb sync {folder}" in ln for ln in from_wandb), from_wandb


def test_help_lists_only_selectable_config_groups(tmp_path):
    """--help lists the config groups one can select (group=option): the W&B sweep spec, a file
    for `wandb sweep`, is not one of them."""
    p = run_cli(["--help"], tmp_path, None, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    groups = p.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert "experiment: " in groups and "sweep: " in groups
    assert "wandb" not in groups.replace("logger: none, wandb", ""), groups


def test_console_script_runs_and_completes():
    """`lnrepro-train` (pyproject [project.scripts]) is in the venv's bin and runs the
    entrypoint; `eval "$(lnrepro-train -sc install=bash)"` installs a completion whose shell
    function asks `lnrepro-train -sc query=bash` with COMP_LINE: that answers the experiments."""
    exe = str(BIN / "lnrepro-train")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    sh = {"capture_output": True, "text": True, "timeout": 120, "env": env}
    p = subprocess.run([exe, "--help"], check=False, **sh)
    assert p.returncode == 0 and "pi_mnist_cpu" in p.stdout, p.stderr[-3000:]
    install = subprocess.run([exe, "-sc", "install=bash"], check=False, **sh)
    assert install.returncode == 0 and "complete " in install.stdout, install.stderr[-3000:]
    assert re.search(r"complete .*-F hydra_bash_completion lnrepro-train", install.stdout)
    line = "lnrepro-train norm=ln experiment=pi_"
    env.update(COMP_LINE=line, COMP_POINT=str(len(line)))
    q = subprocess.run([exe, "-sc", "query=bash"], check=False, **sh)
    assert q.returncode == 0, q.stderr[-3000:]
    choices = q.stdout.split()
    assert "experiment=pi_mnist_cpu" in choices and "experiment=pi_mnist" in choices, choices
    assert not any("wandb_sweep" in c for c in choices)


@pytest.mark.realdata("MNIST/raw")
def test_the_documented_run_name_is_the_real_one(real_data, tmp_path, monkeypatch):
    """README.md and docs/usage.md show one command and the W&B run name it gets: a run of that
    command (offline) has that name, overrides included."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    example = re.compile(r"`python -m lnrepro\.train\s([^`]+)` is the W&B run\s+`([^`]+)`")
    found = set()
    for doc in ("README.md", "docs/usage.md"):
        m = example.search((ROOT / doc).read_text())
        assert m, f"{doc}: no example of a W&B run name"
        found.add((" ".join(m.group(1).split()), m.group(2)))
    assert len(found) == 1, found  # the same example in both
    ((args, name),) = found
    run_dir = tmp_path / "run"
    p = run_cli(
        [*args.split(), f"hydra.run.dir={run_dir}"],
        tmp_path,
        real_data,
        env={"WANDB_MODE": "offline"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert wandb_inspect(run_dir)["name"] == name
