"""Binarized MNIST for DRAW (Sec. 6.4): 50,000 / 10,000 / 10,000 images of 0/1 pixels.

Two sources (`source`):
* "fixed": the fixed binarization of Larochelle & Murray (2011) that the paper used, from
  `<data_dir>/binarized_mnist/binarized_mnist_{train,valid,test}.amat` (text, one image per line,
  784 values 0/1 separated by spaces; 50k / 10k / 10k). Not obtainable offline here; used when a
  user provides the files.
* "stochastic": one Bernoulli draw per pixel, p = pixel / 255, of the MNIST images (read and
  verified by `data.mnist.load_mnist_tensors`, so missing MNIST gives the same one DataError as
  the other experiments), from numpy's PCG64 seeded with `binarize_seed`. Drawn ONCE and cached
  (bit-packed, about 7 MB) as `stochastic_seed<seed>_<hash of the MNIST pixels>.npz` under
  $LNREPRO_CACHE/binarized_mnist/ (default ~/.cache/lnrepro), so every run of every norm sees
  exactly the same binary images. The split follows Larochelle & Murray (and the paper): the
  first 50,000 MNIST training images train, the last 10,000 (`val_size`) validate, the 10,000
  MNIST test images test.
* "auto" (default): "fixed" when the .amat files are there, else "stochastic".

Images are kept as uint8 (N, 28, 28) tensors (the task casts each batch to float).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from lnrepro.data import common
from lnrepro.data.common import TensorData, write_cache
from lnrepro.data.mnist import load_mnist_tensors
from lnrepro.data.verify import check_count, check_flag
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SOURCES = ("auto", "fixed", "stochastic")
AMAT = {
    "train": "binarized_mnist_train.amat",
    "val": "binarized_mnist_valid.amat",
    "test": "binarized_mnist_test.amat",
}
AMAT_SIZES = {"train": 50000, "val": 10000, "test": 10000}
SIDE = 28
SUBDIR = "binarized_mnist"


def read_amat(path: Path) -> torch.Tensor:
    """One .amat file (lines of 784 space-separated 0/1) -> uint8 (N, 28, 28)."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    pixels = SIDE * SIDE
    # fast path: single-character values, one separator after each ("0 1 ... 0\n")
    if raw.size % (2 * pixels) == 0 and raw.size:
        vals = raw[0::2] - ord("0")
        seps = raw[1::2].reshape(-1, pixels)
        if (
            vals.max() <= 1
            and (seps[:, :-1] == ord(" ")).all()
            and (seps[:, -1] == ord("\n")).all()
        ):
            return torch.from_numpy(vals.reshape(-1, SIDE, SIDE).copy())
    try:  # general text (CRLF, several spaces, "0.0"/"1.0" ...)
        vals = np.array(path.read_text().split(), dtype=np.float32)
    except ValueError as e:
        raise DataError(f"{path} is not a binarized-MNIST .amat file ({e})") from None
    if vals.size % pixels or not np.isin(vals, (0.0, 1.0)).all():
        raise DataError(
            f"{path} is not a binarized-MNIST .amat file (expected lines of {pixels} values 0/1)"
        )
    return torch.from_numpy(vals.astype(np.uint8).reshape(-1, SIDE, SIDE))


def load_fixed(folder: Path, verify: bool = True) -> dict[str, torch.Tensor]:
    """The Larochelle-Murray split: {"train", "val", "test"} -> uint8 (N, 28, 28), each file
    holding exactly the standard number of images (`verify=False`: a warning instead)."""
    out = {}
    for split, name in AMAT.items():
        x = read_amat(folder / name)
        check_count(f"{folder / name} (images)", len(x), AMAT_SIZES[split], verify)
        out[split] = x
    return out


def binarize(images: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 grey images (N, H, W) -> uint8 0/1: pixel 1 with probability grey / 255, one
    uniform draw per pixel from numpy's PCG64 seeded with `seed` (in row-major order)."""
    p = images.numpy().astype(np.float32) / np.float32(255.0)
    u = np.random.default_rng(seed).random(p.shape, dtype=np.float32)
    return torch.from_numpy((u < p).astype(np.uint8))


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=8)
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def cached_binarization(images: torch.Tensor, seed: int, folder: Path) -> torch.Tensor:
    """`binarize(images, seed)`, read from `folder` when cached there, else drawn and written
    (atomically). The file name carries a hash of the source pixels, so another copy of MNIST
    (e.g. the exact training images) gets its own file."""
    path = Path(folder) / f"stochastic_seed{seed}_{_digest(images)}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                bits, shape = f["bits"], tuple(int(s) for s in f["shape"])
            if shape == tuple(images.shape):
                flat = np.unpackbits(bits, count=int(np.prod(shape)))
                log.info("binarized MNIST from the cache %s", path)
                return torch.from_numpy(flat.reshape(shape))
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring the unreadable cache file %s (%s)", path, e)
    x = binarize(images, seed)
    bits = np.packbits(x.numpy().ravel())
    if write_cache(
        path, lambda f: np.savez(f, bits=bits, shape=np.array(x.shape), seed=np.array(seed))
    ):
        log.info("binarized MNIST (seed %d) cached in %s", seed, path)
    return x


