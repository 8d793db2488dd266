"""The DDP equivalence cases of tests/test_ddp.py, importable by the spawned processes.

Each case trains a small float64 model (no dropout, plain SGD) for STEPS updates on random
global batches of B cases, through the project's own DDP pieces (lnrepro.distributed.wrap of
the built task, data and model: the data module's share of each global batch,
DistributedDataParallel, the task's loss reduction, BN sync). One process at batch B is the
reference; N processes at B/N must reproduce it.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lnrepro import distributed
from lnrepro.data.common import TensorData
from lnrepro.data.ptb import TokenStreams
from lnrepro.models.lm import LSTMLM
from lnrepro.models.mlp import MLP
from lnrepro.nn.norm import NormSpec
from lnrepro.tasks.classification import Classification
from lnrepro.tasks.lm import LanguageModel

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
}


class SummedClassification(Classification):
    """Cross-entropy summed over the cases, as HandwritingTask sums its NLL: the processes'
    gradients must be summed, not averaged. Its `loss` metric is per case (the mean over the
    processes of each one's mean is the global batch's)."""

    loss_reduction = "sum"

    def training_step(self, model, batch):
        x, y = batch
        loss = F.cross_entropy(model(x), y, reduction="sum")
        return loss, {"loss": loss.detach() / len(y)}


def _data(kind: str):
    g = torch.Generator().manual_seed(123)
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
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
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


def worker(rank: int, world_size: int, port: int, out: str) -> None:
    """One of the spawned processes: every case, rank 0 saves the results."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        results = {case: train(case) for case in CASES}
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()
