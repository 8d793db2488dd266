"""SentEval on the encoder of any skip-thoughts checkpoint; prints a table.

    python scripts/eval_skip.py outputs/.../checkpoints/last.pt [--tasks MR CR SICK]
        [--senteval DIR] [--threads N] [--folds 10] [--inner-folds 3] [--max-examples N]

The SentEval folder defaults to $LNREPRO_DATA/senteval (else <repo>/data/senteval). Missing
task files are reported as skipped, with the reason. Protocol: lnrepro.eval.senteval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from lnrepro import REPO_ROOT as ROOT
from lnrepro.artifacts import atomic_write_text
from lnrepro.errors import LnreproError
from lnrepro.eval.senteval import TASKS, format_table, run_senteval
from lnrepro.models.skip_thoughts import load_encoder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("ckpt")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--senteval", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--inner-folds", type=int, default=3)
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = os.environ.get("LNREPRO_DATA", str(ROOT / "data"))
    senteval = args.senteval or str(Path(data) / "senteval")
    try:
        model = load_encoder(args.ckpt)
    except LnreproError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    res = run_senteval(
        lambda s: model.encode(s, 256, 30),
        senteval,
        args.tasks,
        folds=args.folds,
        inner_folds=args.inner_folds,
        max_examples=args.max_examples,
    )
    print(
        f"{args.ckpt}: {model.hidden_size}-d encoder, SentEval from {senteval} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    print(format_table(res))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
