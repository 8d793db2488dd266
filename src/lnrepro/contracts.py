"""The contracts of the one training loop (lnrepro.trainer): what a data module and a task must
provide. An experiment is a config + a model + a data module + a task; the model only computes
outputs, the task turns them into a loss and metrics, the data module yields batches.

- A data factory (`configs/data/*.yaml` `_target_`) is called as `factory(**cfg, seed=,
  device=)` and returns a `DataModule`.
- A model factory (`configs/model/*.yaml`) is called with its config, `norm=` (a
  `lnrepro.nn.norm.Norm`, which it asks for every normalization) and the data module's
  `model_kwargs` (shape fields the data decides: vocabulary size, image size).
- A task (`configs/task/*.yaml`) subclasses `Task`: the defaults below are what most tasks need.
- The module that defines a data factory also offers `synthetic_batch(cfg, batch_size,
  generator, length=None) -> SyntheticBatch`: one training batch of random values with the
  types, shapes and dtypes its `train_batches` yields, from the data config alone (no file is
  read, nothing is downloaded). scripts/gpu_check.py runs every paper-scale model and task on
  it; tests/test_gpu_check.py checks that every configs/data/*.yaml module has one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch


@runtime_checkable
class DataModule(Protocol):
    """Batches for training (a deterministic order per (seed, epoch), so a run resumed at any
    step replays exactly the batches it would have seen) and for evaluation."""

    splits: Mapping[str, Any]  # evaluation split name -> its data ("train" may be one)
    steps_per_epoch: int  # full training batches per epoch (the last partial one is dropped)
    model_kwargs: dict[str, Any]  # filled into the model config's `???` fields (may be empty)

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """Training batches `start, start + 1, ...` of epoch `epoch` (0-based)."""
        ...

    def eval_batches(self, split: str) -> Iterator[Any]:
        """The batches of one evaluation split, in a fixed order."""
        ...

    def to(self, device: torch.device | str) -> DataModule: ...

    @staticmethod
    def shard(batch: Any, rank: int, size: int) -> Any:
        """Process `rank`'s share of a training batch split over `size` processes (torchrun):
        the same type, its cases [rank B/size, (rank+1) B/size). Optional: a data module
        without it trains in one process only. lnrepro.data.common.shard_cases is the default
        for tensors that hold the cases along their first dimension."""
        ...


class Task:
    """Loss and metrics of one experiment.

    `training_step(model, batch) -> (loss, {name: detached tensor})`: the loss to minimise and
    the per-batch metrics the trainer averages between log lines.
    `evaluate(model, batches) -> {name: float}`: the metrics of one evaluation split.
    `evaluation_hooks(model) -> {prefix: {name: float}}`: evaluations that are not a data split
    (SentEval probes an encoder with its own datasets); run at every evaluation.
    `higher_is_better`: the metric names (without the split prefix) whose best value is the
    maximum (accuracies, correlations); every other metric is lower-is-better.
    `state_dict` / `load_state_dict`: state carried between batches (a language model's hidden
    state across segments), saved in the checkpoint; none by default.
    `loss_reduction`: how the training loss combines its cases, which decides whether and how
    the task trains on several processes (lnrepro.distributed.shard_task), each process on an
    equal share of the global batch:
      "mean": a mean over the cases, each of the same weight (a case may be a stream of T
        tokens): the mean of the shares' losses is the batch's loss, so DDP's average of the
        processes' gradients is the one-process gradient;
      "sum": a sum over the cases: the sum of the shares' losses is the batch's loss, so the
        processes' gradients are summed;
      None: neither (a loss that compares the cases of a batch with each other, or a mean over
        a count that differs between shares): one process only.
    tests/test_ddp.py checks the declaration of every experiment's task on a synthetic batch.
    """

    higher_is_better: frozenset[str] = frozenset()
    loss_reduction: str | None = None

    def training_step(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def evaluate(self, model, batches) -> dict[str, float]:
        raise NotImplementedError

    def evaluation_hooks(self, model) -> dict[str, dict[str, float]]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"this task carries no state, the checkpoint has {sorted(state)}")


def is_higher_better(task: Task, metric: str) -> bool:
    """Whether `metric` ("split/name" or "name") is maximised, as the task declares."""
    return metric.rsplit("/", 1)[-1] in getattr(task, "higher_is_better", frozenset())


class SyntheticBatch(NamedTuple):
    """What a data module's `synthetic_batch(cfg, batch_size, generator, length=None)` returns.

    Its arguments: `cfg` the data config node as a dict (the factory's keyword arguments),
    `batch_size` the cases (or streams) of the batch, `generator` the torch.Generator of every
    random value, `length` the time steps of a sequence batch (None: the config's length, or a
    typical one of the real data, documented where it is chosen); data without time steps
    ignores it.
    """

    batch: Any  # as train_batches yields it (same types, dtypes and layout), on the CPU
    model_kwargs: dict[str, Any]  # the sizes DataModule.model_kwargs would hold (no vocabulary
    # or hashes): from the config, or the real data's sizes where the module knows them
    steps_per_epoch: int | None  # the real training set's batches per epoch at batch_size
    # (recorded sizes), None where only reading the data would tell
