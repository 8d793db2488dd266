"""Reading IAM-OnDB: the lineStrokes and ascii files, from extracted trees or the tar archives
(read without extracting them, damage detected), into RawLines: integer pen offsets and the
transcription of every usable line, with the counts of dropped lines (see the package
docstring for what is dropped and why)."""

from __future__ import annotations

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

from lnrepro.data.verify import IAM_ONDB_FILES, check_count
from lnrepro.errors import DataError

log = logging.getLogger(__name__)

FOLDER = "iam_ondb"
ARCHIVES = {
    "lineStrokes": ("lineStrokes-all.tar.xz", "lineStrokes-all.tar.gz"),
    "ascii": ("ascii-all.tar.xz", "ascii-all.tar.gz"),
}
LINE_FILE = re.compile(r"([a-z0-9]+-[a-z0-9]+)-(\d+)\.xml$")
FORM_FILE = re.compile(r"([a-z0-9]+-[a-z0-9]+)\.txt$")
PATTERNS = {"lineStrokes": LINE_FILE, "ascii": FORM_FILE}
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
        raise DataError(
            f"{source} cannot be read ({type(e).__name__}: {e}): the archive is "
            "damaged or truncated; restore it"
        ) from None


def _check_end(tar: tarfile.TarFile, source: Path) -> None:
    """tarfile ends quietly at a member header that does not read, as at the end of the
    archive: what follows must be the end-of-archive zero blocks, and the compressed stream
    must decompress to its end (where its check sums are)."""
    while chunk := tar.fileobj.read(1 << 20):
        if chunk.strip(b"\0"):
            raise DataError(
                f"{source} is damaged: the member header after {len(tar.members)} "
                "members does not read, and data follows it; restore the archive"
            )


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
                check_count(f"IAM-OnDB {sources[kind]}", counts[kind], IAM_ONDB_FILES[kind], verify)
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
