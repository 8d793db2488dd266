"""IAM On-Line Handwriting Database (IAM-OnDB) for handwriting synthesis (Sec. 6.5; Graves 2013
Sec. 4-5), held in memory as padded pen-offset sequences plus their transcriptions.

Files, under `<data_dir>/iam_ondb/` (the official layout):
  lineStrokes/aNN/aNN-NNN/<form>-LL.xml   one text line of pen strokes, or the archive
                                          lineStrokes-all.tar.xz | .tar.gz, read without
                                          extracting it
  ascii/aNN/aNN-NNN/<form>.txt            the form's transcription ("CSR:" section, one line per
                                          stroke file), or ascii-all.tar.xz | .tar.gz

Processing (Graves 2013 Sec. 4.2): each line becomes offsets (dx, dy, end_of_stroke) between
consecutive points, end_of_stroke = 1 on the last point of each `Stroke` (the pen is lifted
after it); the first point only anchors the line. Graves removed steps longer than a threshold
and interpolated missing readings ("recording errors"); we do neither (no threshold is given).
Offsets are normalised over the training set: Graves writes "normalised to mean 0, std. dev. 1",
so `subtract_mean: true` (the default) does exactly that; false only divides by the std.

Lines dropped, counted and reported in one warning: malformed XML, fewer than 2 points, no
transcription line (no ascii file, or a form whose number of CSR lines differs from its number
of stroke files, so that the line-to-text mapping is unreliable: a08-551z and z01-000z in the
real data), and empty text.

Split: the IAM-OnDB task files (trainset.txt, testset_v.txt, ...) are not in our copy, so the
split is by form: a form goes to validation when a hash of (split_seed, form id) falls in the
first `val_fraction` of its range. The assignment of a form never depends on which other forms
were read (stable under `limit_forms`); all lines of a form (one writer, one text) stay together.

Verification (`verify`, lnrepro.data.verify), before any parse or cache: the archives against
the recorded checksums of their content, extracted trees by their exact numbers of files
(12,195 line files, 1,907 transcriptions). Independently, the archive reader detects damage:
Python's tarfile stops at a damaged member header as if the archive ended there, so the rest of
the stream must be the end-of-archive zero blocks and decompress intact to its end, and a full
read counts its files against the recorded totals.

The parsed raw lines (integer offsets, texts, form ids, drop counts) are cached as one .npz
(no pickles) under $LNREPRO_CACHE/iam_ondb/ (default ~/.cache/lnrepro), never in the data
folder; the key is the content of the archives (or every file's path, size and mtime in an
extracted tree), `limit_forms` and the format version, so the second load skips the XML.
"""

from __future__ import annotations

import hashlib
import logging
import lzma
import re
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lnrepro.data import common
from lnrepro.data.common import TensorData, check_batch_size, write_cache
from lnrepro.data.verify import IAM_ONDB_FILES, check_count, file_digests, verify_files
from lnrepro.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
FOLDER = "iam_ondb"
ARCHIVES = {"lineStrokes": ("lineStrokes-all.tar.xz", "lineStrokes-all.tar.gz"),
            "ascii": ("ascii-all.tar.xz", "ascii-all.tar.gz")}
LINE_FILE = re.compile(r"([a-z0-9]+-[a-z0-9]+)-(\d+)\.xml$")
FORM_FILE = re.compile(r"([a-z0-9]+-[a-z0-9]+)\.txt$")
PATTERNS = {"lineStrokes": LINE_FILE, "ascii": FORM_FILE}
# Graves 2013 Sec. 5.2 used 57 symbols: of the ~80 distinct characters, the digits and most
# punctuation share one non-letter label. Which marks he kept is not given; ASSUMPTION: space
# and the three most frequent marks in IAM-OnDB's transcriptions (. , "): 52 letters + 4 kept
# + the non-letter class = 57.
DEFAULT_ALPHABET = ' abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,"'
DROP_REASONS = ("malformed XML", "fewer than 2 points", "no transcription", "empty text")


# ---- parsing ------------------------------------------------------------------------------
def parse_strokes(xml: bytes | str) -> np.ndarray:
    """One lineStrokes XML -> (N, 3) int32 rows (x, y, end_of_stroke) in pen order.

    Raises ET.ParseError (malformed) or ValueError (no points, non-integer coordinates)."""
    root = ET.fromstring(xml)
    rows = []
    for stroke in root.iter("Stroke"):
        pts = [(int(p.get("x")), int(p.get("y")), 0) for p in stroke.iter("Point")]
        if pts:
            pts[-1] = (pts[-1][0], pts[-1][1], 1)
            rows += pts
    if not rows:
        raise ValueError("no Point elements")
    return np.asarray(rows, dtype=np.int32)