def binarized_mnist(
    data_dir: str,
    batch_size: int,
    source: str = "auto",
    binarize_seed: int = 0,
    val_size: int = 10000,
    eval_sizes: dict | None = None,
    eval_batch_size: int = 1000,
    download: bool = True,
    cache_dir: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> TensorData:
    """Binarized MNIST as uint8 (N, 28, 28) tensors in {0, 1}, splits train / val / test.

    Args:
        source: "auto" | "fixed" | "stochastic" (see the module docstring).
        binarize_seed: seed of the stochastic binarization (not the run's seed: every run and
            every norm sees the same images).
        val_size: stochastic source only: training images held out (from the end) to validate;
            10,000 gives the paper's 50k / 10k / 10k.
        eval_sizes: split -> number of leading images evaluated (None / missing: all), to
            estimate a split's bound on a fixed subset at CPU scale.
        cache_dir: where the stochastic binarization is cached (None:
            $LNREPRO_CACHE/binarized_mnist, default ~/.cache/lnrepro/binarized_mnist).
        verify: check MNIST (or the fixed files' image counts) against the recorded ones
            (false: a warning instead).
    """
    splits, kind = load_splits(
        data_dir, source, binarize_seed, val_size, download, cache_dir, verify
    )
    eval_sizes = _check_splits(splits, eval_sizes)
    data = TensorData(
        {k: (v,) for k, v in splits.items()},
        batch_size,
        eval_batch_size=eval_batch_size,
        seed=seed,
        eval_subsets=eval_sizes,
    ).to(device)
    log.info(
        "binarized MNIST (%s): %s images",
        kind,
        " / ".join(f"{len(v):,} {k}" for k, v in splits.items()),
    )
    # train.py fills or checks model.image_size
    data.model_kwargs = {"image_size": _square_side(splits)}
    return data


def load_splits(
    data_dir: str,
    source: str = "auto",
    binarize_seed: int = 0,
    val_size: int = 10000,
    download: bool = True,
    cache_dir: str | None = None,
    verify: bool = True,
) -> tuple[dict[str, torch.Tensor], str]:
    """The train / val / test images of `source` (arguments as in `binarized_mnist`), and the
    source in words for the log: "fixed" or "stochastic (seed <binarize_seed>)"."""
    if source not in SOURCES:
        raise ConfigError(f"data.source must be one of {', '.join(SOURCES)}, got {source!r}")
    root = Path(data_dir).expanduser()
    folder = root / SUBDIR
    have_fixed = all((folder / f).exists() for f in AMAT.values())
    if source == "fixed" and not have_fixed:
        raise DataError(
            f"the fixed binarized MNIST (Larochelle & Murray 2011) was not found: put "
            f"{', '.join(AMAT.values())} in {folder}/, or use data.source=stochastic"
        )
    check_flag(verify)
    if source == "fixed" or (source == "auto" and have_fixed):
        splits = load_fixed(folder, verify)
        log.info("binarized MNIST: the fixed Larochelle-Murray files in %s", folder)
        return splits, "fixed"
    splits = stochastic_splits(
        root, download, verify, val_size, int(binarize_seed), common.cache_dir(SUBDIR, cache_dir)
    )
    return splits, f"stochastic (seed {binarize_seed})"


def _square_side(splits: dict[str, torch.Tensor]) -> int:
    """A, the side of the A x A images (DRAW takes square images only)."""
    h, w = splits["train"].shape[1:]
    if h != w:
        raise DataError(f"binarized MNIST images are {h}x{w}; DRAW here takes square images")
    return int(h)


def stochastic_splits(
    root: Path, download: bool, verify: bool, val_size: int, binarize_seed: int, cache: Path
) -> dict[str, torch.Tensor]:
    """MNIST under `root` binarized with `binarize_seed` (cached in `cache`): the last
    `val_size` training images validate, the test set tests."""
    try:
        (trx, _), (tex, _) = load_mnist_tensors(root, download, verify)
    except DataError as e:
        raise DataError(
            f"{e} (binarized MNIST is drawn from it; or give the fixed binarization as "
            f"{root / SUBDIR}/binarized_mnist_{{train,valid,test}}.amat)"
        ) from None
    if not 0 < val_size < len(trx):
        raise ConfigError(f"data.val_size must be in (0, {len(trx)}), got {val_size}")
    x = cached_binarization(torch.cat([trx, tex]), binarize_seed, cache)
    n = len(trx) - val_size
    return {"train": x[:n], "val": x[n : len(trx)], "test": x[len(trx) :]}


def _check_splits(splits: dict[str, torch.Tensor], eval_sizes: dict | None) -> dict:
    """The splits' images must have one size, and `eval_sizes` name known splits; returns
    eval_sizes as a dict."""
    sizes = {k: tuple(v.shape[1:]) for k, v in splits.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"binarized MNIST splits have different image sizes: {sizes}")
    eval_sizes = dict(eval_sizes or {})
    unknown = set(eval_sizes) - set(splits)
    if unknown:
        raise ConfigError(f"data.eval_sizes names unknown split(s) {sorted(unknown)}")
    return eval_sizes


def synthetic_batch(cfg: dict, batch_size: int, generator: torch.Generator, length=None):
    """A training batch of random binary images (13 % ink, as MNIST's) as `binarized_mnist`
    yields it, without the files (lnrepro.contracts.SyntheticBatch). Training images: 50,000
    fixed ones, or MNIST's 60,000 less `val_size` (stochastic; `auto` counted as stochastic)."""
    from lnrepro.contracts import SyntheticBatch

    x = (torch.rand(batch_size, SIDE, SIDE, generator=generator) < 0.13).to(torch.uint8)
    fixed = cfg.get("source", "auto") == "fixed"
    n = AMAT_SIZES["train"] if fixed else 60_000 - cfg.get("val_size", 10000)
    return SyntheticBatch((x,), {"image_size": SIDE}, n // batch_size)
