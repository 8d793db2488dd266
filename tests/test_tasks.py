"""The tasks' losses and metrics on tiny models and hand-made batches (no data files).

Each test pins down something a figure depends on: the unit a curve is drawn in, the padding a
loss must skip, the state a resumed run must carry.
"""

import math
import time

import pytest
import torch
import torch.nn.functional as F

from lnrepro.contracts import DataModule, Task, is_higher_better
from lnrepro.data.ptb import Segment
from lnrepro.errors import ConfigError
from lnrepro.models.lm import LSTMLM
from lnrepro.tasks.handwriting import sequences
from lnrepro.tasks.lm import LanguageModel

V, T, B = 7, 5, 3


def lm(norm="ln"):
    torch.manual_seed(0)
    return LSTMLM(V, 4, 8, norm=norm)


def segments(n=2):
    g = torch.Generator().manual_seed(1)
    text = torch.randint(0, V, (n * T + 1, B), generator=g)
    return [
        Segment(text[k * T : (k + 1) * T], text[k * T + 1 : (k + 1) * T + 1], k == 0)
        for k in range(n)
    ]


def test_language_model_reports_bits_per_character_by_default():
    task = LanguageModel()
    loss, metrics = task.training_step(lm(), segments(1)[0])
    assert set(metrics) == {"loss", "bpc"}  # the keys the char-level figure plots
    assert metrics["loss"] == loss.detach()
    assert metrics["bpc"].item() == pytest.approx(loss.item() / math.log(2))
    with pytest.raises(ConfigError, match="bpc, ppl"):
        LanguageModel("bits")


def test_language_model_first_step_of_a_fresh_task_starts_from_zeros():
    """A segment not marked `first` still starts from a zero state when nothing is carried
    (a fresh or just-resumed task with an empty state)."""
    model, (_, second) = lm(), segments()
    loss, _ = LanguageModel().training_step(model, second)
    with torch.no_grad():
        logits, _ = model(second.x)
    assert loss.item() == pytest.approx(
        F.cross_entropy(logits.flatten(0, 1), second.y.flatten()).item()
    )


@pytest.mark.parametrize("carried", [True, False])
def test_language_model_state_survives_a_checkpoint(carried):
    """state_dict / load_state_dict carry the (h, c) of the last segment, so a resumed run
    continues the text exactly; an empty state stays empty."""
    model, (first, second) = lm(), segments()
    task = LanguageModel()
    if carried:
        task.training_step(model, first)
    saved = task.state_dict()
    resumed = LanguageModel()
    resumed.load_state_dict(saved)
    a, _ = task.training_step(model, second)
    b, _ = resumed.training_step(model, second)
    assert a.item() == b.item()
    assert (resumed.state is not None) and len(resumed.state) == 2


def test_sequences_keep_every_character_of_the_longest_text():
    """Character id 0 is a real character (the alphabet's first); only -1 pads."""
    strokes = torch.randn(2, 4, 3)
    lengths = torch.tensor([4, 2])
    chars = torch.tensor([[3, 0, 0, -1], [0, -1, -1, -1]])
    _, _, mask, c = sequences(strokes, lengths, chars)
    assert c.tolist() == [[3, 0, 0], [0, -1, -1]]
    assert mask.dtype == strokes.dtype and mask.sum(0).tolist() == [4, 2]


class _FixedDraw(torch.nn.Module):
    """Stands in for DRAW: fixed canvas logits and posterior parameters mu, log sigma (T, B, Z)."""

    def __init__(self, logits, mu, log_sigma):
        super().__init__()
        self.logits, self.mu, self.log_sigma = logits, mu, log_sigma

    def forward(self, x, generator=None):
        return self.logits, self.mu, self.log_sigma


def test_draw_bound_is_reconstruction_plus_kl_summed_over_glimpses():
    from lnrepro.tasks.draw import VariationalBound

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 3, 3, generator=g) > 0.5).float()
    logits = torch.randn(2, 3, 3, generator=g)
    mu, log_sigma = torch.randn(4, 2, 5, generator=g), torch.randn(4, 2, 5, generator=g) * 0.5
    loss, metrics = VariationalBound().training_step(_FixedDraw(logits, mu, log_sigma), (x,))
    p = torch.sigmoid(logits)
    recon = -(x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2))  # per image, nats
    q, prior = torch.distributions.Normal(mu, log_sigma.exp()), torch.distributions.Normal(0.0, 1.0)
    kl = torch.distributions.kl_divergence(q, prior).sum(-1)  # (T, B): per glimpse
    torch.testing.assert_close(metrics["recon"], recon.mean())
    torch.testing.assert_close(metrics["kl"], kl.sum(0).mean())
    torch.testing.assert_close(loss, (recon + kl.sum(0)).mean())
    assert set(metrics) == {"bound", "recon", "kl"} and metrics["bound"] == loss.detach()


# ---- the task contract (lnrepro.contracts) ---------------------------------------------------
class _Scripted(Task):
    """Evaluation metrics from a script: `acc` (declared higher-is-better) and `nll`."""

    higher_is_better = frozenset({"acc"})

    def __init__(self, values):
        self.values = iter(values)

    def evaluate(self, model, batches):
        acc, nll = next(self.values)
        return {"acc": acc, "nll": nll}

    def evaluation_hooks(self, model):
        return {"probe": {"acc": 1.0}}


def test_best_follows_the_direction_each_task_declares(tmp_path):
    """`best` keeps the maximum of a higher-is-better metric and the minimum of the others, and
    evaluation hooks log under their own prefix (as SentEval does for skip-thoughts)."""
    from lnrepro.data.common import TensorData
    from lnrepro.runlog import RunLogger
    from lnrepro.trainer import Trainer, TrainerConfig

    data = TensorData({"train": (torch.zeros(4, 1),), "val": (torch.zeros(4, 1),)}, batch_size=2)
    assert isinstance(data, DataModule) and data.model_kwargs == {}
    task = _Scripted([(50.0, 2.0), (70.0, 1.0), (60.0, 1.5)])
    model = torch.nn.Linear(1, 1)
    logger = RunLogger(tmp_path, {}, None, {})
    trainer = Trainer(
        model,
        task,
        data,
        torch.optim.SGD(model.parameters(), 0.1),
        TrainerConfig(eval_splits=["val"]),
        logger,
        tmp_path,
    )
    trainer._t0 = time.perf_counter()  # (fit sets it)
    for _ in range(3):
        metrics = trainer.evaluate()
    logger.close(0)
    assert metrics == {"val/acc": 60.0, "val/nll": 1.5, "probe/acc": 1.0}
    assert trainer.best == {"val/acc": 70.0, "val/nll": 1.0, "probe/acc": 1.0}
    assert is_higher_better(task, "val/acc") and not is_higher_better(task, "val/nll")


def test_a_task_without_state_refuses_a_checkpoint_that_has_some():
    task = _Scripted([])
    assert task.state_dict() == {}
    task.load_state_dict({})
    with pytest.raises(ValueError, match="carries no state"):
        task.load_state_dict({"state": 1})
