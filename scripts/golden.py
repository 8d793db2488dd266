"""Golden runs: a few dozen updates of every CPU-scale experiment and norm, recorded bit for bit.

    python scripts/golden.py record [--only NAME ...]   # `make golden`: rewrite tests/golden/
    python scripts/golden.py check  [--only NAME ...]   # rerun and compare (tests/test_golden.py)

Each case runs the real entrypoint (`python -m lnrepro.train`) on the real datasets under
$LNREPRO_DATA with one thread and W&B off, and stores every `metrics.jsonl` row except the
wall-clock field `time`, plus the torch version, in `tests/golden/<case>.json`. The file also
holds the overrides it was recorded with, so a check reruns exactly that.

Golden files change only in a commit that says why the numbers move on purpose (a kernel
that reorders floating-point sums, a metric renamed or stored in another form), with the
mapping of old to new fields in `tests/test_golden.py` (FIELD_MAP).
"""

from __future__ import annotations

import argparse
import os
import sys

from lnrepro.golden import ROOT, case_names, record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("action", choices=["record", "list"])
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    args = ap.parse_args(argv)
    names = args.only or case_names()
    if args.action == "list":
        print("\n".join(names))
        return 0
    if not os.environ.get("LNREPRO_DATA"):
        print("error: golden runs use the real datasets: set LNREPRO_DATA", file=sys.stderr)
        return 2
    for name in names:
        print(f"recording {name} ...", flush=True)
        print(f"  {record(name).relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
