"""Write a sentence in handwriting with trained synthesis networks (Sec. 6.5; Graves 2013 Sec. 5.3),
one row per run directory, into one PNG.

    python scripts/sample_handwriting.py RUN_DIR [RUN_DIR ...] [--text "..."] [--bias 1.0]
    python scripts/sample_handwriting.py --scale cpu       (the LN and baseline runs of
                                                            experiments/figure5_handwriting.yaml)

Each run directory needs checkpoints/last.pt (the model, its alphabet and offset statistics).
Sampling draws every point from the mixture output; --bias b is Graves' sampling bias
(Eq. 61-62; 0 = unbiased, larger = neater). A row stops when the attention window passes the
last character (Graves: phi(t, U+1) > phi(t, u) for all u) or after --max-steps points.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lnrepro import REPO_ROOT as ROOT
from lnrepro.artifacts import load_run_model, save_figure
from lnrepro.data.iam_ondb import encode_text
from lnrepro.errors import LnreproError
from lnrepro.models.handwriting_sampling import sample, to_pen_positions
from lnrepro.runs import checkpointed_run_per_norm

LABELS = {"ln": "LN-LSTM", "none": "LSTM (baseline)", "bn": "BN-LSTM"}
DEFAULT_TEXT = "layer normalization is much faster"


def load_model(run_dir: Path):
    """The trained model of a run directory, and (norm, step)."""
    model, norm, ckpt = load_run_model(
        run_dir,
        "HandwritingSynthesis",
        "handwriting",
        lambda extra: {
            "vocab_size": extra["vocab_size"],
            "alphabet": extra.get("alphabet"),
            "offset_mean": extra.get("offset_mean"),
            "offset_std": extra.get("offset_std"),
        },
    )
    return model, norm.kind, ckpt["step"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs="*", type=Path, help="run directories (one row each)")
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--bias", type=float, default=1.0, help="Graves' sampling bias b (Eq. 61-62)")
    p.add_argument(
        "--max-steps", type=int, default=None, help="points at most (default: 40 per character)"
    )
    p.add_argument("--seed", type=int, default=0, help="the same draws for every row")
    p.add_argument("--spec", type=Path, default=ROOT / "experiments" / "figure5_handwriting.yaml")
    p.add_argument(
        "--scale", default="cpu", help="with no run dirs: the figure's runs at this scale"
    )
    p.add_argument("--out", type=Path, default=ROOT / "results" / "handwriting_samples.png")
    args = p.parse_args(argv)
    if not args.text.strip():
        p.error("--text is empty")
    runs = args.runs or checkpointed_run_per_norm(args.spec, args.scale, "figure5")
    max_steps = args.max_steps or 40 * len(args.text)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 1.6 * len(runs)), squeeze=False)
    for ax, run_dir in zip(axes[:, 0], runs):
        try:
            model, norm, step = load_model(run_dir)
        except LnreproError as e:
            raise SystemExit(f"{run_dir}: {e}") from None
        chars = torch.tensor(encode_text(args.text, model.alphabet or ""), dtype=torch.long)
        g = torch.Generator().manual_seed(args.seed)
        offsets, finished = sample(model, chars, max_steps, args.bias, g)
        for stroke in to_pen_positions(offsets, model.offset_mean, model.offset_std):
            ax.plot(stroke[:, 0].numpy(), stroke[:, 1].numpy(), "k-", lw=1.2)
        label = LABELS.get(norm, norm)
        end = "reached the end of the text" if finished else f"stopped at {max_steps} points"
        ax.set_title(
            f"{label}, {step} updates ({run_dir.name}): {len(offsets)} points, {end}",
            fontsize=8,
            loc="left",
        )
        ax.set_aspect("equal")
        ax.axis("off")
        print(f"{label}: {run_dir}: {len(offsets)} points, {end}")
    fig.suptitle(f'"{args.text}" (sampling bias {args.bias}, seed {args.seed})', fontsize=9)
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
