"""Digits drawn by trained DRAW models (Sec. 6.4), one panel per run directory, into one PNG.

    python scripts/sample_draw.py RUN_DIR [RUN_DIR ...] [--n 64] [--seed 0] [--out PNG]
    python scripts/sample_draw.py --scale cpu      (one run per norm of experiments/figure4_draw.yaml;
                                                    writes results/draw_samples.png, or
                                                    results/draw_samples_<scale>.png)

Each run directory needs checkpoints/last.pt. Every panel is a grid of --n samples from the
generative model (z_t ~ N(0, I) for every glimpse, Gregor et al. Sec. 2.3), shown as the
Bernoulli means sigmoid(c_T); all panels use the same noise (--seed). --steps K adds, under
each grid, the canvas of the first K samples after every glimpse (how the digits are drawn;
default 4, 0: none).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from lnrepro import REPO_ROOT as ROOT
from lnrepro.artifacts import load_run_model, save_figure
from lnrepro.errors import LnreproError
from lnrepro.runs import checkpointed_run_per_norm

LABELS = {"ln": "LN on c_t", "none": "baseline", "bn": "BN on c_t"}
SPEC = ROOT / "experiments" / "figure4_draw.yaml"


def load_model(run_dir: Path):
    """The trained DRAW of a run directory, and (norm, step, epoch)."""
    model, norm, ckpt = load_run_model(
        run_dir, "models.draw.DRAW", "DRAW", lambda extra: {"image_size": extra["image_size"]}
    )
    summary = run_dir / "summary.json"
    epoch = json.loads(summary.read_text()).get("epoch") if summary.exists() else None
    return model, norm.kind, ckpt["step"], epoch


def tile(images: torch.Tensor, cols: int, pad: int = 1) -> torch.Tensor:
    """(n, A, A) -> one (rows (A + pad), cols (A + pad)) image, padded with zeros (white in
    the gray_r colour map)."""
    n, a, _ = images.shape
    rows = math.ceil(n / cols)
    out = torch.zeros(rows * (a + pad) + pad, cols * (a + pad) + pad)
    for k in range(n):
        r, c = divmod(k, cols)
        out[
            pad + r * (a + pad) : pad + r * (a + pad) + a,
            pad + c * (a + pad) : pad + c * (a + pad) + a,
        ] = images[k]
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs="*", type=Path, help="run directories (one panel each)")
    p.add_argument("--n", type=int, default=64, help="samples per panel")
    p.add_argument(
        "--steps",
        type=int,
        default=4,
        help="also show the canvas after every glimpse for this many samples",
    )
    p.add_argument("--seed", type=int, default=0, help="the same noise for every panel")
    p.add_argument("--spec", type=Path, default=SPEC)
    p.add_argument(
        "--scale", default="cpu", help="with no run dirs: the figure's runs at this scale"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="PNG (default results/draw_samples[_<scale>].png)"
    )
    args = p.parse_args(argv)
    if args.n < 1 or args.steps < 0:
        p.error("--n must be >= 1 and --steps >= 0")
    return args


def draw_panel(axes, j: int, model, norm, step, epoch, args) -> str:
    """Column j: the final canvases of `args.n` samples, and (with --steps) the canvas after
    every glimpse of the first `args.steps` samples. Returns the panel's "when" label."""
    g = torch.Generator().manual_seed(args.seed)
    canvases = model.sample(max(args.n, args.steps), generator=g, steps=True)  # (T, k, A, A)
    cols = math.ceil(math.sqrt(args.n))
    ax = axes[0][j]
    ax.imshow(tile(canvases[-1, : args.n], cols), cmap="gray_r", vmin=0, vmax=1,
              interpolation="nearest")  # fmt: skip
    when = f"{step} updates" + (f", epoch {epoch:.0f}" if epoch is not None else "")
    ax.set_title(f"{LABELS.get(norm, norm)}\n{when}", fontsize=8)
    ax.axis("off")
    if args.steps:
        seq = canvases[:, : args.steps].transpose(0, 1).flatten(0, 1)  # sample-major
        ax = axes[1][j]
        ax.imshow(tile(seq, model.glimpses), cmap="gray_r", vmin=0, vmax=1,
                  interpolation="nearest")  # fmt: skip
        ax.set_title(f"canvas after glimpse 1..{model.glimpses}", fontsize=8)
        ax.axis("off")
    return when


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = args.runs or checkpointed_run_per_norm(args.spec, args.scale, "figure4")
    out = args.out or ROOT / "results" / (
        "draw_samples.png" if args.runs or args.scale == "cpu" else f"draw_samples_{args.scale}.png"
    )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = []
    for run_dir in runs:
        try:
            models.append((run_dir, *load_model(run_dir)))
        except LnreproError as e:
            raise SystemExit(f"{run_dir}: {e}") from None
    glimpses = max(m.glimpses for _, m, *_ in models)
    ratios = [1.0] + ([max(args.steps / glimpses, 0.15)] if args.steps else [])
    fig, axes = plt.subplots(
        len(ratios),
        len(runs),
        squeeze=False,
        figsize=(3.2 * len(runs), 3.6 * sum(ratios) + 0.4),
        gridspec_kw={"height_ratios": ratios},
    )
    for j, (run_dir, model, norm, step, epoch) in enumerate(models):
        when = draw_panel(axes, j, model, norm, step, epoch, args)
        print(f"{LABELS.get(norm, norm)}: {run_dir} ({when})")
    fig.suptitle(f"DRAW samples, sigmoid(c_T) (seed {args.seed}, {glimpses} glimpses)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
