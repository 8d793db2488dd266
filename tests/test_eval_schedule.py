"""The evaluation schedule (lnrepro.trainer.eval_steps: step budgets, explicit steps, fractions
of the budget, log-spaced early points) and checkpoints/best.pt (trainer.save_best): adding
evaluations changes no training step, and best.pt is the same whether the run was resumed or
not."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import torch
from helpers import metrics_rows, rows_without_time, tiny_cfg

from lnrepro.contracts import Task
from lnrepro.errors import ConfigError
from lnrepro.train import run
from lnrepro.trainer import LOG_SPACED_FRACTIONS, Trainer, TrainerConfig, eval_steps

pytestmark = pytest.mark.usefixtures("one_thread")


def budget(max_steps: int, **kw) -> TrainerConfig:
    return TrainerConfig(epochs=None, max_steps=max_steps, **kw)


# ---- the schedule ----------------------------------------------------------------------------
def test_evals_spreads_evaluations_over_a_budget_shorter_than_an_epoch():
    """max_steps=200 of 469-update epochs: evals_per_epoch counts per epoch (start and end
    only, as before), `evals` counts over the budget."""
    assert eval_steps(budget(200), 200, 469) == {0, 200}
    assert eval_steps(budget(200, evals=4), 200, 469) == {0, 50, 100, 150, 200}
    assert eval_steps(budget(200, evals=3, eval_at_start=False), 200, 469) == {66, 133, 200}
    assert eval_steps(budget(3, evals=10), 3, 469) == {0, 1, 2, 3}  # one per update at most


def test_explicit_steps_fractions_and_log_spaced_points_join_the_schedule():
    # eval_steps beyond the budget are left out (they count when a resume extends it)
    cfg = budget(50, eval_steps=[10, 20, 40, 80], eval_every=25)
    assert eval_steps(cfg, 50, 1000) == {0, 10, 20, 25, 40, 50}
    cfg = budget(1000, eval_at_fractions=[0.01, 0.5, 1], eval_at_start=False)
    assert eval_steps(cfg, 1000, 5000) == {10, 500, 1000}
    assert LOG_SPACED_FRACTIONS == (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)
    cfg = budget(1000, eval_log_spaced=True, eval_every=250)
    assert eval_steps(cfg, 1000, 5000) == {0, 10, 20, 40, 80, 160, 250, 320, 500, 640, 750, 1000}
    # a short budget: the points that round to the same update are one evaluation
    assert eval_steps(budget(20, eval_log_spaced=True), 20, 5000) == {0, 1, 2, 3, 6, 13, 20}


def test_the_default_schedule_is_the_one_before_budget_schedules():
    """Without the new keys the steps are exactly the old rule's: every interval (eval_every,
    else steps_per_epoch // evals_per_epoch), none less than half an interval before the end,
    and the end (the golden runs depend on it)."""

    def old_rule(total, spe, per_epoch, every, start):
        interval = every or max(1, spe // per_epoch)
        due = {
            s
            for s in range(1, total + 1)
            if s >= total or (s % interval == 0 and 2 * (total - s) >= interval)
        }
        return due | ({0} if start else set())

    rng = random.Random(0)
    for _ in range(400):
        total, spe = rng.randint(1, 300), rng.randint(1, 120)
        per_epoch, every = rng.randint(1, 15), rng.choice([None, 1, 7, 50])
        start = rng.random() < 0.5
        cfg = budget(total, evals_per_epoch=per_epoch, eval_every=every, eval_at_start=start)
        assert eval_steps(cfg, total, spe) == old_rule(total, spe, per_epoch, every, start)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"evals": 0}, r"^trainer\.evals must be a positive integer, got 0$"),
        ({"evals": 2.5}, r"^trainer\.evals must be a positive integer, got 2\.5$"),
        ({"evals": 4, "eval_every": 10}, r"^set trainer\.eval_every or trainer\.evals, not both$"),
        ({"eval_steps": [0, 5]}, r"^trainer\.eval_steps must be a list of positive integers"),
        ({"eval_steps": 10}, r"^trainer\.eval_steps must be a list of positive integers"),
        ({"eval_steps": [1.5]}, r"^trainer\.eval_steps must be a list of positive integers"),
        ({"eval_at_fractions": [0.5, 1.5]}, r"^trainer\.eval_at_fractions must be a list of"),
        ({"eval_at_fractions": [0]}, r"^trainer\.eval_at_fractions must be a list of numbers"),
        ({"eval_log_spaced": "yes"}, r"^trainer\.eval_log_spaced must be true or false"),
        ({"save_best": 1}, r"^trainer\.save_best must be true or false, got 1$"),
        ({"best_metric": "err"}, r"^trainer\.best_metric must be null or a logged metric"),
    ],
)
def test_bad_schedule_or_best_values_are_one_config_error(kw, match):
    with pytest.raises(ConfigError, match=match):
        budget(100, **kw)


class _RandomEval(Task):
    """A task whose evaluation draws random numbers (as a sampling evaluation would)."""

    def training_step(self, model, batch):
        loss = model(batch[0]).pow(2).mean()
        return loss, {"loss": loss.detach()}

    def evaluate(self, model, batches):
        return {"nll": float(torch.rand(()))}


def test_evaluation_leaves_the_training_random_stream_alone(tmp_path):
    from lnrepro.data.common import TensorData
    from lnrepro.runlog import RunLogger

    data = TensorData({"train": (torch.zeros(4, 1),), "val": (torch.zeros(4, 1),)}, batch_size=2)
    model = torch.nn.Linear(1, 1)
    logger = RunLogger(tmp_path, {}, None, {})
    trainer = Trainer(
        model,
        _RandomEval(),
        data,
        torch.optim.SGD(model.parameters(), 0.1),
        TrainerConfig(eval_splits=["val"]),
        logger,
        tmp_path,
    )
    trainer._t0 = time.perf_counter()  # (fit sets it)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    trainer.evaluate()
    logger.close(0)
    assert torch.equal(torch.get_rng_state(), before)


# ---- extra evaluations change no training row -----------------------------------------------
def write_ptb(root: Path) -> Path:
    """Tiny word-level PTB files (the char LM derives its characters from them)."""
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "<unk>", "N"]
    (root / "ptb").mkdir(parents=True, exist_ok=True)
    for name, n in (("train", 120), ("valid", 30), ("test", 30)):
        lines = [" " + " ".join(rng.choices(words, k=6)) + " " for _ in range(n)]
        (root / "ptb" / f"ptb.{name}.txt").write_text("\n".join(lines) + "\n")
    return root


LM = [
    "experiment=lm_ptb_char_cpu",
    "data.batch_size=4",
    "data.bptt=10",
    "data.eval_batch_size=2",
    "data.eval_tokens=null",
    "model.emb_dim=8",
    "model.hidden_size=16",
    "model.dropout=0.2",  # dropout masks come from the random stream evaluation must not touch
    "trainer.max_steps=40",
    "trainer.evals_per_epoch=4",
    "trainer.final_eval_splits=[test]",
    "trainer.log_every=5",
    "logger=none",
    "threads=1",
    "data.verify=false",
]
DRAW = [  # the posterior samples of every training step come from the random stream
    "experiment=draw_cpu",
    "data.val_size=40",
    "data.eval_sizes={}",
    "data.eval_batch_size=64",
    "data.batch_size=16",
    "model.glimpses=2",
    "model.enc_size=8",
    "model.dec_size=8",
    "model.z_size=4",
    "trainer.epochs=2",
    "trainer.log_every=5",
    "logger=none",
    "threads=1",
    "data.verify=false",
]


@pytest.fixture(scope="module")
def tiny_ptb(tmp_path_factory) -> Path:
    return write_ptb(tmp_path_factory.mktemp("ptb"))


def _setting(name, compose, tiny_mnist, tiny_ptb):
    if name == "pi_mnist_bn":
        return lambda *extra: tiny_cfg(compose, tiny_mnist, "norm=bn", *extra)
    if name == "lm_char_bn":
        return lambda *extra: compose([*LM, f"paths.data_dir={tiny_ptb}", "norm=bn", *extra])
    return lambda *extra: compose([*DRAW, f"paths.data_dir={tiny_mnist}", "norm=bn", *extra])


@pytest.mark.slow  # end to end: whole training runs
@pytest.mark.parametrize("setting", ["pi_mnist_bn", "lm_char_bn", "draw_bn"])
def test_extra_evaluations_change_no_training_row(setting, compose, tiny_mnist, tiny_ptb, tmp_path):
    """The same run with evaluations added at explicit steps and log-spaced fractions: every
    `batch/*` row and every evaluation both runs make are equal to the last bit (BN's running
    statistics, the LM's carried state, dropout masks, DRAW's samples and the data order are
    untouched by evaluation)."""
    cfg = _setting(setting, compose, tiny_mnist, tiny_ptb)
    run(cfg(), tmp_path / "plain")
    run(cfg("trainer.eval_steps=[1,2,3,7,11]", "trainer.eval_log_spaced=true"), tmp_path / "more")
    plain = rows_without_time(tmp_path / "plain" / "metrics.jsonl")
    more = rows_without_time(tmp_path / "more" / "metrics.jsonl")

    def is_batch(row):
        return any(k.startswith("batch/") for k in row)

    assert [r for r in more if is_batch(r)] == [r for r in plain if is_batch(r)]
    evaluated = {r["step"] for r in plain if not is_batch(r)}
    extra = [r for r in more if not is_batch(r) and r["step"] not in evaluated]
    assert {r["step"] for r in extra} >= {1, 2, 3, 7, 11}
    assert [r for r in more if not is_batch(r) and r["step"] in evaluated] == [
        r for r in plain if not is_batch(r)
    ]


# ---- best.pt ---------------------------------------------------------------------------------
def _evals(run_dir: Path, key: str) -> list[dict]:
    return [r for r in metrics_rows(run_dir / "metrics.jsonl") if key in r]


@pytest.mark.slow  # end to end: whole training runs
def test_best_checkpoint_holds_the_best_validation_model(compose, tiny_mnist, tmp_path):
    """trainer.save_best=true keeps checkpoints/best.pt at the first evaluation of the lowest
    val/err (the classification task's main metric; strictly better replaces it); without it
    (the default) there is no best.pt."""
    run(tiny_cfg(compose, tiny_mnist, "trainer.max_steps=20"), tmp_path / "default")
    assert not (tmp_path / "default" / "checkpoints" / "best.pt").exists()
    run(tiny_cfg(compose, tiny_mnist, "trainer.save_best=true"), tmp_path / "a")
    rows = _evals(tmp_path / "a", "val/err")
    first_best = min(rows, key=lambda r: (r["val/err"], r["step"]))
    best = torch.load(tmp_path / "a" / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == first_best["step"] and best["best"]["val/err"] == first_best["val/err"]
    last = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 40 and best["step"] < 40  # this run reaches its lowest error early
    # another metric, maximised or minimised as the task says
    run(
        tiny_cfg(compose, tiny_mnist, "trainer.save_best=true", "trainer.best_metric=val/nll"),
        tmp_path / "nll",
    )
    rows = _evals(tmp_path / "nll", "val/nll")
    best = torch.load(tmp_path / "nll" / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == min(rows, key=lambda r: r["val/nll"])["step"]


@pytest.mark.slow  # end to end: whole training runs
def test_best_checkpoint_is_exact_across_a_resume(compose, tiny_mnist, tmp_path):
    """Stopped after 15 updates and resumed to 40: best.pt (its step, weights and best value),
    last.pt's weights and every metrics row equal those of the uninterrupted run; the resumed
    run's evaluations, none better than the best before the stop, leave best.pt alone."""
    args = ["trainer.save_best=true", "trainer.best_metric=val/err"]
    run(tiny_cfg(compose, tiny_mnist, *args), tmp_path / "whole")
    stopped = tmp_path / "stopped"
    run(tiny_cfg(compose, tiny_mnist, *args, "trainer.max_steps=15"), stopped)
    before = torch.load(stopped / "checkpoints" / "best.pt", weights_only=True)
    run(tiny_cfg(compose, tiny_mnist, *args, "resume=true"), stopped)
    assert rows_without_time(stopped / "metrics.jsonl") == rows_without_time(
        tmp_path / "whole" / "metrics.jsonl"
    )
    a = torch.load(tmp_path / "whole" / "checkpoints" / "best.pt", weights_only=True)
    b = torch.load(stopped / "checkpoints" / "best.pt", weights_only=True)
    assert a["step"] == b["step"] == before["step"] <= 15 and a["best"] == b["best"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.slow  # whole runs (they stop before or at their first evaluation)
def test_a_best_metric_the_run_does_not_evaluate_is_one_config_error(compose, tiny_mnist, tmp_path):
    with pytest.raises(ConfigError, match=r"does not evaluate the val split"):
        run(
            tiny_cfg(
                compose, tiny_mnist, "trainer.save_best=true", "trainer.eval_splits=[train,test]"
            ),
            tmp_path / "a",
        )
    with pytest.raises(ConfigError, match=r"^trainer\.best_metric=val/acc is not among the eval"):
        run(
            tiny_cfg(compose, tiny_mnist, "trainer.save_best=true", "trainer.best_metric=val/acc"),
            tmp_path / "b",
        )
