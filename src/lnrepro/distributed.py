"""Several processes (torchrun, or SLURM tasks): data-parallel training with
DistributedDataParallel, keeping the meaning of one-process runs.

    torchrun --nproc_per_node=N -m lnrepro.train experiment=<name> norm=ln [key=value ...]

What holds (tests/test_ddp.py checks it on CPU, gloo backend, 2 processes):

The run is built once, as in one process (lnrepro.train); `wrap` then puts the built task,
data module and model on the processes:

* `data.batch_size` is the GLOBAL batch: every process builds the one-process run's batches in
  the one-process order and keeps its own share of each, as the data module cuts it
  (`DataModule.shard`, `ShardedData`): rank r of N takes cases [r B/N, (r+1) B/N) (TensorData),
  or those streams of the B truncated-BPTT streams (TokenStreams). B must split evenly (one
  ConfigError line otherwise).
* Losses: the task declares how its loss combines its cases (`Task.loss_reduction`). A mean
  ("mean"): with equal shares DDP's gradient average, (1/N) sum_r grad mean_r, is the gradient
  of the mean over the global batch, as in one process. A sum ("sum"): the processes'
  gradients are summed instead (`_sum_gradients`). A loss that is neither per share is made
  a sum by the task itself, inside the process group: a mean over a count that differs
  between shares divides each share's sum by the global count (`sum_over_ranks`:
  skip-thoughts), a loss that compares the cases of the batch with each other gathers every
  process's embeddings with autograd and takes its own cases' terms against the whole global
  batch (`all_gather_cases`: order embeddings); `Task.loss_communicates` says so. A task
  that declares neither is refused in one line. The
  `batch/*` rows are the mean over processes of each process's values (`ShardedTask`): the
  global batch's values for per-case means.
* Batch norm: by default each process normalises over its own B/N cases (that is the BN batch
  size of the run; summary.json says `bn_stats: per_process` and `bn_batch`). With
  `norm.sync=true` the statistics are summed over the processes (lnrepro.nn.norm), so the run
  is the one-process run at batch B (`bn_stats: synced`). `unbiased: auto` is decided on B.
* Only rank 0 writes the run folder (metrics, summary, checkpoints, W&B; `NullLogger` on the
  other ranks) and evaluates (the other ranks wait at their next collective); the other ranks
  tell Hydra to write nothing (`hydra_args`) and are given rank 0's run folder.
* Checkpoints carry every rank's RNG state and task state (lnrepro.trainer.DistributedTrainer)
  and the world size, which a resume checks (`check_resume`).
* The default one-process path does not touch any of this (`World.size == 1`: identity).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lnrepro.errors import ConfigError

log = logging.getLogger(__name__)

# Collectives wait this long: rank 0 evaluates alone while the others wait at their next step.
TIMEOUT = timedelta(minutes=int(os.environ.get("LNREPRO_DDP_TIMEOUT_MIN", "120")))
# the task loss reductions that train on several processes (lnrepro.contracts.Task)
REDUCTIONS = ("mean", "sum")


@dataclass(frozen=True)
class World:
    """This process's place: rank of size processes (local_rank on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def env_world(environ=None) -> World:
    """The world torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); a SLURM job started by
    Hydra's submitit launcher with several tasks exports those first (`_submitit_env`)."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        _submitit_env(environ)
    try:
        return World(
            int(environ.get("RANK", "0")),
            int(environ.get("WORLD_SIZE", "1")),
            int(environ.get("LOCAL_RANK", "0")),
        )
    except ValueError as e:
        raise ConfigError(f"RANK / WORLD_SIZE / LOCAL_RANK are not integers ({e})") from None


def _submitit_env(environ) -> None:
    """`hydra/launcher=slurm hydra.launcher.tasks_per_node=N`: every task runs the job; submitit
    knows the tasks (SLURM_PROCID, ...) and exports torch's env:// variables for them."""
    if environ is not os.environ or environ.get("SUBMITIT_EXECUTOR") not in ("slurm", "local"):
        return
    try:
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment

        if JobEnvironment().num_tasks > 1:
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except (ImportError, RuntimeError, KeyError) as e:
        log.warning("submitit job without torch.distributed variables (%s): one process", e)


