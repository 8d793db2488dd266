"""The parsed IAM-OnDB lines cached as one .npz (no pickles) under $LNREPRO_CACHE/iam_ondb/,
keyed by the content of the sources, `limit_forms` and the format version."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from lnrepro.data import common
from lnrepro.data.common import write_cache
from lnrepro.data.iam_ondb.parse import (
    DROP_REASONS,
    FOLDER,
    PATTERNS,
    RawLines,
    _missing_message,
    _sources,
    _tree_files,
    parse_iam_ondb,
)
from lnrepro.data.verify import IAM_ONDB_FILES, check_count, file_digests, verify_files
from lnrepro.errors import DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def cache_key(sources: dict[str, Path], limit_forms: int | None) -> str:
    """The content the parse is built from (an archive's content digest, or every file's path,
    size and mtime in a tree), `limit_forms` and the format version."""
    parts = [f"v{CACHE_VERSION}", f"limit={limit_forms}"]
    for kind, src in sources.items():
        if src.is_file():
            parts.append(f"{kind}:{file_digests(src)['sha256']}")
        else:
            parts += [
                f"{p.relative_to(src)}:{st.st_size}:{st.st_mtime_ns}"
                for p in _tree_files(src, PATTERNS[kind])
                for st in [p.stat()]
            ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def save_raw(path: Path, raw: RawLines) -> bool:
    """Cache `raw` as an npz (atomically; texts and forms as fixed-width unicode, no pickles).
    Returns whether it was written (a failure is one warning)."""
    if raw.offsets.size and np.abs(raw.offsets).max() >= 2**15:
        raise DataError(f"IAM-OnDB offsets beyond the int16 range ({np.abs(raw.offsets).max()})")
    return write_cache(
        path,
        lambda f: np.savez(
            f,
            offsets=raw.offsets.astype(np.int16),
            starts=raw.starts,
            texts=np.asarray(raw.texts, dtype=str),
            forms=np.asarray(raw.forms, dtype=str),
            dropped=np.asarray([raw.dropped[r] for r in DROP_REASONS], dtype=np.int64),
        ),
    )


def load_raw(path: Path) -> RawLines:
    with np.load(path, allow_pickle=False) as z:
        return RawLines(
            z["offsets"].astype(np.int32),
            z["starts"],
            [str(t) for t in z["texts"]],
            [str(f) for f in z["forms"]],
            dict(zip(DROP_REASONS, z["dropped"].tolist())),
        )


def load_raw_lines(
    data_dir: str | Path,
    limit_forms: int | None = None,
    cache_dir: str | Path | None = None,
    verify: bool = True,
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
            check_count(
                f"IAM-OnDB {src}",
                len(_tree_files(src, PATTERNS[kind])),
                IAM_ONDB_FILES[kind],
                verify,
            )
    cache = common.cache_dir(FOLDER, cache_dir)
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
