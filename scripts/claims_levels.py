"""The levels of the speed claims, read off the committed (exploratory) curves by the rule.

    python scripts/claims_levels.py     one line per `faster` claim of experiments/*.yaml

The rule (src/lnrepro/claims/speed.py, `level_rule`): the value that every seed of BOTH arms
in results/<figure>_curves.csv reached by 60 % of its budget (for a lower-is-better metric the
highest of the seeds' lowest values up to then). Run once, before the confirmatory seeds, and
the numbers written into the claims' `level:`; they then stay fixed. Also printed: the AUC span
(the first evaluation to the budget) and each arm's spread of log crossings at that level.
"""

from __future__ import annotations

import sys

import numpy as np

from lnrepro import REPO_ROOT as ROOT
from lnrepro.claims.render import build
from lnrepro.claims.results import seed_curves
from lnrepro.claims.specs import higher_is_better
from lnrepro.claims.speed import crossings, level_rule


def main() -> int:
    rep = build(ROOT)
    for r in rep.results:
        c = r.claim
        if c["check"] != "faster":
            continue
        data, reasons = rep.data[r.figure], []
        higher = higher_is_better(data.spec, c["metric"])
        curves = {
            n: seed_curves(data, n, c.get("where", {}), c["metric"], reasons) for n in c["norms"]
        }
        pairs = [
            ([p[0] for p in pts], [p[2] for p in pts]) for n in curves for pts in curves[n].values()
        ]
        level = level_rule(pairs, higher=higher)
        spreads = []
        for n, seeds in curves.items():
            x = [
                crossings(s, v, level, higher).high
                for s, v in (([p[0] for p in pts], [p[2] for p in pts]) for pts in seeds.values())
            ]
            x = np.array(x, float)
            spreads.append(f"{n} sd {np.std(x[np.isfinite(x)], ddof=1):.3f}")
        first = max(s[0] for s, _ in pairs)
        budget = min(s[-1] for s, _ in pairs)
        print(
            f"{r.figure} {c['id']}: level {level:.4g}; auc steps [{first}, {budget}]; "
            + ", ".join(spreads)
            + (f" ({'; '.join(reasons)})" if reasons else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
