"""The DDP equivalence cases of tests/test_ddp.py, importable by the spawned processes.

Each case trains a small float64 model (no dropout, plain SGD) for STEPS updates on random
global batches of B cases, through the project's own DDP pieces (lnrepro.distributed.wrap of
the built task, data and model: the data module's share of each global batch,
DistributedDataParallel, the task's loss reduction, BN sync). One process at batch B is the
reference; N processes at B/N must reproduce it.
"""

from __future__ import annotations

import copy
import os
import typing
from unittest import mock

import hydra
import torch
import torch.distributed as dist
import torch.nn.functional as F

from lnrepro import distributed
from lnrepro.data.books import Triples
from lnrepro.data.coco_features import Pairs
from lnrepro.data.common import TensorData, shard_cases
from lnrepro.data.ptb import TokenStreams
from lnrepro.data.text import EOS_ID, PAD_ID, SPECIALS
from lnrepro.models.lm import LSTMLM
from lnrepro.models.mlp import MLP
from lnrepro.models.order_embeddings import OrderEmbeddings
from lnrepro.models.skip_thoughts import SkipThoughts
from lnrepro.nn.norm import NormSpec
from lnrepro.tasks.classification import Classification
from lnrepro.tasks.lm import LanguageModel
from lnrepro.tasks.order_embeddings import OrderEmbeddingsTask
from lnrepro.tasks.skip_thoughts import SkipThoughtsTask

B, STEPS = 16, 10
# name -> (model, norm kind, norm.sync)
CASES = {
    "mlp_ln": ("mlp", "ln", False),
    "mlp_ln_sum": ("mlp_sum", "ln", False),  # a loss summed over the cases (handwriting's)
    "mlp_bn_sync": ("mlp", "bn", True),
    "mlp_bn": ("mlp", "bn", False),
    "lstm_ln": ("lstm", "ln", False),
    "lstm_bn_sync": ("lstm", "bn", True),
    "lstm_bn": ("lstm", "bn", False),
    # losses that communicate: a mean over the global batch's non-pad tokens (the count
    # all-reduced), a ranking of every pair against the whole global batch (gathered)
    "skip_thoughts": ("skip", "ln", False),
    "order_embeddings": ("order", "ln", False),
}
V, L = 30, 7  # the text cases: vocabulary, longest sentence (with <eos>)
# SGD's step size; the order-embedding loss sums 2 B (B - 1) hinge terms (Vendrov et al. 2016),
# its gradients ~60 x the per-case means': at 0.1 the updates are so large that the float64
# rounding of the first step (~1e-15 relative) grows ~5 x per update, past TOL by the 10th
LR = {"order_embeddings": 0.002}


class SummedClassification(Classification):
    """Cross-entropy summed over the cases, as HandwritingTask sums its NLL: the processes'
    gradients must be summed, not averaged. Its `loss` metric is per case (the mean over the
    processes of each one's mean is the global batch's)."""

    loss_reduction = "sum"

    def training_step(self, model, batch):
        x, y = batch
        loss = F.cross_entropy(model(x), y, reduction="sum")
        return loss, {"loss": loss.detach() / len(y)}


class Batches:
    """Fixed global batches (the same every epoch), cut by the default `shard_cases`."""

    shard = staticmethod(shard_cases)

    def __init__(self, batches):
        self.batches, self.steps_per_epoch = batches, len(batches)

    def train_batches(self, epoch: int, start: int = 0):
        yield from self.batches[start:]


def _sentences(g: torch.Generator) -> torch.Tensor:
    """(B, L) random sentences of 2 .. L tokens, <eos> last, padded: the shares of a batch hold
    different counts of tokens."""
    ids = torch.randint(len(SPECIALS), V, (B, L), generator=g)
    n = torch.randint(2, L + 1, (B,), generator=g)
    ids[torch.arange(B), n - 1] = EOS_ID
    return ids.masked_fill(torch.arange(L) >= n[:, None], PAD_ID)


def _data(kind: str):
    g = torch.Generator().manual_seed(123)
    if kind == "skip":
        return Batches([Triples(_sentences(g), _sentences(g), _sentences(g)) for _ in range(STEPS)])
    if kind == "order":
        return Batches(
            [
                Pairs(_sentences(g), torch.rand(B, 10, generator=g, dtype=torch.float64))
                for _ in range(STEPS)
            ]
        )
    if kind.startswith("mlp"):  # pi-MNIST style: (B, 12) vectors, 5 classes
        n = B * STEPS
        x = torch.randn(n, 12, generator=g, dtype=torch.float64) * 2 + 0.5
        y = torch.randint(0, 5, (n,), generator=g)
        return TensorData({"train": (x, y)}, batch_size=B, seed=7)
    # 30-symbol token streams: B streams, truncated BPTT segments of 6 steps, state carried
    tokens = {
        s: torch.randint(0, 30, (B * (6 * STEPS + 1),), generator=g)
        for s in ("train", "val", "test")
    }
    return TokenStreams(tokens, [f"s{i}" for i in range(30)], batch_size=B, bptt=6)


