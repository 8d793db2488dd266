"""CIFAR-10 through torchvision's loader, held in memory as (N, 3, 32, 32) tensors (Sec. 6.7).

Looks for `<data_dir>/cifar-10-batches-py/` (torchvision's layout) and only reads it; when it
is missing, torchvision downloads it into the default data folder (LNREPRO_DATA unset) when the
network allows; otherwise, and in a data folder the user names, the run stops with one message. torchvision checks every batch file
against its recorded md5 (a damaged or foreign file is refused), and the loaded splits are
checked here to hold exactly 50,000 and 10,000 images. Split: the first 45,000 training
images train, the last 5,000 validate, the 10,000 test images test. Pixels are scaled to [0, 1]
and centred by the training set's per-channel mean (no augmentation).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lnrepro.data.common import TensorData, default_data_dir, download_into, downloads_allowed
from lnrepro.data.verify import check_count, check_flag
from lnrepro.errors import ConfigError, DataError

FOLDER = "cifar-10-batches-py"
SIZES = {True: 50000, False: 10000}  # train, test


def _missing(folder: Path, reason: str) -> DataError:
    where = folder if folder.parent.is_dir() else f"{folder} (the folder does not exist)"
    return DataError(
        f"CIFAR-10 not found in {where}; {reason}: put torchvision's {FOLDER}/ (data_batch_1..5, "
        "test_batch, batches.meta) there, or point LNREPRO_DATA at a folder that has it"
    )


def load_cifar10_tensors(data_dir: str | Path, download: bool = True, verify: bool = True):
    """Returns ((train_x, train_y), (test_x, test_y)): uint8 (N, 3, 32, 32), int64 labels.

    The data folder is only read; a missing folder is downloaded (`download`) only into the
    default data folder (LNREPRO_DATA unset), as MNIST (lnrepro.data.mnist)."""
    from torchvision.datasets import CIFAR10

    root = Path(data_dir).expanduser()
    folder = root / FOLDER
    if not folder.is_dir():
        if not download:
            raise _missing(folder, "data.download=false")
        if not downloads_allowed(root):
            raise _missing(
                folder,
                "the data folder is only read, never downloaded into (unset LNREPRO_DATA to "
                f"download into {default_data_dir()})",
            )
        try:
            download_into(root, [FOLDER], lambda tmp: CIFAR10(tmp, train=True, download=True))
        except Exception as e:  # noqa: BLE001  (no network, a failed mirror)
            why = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise _missing(folder, f"the download failed: {why}") from None
    out = []
    for train in (True, False):
        try:
            ds = CIFAR10(str(root), train=train, download=False)
        except (RuntimeError, OSError):
            raise DataError(
                f"CIFAR-10 in {folder} does not match torchvision's recorded md5 checksums "
                "(damaged or incomplete?): replace it"
            ) from None
        except Exception as e:  # noqa: BLE001  (unpickling errors of truncated or foreign files)
            raise DataError(
                f"CIFAR-10 files in {folder} are corrupt ({type(e).__name__}: {e})"
            ) from None
        x = torch.as_tensor(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> NCHW
        y = torch.as_tensor(ds.targets, dtype=torch.long)
        if tuple(x.shape[1:]) != (3, 32, 32) or len(y) != len(x):
            raise DataError(f"CIFAR-10 in {root / FOLDER} has images of shape {tuple(x.shape)}")
        check_count(
            f"CIFAR-10 {'training' if train else 'test'} images in {root / FOLDER}",
            len(x),
            SIZES[train],
            verify,
        )
        out.append((x, y))
    return tuple(out)


def cifar10(
    data_dir: str,
    batch_size: int,
    val_size: int = 5000,
    train_eval_size: int | None = None,
    eval_batch_size: int = 1000,
    download: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> TensorData:
    check_flag(verify)
    (trx, try_), (tex, tey) = load_cifar10_tensors(data_dir, download, verify)
    if not 0 < val_size < len(trx):
        raise ConfigError(f"data.val_size must be in (0, {len(trx)}), got {val_size}")
    n = len(trx) - val_size
    trx, tex = trx.float().div_(255.0), tex.float().div_(255.0)
    mean = trx[:n].mean(dim=(0, 2, 3), keepdim=True)
    trx, tex = trx - mean, tex - mean
    data = TensorData(
        {"train": (trx[:n], try_[:n]), "val": (trx[n:], try_[n:]), "test": (tex, tey)},
        batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        eval_subsets={"train": train_eval_size},
    ).to(device)
    data.model_kwargs = {"in_channels": 3, "image_size": 32}
    return data


def synthetic_batch(cfg: dict, batch_size: int, generator: torch.Generator, length=None):
    """A training batch of random (mean-subtracted) images and labels as `cifar10` yields it,
    without the files (lnrepro.contracts.SyntheticBatch)."""
    from lnrepro.contracts import SyntheticBatch

    x = torch.rand(batch_size, 3, 32, 32, generator=generator) - 0.5
    y = torch.randint(0, 10, (batch_size,), generator=generator)
    spe = (SIZES[True] - cfg.get("val_size", 5000)) // batch_size
    return SyntheticBatch((x, y), {"in_channels": 3, "image_size": 32}, spe)
