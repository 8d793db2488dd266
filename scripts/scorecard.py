"""Run a norm through LN's benchmarks beside LN, BN and no normalization, and say with intervals
where it wins, loses or cannot be told apart (docs/scorecard.md).

    python scripts/scorecard.py --norm rms                      # a norm config of configs/norm/
    PYTHONPATH=examples/norms python scripts/scorecard.py --norm dyt.DyT --tier full
    make scorecard NORM=dyt.DyT [TIER=quick|full] [SEEDS=11,12,13] [NAME=...]

Writes results/scorecards/<name>.md and <name>.png; the runs go to
outputs/scorecards/<name>/<figure>/<setting>/ (W&B group scorecard/<name>).
"""

import sys

from lnrepro.scorecard.card import main

if __name__ == "__main__":
    sys.exit(main())
