"""Several processes (torchrun, or SLURM tasks): data-parallel training with
DistributedDataParallel, keeping the meaning of one-process runs.

    torchrun --nproc_per_node=N -m lnrepro.train experiment=<name> norm=ln [key=value ...]

What holds (tests/test_ddp.py checks it on CPU, gloo backend, 2 processes):

* `data.batch_size` is the GLOBAL batch: every process builds the one-process run's batches in
  the one-process order and keeps its own slice of each (`ShardedData`): rank r of N takes
  cases [r B/N, (r+1) B/N) (TensorData), or those streams of the B truncated-BPTT streams
  (TokenStreams). B must split evenly (one ConfigError line otherwise).
* Losses: every supported task's training loss is a mean over its cases (tokens of a segment),
  so with equal shards DDP's gradient average, (1/N) sum_r grad mean_r, is the gradient of the
  mean over the global batch (the global count), as in one process. Tasks whose loss is not
  such a mean (a sum, a count of live tokens, a ranking within the batch) are refused
  (`TASK_LOSSES`). The `batch/*` rows are the mean over processes of each process's values
  (`ShardedTask`): the global batch's values for per-case means.
* Batch norm: by default each process normalises over its own B/N cases (that is the BN batch
  size of the run; summary.json says `bn_stats: per_process` and `bn_batch`). With
  `norm.sync=true` the statistics are summed over the processes (lnrepro.nn.norm), so the run
  is the one-process run at batch B (`bn_stats: synced`). `unbiased: auto` is decided on B.
* Only rank 0 writes the run folder (metrics, summary, checkpoints, W&B; `NullLogger` on the
  other ranks) and evaluates (the other ranks wait at their next collective); the other ranks
  tell Hydra to write nothing (`hydra_args`) and are given rank 0's run folder.
* Checkpoints carry every rank's RNG state and task state (`DistributedTrainer`) and the world
  size, which a resume checks (`check_resume`).
* The default one-process path does not touch any of this (`World.size == 1`: identity).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from lnrepro.errors import ConfigError
from lnrepro.trainer import Trainer

log = logging.getLogger(__name__)

# Collectives wait this long: rank 0 evaluates alone while the others wait at their next step.
TIMEOUT = timedelta(minutes=int(os.environ.get("LNREPRO_DDP_TIMEOUT_MIN", "120")))

# Task class -> how its training loss is normalised; "mean": a mean over the batch's cases (or
# the tokens of equal-length segments), which DDP's gradient average turns into the global mean
# when the shards are equal. Other tasks are refused under DDP (`shard_task`).
TASK_LOSSES = {
    "lnrepro.tasks.classification.Classification": "mean",
    "lnrepro.tasks.draw.Draw": "mean",
    "lnrepro.tasks.lm.LanguageModel": "mean",
}


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
def _shard_slice(n: int, world: World) -> slice:
    per = n // world.size
    return slice(world.rank * per, (world.rank + 1) * per)


def _shard_rule(data):
    """How a batch of `data` is cut into the rank's share, or None when no rule is known."""
    from lnrepro.data.common import TensorData
    from lnrepro.data.ptb import Segment, TokenStreams

    if isinstance(data, TensorData):  # tuples of (B, ...) tensors
        return lambda batch, w: tuple(t[_shard_slice(len(t), w)] for t in batch)
    if isinstance(data, TokenStreams):  # (T, B) segments: the rank's streams
        return lambda seg, w: Segment(
            seg.x[:, _shard_slice(seg.x.shape[1], w)],
            seg.y[:, _shard_slice(seg.y.shape[1], w)],
            seg.first,
        )
    return None


class ShardedData:
    """The data module with `train_batches` yielding this rank's slice of each global batch
    (the one-process order); everything else (evaluation, sizes) as the data module's."""

    def __init__(self, data, world: World, rule):
        self._data, self._world, self._rule = data, world, rule

    def train_batches(self, epoch: int, start: int = 0):
        for batch in self._data.train_batches(epoch, start):
            yield self._rule(batch, self._world)

    def __getattr__(self, name):
        return getattr(self._data, name)


def shard_data(data, world: World):
    if not world.active:
        return data
    rule = _shard_rule(data)
    if rule is None:
        raise ConfigError(
            f"torchrun: {type(data).__name__} batches have no shard rule yet "
            "(lnrepro.distributed._shard_rule): train this experiment in one process"
        )
    return ShardedData(data, world, rule)


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
    name = f"{type(task).__module__}.{type(task).__qualname__}"
    if name not in TASK_LOSSES:
        raise ConfigError(
            f"torchrun: the training loss of {type(task).__name__} is not a mean "
            "over the batch's cases, so equal shards would not give the global "
            "batch's gradient (lnrepro.distributed.TASK_LOSSES): train this "
            "experiment in one process"
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


def wrap_model(model, world: World, device: torch.device):
    """DDP over the processes (rank 0's parameters and buffers are broadcast at the start, and
    its buffers before every training forward, so BN's running averages are rank 0's)."""
    if not world.active:
        return model
    ids = [device] if device.type == "cuda" else None
    return DDPModel(model, device_ids=ids)


def seed_rank(seed: int, world: World) -> None:
    """After the model is built (the same on every rank): ranks > 0 their own random stream
    (dropout, DRAW's samples); rank 0 keeps the one-process stream."""
    if world.active and not world.is_main:
        torch.manual_seed(seed * 1_000_003 + world.rank)


class NullLogger:
    """What ranks > 0 log to: nothing (rank 0 writes metrics, summary and W&B)."""

    def log(self, *args, **kwargs) -> None:
        pass

    def log_checkpoint(self, *args, **kwargs) -> None:
        pass

    def write_summary(self, *args, **kwargs) -> None:
        pass

    def close(self, *args, **kwargs) -> None:
        pass


def _rng_state() -> dict:
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if cuda else None}


class DistributedTrainer(Trainer):
    """The one training loop on each process. Rank 0 evaluates and writes the checkpoint, which
    carries every rank's RNG and task state (`ranks`) and the world size; a stop signal on any
    rank stops every rank at the same step."""

    def __init__(self, *args, world: World, **kwargs):
        super().__init__(*args, **kwargs)
        self.world = world

    def state_dict(self) -> dict:
        state = super().state_dict()  # every rank: the all-gather below is a collective
        ranks = all_gather_object({"rng": _rng_state(), "task": self.task.state_dict()})
        return {**state, "world_size": self.world.size, "ranks": ranks}

    def save(self) -> None:
        if self.world.is_main:
            super().save()
        else:
            self.state_dict()

    def load_state_dict(self, ckpt: dict) -> None:
        super().load_state_dict(ckpt)
        mine = ckpt["ranks"][self.world.rank]
        self.task.load_state_dict(mine["task"])
        torch.set_rng_state(mine["rng"]["cpu"])
        if mine["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(mine["rng"]["cuda"])

    def evaluate(self, final: bool = False) -> dict[str, float]:
        return super().evaluate(final) if self.world.is_main else {}

    def _progress(self):
        return super()._progress() if self.world.is_main else None

    def _stop_requested(self, stop) -> bool:
        device = self.params[0].device if self.params else None
        if any_rank(super()._stop_requested(stop), device) and stop.signum is None:
            stop.signum = signal.SIGTERM  # another rank's signal
        return stop.signum is not None


@contextlib.contextmanager
def process_group(device: str = "auto"):
    """Join the process group for the body (nothing for one process), then leave it."""
    world = init(device)
    try:
        yield world
    finally:
        if world.active:
            shutdown()
