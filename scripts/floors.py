"""Trivial floors of the figures' metrics -> results/floors.csv (read by `make claims` and the figures).

    python scripts/floors.py [--scale cpu|paper] [--out results/floors.csv]

Each floor is computed on exactly the examples a run is scored on: the figure's experiment config
is composed through Hydra and its data module built as training builds it (lnrepro.eval.floors).
Rows: figure, scale, experiment, metric, floor, model. The reader's floors are the highest of
lnrepro.data.cloze_stats' three (as error rates); the generative models' floor is the first
evaluation of their own curves, which the claims engine reads from the curves file.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import yaml

from lnrepro import REPO_ROOT as ROOT

# figure spec -> how its floor is computed
KINDS = {
    "lm_ptb_word": "unigram",
    "lm_ptb_char": "unigram",
    "figure6_pi_mnist": "linear",
    "cnn_mnist": "linear",
    "figure2_reader": "reader",
    "figure2_reader_gain": "reader",
}


def compose(experiment: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import lnrepro  # noqa: F401  (the ${lnrepro_root:} resolver)

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("train", overrides=[f"experiment={experiment}"])


def floors_of(kind: str, cfg) -> dict[str, tuple[float, str]]:
    from hydra.utils import instantiate

    from lnrepro.eval import floors

    if kind == "unigram":
        streams = instantiate(cfg.data, _convert_="all", seed=cfg.seed, device="cpu")
        return {
            k: (v, "unigram of the training text") for k, v in floors.lm_floors(streams).items()
        }
    if kind == "linear":
        data = instantiate(cfg.data, _convert_="all", seed=cfg.seed, device="cpu")
        errs = floors.linear_classifier(data.splits)
        return {k: (v, "linear classifier (logistic regression)") for k, v in errs.items()}
    if kind == "reader":
        sys.path.insert(0, str(ROOT / "scripts"))
        from reader_data import FLOOR_NAMES, load

        from lnrepro.data.cloze_stats import floors as reader_floors

        _, _, splits = load(cfg.name, [])
        out = {}
        for split in ("val", "test"):
            f = reader_floors(splits[split], cfg.data.n_entities)
            best = max(FLOOR_NAMES, key=lambda name: f[name])
            out[f"{split}/err"] = (1 - f[best], f"best reader floor: {FLOOR_NAMES[best]}")
        return out
    raise ValueError(kind)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", default="cpu", choices=("cpu", "paper"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "floors.csv")
    ap.add_argument("--only", nargs="*", help="figure specs (default: every one with a floor)")
    args = ap.parse_args(argv)
    rows = []
    if args.out.exists():  # keep the other scale's rows and figures not recomputed
        with args.out.open() as f:
            rows = list(csv.DictReader(f))
    names = args.only or list(KINDS)
    for name in names:
        spec = yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text())
        experiment = spec["scales"][args.scale]["experiment"]
        t0 = time.time()
        got = floors_of(KINDS[name], compose(experiment))
        rows = [r for r in rows if not (r["figure"] == name and r["scale"] == args.scale)]
        for metric, (value, model) in sorted(got.items()):
            rows.append(
                {
                    "figure": name,
                    "scale": args.scale,
                    "experiment": experiment,
                    "metric": metric,
                    "floor": f"{value:.6g}",
                    "model": model,
                }
            )
        print(f"{name}: {len(got)} floors in {time.time() - t0:.1f} s", file=sys.stderr)
    rows.sort(key=lambda r: (r["figure"], r["scale"], r["metric"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(
            f, fieldnames=["figure", "scale", "experiment", "metric", "floor", "model"]
        )
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {args.out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