def to_offsets(points: np.ndarray) -> np.ndarray:
    """(N, 3) absolute (x, y, eos) -> (N - 1, 3) offsets (dx, dy, eos of the point reached)."""
    out = np.empty((len(points) - 1, 3), dtype=np.int32)
    out[:, :2] = np.diff(points[:, :2], axis=0)
    out[:, 2] = points[1:, 2]
    return out


def parse_transcription(text: str) -> list[str]:
    """The non-empty lines after "CSR:" of one ascii form file (CRLF or LF)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "CSR:")
    except StopIteration:
        return []
    return [line.strip() for line in lines[start + 1 :] if line.strip()]


def _find(root: Path, kind: str) -> Path | None:
    tree = root / kind
    if tree.is_dir():
        return tree
    return next((root / a for a in ARCHIVES[kind] if (root / a).is_file()), None)


def _sources(root: Path) -> dict[str, Path]:
    """{"lineStrokes": tree or archive, "ascii": ...}; one DataError naming what is missing."""
    found = {kind: _find(root, kind) for kind in ARCHIVES}
    missing = [f"{k}/ (or {' | '.join(ARCHIVES[k])})" for k, s in found.items() if s is None]
    if missing:
        raise DataError(_missing_message(root, missing))
    return found


def _tree_files(tree: Path, pattern: re.Pattern) -> list[Path]:
    return sorted(p for p in tree.rglob("*") if p.is_file() and pattern.search(p.name))


def _files(source: Path, pattern: re.Pattern) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every file matching `pattern` in a tree or a tar archive, in
    sorted path order (the archives are sorted; trees are sorted here). A damaged archive is
    a DataError, also where tarfile would stop quietly (see `_check_end`)."""
    if source.is_dir():
        for p in _tree_files(source, pattern):
            yield p.name, p.read_bytes()
        return
    try:
        with tarfile.open(source, "r:*") as tar:
            for m in tar:
                name = m.name.rsplit("/", 1)[-1]
                if m.isfile() and pattern.search(name):
                    yield name, tar.extractfile(m).read()
            _check_end(tar, source)
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as e:
        raise DataError(f"{source} cannot be read ({type(e).__name__}: {e}): the archive is "
                        "damaged or truncated; restore it") from None


def _check_end(tar: tarfile.TarFile, source: Path) -> None:
    """tarfile ends quietly at a member header that does not read, as at the end of the
    archive: what follows must be the end-of-archive zero blocks, and the compressed stream
    must decompress to its end (where its check sums are)."""
    while chunk := tar.fileobj.read(1 << 20):
        if chunk.strip(b"\0"):
            raise DataError(f"{source} is damaged: the member header after {len(tar.members)} "
                            "members does not read, and data follows it; restore the archive")


def _missing_message(root: Path, missing: list[str]) -> str:
    return (
        f"IAM-OnDB not found: {', '.join(missing)} missing in {root}/. Put the official "
        "lineStrokes-all and ascii-all archives (.tar.gz or .tar.xz; IAM-OnDB, FKI Bern, for "
        f"registered users) or their extracted lineStrokes/ and ascii/ trees in {root}/, or point "
        "LNREPRO_DATA at a folder that has iam_ondb/"
    )


@dataclass
class RawLines:
    """Parsed lines: integer offsets of all lines concatenated, and one entry per line."""

    offsets: np.ndarray  # (P, 3) int32: dx, dy, eos of every line, concatenated
    starts: np.ndarray  # (L + 1,) int64: line i is offsets[starts[i] : starts[i + 1]]
    texts: list[str]
    forms: list[str]
    dropped: dict[str, int]

    def __len__(self) -> int:
        return len(self.texts)

    def line(self, i: int) -> np.ndarray:
        return self.offsets[self.starts[i] : self.starts[i + 1]]


