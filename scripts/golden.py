"""Record the golden runs (the cases and what a case stores: lnrepro.golden).

python scripts/golden.py record [--only NAME ...]   # `make golden`: rewrite tests/golden/
python scripts/golden.py list                       # the case names
(pytest tests/test_golden.py reruns every case and compares)
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
