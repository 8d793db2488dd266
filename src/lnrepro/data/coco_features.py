"""COCO captions with precomputed image features, for order embeddings (the paper's Sec. 6.1;
Vendrov et al. 2016, "Order-Embeddings of Images and Language").

The layout of the files Vendrov et al. distributed (coco.zip, README of ivendrov/order-embedding;
read by their datasets.py; Karpathy's splits, "restval" merged into train):

    <data_dir>/coco/{train,val,test}.txt                one pre-tokenised caption a line, exactly
                                                         5 per image, in image order: lines
                                                         5i .. 5i+4 describe row i of the array
    <data_dir>/coco/images/10crop/{train,val,test}.npy  float32 (N, 4096): VGG19 fc7 features,
                                                         mean over 10 crops, scaled to unit norm

`val` is their name for the development split (`dev` in their code). Karpathy's split has
113,287 / 5,000 / 5,000 images; any sizes are accepted as long as every split has 5 captions
per image and enough images for its folds.

Vocabulary: every word of the training captions (`str.split()`, as Vendrov et al.), by
frequency (ties alphabetical); <pad> 0, <eos> 1, <unk> 2 first. (Vendrov et al. also added the validation words,
whose embeddings are then never trained; here they are <unk>.) Each caption is its words
then <eos>; Vendrov et al.'s encoder also reads one end token after the words.

Training (their datasource.py): each epoch visits every training image once in a fresh random
order and pairs it with one of its 5 captions drawn at random; the last incomplete batch is
dropped. Order and draws come from (seed, epoch), so a resumed run replays the same batches.

Evaluation (their evaluation.py): a split is cut into folds of `fold_images` consecutive
images with their 5 captions each; "val" is the first `val_folds` (1 fold of 1,000: their
validation set), "test" the first `test_folds` (5 folds of 1,000: Table 2). `eval_batches`
yields one `Pairs` per fold; the task ranks within a fold and averages over folds.
"""

from __future__ import annotations

import logging
from collections import Counter
from itertools import chain
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lnrepro.checks import positive_int
from lnrepro.data.common import check_batch_size, shard_cases, vocab_hash
from lnrepro.data.text import EOS_ID, PAD_ID, SPECIALS, UNK_ID
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CAPS_PER_IMAGE = 5
SPLITS = ("train", "val", "test")
SOURCE = (
    "Vendrov et al.'s coco.zip (README of github.com/ivendrov/order-embedding: "
    "www.cs.toronto.edu/~vendrov/order/coco.zip)"
)


class Pairs(NamedTuple):
    """Captions (B, L) ids padded with <pad>, each ending with <eos>, and image features (M, D):
    a training batch (M = B, caption k describes image k) or an evaluation fold (B = 5 M,
    captions 5i .. 5i+4 describe image i)."""

    ids: torch.Tensor
    images: torch.Tensor


def expected_files(data_dir: str | Path, cnn: str = "10crop") -> dict[str, tuple[Path, Path]]:
    """split -> (captions file, image-feature file) in Vendrov et al.'s layout."""
    root = Path(data_dir).expanduser() / "coco"
    return {s: (root / f"{s}.txt", root / "images" / cnn / f"{s}.npy") for s in SPLITS}


def check_files(data_dir: str | Path, cnn: str = "10crop") -> dict[str, tuple[Path, Path]]:
    """The six files, or one DataError naming every missing one, where, and LNREPRO_DATA."""
    files = expected_files(data_dir, cnn)
    root = Path(data_dir).expanduser() / "coco"
    missing = [str(p.relative_to(root)) for pair in files.values() for p in pair if not p.is_file()]
    if missing:
        raise DataError(
            f"COCO features not found: {', '.join(missing)} missing in {root}/. Expected "
            f"Vendrov et al.'s layout: coco/{{train,val,test}}.txt (5 captions per image) and "
            f"coco/images/{cnn}/{{train,val,test}}.npy (one feature row per image). Unzip "
            f"{SOURCE} so that {root}/ holds them, or point LNREPRO_DATA at a folder that has "
            "coco/"
        )
    return files