def parse_iam_ondb(root: Path, limit_forms: int | None = None, verify: bool = True) -> RawLines:
    """Read every line of the lineStrokes tree/archive under `root` that has a transcription.
    An archive read in full must hold the recorded numbers of files (`verify=False`: a
    warning)."""
    sources = _sources(root)
    counts = dict.fromkeys(sources, 0)
    transcripts = {}
    for name, data in _files(sources["ascii"], FORM_FILE):
        transcripts[FORM_FILE.search(name).group(1)] = parse_transcription(data.decode("latin-1"))
        counts["ascii"] += 1
    by_form: dict[str, list[tuple[int, bytes]]] = {}
    for name, data in _files(sources["lineStrokes"], LINE_FILE):
        form, num = LINE_FILE.search(name).groups()
        if form not in by_form and limit_forms is not None and len(by_form) >= limit_forms:
            break  # sorted input: a form's files are consecutive
        by_form.setdefault(form, []).append((int(num), data))
        counts["lineStrokes"] += 1
    if limit_forms is None:
        for kind in ("lineStrokes", "ascii"):
            if sources[kind].is_file():
                check_count(f"IAM-OnDB {sources[kind]}", counts[kind], IAM_ONDB_FILES[kind],
                            verify)
    dropped: Counter = Counter()
    chunks, texts, forms = [], [], []
    for form, files in by_form.items():
        csr = transcripts.get(form)
        usable = csr is not None and len(csr) == len(files)
        for num, data in sorted(files, key=lambda f: f[0]):
            try:
                offsets = to_offsets(parse_strokes(data))
            except (ET.ParseError, ValueError, TypeError):
                dropped["malformed XML"] += 1
                continue
            if len(offsets) < 1:
                dropped["fewer than 2 points"] += 1
            elif not usable or not 1 <= num <= len(csr):
                dropped["no transcription"] += 1
            elif not csr[num - 1].strip():
                dropped["empty text"] += 1
            else:
                chunks.append(offsets)
                texts.append(csr[num - 1])
                forms.append(form)
    starts = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in chunks], out=starts[1:])
    offsets = np.concatenate(chunks) if chunks else np.zeros((0, 3), np.int32)
    return RawLines(offsets, starts, texts, forms, {r: dropped.get(r, 0) for r in DROP_REASONS})


# ---- cache ----------------------------------------------------------------------------------
def cache_key(sources: dict[str, Path], limit_forms: int | None) -> str:
    """The content the parse is built from (an archive's content digest, or every file's path,
    size and mtime in a tree), `limit_forms` and the format version."""
    parts = [f"v{CACHE_VERSION}", f"limit={limit_forms}"]
    for kind, src in sources.items():
        if src.is_file():
            parts.append(f"{kind}:{file_digests(src)['sha256']}")
        else:
            parts += [f"{p.relative_to(src)}:{st.st_size}:{st.st_mtime_ns}"
                      for p in _tree_files(src, PATTERNS[kind]) for st in [p.stat()]]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def save_raw(path: Path, raw: RawLines) -> bool:
    """Cache `raw` as an npz (atomically; texts and forms as fixed-width unicode, no pickles).
    Returns whether it was written (a failure is one warning)."""
    if raw.offsets.size and np.abs(raw.offsets).max() >= 2**15:
        raise DataError(f"IAM-OnDB offsets beyond the int16 range ({np.abs(raw.offsets).max()})")
    return write_cache(path, lambda f: np.savez(
        f, offsets=raw.offsets.astype(np.int16), starts=raw.starts,
        texts=np.asarray(raw.texts, dtype=str), forms=np.asarray(raw.forms, dtype=str),
        dropped=np.asarray([raw.dropped[r] for r in DROP_REASONS], dtype=np.int64)))


def load_raw(path: Path) -> RawLines:
    with np.load(path, allow_pickle=False) as z:
        return RawLines(z["offsets"].astype(np.int32), z["starts"], [str(t) for t in z["texts"]],
                        [str(f) for f in z["forms"]],
                        dict(zip(DROP_REASONS, z["dropped"].tolist())))


def load_raw_lines(data_dir: str | Path, limit_forms: int | None = None,
                   cache_dir: str | Path | None = None, verify: bool = True
                   ) -> tuple[RawLines, bool]:
    """The parsed lines of `<data_dir>/iam_ondb`, verified, from the cache when it has them
    (cache_dir None: $LNREPRO_CACHE/iam_ondb). Returns (lines, from_cache)."""
    root = Path(data_dir).expanduser() / FOLDER
    if not root.is_dir():
        raise DataError(_missing_message(root, ["the folder itself"]))
    sources = _sources(root)
    verify_files("IAM-OnDB", root, [s for s in sources.values() if s.is_file()], verify)
    for kind, src in sources.items():
        if verify and src.is_dir():
            check_count(f"IAM-OnDB {src}", len(_tree_files(src, PATTERNS[kind])),
                        IAM_ONDB_FILES[kind], verify)
    cache = Path(cache_dir).expanduser() if cache_dir else common.cache_dir(FOLDER)
    path = cache / f"lines_{cache_key(sources, limit_forms)}.npz"
    if path.exists():
        try:
            return load_raw(path), True
        except (OSError, ValueError, KeyError, EOFError) as e:
            log.warning("ignoring unreadable cache %s (%s: %s)", path, type(e).__name__, e)
    log.info("parsing IAM-OnDB in %s (once; cached in %s)", root, cache)
    raw = parse_iam_ondb(root, limit_forms, verify)
    save_raw(path, raw)
    return raw, False


