"""The paper's claims checked against the committed results (the logic: src/lnrepro/claims/).

    python scripts/claims.py            writes results/claims.md and results/claims.csv
    python scripts/claims.py --readme   also regenerates README.md's experiments table (make claims)
    python scripts/claims.py --check    writes nothing; exit 1 if any of those three files is not
                                        what results/ and experiments/*.yaml give

Reads only results/<figure>.csv, results/<figure>_curves.csv and the `claims:` lists of
experiments/*.yaml, never the run folders under outputs/, so a fresh clone gives the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lnrepro import REPO_ROOT as ROOT
from lnrepro.claims import outputs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--readme", action="store_true", help="also rewrite README.md's claims block")
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    p.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this one)")
    args = p.parse_args(argv)
    files = outputs(args.root, readme=args.readme or args.check)
    stale = [f for f, text in files.items() if not f.exists() or f.read_text() != text]
    if args.check:
        for f in stale:
            print(f"out of date: {f.relative_to(args.root)} (run `make claims`)", file=sys.stderr)
        return 1 if stale else 0
    for f, text in files.items():
        f.write_text(text)
    print("wrote " + ", ".join(str(f.relative_to(args.root)) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
