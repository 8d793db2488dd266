"""One-time migration of the committed figure CSVs to the provenance columns (kept as the record
of how it was done; running it again changes nothing).

The run folders of the committed results/<figure>.csv are gone, so their rows cannot be
redrawn: this inserts the columns of lnrepro.claims.provenance (commit, config_hash,
metrics_sha256, started, load_avg_1m) before run_dir, each "not recorded", and leaves every
other cell as it was. The figures' pixels do not depend on the CSV table (plot draws from the
run folders), so each PNG keeps its image and gets a new fingerprint (its `lnrepro-figure`
tEXt chunk rewritten in place), but only when its old fingerprint, recomputed with
scripts/figure.py as of BEFORE and the CSVs as they were, matched: a figure stale before the
migration stays stale after it.

    python scripts/provenance_migration.py
"""

from __future__ import annotations

import csv
import importlib.util
import io
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from lnrepro import REPO_ROOT as ROOT
from lnrepro.artifacts import atomic_write, atomic_write_text, png_text
from lnrepro.claims.provenance import COLUMNS, NOT_RECORDED
from lnrepro.runs import load_spec

BEFORE = "b6ce23423cfc8a4f811cf6e12d1cb77c17c037e6"  # scripts/figure.py before the columns
KEY = b"lnrepro-figure"


def _module(name: str, source: str):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, f.name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def migrate_csv(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or COLUMNS[0] in rows[0]:
        return text
    at = rows[0].index("run_dir")
    out = io.StringIO()
    w = csv.writer(out)  # what lnrepro.artifacts.write_csv writes
    w.writerow(rows[0][:at] + list(COLUMNS) + rows[0][at:])
    for r in rows[1:]:
        w.writerow(r[:at] + [NOT_RECORDED] * len(COLUMNS) + r[at:])
    return out.getvalue()


def set_png_text(path: Path, key: bytes, value: str) -> None:
    """Rewrites the tEXt chunk `key` of a PNG in place (every other byte kept)."""
    data, pos, out = path.read_bytes(), 8, bytearray(path.read_bytes()[:8])
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        chunk = data[pos : pos + 12 + size]
        if kind == b"tEXt" and data[pos + 8 : pos + 8 + size].partition(b"\0")[0] == key:
            body = key + b"\0" + value.encode("latin-1")
            crc = zlib.crc32(b"tEXt" + body).to_bytes(4, "big")
            chunk = len(body).to_bytes(4, "big") + b"tEXt" + body + crc
        out += chunk
        pos += 12 + size
    atomic_write(path, lambda f: f.write(bytes(out)))


def main() -> int:
    old_source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:scripts/figure.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    old = _module("figure_before", old_source)
    new = _module("figure_now", (ROOT / "scripts" / "figure.py").read_text())
    results = ROOT / "results"
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        spec = load_spec(path)
        png, table = results / f"{spec['name']}.png", results / f"{spec['name']}.csv"
        if not png.exists() or not table.exists():
            continue
        text = table.read_text()
        migrated = migrate_csv(text)
        if migrated == text:
            print(f"{table.name}: has the provenance columns already")
            continue
        fresh = png_text(png).get(KEY.decode()) == old.fingerprint(spec, png)
        atomic_write_text(table, migrated)
        if fresh:
            set_png_text(png, KEY, new.fingerprint(spec, png))
        print(
            f"{table.name}: {len(COLUMNS)} columns added; {png.name} "
            + ("re-fingerprinted" if fresh else "was stale before: left stale")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
