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

Modules: `parse` (files -> RawLines), `cache` (RawLines <-> .npz), `tensors` (split, normalise,
pad; the `iam_ondb` factory).
"""

from lnrepro.data.iam_ondb.cache import CACHE_VERSION, cache_key, load_raw, load_raw_lines, save_raw
from lnrepro.data.iam_ondb.parse import (
    ARCHIVES,
    DROP_REASONS,
    FOLDER,
    RawLines,
    parse_iam_ondb,
    parse_strokes,
    parse_transcription,
    to_offsets,
)
from lnrepro.data.iam_ondb.tensors import (
    DEFAULT_ALPHABET,
    StrokeData,
    encode_text,
    iam_ondb,
    in_validation,
    pad_lines,
)

__all__ = [
    "ARCHIVES",
    "CACHE_VERSION",
    "DEFAULT_ALPHABET",
    "DROP_REASONS",
    "FOLDER",
    "RawLines",
    "StrokeData",
    "cache_key",
    "encode_text",
    "iam_ondb",
    "in_validation",
    "load_raw",
    "load_raw_lines",
    "pad_lines",
    "parse_iam_ondb",
    "parse_strokes",
    "parse_transcription",
    "save_raw",
    "to_offsets",
]