def _model(kind: str, spec: NormSpec):
    torch.manual_seed(0)
    if kind == "skip":
        return SkipThoughts(V, emb_dim=8, hidden_size=12, norm=spec, t_max=L), SkipThoughtsTask()
    if kind == "order":
        model = OrderEmbeddings(V, dim_word=8, dim=12, dim_image=10, norm=spec, t_max=L)
        return model, OrderEmbeddingsTask()
    if kind.startswith("mlp"):  # BN on the logits too (Sec. 6.6)
        task = SummedClassification() if kind == "mlp_sum" else Classification()
        return MLP(in_dim=12, hidden=(16, 16), out_dim=5, norm=spec), task
    return LSTMLM(vocab_size=30, emb_dim=8, hidden_size=12, norm=spec, t_max=6), LanguageModel()


def train(case: str) -> dict:
    """Train `case` in this process (its share, when a process group runs); the loss is the
    global batch's (the mean over ranks), the gradients those of the first update."""
    kind, norm, sync = CASES[case]
    world = distributed.current()
    torch.set_default_dtype(torch.float64)
    try:
        model, task = _model(kind, NormSpec(kind=norm, sync=sync))
        task, data, model = distributed.wrap(
            task, _data(kind), model, world, torch.device("cpu"), seed=0
        )
        opt = torch.optim.SGD(model.parameters(), lr=LR.get(case, 0.1))
        model.train()
        losses, grads = [], None
        for i, batch in enumerate(data.train_batches(0)):
            loss, metrics = task.training_step(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if i == 0:
                grads = (
                    {k: p.grad.clone() for k, p in model.module.named_parameters()}
                    if world.active
                    else {k: p.grad.clone() for k, p in model.named_parameters()}
                )
            opt.step()
            losses.append(float(metrics["loss"]))
        buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        return {"losses": losses, "grads": grads, "buffers": buffers}
    finally:
        torch.set_default_dtype(torch.float32)


def _join(rank: int, world_size: int, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def worker(rank: int, world_size: int, port: int, out: str) -> None:
    """One of the spawned processes: every case, rank 0 saves the results."""
    _join(rank, world_size, port)
    try:
        results = {case: train(case) for case in CASES}
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- the experiments' own tasks
def synthetic_loss(task, model, batch) -> float:
    """The loss of a fresh copy of task (no state carried from the last batch) on batch, with
    per-case losses: no dropout (`model.eval()` first), and DRAW's posterior noise at zero
    (z = mu), since a batch draws its noise as a whole."""

    def zeros(*size, generator=None, **kwargs):
        return torch.zeros(*size, **kwargs)

    with torch.no_grad(), mock.patch.object(torch, "randn", zeros):
        return float(copy.deepcopy(task).training_step(model, batch)[0])


def experiment_share(gpu_check, experiment: str, rank: int, size: int) -> float:
    """The loss of `experiment`'s task on share `rank` of `size` of gpu_check's synthetic batch
    (reduced widths, as the data module cuts it); inside a process group of `size` when one
    runs (the losses that communicate)."""
    cfg = gpu_check.compose(experiment, "ln")[1]
    model, task, _, batch, _ = gpu_check.build(cfg, "cpu")
    model.eval()
    data_module = typing.get_type_hints(hydra.utils.get_object(cfg.data._target_))["return"]
    return synthetic_loss(task, model, data_module.shard(batch, rank, size))


def experiment_shares(rank: int, world_size: int, port: int, out: str, experiments) -> None:
    """A spawned process: its share of each experiment's synthetic batch in a gloo group;
    rank 0 saves {experiment: [loss of share 0, loss of share 1, ...]}."""
    _join(rank, world_size, port)
    try:
        from helpers import load_script

        gpu_check = load_script("gpu_check")
        mine = {e: experiment_share(gpu_check, e, rank, world_size) for e in experiments}
        every = distributed.all_gather_object(mine)
        if rank == 0:
            torch.save({e: [r[e] for r in every] for e in experiments}, out)
    finally:
        dist.destroy_process_group()
