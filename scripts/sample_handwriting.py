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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from lnrepro.data.iam_ondb import encode_text  # noqa: E402
from lnrepro.errors import LnreproError  # noqa: E402
from lnrepro.models.handwriting import sample, to_pen_positions  # noqa: E402
from lnrepro.runs import find_runs  # noqa: E402

LABELS = {"ln": "LN-LSTM", "none": "LSTM (baseline)", "bn": "BN-LSTM"}
DEFAULT_TEXT = "layer normalization is much faster"
ORDER = {"ln": 0, "none": 1, "bn": 2}


def load_model(run_dir: Path):
    """The trained model of a run directory, and (norm, step)."""
    import hydra

    from lnrepro.nn.norm import NormSpec

    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if not ckpt_path.exists():
        raise SystemExit(f"{run_dir}: no checkpoints/last.pt (not a finished or checkpointed run)")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    cfg, extra = ckpt["config"], ckpt["model"].get("_extra_state") or {}
    if "HandwritingSynthesis" not in str(cfg["model"].get("_target_")):
        raise SystemExit(f"{run_dir}: not a handwriting run ({cfg['model'].get('_target_')})")
    norm = NormSpec.from_cfg(cfg["norm"], cfg["data"].get("batch_size"))
    model_cfg = {**cfg["model"], "vocab_size": extra["vocab_size"]}
    model = hydra.utils.instantiate(model_cfg, _convert_="all", norm=norm,
                                    alphabet=extra.get("alphabet"),
                                    offset_mean=extra.get("offset_mean"),
                                    offset_std=extra.get("offset_std"))
    model.load_state_dict(ckpt["model"])
    return model.eval(), norm.kind, ckpt["step"]


def runs_of_spec(spec_path: Path, scale: str) -> list[Path]:
    """One run per norm (the lowest seed) of a figure's sweep folder, LN first."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from figure import load_spec, sweep_dir

    root = sweep_dir(load_spec(str(spec_path)), scale)
    runs = [r for r in find_runs(root) if (r.path / "checkpoints" / "last.pt").exists()] \
        if root.exists() else []
    if not runs:
        raise SystemExit(f"no checkpointed runs under {root}: run `make figure5` first, or give "
                         "run directories")
    best: dict[str, object] = {}
    for r in sorted(runs, key=lambda r: r.get("seed") or 0):
        best.setdefault(r.get("norm.kind"), r)
    return [best[k].path for k in sorted(best, key=lambda k: ORDER.get(k, 9))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="run directories (one row each)")
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--bias", type=float, default=1.0, help="Graves' sampling bias b (Eq. 61-62)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="points at most (default: 40 per character)")
    p.add_argument("--seed", type=int, default=0, help="the same draws for every row")
    p.add_argument("--spec", type=Path, default=ROOT / "experiments" / "figure5_handwriting.yaml")
    p.add_argument("--scale", default="cpu",
                   help="with no run dirs: the figure's runs at this scale")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "handwriting_samples.png")
    args = p.parse_args(argv)
    if not args.text.strip():
        p.error("--text is empty")
    runs = args.runs or runs_of_spec(args.spec, args.scale)
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
        ax.set_title(f"{label}, {step} updates ({run_dir.name}): {len(offsets)} points, {end}",
                     fontsize=8, loc="left")
        ax.set_aspect("equal")
        ax.axis("off")
        print(f"{label}: {run_dir}: {len(offsets)} points, {end}")
    fig.suptitle(f'"{args.text}" (sampling bias {args.bias}, seed {args.seed})', fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
