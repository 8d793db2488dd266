"""MNIST from its IDX files, held in memory as flat float tensors (Sec. 6.6).

Looks for `<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte` (torchvision's
layout; each may be gzipped) and only reads it. When files are missing, torchvision downloads
them into the default data folder (LNREPRO_DATA unset) when the network allows; otherwise, and
in a data folder the user names, the run stops with one message and nothing is written. The
four files are checked against recorded checksums (lnrepro.data.verify) before any use.
The paper's split: the first 55,000 training images train, the last 5,000 validate, and the
10,000 test images test.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
from pathlib import Path

import torch

from lnrepro.data.common import TensorData, default_data_dir, download_into, downloads_allowed
from lnrepro.data.verify import verify_files
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _missing_message(raw: Path, missing: list[str], reason: str) -> str:
    where = f"{raw}/" if raw.parent.parent.is_dir() else f"{raw}/ (the folder does not exist)"
    return (
        f"MNIST not found: {', '.join(missing)} (or .gz) missing in {where}; {reason}. Put the "
        f"four files {', '.join(FILES)} there, or point LNREPRO_DATA at a folder that has MNIST/raw/"
    )


def _file(raw: Path, name: str) -> Path | None:
    """`raw/name`, else `raw/name.gz`, else None."""
    return next((p for p in (raw / name, raw / f"{name}.gz") if p.is_file()), None)


def read_idx(path: Path, dims: int) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's format: big-endian magic 0x0800 + `dims`, the
    `dims` sizes, the bytes), a .gz decompressed in memory: the file is only read."""
    data = Path(path).read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    (magic,) = struct.unpack(">I", data[:4])
    if magic != 0x800 + dims:
        raise ValueError(f"{path.name} is not an IDX file of {dims}-d bytes (magic {magic:#x})")
    head = 4 + 4 * dims
    shape = struct.unpack(f">{dims}I", data[4:head])
    if len(data) - head != math.prod(shape):
        raise ValueError(f"{path.name} has {len(data) - head} bytes of data for shape {shape}")
    return torch.frombuffer(bytearray(data[head:]), dtype=torch.uint8).view(*shape)


def _download(root: Path, raw: Path, missing: list[str]) -> None:
    """torchvision's download of the four files into the default data folder `root`."""
    from torchvision.datasets import MNIST

    log.info("downloading MNIST into %s/", raw)
    try:
        download_into(
            root, [f"MNIST/raw/{f}" for f in FILES], lambda tmp: MNIST(tmp, download=True)
        )
    except Exception as e:  # noqa: BLE001  (torchvision wraps every mirror's failure)
        reason = f"the download failed: {(str(e).splitlines() or [type(e).__name__])[0][:120]}"
        raise DataError(_missing_message(raw, missing, reason)) from None


def load_mnist_tensors(data_dir: str | Path, download: bool = True, verify: bool = True):
    """Returns ((train_x, train_y), (test_x, test_y)): uint8 (N, 28, 28) images, int64 labels,
    from files that match the recorded checksums (`verify=False`: any copy, with a warning).

    The data folder is only read. Missing files are downloaded (`download`) only into the
    default data folder (LNREPRO_DATA unset: lnrepro.data.common.downloads_allowed); in a folder
    the user names they are one DataError line, and nothing is created there."""
    root = Path(data_dir).expanduser()
    raw = root / "MNIST" / "raw"
    missing = [f for f in FILES if _file(raw, f) is None]
    if missing:
        if not download:
            raise DataError(_missing_message(raw, missing, "data.download=false"))
        if not downloads_allowed(root):
            raise DataError(
                _missing_message(
                    raw,
                    missing,
                    "the data folder is only read, never downloaded into (unset LNREPRO_DATA "
                    f"to download into {default_data_dir()})",
                )
            )
        _download(root, raw, missing)
    files = [_file(raw, f) for f in FILES]
    out = []
    for images, labels in (files[:2], files[2:]):
        try:
            x, y = read_idx(images, 3), read_idx(labels, 1)
        except Exception as e:  # noqa: BLE001  (truncated, foreign or undecompressable files)
            raise DataError(
                f"MNIST files in {raw} are corrupt ({type(e).__name__}: {e}); replace them"
            ) from None
        if tuple(x.shape[1:]) != (28, 28):
            raise DataError(
                f"MNIST images in {raw} have shape {tuple(x.shape)}, expected (N, 28, 28)"
            )
        if len(y) != len(x) or (len(y) and y.max() > 9):
            raise DataError(f"MNIST labels in {raw} do not match the images (corrupt file?)")
        out.append((x, y.long()))
    verify_files("MNIST", raw, files, verify)
    return tuple(out)


def mnist(
    data_dir: str,
    batch_size: int,
    val_size: int = 5000,
    permute: bool = False,
    permutation_seed: int = 0,
    train_eval_size: int | None = None,
    eval_batch_size: int = 2000,
    download: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    flatten: bool = True,
    verify: bool = True,
) -> TensorData:
    """MNIST in [0, 1]: 784-d vectors (permutation-invariant MNIST, Sec. 6.6), or (1, 28, 28)
    images with `flatten=False` (the convolutional comparison, Sec. 6.7).

    Args:
        val_size: examples held out from the END of the training set for validation
            (5,000 gives the paper's 55,000 / 5,000 split).
        permute: apply one fixed pixel permutation (seeded) to every image. An MLP is
            invariant to it up to initialization; provided for completeness.
        train_eval_size: evaluate the training NLL on this many training images (None: all).
        verify: check the files against the recorded checksums (false: a warning instead).
    """
    (trx, try_), (tex, tey) = load_mnist_tensors(data_dir, download, verify)
    if not 0 < val_size < len(trx):
        raise ConfigError(f"data.val_size must be in (0, {len(trx)}), got {val_size}")

    def flat(x):
        x = x.reshape(len(x), -1).float().div_(255.0)
        if permute:
            g = torch.Generator().manual_seed(permutation_seed)
            x = x[:, torch.randperm(x.shape[1], generator=g)]
        return x if flatten else x.view(len(x), 1, 28, 28)

    trx, tex = flat(trx), flat(tex)
    n = len(trx) - val_size
    splits = {
        "train": (trx[:n], try_[:n]),
        "val": (trx[n:], try_[n:]),
        "test": (tex, tey),
    }
    data = TensorData(
        splits,
        batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        eval_subsets={"train": train_eval_size},
    ).to(device)
    # what the model must agree with (train.py fills or checks these model config keys)
    data.model_kwargs = {"in_dim": 784} if flatten else {"in_channels": 1, "image_size": 28}
    return data


def synthetic_batch(cfg: dict, batch_size: int, generator: torch.Generator, length=None):
    """A training batch of random pixels and labels as `mnist` yields it, without the files
    (lnrepro.contracts.SyntheticBatch): MNIST's 60,000 training images less `val_size` train."""
    from lnrepro.contracts import SyntheticBatch

    flatten = cfg.get("flatten", True)
    x = torch.rand(batch_size, *((784,) if flatten else (1, 28, 28)), generator=generator)
    y = torch.randint(0, 10, (batch_size,), generator=generator)
    kwargs = {"in_dim": 784} if flatten else {"in_channels": 1, "image_size": 28}
    return SyntheticBatch((x, y), kwargs, (60_000 - cfg.get("val_size", 5000)) // batch_size)
