"""W&B as its users expect, read back from the offline run files W&B writes (no network):
the run name and job type, every curve against updates with the best value as an evaluation
metric's summary, summary.json mirrored, checkpoints as artifacts."""

from __future__ import annotations

import json
import time

import pytest
from helpers import TINY, run_info

from lnrepro.train import run

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


def test_run_name_job_type_metrics_summary(compose, tiny_mnist, tmp_path, monkeypatch, caplog):
    info = wandb_run(compose, tiny_mnist, tmp_path, monkeypatch, caplog, "norm=bn", "seed=3")
    assert info["name"] == "pi_mnist_cpu/bn_bs16_s3" and info["job_type"] == "train"
    assert info["group"] == "pi_mnist_cpu"
    m = info["metrics"]
    assert m["val/err"] == ("update", {"min"}) and m["test/nll"] == ("update", {"min"})
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
