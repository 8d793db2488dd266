"""IAM-OnDB lines as training tensors: the fixed split by form, the offset normalisation,
padding, and the `iam_ondb` data factory (configs/data/iam_ondb.yaml)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from lnrepro.checks import int_at_least
from lnrepro.data.common import TensorData, check_batch_size
from lnrepro.data.iam_ondb.cache import load_raw_lines
from lnrepro.data.iam_ondb.parse import FOLDER, RawLines
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# Graves 2013 Sec. 5.2 used 57 symbols: of the ~80 distinct characters, the digits and most
# punctuation share one non-letter label. Which marks he kept is not given; ASSUMPTION: space
# and the three most frequent marks in IAM-OnDB's transcriptions (. , "): 52 letters + 4 kept
# + the non-letter class = 57.
DEFAULT_ALPHABET = ' abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,"'


def in_validation(form: str, val_fraction: float, split_seed: int) -> bool:
    """The fixed, documented split: a form is in validation when the hash of
    "<split_seed>:<form>" falls in the first val_fraction of its range."""
    h = int.from_bytes(hashlib.sha256(f"{split_seed}:{form}".encode()).digest()[:8], "big")
    return h < val_fraction * 2**64


def encode_text(text: str, alphabet: str) -> list[int]:
    """Symbol ids: 0 is the non-letter class, alphabet[i] is i + 1 (Graves 2013 Sec. 5.2)."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    return [index.get(c, 0) for c in text]


