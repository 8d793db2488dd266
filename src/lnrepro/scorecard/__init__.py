"""The norm scorecard: any normalization through the paper's benchmarks beside LN, BN and no
normalization, with one command (`make scorecard NORM=...`; docs/scorecard.md).

Modules, each importing only those before it: suite (the suite file's entries), baselines
(which committed baseline runs are reused, which rerun), launch (the runs: ordinary Hydra
multiruns), cost (the time per update against the suite's first reference), results (each
entry's numbers from the claims engine), report (the Markdown), forest (the picture), card (the
command from start to end). The baselines and references are the suite's data
(experiments/scorecard/suite.yaml `baselines`, `references`), never names in the code. Every
interval and verdict comes from lnrepro.claims (lnrepro.claims.scorecard adds the better /
worse / equivalent decision on the engine's functions).
"""
