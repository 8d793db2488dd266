"""The one entrypoint and the one training loop, end to end on a tiny MNIST in IDX format."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import ROOT, TINY, metrics_rows, rows_without_time, run_info, tiny_cfg, write_idx_mnist

from lnrepro.errors import ConfigError, DataError, DivergenceError
from lnrepro.runs import find_runs, load_run
from lnrepro.train import run


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_every_norm_through_the_real_entrypoint(cli, tmp_path):
    """One Hydra multirun over norm=ln,bn,none: each job gets its own run dir and learns."""
    sweep = tmp_path / "sweep"
    p = cli(*TINY, "norm=ln,bn,none", f"hydra.sweep.dir={sweep}", multirun=True)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = find_runs(sweep)
    assert sorted(r.get("norm.kind") for r in runs) == ["bn", "ln", "none"]
    for r in runs:
        assert r.status == "completed"
        assert (r.path / ".hydra" / "config.yaml").exists()
        assert (r.path / "checkpoints" / "last.pt").exists()
        first = next(x for x in r.rows if "test/err" in x)
        assert r.summary["final"]["train/nll"] < first["train/nll"] * 0.7, r.path
        assert r.summary["seed"] == 1 and r.summary["git_commit"]
        assert r.summary["config"]["norm"]["kind"] == r.get("norm.kind")


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_resume_equals_uninterrupted_run(compose, tiny_mnist, tmp_path):
    full = run(tiny_cfg(compose, tiny_mnist, "norm=bn", "data.batch_size=8"), tmp_path / "a")
    # the same run stopped at step 30 (mid-epoch, between evaluations), then resumed
    stopped = tmp_path / "b"
    run(
        tiny_cfg(
            compose,
            tiny_mnist,
            "norm=bn",
            "data.batch_size=8",
            "trainer.max_steps=30",
            "trainer.ckpt_every=10",
        ),
        stopped,
    )
    # what the killed run had logged after its last checkpoint must disappear on resume
    with open(stopped / "metrics.jsonl", "a") as f:
        f.write('{"step": 31, "epoch": 1.5, "time": 0, "batch/loss": 99}\n{"step": 3')
    resumed = run(
        tiny_cfg(
            compose,
            tiny_mnist,
            "norm=bn",
            "data.batch_size=8",
            "resume=true",
            "trainer.ckpt_every=10",
        ),
        stopped,
    )
    assert rows_without_time(tmp_path / "a" / "metrics.jsonl") == rows_without_time(
        stopped / "metrics.jsonl"
    )
    assert resumed["final"] == full["final"] and resumed["best"] == full["best"]
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "interval, sched",
    [
        ("step", "{_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:7,gamma:0.5"),
        (
            "epoch",
            (
                "{_target_:torch.optim.lr_scheduler.MultiStepLR,_partial_:true,milestones:[1,2],"
                "gamma:0.1"
            ),
        ),
    ],
)
@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_lr_schedule_resumes_exactly(compose, tiny_mnist, tmp_path, interval, sched):
    """A schedule stepped per update or per epoch: the learning rate of every logged step (and
    every other field) after resume equals the uninterrupted run's, and it did change."""
    args = [
        "optim=sgd",
        "optim.lr=0.5",
        f"optim.scheduler={sched},interval:{interval}}}",
        "data.batch_size=8",
        "trainer.log_every=1",
    ]  # 20 steps an epoch, 4 epochs
    run(tiny_cfg(compose, tiny_mnist, *args), tmp_path / "a")
    stopped = tmp_path / "b"
    run(
        tiny_cfg(compose, tiny_mnist, *args, "trainer.max_steps=30", "trainer.ckpt_every=10"),
        stopped,
    )  # stopped mid-interval of the step schedule, mid-epoch
    run(tiny_cfg(compose, tiny_mnist, *args, "resume=true", "trainer.ckpt_every=10"), stopped)
    full = rows_without_time(tmp_path / "a" / "metrics.jsonl")
    assert full == rows_without_time(stopped / "metrics.jsonl")
    lr = {r["step"]: r["batch/lr"] for r in full if "batch/lr" in r}
    if interval == "step":  # the lr of the next update: halved after updates 7, 14, ...
        assert lr[6] == 0.5 and lr[7] == 0.25 and lr[14] == 0.125 and lr[34] == 0.5 / 2**4
    else:  # x0.1 after epochs 1 and 2 (20 updates each)
        assert lr[19] == 0.5 and lr[20] == pytest.approx(0.05) and lr[40] == pytest.approx(0.005)
        assert lr[39] == pytest.approx(0.05) and lr[80] == pytest.approx(0.005)


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_progress_lines_give_pace_and_eta(compose, tiny_mnist, tmp_path, caplog):
    caplog.set_level("INFO", logger="lnrepro")
    run(
        tiny_cfg(
            compose,
            tiny_mnist,
            "trainer.progress=lines",
            "trainer.line_seconds=0",
            "trainer.max_steps=10",
        ),
        tmp_path,
    )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 2 and lines[-1].startswith("step 10/10 ")  # log_every 5
    assert re.search(r"\| [0-9.e+]+ updates/s, ETA 0:00:\d\d$", lines[0]), lines[0]
    assert lines[-1].endswith("ETA 0:00:00"), lines[-1]


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_resume_without_checkpoint_warns_only_after_an_earlier_run(
    compose, tiny_mnist, tmp_path, caplog
):
    def warned(run_dir):
        caplog.clear()
        run(tiny_cfg(compose, tiny_mnist, "resume=true", "trainer.max_steps=2"), run_dir)
        return [
            r
            for r in caplog.records
            if r.levelname == "WARNING" and "no checkpoint" in r.getMessage()
        ]

    assert not warned(tmp_path / "clean")  # a figure target's first run: nothing to resume
    (tmp_path / "left").mkdir()
    (tmp_path / "left" / "metrics.jsonl").write_text('{"step": 1}\n')
    assert len(warned(tmp_path / "left")) == 1


