"""In-memory datasets sliced into batches: deterministic order from (seed, epoch), resumable."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import torch

from lnrepro.artifacts import atomic_write
from lnrepro.checks import positive_int
from lnrepro.errors import ConfigError, OutputError

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """The one folder of every cache (parsed corpora, binarizations, file digests, Hugging Face
    downloads): $LNREPRO_CACHE, default ~/.cache/lnrepro. Never the data folder: users share
    dataset folders, often read-only by convention."""
    return Path(os.environ.get("LNREPRO_CACHE") or "~/.cache/lnrepro").expanduser()


def default_data_dir() -> Path:
    """The data folder when LNREPRO_DATA is unset (configs/paths/default.yaml): `<repo>/data`."""
    from lnrepro import REPO_ROOT

    return REPO_ROOT / "data"


def downloads_allowed(data_dir: str | Path) -> bool:
    """Whether a missing dataset may be downloaded into `data_dir`: only into the default data
    folder. A folder the user names (LNREPRO_DATA, paths.data_dir) is only ever read, never
    created or written: users share dataset folders, often read-only by convention."""
    return Path(data_dir).expanduser().resolve() == default_data_dir().resolve()


def download_into(data_dir: str | Path, names: list[str], fetch: Callable[[Path], None]) -> None:
    """Download into the default data folder `data_dir` without leaving anything behind when the
    download fails: `fetch(tmp)` downloads into an empty temporary folder under the cache root,
    and on success each of `names` (paths relative to that folder) is moved into `data_dir`."""
    import shutil
    import tempfile

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix="download-") as tmp:
        fetch(Path(tmp))
        for name in names:  # moved under a temporary name, then renamed: never half a file
            target = Path(data_dir).expanduser() / name
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.move(str(Path(tmp) / name), str(part))
            os.replace(part, target)


def cache_dir(name: str, override: str | Path | None = None) -> Path:
    """The cache folder of one kind of cache: `override` (a config's `cache_dir`) when given,
    else cache_root() / name."""
    return Path(override).expanduser() if override else cache_root() / name


def write_cache(path: Path, write: Callable[[BinaryIO], None]) -> bool:
    """Write a cache file atomically (never half a file); a failure (disk full, ...) is one
    warning, since a cache only saves time. Returns whether the file was written."""
    try:
        atomic_write(path, write)
        return True
    except OutputError as e:
        log.warning("%s; not cached, the next run builds it again", e)
        return False


def vocab_hash(vocab: list[str]) -> str:
    """Short content hash of a vocabulary (symbols hold no whitespace, so "\\n" separates),
    saved with a model and checked when a checkpoint is loaded."""
    return hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16]


def check_batch_size(batch_size) -> int:
    return positive_int(batch_size, "data.batch_size")


def share(n: int, rank: int, size: int) -> slice:
    """Process `rank`'s share of `n` cases split evenly over `size` processes (the global batch
    is a multiple of the world size: lnrepro.distributed.rank_batch)."""
    per = n // size
    return slice(rank * per, (rank + 1) * per)


def shard_cases(batch, rank: int, size: int):
    """The default `shard` of a data module (lnrepro.contracts.DataModule): process `rank`'s
    slice of a (named) tuple of tensors that hold the cases along their first dimension; a
    value that is not a tensor (a flag) is every process's."""
    parts = [t[share(len(t), rank, size)] if isinstance(t, torch.Tensor) else t for t in batch]
    return type(batch)(*parts) if hasattr(batch, "_fields") else type(batch)(parts)


class TensorData:
    """Tensors held in memory (on the training device) and sliced into mini-batches: a
    `lnrepro.contracts.DataModule`.

    Training order is a fresh permutation per epoch drawn from a generator seeded with
    (seed, epoch), so a run resumed at step s replays exactly the batches it would have seen.
    The last incomplete training batch is dropped (batch norm must never see a batch of 1).

    Args:
        splits: name -> tuple of tensors with the same first dimension; must include "train".
        batch_size: training batch size.
        eval_batch_size: batch size for evaluation passes (no effect on the numbers).
        seed: base seed of the shuffling.
        eval_subsets: split name -> number of leading examples evaluated (None = all); used to
            estimate the training NLL on a fixed subset at CPU scale.
        model_kwargs: the model config fields the data decides (e.g. {"in_dim": 784}).
    """

    def __init__(
        self,
        splits: dict[str, tuple[torch.Tensor, ...]],
        batch_size: int,
        eval_batch_size: int = 1000,
        seed: int = 0,
        eval_subsets: dict[str, int | None] | None = None,
        model_kwargs: dict | None = None,
    ):
        self.splits = splits
        self.batch_size = check_batch_size(batch_size)
        self.eval_batch_size = check_batch_size(eval_batch_size)
        self.seed = int(seed)
        self.eval_subsets = dict(eval_subsets or {})
        self.model_kwargs = dict(model_kwargs or {})
        n = len(splits["train"][0])
        if n < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the training set ({n} examples)"
            )
        self.steps_per_epoch = n // self.batch_size

    shard = staticmethod(shard_cases)

    def to(self, device) -> TensorData:
        self.splits = {k: tuple(t.to(device) for t in v) for k, v in self.splits.items()}
        return self

    def train_batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches `start, start+1, ...` of training epoch `epoch` (0-based)."""
        tensors = self.splits["train"]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(tensors[0]), generator=g).to(tensors[0].device)
        bs = self.batch_size
        for i in range(start, self.steps_per_epoch):
            idx = order[i * bs : (i + 1) * bs]
            yield tuple(t[idx] for t in tensors)

    def eval_batches(self, split: str) -> Iterator[tuple[torch.Tensor, ...]]:
        tensors = self.splits[split]
        n = len(tensors[0])
        limit = self.eval_subsets.get(split)
        if limit:
            n = min(n, int(limit))
        for i in range(0, n, self.eval_batch_size):
            yield tuple(t[i : min(i + self.eval_batch_size, n)] for t in tensors)