def _read_captions(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path} cannot be read ({type(e).__name__}: {e}); corrupt file?") from None
    caps = [line.split() for line in text.splitlines()]
    if not caps or any(not c for c in caps):
        raise DataError(f"{path} is empty or has an empty caption line")
    return caps


def _read_features(path: Path) -> torch.Tensor:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} cannot be read as a .npy array ({e}); corrupt file?") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise DataError(
            f"{path} must hold a 2-D float array (images x features), got {arr.dtype} {arr.shape}"
        )
    feats = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if not torch.isfinite(feats).all():
        raise DataError(f"{path} holds non-finite values")
    return feats


def encode_captions(caps: list[list[str]], stoi: dict[str, int]) -> torch.Tensor:
    """Token lists -> (N, L) int32 ids: words (<unk> if unknown), <eos>, then <pad>."""
    rows = [[stoi.get(w, UNK_ID) for w in c] + [EOS_ID] for c in caps]
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ids = np.full((len(rows), int(lengths.max())), PAD_ID, dtype=np.int32)
    ids[np.arange(ids.shape[1]) < lengths[:, None]] = np.fromiter(
        chain.from_iterable(rows), dtype=np.int32, count=int(lengths.sum())
    )
    return torch.from_numpy(ids)


def _trim(ids: torch.Tensor) -> torch.Tensor:
    """Drop the columns that are <pad> in every row."""
    n = int((ids != PAD_ID).sum(1).max())
    return ids[:, :n]


