"""MNIST through torchvision's loader, held in memory as flat float tensors (Sec. 6.6).

Looks for `<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte` (torchvision's
layout); downloads them when missing and the network allows; otherwise stops with one message.
torchvision checks only that the raw files exist (and the md5 of the .gz it downloads), so the
four files are checked here against recorded checksums (lnrepro.data.verify) before any use.
The paper's split: the first 55,000 training images train, the last 5,000 validate, and the
10,000 test images test.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lnrepro.data.common import TensorData
from lnrepro.data.verify import verify_files
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _missing_message(raw: Path, reason: str) -> str:
    return (
        f"MNIST not found and could not be downloaded ({reason}). Put the four files "
        f"{', '.join(FILES)} (or their .gz) in {raw}/, or point LNREPRO_DATA at a folder "
        "that has MNIST/raw/"
    )


def load_mnist_tensors(data_dir: str | Path, download: bool = True, verify: bool = True):
    """Returns ((train_x, train_y), (test_x, test_y)): uint8 (N, 28, 28) images, int64 labels,
    from files that match the recorded checksums (`verify=False`: any copy, with a warning)."""
    from torchvision.datasets import MNIST

    root = Path(data_dir).expanduser()
    raw = root / "MNIST" / "raw"
    have_all = all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in FILES)
    if not have_all and not download:
        raise DataError(_missing_message(raw, "data.download=false"))
    out = []
    for train in (True, False):
        try:
            ds = MNIST(str(root), train=train, download=download)
        except (RuntimeError, OSError) as e:  # torchvision wraps every mirror's failure
            if "corrupt" in str(e).lower() or have_all:
                raise DataError(f"MNIST files in {raw} could not be read: {e}") from None
            raise DataError(_missing_message(raw, str(e).splitlines()[0][:120])) from None
        except Exception as e:  # noqa: BLE001  (IDX parser errors: truncated or foreign files)
            raise DataError(
                f"MNIST files in {raw} are corrupt ({type(e).__name__}: {e}); delete them to "
                "download again"
            ) from None
        x, y = ds.data, ds.targets
        if x.dtype != torch.uint8 or x.dim() != 3 or tuple(x.shape[1:]) != (28, 28):
            raise DataError(
                f"MNIST images in {raw} have shape {tuple(x.shape)}, expected (N, 28, 28)"
            )
        if y.dim() != 1 or len(y) != len(x) or (len(y) and (y.min() < 0 or y.max() > 9)):
            raise DataError(f"MNIST labels in {raw} do not match the images (corrupt file?)")
        out.append((x, y.long()))
    verify_files("MNIST", raw, [raw / f for f in FILES], verify)
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