def pad_lines(
    raw: RawLines,
    idx: list[int],
    max_len: int | None,
    alphabet: str,
    scale: np.ndarray,
    shift: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lines idx -> strokes (N, L, 3) float32 ((dx - shift) / scale, eos), zero padded,
    lengths (N,), chars (N, U) long padded with -1. Lines are cut to their first max_len
    offsets (the text is kept whole)."""
    lines = [raw.line(i)[:max_len] for i in idx]
    texts = [encode_text(raw.texts[i], alphabet) for i in idx]
    L, U = max(len(x) for x in lines), max(len(t) for t in texts)
    strokes = np.zeros((len(idx), L, 3), dtype=np.float32)
    chars = np.full((len(idx), U), -1, dtype=np.int64)
    for k, (x, t) in enumerate(zip(lines, texts)):
        strokes[k, : len(x), :2] = (x[:, :2] - shift) / scale
        strokes[k, : len(x), 2] = x[:, 2]
        chars[k, : len(t)] = t
    lengths = torch.tensor([len(x) for x in lines], dtype=torch.long)
    return torch.from_numpy(strokes), lengths, torch.from_numpy(chars)


class StrokeData(TensorData):
    """Splits "train" and "val" of (strokes (N, L, 3), lengths (N,), chars (N, U)) tensors,
    sliced into random mini-batches (TensorData: seeded order per epoch, resumable).

    Attributes beyond TensorData's:
        alphabet: the kept characters; symbol i + 1 is alphabet[i], 0 the non-letter class.
        mean, std: (2,) offset statistics of the training set used to normalise dx, dy.
        model_kwargs: vocab_size, alphabet and the offset statistics, which the model records
            (sampling turns its outputs back into pen positions with them).
    """

    def __init__(self, splits, alphabet: str, mean, std, **kwargs):
        super().__init__(splits, **kwargs)
        self.alphabet, self.mean, self.std = alphabet, list(map(float, mean)), list(map(float, std))
        self.vocab_size = len(alphabet) + 1
        self.model_kwargs = {
            "vocab_size": self.vocab_size,
            "alphabet": alphabet,
            "offset_mean": self.mean,
            "offset_std": self.std,
        }


def iam_ondb(
    data_dir: str,
    batch_size: int = 8,
    max_len: int | None = 500,
    val_fraction: float = 0.05,
    split_seed: int = 0,
    subtract_mean: bool = True,
    alphabet: str = DEFAULT_ALPHABET,
    train_eval_lines: int | None = None,
    val_eval_lines: int | None = None,
    eval_batch_size: int = 64,
    limit_forms: int | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> StrokeData:
    """IAM-OnDB lines as padded offset sequences (see the module docstring).

    Args:
        batch_size: training lines per update (the LN paper: 8).
        max_len: keep the first max_len offsets of each line (null: whole lines). Longer lines
            are truncated, not dropped: dropping would keep only the short lines.
        val_fraction: share of forms in the validation split.
        split_seed: seed of the form hash (fixed: the split must not change with `seed`).
        subtract_mean: Graves' "mean 0, std 1" normalisation; false divides by the std only.
        alphabet: characters kept as their own symbol; all others become the non-letter symbol.
        train_eval_lines: evaluate the training NLL on this many fixed training lines (null: all).
        val_eval_lines: evaluate on the first N validation lines (null: all).
        limit_forms: read only the first N forms (for smoke tests).
        cache_dir: where the parsed lines are cached (null: $LNREPRO_CACHE/iam_ondb).
        seed: base seed of the training order (and of the fixed order of stored lines).
        verify: check the files against the recorded checksums and counts (false: a warning).
    """
    _check_options(batch_size, max_len, limit_forms, train_eval_lines, val_eval_lines,
                   val_fraction, alphabet)  # fmt: skip
    raw, _ = load_raw_lines(data_dir, limit_forms, cache_dir, verify)
    _report_drops(raw, data_dir)
    split_idx = split_forms(raw, val_fraction, split_seed)
    mean, std = offset_stats(raw, split_idx["train"], max_len, subtract_mean)
    splits = {
        name: pad_lines(raw, idx, max_len, alphabet, std, mean) for name, idx in split_idx.items()
    }
    log.info(
        "IAM-OnDB: %d train / %d val lines, max_len %s, offsets mean %s std %s",
        len(split_idx["train"]), len(split_idx["val"]), max_len,
        np.round(mean, 3).tolist(), np.round(std, 3).tolist(),
    )  # fmt: skip
    subsets = {"train": train_eval_lines, "val": val_eval_lines}
    data = StrokeData(splits, alphabet, mean, std, batch_size=batch_size,
                      eval_batch_size=eval_batch_size, seed=seed, eval_subsets=subsets)  # fmt: skip
    return data.to(device)


def _check_options(batch_size, max_len, limit_forms, train_eval_lines, val_eval_lines,
                   val_fraction, alphabet) -> None:  # fmt: skip
    """One ConfigError line for a bad option of `iam_ondb`."""
    check_batch_size(batch_size)
    for name, value in (
        ("max_len", max_len),
        ("limit_forms", limit_forms),
        ("train_eval_lines", train_eval_lines),
        ("val_eval_lines", val_eval_lines),
    ):
        int_at_least(value, f"data.{name}", allow_none=True)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    if not alphabet or len(set(alphabet)) != len(alphabet):
        raise ConfigError(f"data.alphabet must be non-empty without repeats, got {alphabet!r}")


def _report_drops(raw: RawLines, data_dir) -> None:
    """One warning with the dropped lines by reason; no usable line at all is a DataError."""
    n_drop = sum(raw.dropped.values())
    if n_drop:
        shown = ", ".join(f"{v} {k}" for k, v in raw.dropped.items() if v)
        log.warning("IAM-OnDB: dropped %d of %d lines (%s)", n_drop, len(raw) + n_drop, shown)
    if not len(raw):
        raise DataError(
            f"IAM-OnDB in {Path(data_dir) / FOLDER} has no usable line (every line was dropped: "
            f"{raw.dropped}); check the lineStrokes and ascii files"
        )


def split_forms(raw: RawLines, val_fraction: float, split_seed: int) -> dict[str, list[int]]:
    """{"train": line indices, "val": line indices} by form (`in_validation`); the training
    lines in a fixed order drawn from `split_seed`, so the training-NLL subset is a random sample
    of writers. An empty split is a DataError."""
    is_val = [in_validation(f, val_fraction, split_seed) for f in raw.forms]
    split_idx = {
        "train": [i for i, v in enumerate(is_val) if not v],
        "val": [i for i, v in enumerate(is_val) if v],
    }
    for name, idx in split_idx.items():
        if not idx:
            raise DataError(
                f"the {name} split of IAM-OnDB is empty ({len(raw)} lines of "
                f"{len(set(raw.forms))} forms, data.val_fraction={val_fraction}); read more "
                "forms (data.limit_forms) or change data.val_fraction"
            )
    g = np.random.default_rng(split_seed)
    split_idx["train"] = [split_idx["train"][i] for i in g.permutation(len(split_idx["train"]))]
    return split_idx


def offset_stats(
    raw: RawLines, train_idx: list[int], max_len: int | None, subtract_mean: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the training (dx, dy) offsets as padded (the first max_len of each line);
    mean 0 without `subtract_mean`. Zero variance is a DataError."""
    train_xy = np.concatenate([raw.line(i)[:max_len, :2] for i in train_idx])
    train_xy = train_xy.astype(np.float64)
    mean = train_xy.mean(0) if subtract_mean else np.zeros(2)
    std = train_xy.std(0)
    if not (std > 0).all():
        raise DataError(f"IAM-OnDB training offsets have zero variance (std {std.tolist()})")
    return mean, std


def synthetic_batch(cfg: dict, batch_size: int, generator: torch.Generator, length=None):
    """A training batch of random pen offsets and texts as `iam_ondb` yields it, without the
    files (lnrepro.contracts.SyntheticBatch): `length` (default `max_len`, 500 for whole lines)
    points with an end of stroke about every 20, texts of length * 64 // 500 symbols (ASSUMPTION:
    the longest text of a batch of 8 lines cut at 500 points), the last line half as long in
    both, padded as the real batches. Offsets are normalised (mean 0, std 1)."""
    from lnrepro.contracts import SyntheticBatch

    B, L = batch_size, length or cfg.get("max_len") or 500
    U, V = max(2, L * 64 // 500), len(cfg.get("alphabet", DEFAULT_ALPHABET)) + 1
    strokes = torch.randn(B, L, 3, generator=generator)
    strokes[..., 2] = (torch.rand(B, L, generator=generator) < 0.05).float()
    lengths = torch.full((B,), L)
    lengths[-1] = max(1, L // 2)
    strokes[-1, lengths[-1] :] = 0
    chars = torch.randint(0, V, (B, U), generator=generator)
    chars[-1, max(1, U // 2) :] = -1
    kwargs = {"vocab_size": V, "offset_mean": [0.0, 0.0], "offset_std": [1.0, 1.0]}
    return SyntheticBatch((strokes, lengths, chars), kwargs, None)