# ---- tensors ------------------------------------------------------------------------------
def in_validation(form: str, val_fraction: float, split_seed: int) -> bool:
    """The fixed, documented split: a form is in validation when the hash of
    "<split_seed>:<form>" falls in the first val_fraction of its range."""
    h = int.from_bytes(hashlib.sha256(f"{split_seed}:{form}".encode()).digest()[:8], "big")
    return h < val_fraction * 2**64


def encode_text(text: str, alphabet: str) -> list[int]:
    """Symbol ids: 0 is the non-letter class, alphabet[i] is i + 1 (Graves 2013 Sec. 5.2)."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    return [index.get(c, 0) for c in text]


def pad_lines(raw: RawLines, idx: list[int], max_len: int | None, alphabet: str, scale: np.ndarray,
              shift: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        self.model_kwargs = {"vocab_size": self.vocab_size, "alphabet": alphabet,
                             "offset_mean": self.mean, "offset_std": self.std}


def _check(name: str, value, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"data.{name} must be an integer >= {minimum}, got {value!r}")
    return value


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
    check_batch_size(batch_size)
    _check("max_len", max_len, allow_none=True)
    _check("limit_forms", limit_forms, allow_none=True)
    _check("train_eval_lines", train_eval_lines, allow_none=True)
    _check("val_eval_lines", val_eval_lines, allow_none=True)
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
    if not alphabet or len(set(alphabet)) != len(alphabet):
        raise ConfigError(f"data.alphabet must be non-empty without repeats, got {alphabet!r}")
    raw, _ = load_raw_lines(data_dir, limit_forms, cache_dir, verify)
    n_drop = sum(raw.dropped.values())
    if n_drop:
        shown = ", ".join(f"{v} {k}" for k, v in raw.dropped.items() if v)
        log.warning("IAM-OnDB: dropped %d of %d lines (%s)", n_drop, len(raw) + n_drop, shown)
    if not len(raw):
        raise DataError(
            f"IAM-OnDB in {Path(data_dir) / FOLDER} has no usable line (every line was dropped: "
            f"{raw.dropped}); check the lineStrokes and ascii files"
        )
    is_val = [in_validation(f, val_fraction, split_seed) for f in raw.forms]
    split_idx = {"train": [i for i, v in enumerate(is_val) if not v],
                 "val": [i for i, v in enumerate(is_val) if v]}
    for name, idx in split_idx.items():
        if not idx:
            raise DataError(
                f"the {name} split of IAM-OnDB is empty ({len(raw)} lines of "
                f"{len(set(raw.forms))} forms, data.val_fraction={val_fraction}); read more "
                "forms (data.limit_forms) or change data.val_fraction"
            )
    # fixed storage order (seeded), so the training-NLL subset is a random sample of writers
    g = np.random.default_rng(split_seed)
    split_idx["train"] = [split_idx["train"][i] for i in g.permutation(len(split_idx["train"]))]
    train_xy = np.concatenate([raw.line(i)[:max_len, :2] for i in split_idx["train"]])
    train_xy = train_xy.astype(np.float64)
    mean = train_xy.mean(0) if subtract_mean else np.zeros(2)
    std = train_xy.std(0)
    if not (std > 0).all():
        raise DataError(f"IAM-OnDB training offsets have zero variance (std {std.tolist()})")
    splits = {name: pad_lines(raw, idx, max_len, alphabet, std, mean)
              for name, idx in split_idx.items()}
    log.info("IAM-OnDB: %d train / %d val lines, max_len %s, offsets mean %s std %s",
             len(split_idx["train"]), len(split_idx["val"]), max_len,
             np.round(mean, 3).tolist(), np.round(std, 3).tolist())
    subsets = {"train": train_eval_lines, "val": val_eval_lines}
    return StrokeData(splits, alphabet, mean, std, batch_size=batch_size,
                      eval_batch_size=eval_batch_size, seed=seed,
                      eval_subsets=subsets).to(device)