class CocoFeatures:
    """Caption-image pairs in memory; the data interface of lnrepro.trainer (module docstring).

    Args:
        splits: split -> (captions (5N, L) int32 ids, features (N, D) float32).
        vocab: the words (ids are positions).
        batch_size: images (and captions) per training batch (Vendrov et al.: 128).
        fold_images, val_folds, test_folds: evaluation folds (Vendrov et al.: 1,000; 1; 5).
        seed: base seed of the training order and the caption draws.
    """

    def __init__(
        self,
        splits: dict,
        vocab: list[str],
        batch_size: int,
        fold_images: int,
        val_folds: int,
        test_folds: int,
        seed: int = 0,
    ):
        self.batch_size = check_batch_size(batch_size)
        self.seed = int(seed)
        self.caps, self.feats = splits["train"]
        self.vocab = vocab
        self.model_kwargs = {
            "vocab_size": len(vocab),
            "vocab_hash": vocab_hash(vocab),
            "dim_image": int(self.feats.shape[1]),
        }
        if len(self.feats) < self.batch_size:
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the "
                f"{len(self.feats)} training images"
            )
        self.steps_per_epoch = len(self.feats) // self.batch_size
        self.splits = {
            name: self._folds(name, *splits[name], fold_images, n)
            for name, n in (("val", val_folds), ("test", test_folds))
            if n
        }
        self.device = torch.device("cpu")

    @staticmethod
    def _folds(name, caps, feats, fold_images: int, n_folds: int) -> list[Pairs]:
        for key, v in (("fold_images", fold_images), (f"{name}_folds", n_folds)):
            positive_int(v, f"data.{key}")
        if n_folds * fold_images > len(feats):
            raise ConfigError(
                f"data.{name}_folds={n_folds} folds of data.fold_images="
                f"{fold_images} need {n_folds * fold_images} {name} images; the "
                f"files have {len(feats)}"
            )
        k, m = fold_images, CAPS_PER_IMAGE * fold_images
        return [
            Pairs(_trim(caps[i * m : (i + 1) * m]), feats[i * k : (i + 1) * k])
            for i in range(n_folds)
        ]

    shard = staticmethod(shard_cases)  # captions (B, L) and images (B, D)

    def to(self, device) -> CocoFeatures:
        self.device = torch.device(device)
        return self

    def _pairs(self, ids: torch.Tensor, images: torch.Tensor) -> Pairs:
        return Pairs(_trim(ids).long().to(self.device), images.to(self.device))

    def train_batches(self, epoch: int, start: int = 0):
        """Batches `start, start+1, ...` of training epoch `epoch`: each image once, with one of
        its 5 captions drawn at random."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.feats), generator=g)
        pick = torch.randint(CAPS_PER_IMAGE, (len(self.feats),), generator=g)
        bs = self.batch_size
        for i in range(start, self.steps_per_epoch):
            img = order[i * bs : (i + 1) * bs]
            yield self._pairs(self.caps[img * CAPS_PER_IMAGE + pick[img]], self.feats[img])

    def eval_batches(self, split: str):
        """One `Pairs` per fold of the split."""
        for fold in self.splits[split]:
            yield self._pairs(*fold)


def load_split(files: tuple[Path, Path]) -> tuple[list[list[str]], torch.Tensor]:
    caps_path, feats_path = files
    caps, feats = _read_captions(caps_path), _read_features(feats_path)
    if len(caps) != CAPS_PER_IMAGE * len(feats):
        raise DataError(
            f"{caps_path} has {len(caps)} captions for the {len(feats)} images of "
            f"{feats_path}; the layout needs exactly {CAPS_PER_IMAGE} per image"
        )
    return caps, feats


def coco_features(
    data_dir: str,
    cnn: str = "10crop",
    batch_size: int = 128,
    fold_images: int = 1000,
    val_folds: int = 1,
    test_folds: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> CocoFeatures:
    """The COCO caption-image data of `<data_dir>/coco/` (see the module docstring).

    Args:
        cnn: the feature folder under coco/images/ (Vendrov et al.: 10crop; also 1crop).
        fold_images, val_folds, test_folds: evaluation folds of consecutive images.
    """
    files = check_files(data_dir, cnn)
    raw = {s: load_split(files[s]) for s in SPLITS}
    dims = {s: int(f.shape[1]) for s, (_, f) in raw.items()}
    if len(set(dims.values())) > 1:
        raise DataError(f"the feature files differ in width ({dims}): one CNN for all splits")
    counts = Counter(w for c in raw["train"][0] for w in c)
    vocab = list(SPECIALS) + sorted(counts, key=lambda w: (-counts[w], w))  # every training word
    stoi = {w: i for i, w in enumerate(vocab)}
    splits = {s: (encode_captions(caps, stoi), feats) for s, (caps, feats) in raw.items()}
    log.info(
        "COCO %s features (%d-d): %s images; %d words",
        cnn,
        dims["train"],
        " / ".join(f"{s} {len(raw[s][1]):,}" for s in SPLITS),
        len(vocab),
    )
    data = CocoFeatures(splits, vocab, batch_size, fold_images, val_folds, test_folds, seed)
    return data.to(device)


def synthetic_batch(cfg: dict, batch_size: int, generator: torch.Generator, length=None):
    """A training batch of random captions and unit-norm image features as `coco_features`
    yields it, without the files (lnrepro.contracts.SyntheticBatch). ASSUMPTIONS (no file is
    read): captions of `length` (default 24: about the longest of 128 COCO captions) tokens
    or fewer, <eos> last; 4096-d features (VGG19 fc7); a 10,000-word vocabulary; Karpathy's
    113,287 training images."""
    from lnrepro.contracts import SyntheticBatch

    B, L, V = batch_size, length or 24, 10_000
    ids = torch.randint(len(SPECIALS), V, (B, L), generator=generator)
    n = torch.randint(min(L, 8), L + 1, (B,), generator=generator)
    n[0] = L
    ids[torch.arange(B), n - 1] = EOS_ID
    ids = ids.masked_fill(torch.arange(L) >= n[:, None], PAD_ID)
    images = torch.rand(B, 4096, generator=generator)
    images = images / images.norm(dim=1, keepdim=True)
    kwargs = {"vocab_size": V, "dim_image": 4096}
    return SyntheticBatch(Pairs(ids, images), kwargs, 113_287 // batch_size)
