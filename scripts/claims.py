"""The paper's claims checked against the committed results (the logic: src/lnrepro/claims/).

    python scripts/claims.py            writes results/claims.md and results/claims.csv
    python scripts/claims.py --readme   also regenerates README.md's claims block and the
                                        generated blocks of the figure notes (make claims)
    python scripts/claims.py --check    writes nothing; one line per file or block that is not
                                        what results/ and experiments/*.yaml give, exit 1 if any
                                        (make claims-check)

Reads only results/<figure>.csv, results/<figure>_curves.csv, the `claims:` lists of
experiments/*.yaml and git history (which claims are confirmatory: lnrepro.claims.confirm),
never the run folders under outputs/, so a fresh clone gives the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lnrepro import REPO_ROOT as ROOT
from lnrepro.claims import outputs
from lnrepro.claims.blocks import differing


def generated(root: Path, readme: bool) -> dict[Path, str]:
    """{file: the text the code gives it}: claims.md, claims.csv, and with `readme` README.md
    (its claims block) and every figure note with generated blocks."""
    return outputs(root, readme=readme)


def disagreements(root: Path) -> list[str]:
    """One line per generated file or block that differs from what the code computes."""
    lines = []
    for f, text in generated(root, readme=True).items():
        name = f.relative_to(root)
        current = f.read_text() if f.exists() else None
        if current == text:
            continue
        if current is None:
            lines.append(f"{name}: missing (run `make claims`)")
        elif f.suffix == ".md" and f.parent.name == "results" and f.name != "claims.md":
            for block in differing(current, text):
                lines.append(
                    f"{name}: generated block '{block}' differs from what results/{f.stem}.csv "
                    "gives (run `make claims`)"
                )
        elif f.name == "README.md":
            lines.append(
                f"{name}: the claims block differs from what results/ gives (run `make claims`)"
            )
        else:
            old, new = current.splitlines(), text.splitlines()
            at = next(
                (i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new))
            )
            lines.append(
                f"{name}: differs from what results/ gives at line {at + 1} (run `make claims`)"
            )
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--readme", action="store_true", help="also rewrite README.md and the notes' blocks"
    )
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    p.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this one)")
    args = p.parse_args(argv)
    if args.check:
        lines = disagreements(args.root)
        for line in lines:
            print(line)
        return 1 if lines else 0
    files = generated(args.root, readme=args.readme)
    changed = [f for f, text in files.items() if not f.exists() or f.read_text() != text]
    for f in changed:
        f.write_text(files[f])
    print(
        "wrote "
        + (", ".join(str(f.relative_to(args.root)) for f in changed) or "nothing (all up to date)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