def test_bad_scheduler_interval(compose, tiny_mnist, tmp_path):
    sched = "{_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:7,interval:hour}"
    with pytest.raises(ConfigError, match="optim.scheduler.interval must be step|epoch"):
        run(tiny_cfg(compose, tiny_mnist, "optim=sgd", f"optim.scheduler={sched}"), tmp_path)


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_existing_checkpoint_needs_resume_and_same_config(compose, tiny_mnist, tmp_path):
    run(tiny_cfg(compose, tiny_mnist, "trainer.max_steps=5"), tmp_path)
    with pytest.raises(ConfigError, match="resume=true"):
        run(tiny_cfg(compose, tiny_mnist, "trainer.max_steps=5"), tmp_path)
    with pytest.raises(ConfigError, match="optim.lr"):
        run(tiny_cfg(compose, tiny_mnist, "resume=true", "optim.lr=0.1"), tmp_path)
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be read"):
        run(tiny_cfg(compose, tiny_mnist, "resume=true"), tmp_path)


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (["data.batch_size=0"], ConfigError, "batch_size must be a positive integer"),
        (["data.batch_size=-3"], ConfigError, "batch_size must be a positive integer"),
        (
            ["norm=bn", "data.batch_size=1"],
            ConfigError,
            "norm=bn cannot train with data.batch_size=1",
        ),
        (["norm.eps=-1"], ConfigError, "norm.eps"),
        (["trainer.epochs=0"], ConfigError, "trainer.epochs"),
        (["trainer.eval_every=0"], ConfigError, "trainer.eval_every"),
        (["model.activation=swish"], ConfigError, "activation"),
        (["+model.depth=3"], ConfigError, "depth"),
        (["optim.lr=-1"], ConfigError, "optim"),
        (["data.val_size=100000"], ConfigError, "val_size"),
    ],
)
def test_bad_config_values(compose, tiny_mnist, tmp_path, overrides, error, match):
    with pytest.raises(error, match=match):
        run(tiny_cfg(compose, tiny_mnist, *overrides), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow  # end to end: a subprocess or a whole training run
@pytest.mark.parametrize(
    "steps, evals", [(20, [0, 7, 14, 20]), (17, [0, 7, 17]), (18, [0, 7, 14, 18])]
)
def test_eval_every_sets_the_evaluation_steps(compose, tiny_mnist, tmp_path, steps, evals):
    """Every 7 updates and at the end; a regular evaluation under half an interval before the
    final one (14 of 17) is left out rather than drawn as a near-duplicate point."""
    run(
        tiny_cfg(compose, tiny_mnist, "trainer.eval_every=7", f"trainer.max_steps={steps}"),
        tmp_path,
    )
    rows = metrics_rows(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows if "test/err" in r] == evals


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_batch_size_one_trains_with_layer_norm(compose, tiny_mnist, tmp_path):
    s = run(
        tiny_cfg(compose, tiny_mnist, "norm=ln", "data.batch_size=1", "trainer.max_steps=20"),
        tmp_path,
    )
    assert s["status"] == "completed" and s["step"] == 20


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_nan_loss_stops_with_last_good_checkpoint(compose, tiny_mnist, tmp_path):
    # lr 1e30: step 1 is finite (and checkpointed), the loss of step 2 is NaN
    with pytest.raises(
        DivergenceError, match="training loss is nan at step 2.*last good checkpoint"
    ):
        run(
            tiny_cfg(compose, tiny_mnist, "norm=none", "optim.lr=1e30", "trainer.ckpt_every=1"),
            tmp_path,
        )
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_missing_and_corrupt_mnist(compose, tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*LNREPRO_DATA"):
        run(tiny_cfg(compose, tmp_path / "nothing", "data.download=false"), tmp_path / "r1")
    bad = write_idx_mnist(tmp_path / "bad")
    f = bad / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:5000])  # truncated
    with pytest.raises(DataError, match="corrupt|could not be read"):
        run(tiny_cfg(compose, bad), tmp_path / "r2")


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_cli_errors_are_one_line_with_nonzero_exit(cli, tmp_path):
    p = cli(*TINY, "data.batch_size=0", f"hydra.run.dir={tmp_path}/r")
    assert p.returncode == 2
    err_lines = [ln for ln in (p.stdout + p.stderr).splitlines() if "ERROR" in ln or "Error" in ln]
    assert len(err_lines) == 1 and "data.batch_size must be a positive integer" in err_lines[0]
    assert "Traceback" not in p.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    p = cli(*TINY, f"hydra.run.dir={blocker}/run")
    assert p.returncode == 2 and "cannot write run outputs" in p.stderr
    assert "Traceback" not in p.stderr
    p = cli(*TINY, "norm=group")
    assert p.returncode != 0 and "Could not find 'norm/group'" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_resumes_exactly(cli, tmp_path, tiny_mnist, sig):
    args = [
        *TINY,
        "norm=ln",
        "data.batch_size=4",
        "trainer.epochs=3",
        "trainer.ckpt_every=25",
        "trainer.evals_per_epoch=4",
    ]
    ref = cli(*args, f"hydra.run.dir={tmp_path}/ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    run_dir = tmp_path / "killed"
    env = {**os.environ, "LNREPRO_OUTPUTS": str(tmp_path), "LNREPRO_DATA": str(tiny_mnist)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lnrepro.train", *args, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ckpt = run_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 130 and "checkpoint saved" in out, out[-2000:]
        assert load_run(run_dir).status == "interrupted"
    else:
        assert proc.returncode == -signal.SIGKILL
    p = cli(*args, "resume=true", f"hydra.run.dir={run_dir}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert rows_without_time(run_dir / "metrics.jsonl") == rows_without_time(
        tmp_path / "ref" / "metrics.jsonl"
    )


@pytest.mark.slow
def test_wandb_offline_one_run_per_multirun_job(cli, tmp_path):
    sweep = tmp_path / "sweep"
    p = cli(
        *TINY,
        "logger=wandb",
        "trainer.max_steps=3",
        "norm=ln,none",
        "optim.lr=0.01",
        f"hydra.sweep.dir={sweep}",
        multirun=True,
        env={"WANDB_MODE": "offline"},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    ids, names = set(), set()
    for r in find_runs(sweep):
        files = list((r.path / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, r.path
        ids.add(files[0].stem)
        assert (r.path / "wandb_id").read_text().strip() in files[0].stem
        info = run_info(files[0])
        assert info["job_type"] == "sweep"
        names.add(info["name"])
    assert len(ids) == 2
    # the job's other overrides (Hydra's override_dirname, without norm, seed and batch size)
    # follow <experiment>/<norm>_bs<batch>_s<seed>
    for n in ("ln", "none"):
        (name,) = [x for x in names if x.startswith(f"pi_mnist_cpu/{n}_bs16_s1_")]
        assert "optim.lr=0.01" in name.split("_s1_")[1].split(",") and "norm=" not in name


@pytest.mark.realdata("MNIST/raw/train-images-idx3-ubyte")
def test_real_mnist_smoke(compose, tmp_path):
    cfg = compose(
        [
            "experiment=pi_mnist_cpu",
            "norm=ln",
            "trainer.max_steps=60",
            "logger=none",
            "data.train_eval_size=2000",
            "trainer.eval_splits=[train,val,test]",
        ]
    )
    s = run(cfg, tmp_path)
    assert s["final"]["test/err"] < 0.2  # 60 Adam steps of the paper's MLP: ~6% here
    assert len(load_run(tmp_path).rows) >= 2