def current() -> World:
    """The world of the running process group (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return World()


def init(device: str = "auto") -> World:
    """Join the process group torchrun describes (a no-op for one process): NCCL for CUDA,
    gloo for the CPU. Ranks other than 0 log errors only (their lines would repeat rank 0's)."""
    world = env_world()
    if not world.active or dist.is_initialized():
        return current() if world.active else world
    cuda = (
        device != "cpu" and str(device).startswith(("cuda", "auto")) and torch.cuda.is_available()
    )
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    if not world.is_main:
        logging.getLogger().setLevel(logging.ERROR)
        logging.getLogger("lnrepro").setLevel(logging.ERROR)
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def hydra_args(argv: list[str], environ=None) -> list[str]:
    """Hydra overrides for ranks > 0 of a torchrun: Hydra writes nothing into the run folder
    (no .hydra/, its log file in a temporary folder that is removed at exit); rank 0's run
    folder is handed over after the process group starts (`run_dir`)."""
    world = env_world(environ)
    if world.active and ("-m" in argv or "--multirun" in argv):
        raise ConfigError(
            "torchrun runs one job: start one torchrun per job of a sweep (or "
            "hydra/launcher=slurm with hydra.launcher.tasks_per_node)"
        )
    if not world.active or world.is_main:
        return argv
    tmp = tempfile.mkdtemp(prefix=f"lnrepro-rank{world.rank}-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return [*argv, f"hydra.run.dir={tmp}", "hydra.output_subdir=null"]


def run_dir(path: str) -> str:
    """Rank 0's run folder, on every rank."""
    return broadcast_object(str(path))


def broadcast_object(obj):
    if not current().active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    world = current()
    if not world.active:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of t over the processes (not differentiable)."""
    world = current()
    if world.active:
        t = t.clone()
        dist.all_reduce(t)
        t /= world.size
    return t


class _AllReduceSum(torch.autograd.Function):
    """y = sum over the processes of x; the gradient of x is the sum over the processes of
    the gradient of y (every process's loss depends on every process's x through y)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The differentiable all-reduce (sum) of x over the processes (x itself for one): what
    `torch.distributed.nn.functional.all_reduce` does (deprecated from torch 2.14 on)."""
    return _AllReduceSum.apply(x) if current().active else x


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The sum of t over the processes (not differentiable; t itself for one process): e.g.
    the global batch's count of something each process counts in its share."""
    if current().active:
        t = t.detach().clone()
        dist.all_reduce(t)
    return t


def all_gather_cases(x: torch.Tensor) -> torch.Tensor:
    """The processes' x (equal shares, as `rank_batch` makes them; cases along dim 0)
    concatenated in rank order: the global batch's rows, differentiable (x itself for one
    process). Each process puts its rows into zeros and `all_reduce_sum` adds them (exact: one
    nonzero term per entry); the gradient of a process's own rows is then the sum over the
    processes of the gradients of those rows, as every process's loss may use every row (a
    loss that compares the cases of the batch with each other: order embeddings)."""
    world = current()
    if not world.active:
        return x
    parts = [x if r == world.rank else torch.zeros_like(x) for r in range(world.size)]
    return all_reduce_sum(torch.cat(parts))


def share_bounds(n: int) -> tuple[int, int]:
    """[lo, hi): this process's rows of the global batch that `all_gather_cases` forms from
    shares of n cases each (0, n for one process)."""
    rank = current().rank
    return rank * n, (rank + 1) * n


def any_rank(flag: bool, device=None) -> bool:
    """Whether flag is true on some process."""
    if not current().active:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# ---------------------------------------------------------------- checks of a run's setup
def device_for(device: torch.device, world: World) -> torch.device:
    """Each process its own GPU (LOCAL_RANK)."""
    if world.active and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def rank_batch(batch_size, world: World, norm) -> int | None:
    """The cases each process gets of the global `data.batch_size`; one ConfigError line when
    they do not split evenly, or when the norm cannot train on that share (per-process BN on one
    case: `norm.check_batch`)."""
    if not world.active or batch_size is None:
        return batch_size
    if batch_size % world.size:
        raise ConfigError(
            f"data.batch_size={batch_size} does not split evenly over {world.size} "
            f"processes: the global batch must be a multiple of the world size"
        )
    norm.check_batch(batch_size, world.size)
    return batch_size // world.size


def bn_meta(norm, batch_size, world: World) -> dict:
    """What summary.json says about the BN statistics: over the whole batch (one process),
    each process's own share (DDP's default), or synced over the processes."""
    if not norm.batch_statistics:
        return {"world_size": world.size}
    if not world.active:
        stats, batch = "batch", batch_size
    elif getattr(norm, "sync", False):
        stats, batch = "synced", batch_size
    else:
        stats, batch = "per_process", batch_size // world.size if batch_size else None
    return {"world_size": world.size, "bn_stats": stats, "bn_batch": batch}


def check_resume(saved: int | None, world: World) -> None:
    saved = saved or 1
    if saved != world.size:
        how = f"torchrun --nproc_per_node={saved}" if saved > 1 else "python -m lnrepro.train"
        raise ConfigError(
            f"cannot resume: the checkpoint was trained by {saved} process"
            f"{'es' * (saved != 1)} and this run has {world.size} (the data shards, the "
            f"per-process RNG and BN batches differ); resume it with `{how}`"
        )


# ---------------------------------------------------------------- data, task, model
def wrap(task, data, model, world: World, device: torch.device, seed: int):
    """The built task, data module and model on this process (unchanged for one process):
    the task refused unless its loss reduction is known, the data module's share of each
    batch, the model under DDP; then this rank's own random stream (`seed_rank`)."""
    if not world.active:
        return task, data, model
    task, data = shard_task(task, world), shard_data(data, world)
    model = wrap_model(model, world, device, task.loss_reduction)
    seed_rank(seed, world)
    return task, data, model


class ShardedData:
    """The data module with `train_batches` yielding this rank's share of each global batch
    (the one-process order); everything else (evaluation, sizes) as the data module's."""

    def __init__(self, data, world: World):
        self._data, self._world = data, world

    def train_batches(self, epoch: int, start: int = 0):
        for batch in self._data.train_batches(epoch, start):
            yield self._data.shard(batch, self._world.rank, self._world.size)

    def __getattr__(self, name):
        return getattr(self._data, name)


def shard_data(data, world: World):
    if not world.active:
        return data
    if not callable(getattr(data, "shard", None)):
        raise ConfigError(
            f"torchrun: {type(data).__name__} does not shard its batches (it has no `shard`, "
            "lnrepro.contracts.DataModule): train this experiment in one process"
        )
    return ShardedData(data, world)


class ShardedTask:
    """The task; its `batch/*` metrics averaged over the processes each step, and a loss that
    is not finite on one process is not finite on all (so every rank stops together)."""

    def __init__(self, task):
        self._task = task

    def training_step(self, model, batch):
        loss, metrics = self._task.training_step(model, batch)
        names = list(metrics)
        local = torch.stack([loss.detach().double(), *(metrics[k].double() for k in names)])
        glob = mean_over_ranks(local)
        if not torch.isfinite(glob[0]) and torch.isfinite(local[0]):
            loss = loss * float("nan")
        return loss, {k: glob[i + 1].to(metrics[k].dtype) for i, k in enumerate(names)}

    def __getattr__(self, name):
        return getattr(self._task, name)


def shard_task(task, world: World):
    if not world.active:
        return task
    reduction = getattr(task, "loss_reduction", None)
    if reduction not in REDUCTIONS:
        raise ConfigError(
            f"torchrun: the training loss of {type(task).__name__} is neither a mean nor a sum "
            f"over the batch's cases (loss_reduction={reduction!r}), so equal shares would not "
            "give the global batch's gradient: train this experiment in one process"
        )
    return ShardedTask(task)


class DDPModel(DistributedDataParallel):
    """DistributedDataParallel that stays out of the way of the rest of the project: the
    wrapped model's state_dict (checkpoints load in one process, and the reverse), its
    attributes (tasks call e.g. `model.mdn`), and a plain forward outside training (rank 0
    evaluates alone: no collective may run there)."""

    def forward(self, *args, **kwargs):
        if not self.training or not torch.is_grad_enabled():
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.load_state_dict(*args, **kwargs)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def _sum_gradients(_state, bucket):
    """A DDP communication hook: the sum of the processes' gradients (DDP's own averages
    them), for a loss that is a sum over the cases."""
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def wrap_model(model, world: World, device: torch.device, reduction: str = "mean"):
    """DDP over the processes (rank 0's parameters and buffers are broadcast at the start, and
    its buffers before every training forward, so BN's running averages are rank 0's); the
    gradients averaged for a loss that is a mean over the cases, summed for a sum."""
    if not world.active:
        return model
    ids = [device] if device.type == "cuda" else None
    ddp = DDPModel(model, device_ids=ids)
    if reduction == "sum":
        ddp.register_comm_hook(None, _sum_gradients)
    return ddp


def seed_rank(seed: int, world: World) -> None:
    """After the model is built (the same on every rank): ranks > 0 their own random stream
    (dropout, DRAW's samples); rank 0 keeps the one-process stream."""
    if world.active and not world.is_main:
        torch.manual_seed(seed * 1_000_003 + world.rank)


@contextlib.contextmanager
def process_group(device: str = "auto"):
    """Join the process group for the body (nothing for one process), then leave it."""
    world = init(device)
    try:
        yield world
    finally:
        if world.active:
            shutdown()
