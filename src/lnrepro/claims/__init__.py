"""The paper's claims as data, checked by code from the committed results.

Each `experiments/<figure>.yaml` holds a `claims:` list; every claim quotes the paper (Ba, Kiros,
Hinton 2016, or a follow-up that gives the number) and names one check from a small vocabulary
(`specs`). The package reads ONLY what is committed: `results/<figure>.csv` (one row per run,
final values) and `results/<figure>_curves.csv` (every logged value: norm, seed, grid keys, step,
epoch, metric, value; written by `scripts/figure.py plot`), never the git-ignored run folders
(`results`), and decides each verdict from the seeds with a 95 % interval (`stats`, `verdicts`).
`scripts/claims.py` writes results/claims.md, results/claims.csv and the README's experiments
table from it (`render`).

Modules, each importing only those before it: text (how numbers and norms are written), stats
(t intervals and decisions), specs (the check vocabulary, validation, loading the claims lists),
results (the committed runs of one figure), verdicts (one check per claim), render (the tables).
"""

from lnrepro.claims.render import (
    BEGIN,
    END,
    PAPER,
    Report,
    apply_holm,
    build,
    claims_csv,
    claims_md,
    outputs,
    readme_block,
    replace_block,
)
from lnrepro.claims.results import FigureData, final_values, load_figure, seed_curves
from lnrepro.claims.specs import (
    CHECKS,
    describe,
    higher_is_better,
    load_specs,
    make_targets,
    validate,
)
from lnrepro.claims.stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    LEVEL,
    NOT_TESTABLE,
    SUPPORTED,
    Interval,
    decide_higher,
    decide_lower,
    decide_within,
    linear_interval,
    t_quantile,
    welch_interval,
)
from lnrepro.claims.text import label, num, summary
from lnrepro.claims.verdicts import CHECK_FUNCTIONS, Result, evaluate

__all__ = [
    "BEGIN",
    "CHECKS",
    "CHECK_FUNCTIONS",
    "CONTRADICTED",
    "END",
    "INCONCLUSIVE",
    "LEVEL",
    "NOT_TESTABLE",
    "PAPER",
    "SUPPORTED",
    "FigureData",
    "Interval",
    "Report",
    "Result",
    "apply_holm",
    "build",
    "claims_csv",
    "claims_md",
    "decide_higher",
    "decide_lower",
    "decide_within",
    "describe",
    "evaluate",
    "final_values",
    "higher_is_better",
    "label",
    "linear_interval",
    "load_figure",
    "load_specs",
    "make_targets",
    "num",
    "outputs",
    "readme_block",
    "replace_block",
    "seed_curves",
    "summary",
    "t_quantile",
    "validate",
    "welch_interval",
]
