"""scripts/eval.py (`make eval CKPT=... [SPLIT=...]`): any experiment's checkpoint, last.pt or
best.pt, evaluated on its run's data as the run evaluated it; the metrics it prints equal those
the run logged at that step. scripts/eval_skip.py (`make eval-skip`) is its SentEval-only case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT, load_script, metrics_rows, tiny_cfg
from test_eval_schedule import LM, write_ptb
from test_skip_thoughts import TINY_ST, write_corpus, write_senteval

from lnrepro.train import run

pytestmark = pytest.mark.usefixtures("one_thread")


def eval_cli(*args, timeout=300) -> subprocess.CompletedProcess:
    """scripts/eval.py as `make eval` runs it."""
    return subprocess.run(
        [sys.executable, "scripts/eval.py", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def evaluated(path: Path, *args) -> tuple[dict, str]:
    """(metrics, stdout) of scripts/eval.py on the checkpoint `path`."""
    out = path.parent.parent / f"eval_{path.stem}.json"
    p = eval_cli(path, "--json", out, *args)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(out.read_text())["metrics"], p.stdout


def logged(run_dir: Path, step: int, prefixes=("val/", "test/", "train/", "senteval/")) -> dict:
    """The evaluation the run logged at `step`, without step, epoch and time."""
    rows = [r for r in metrics_rows(run_dir / "metrics.jsonl") if r["step"] == step]
    return {k: v for r in rows for k, v in r.items() if k.startswith(prefixes)}


@pytest.mark.slow  # end to end: a training run, then the script in a subprocess
def test_eval_of_a_classification_checkpoint_prints_the_logged_metrics(
    compose, tiny_mnist, tmp_path
):
    run_dir = tmp_path / "run"
    run(tiny_cfg(compose, tiny_mnist, "norm=bn", "trainer.save_best=true"), run_dir)
    ckpts = run_dir / "checkpoints"
    # last.pt: every split the run evaluated, as its last evaluation logged them, to the bit
    metrics, stdout = evaluated(ckpts / "last.pt")
    assert metrics == logged(run_dir, 40) and set(metrics) >= {"val/err", "val/nll", "test/err"}
    assert f"val/err {metrics['val/err']!r}" in stdout.splitlines()
    # best.pt, one split: the evaluation of the step it was written at
    best_step = torch.load(ckpts / "best.pt", weights_only=True)["step"]
    metrics, _ = evaluated(ckpts / "best.pt", "--split", "val")
    assert metrics == logged(run_dir, best_step, ("val/",))
    # two splits, and a change to the run's config (here: one batch a split)
    metrics, _ = evaluated(ckpts / "last.pt", "--split", "val,test", "trainer.limit_eval_batches=1")
    assert set(metrics) == {"val/nll", "val/err", "test/nll", "test/err"}


@pytest.mark.slow  # end to end: a training run, then the script in a subprocess
def test_eval_of_a_language_model_checkpoint_prints_the_logged_metrics(compose, tmp_path):
    """A recurrent model (BN-LSTM char LM, its per-step running statistics), with the test split
    the run evaluates only at its end."""
    data = write_ptb(tmp_path / "data")
    run_dir = tmp_path / "run"
    run(compose([*LM, f"paths.data_dir={data}", "norm=bn"]), run_dir)
    metrics, _ = evaluated(run_dir / "checkpoints" / "last.pt")
    assert metrics == logged(run_dir, 40) and {"val/bpc", "test/bpc"} <= set(metrics)


@pytest.mark.slow  # end to end: a training run, then the scripts in subprocesses
def test_eval_of_a_skip_thoughts_checkpoint_runs_its_senteval(compose, tmp_path):
    """SentEval is the skip-thoughts task's evaluation: eval.py runs it after the validation
    loss, with eval_skip's options; a SentEval task without files is reported as skipped."""
    data = tmp_path / "data"
    write_corpus(data)
    write_senteval(data, skip=("CR",))
    run_dir = tmp_path / "run"
    run(compose([*TINY_ST, "norm=ln", f"paths.data_dir={data}"]), run_dir)
    metrics, _ = evaluated(run_dir / "checkpoints" / "last.pt", "--tasks", "MR", "SICK")
    want = logged(run_dir, 6)
    assert metrics["val/loss"] == want["val/loss"]
    assert set(metrics) == {"val/loss", "val/prev_nll", "val/next_nll", "senteval/mr_acc"} | {
        f"senteval/sick_{k}" for k in ("r", "rho", "mse")
    }
    assert metrics["senteval/mr_acc"] == want["senteval/mr_acc"]  # the same folds, the same fit
    p = subprocess.run(
        [sys.executable, "scripts/eval_skip.py", run_dir / "checkpoints" / "last.pt"]
        + ["--tasks", "MR", "CR", "--folds", "3", "--inner-folds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "| MR |" in p.stdout and "| CR | skipped |" in p.stdout
    assert not any(line.startswith("val/") for line in p.stdout.splitlines())  # SentEval alone


def test_a_missing_or_corrupt_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    script = load_script("eval")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    cases = [
        (tmp_path / "nothing.pt", "error: no checkpoint at "),
        (tmp_path, "error: no checkpoint at "),  # a run directory without checkpoints/last.pt
        (bad, f"error: checkpoint {bad} cannot be read (UnpicklingError: "),
        (foreign, f"error: {foreign} is not a training checkpoint of this project"),
    ]
    for path, start in cases:
        assert script.main([str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1, err


@pytest.mark.slow  # a training run
def test_bad_eval_options_are_one_line(compose, tiny_mnist, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run(tiny_cfg(compose, tiny_mnist, "trainer.max_steps=2"), run_dir)
    script = load_script("eval")
    ckpt = str(run_dir / "checkpoints" / "last.pt")
    for argv, message in [
        ([ckpt, "--split", "dev"], "error: no split dev in this data (splits: train, val, test)"),
        ([ckpt, "data.nope=1"], "error: override 'data.nope=1': give key=value, a key of the"),
        ([ckpt, "--tasks", "MR"], "error: --tasks: SentEval options, for skip-thoughts"),
    ]:
        assert script.main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[-1].startswith(message), err
    assert load_script("eval_skip").main([ckpt]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: not a SkipThoughts")


def test_make_eval_passes_the_checkpoint_and_splits():
    def dry(*args):
        p = subprocess.run(
            ["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert "scripts/eval.py r/checkpoints/best.pt --split val,test --json o.json" in dry(
        "eval", "CKPT=r/checkpoints/best.pt", "SPLIT=val,test", "ARGS=--json o.json"
    )
    assert "scripts/eval_skip.py r/last.pt --tasks MR" in dry(
        "eval-skip", "CKPT=r/last.pt", "ARGS=--tasks MR"
    )
