"""CIFAR-10 through torchvision's loader, held in memory as (N, 3, 32, 32) tensors (Sec. 6.7).

Looks for `<data_dir>/cifar-10-batches-py/` (torchvision's layout); downloads it when missing
and the network allows; otherwise stops with one message. torchvision checks every batch file
against its recorded md5 (a damaged or foreign file is refused), and the loaded splits are
checked here to hold exactly 50,000 and 10,000 images. Split: the first 45,000 training
images train, the last 5,000 validate, the 10,000 test images test. Pixels are scaled to [0, 1]
and centred by the training set's per-channel mean (no augmentation).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lnrepro.data.common import TensorData
from lnrepro.data.verify import check_count, check_flag
from lnrepro.errors import ConfigError, DataError

FOLDER = "cifar-10-batches-py"
SIZES = {True: 50000, False: 10000}  # train, test


def load_cifar10_tensors(data_dir: str | Path, download: bool = True, verify: bool = True):
    """Returns ((train_x, train_y), (test_x, test_y)): uint8 (N, 3, 32, 32), int64 labels."""
    from torchvision.datasets import CIFAR10

    root = Path(data_dir).expanduser()
    out = []
    for train in (True, False):
        try:
            ds = CIFAR10(str(root), train=train, download=download)
        except (RuntimeError, OSError) as e:
            problem = (
                f"in {root / FOLDER} does not match torchvision's recorded md5 "
                "checksums (damaged or incomplete?)"
                if (root / FOLDER).is_dir()
                else f"not found in {root / FOLDER}"
            )
            raise DataError(
                f"CIFAR-10 {problem} and could not be downloaded "
                f"({str(e).splitlines()[0][:120]}): put torchvision's {FOLDER}/ (data_batch_1..5, "
                "test_batch, batches.meta) there, or point LNREPRO_DATA at a folder that has it"
            ) from None
        except Exception as e:  # noqa: BLE001  (unpickling errors of truncated or foreign files)
            raise DataError(
                f"CIFAR-10 files in {root / FOLDER} are corrupt ({type(e).__name__}: {e})"
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
