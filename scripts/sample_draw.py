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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from lnrepro.errors import LnreproError  # noqa: E402
from lnrepro.runs import find_runs  # noqa: E402

LABELS = {"ln": "LN on c_t", "none": "baseline", "bn": "BN on c_t"}
ORDER = {"ln": 0, "none": 1, "bn": 2}
SPEC = ROOT / "experiments" / "figure4_draw.yaml"


def load_model(run_dir: Path):
    """The trained DRAW of a run directory, and (norm, step, epoch)."""
    import hydra

    from lnrepro.nn.norm import NormSpec

    ckpt_path = run_dir / "checkpoints" / "last.pt"
    if not ckpt_path.exists():
        raise SystemExit(f"{run_dir}: no checkpoints/last.pt (not a finished or checkpointed run)")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    cfg = ckpt["config"]
    if "models.draw.DRAW" not in str(cfg["model"].get("_target_")):
        raise SystemExit(f"{run_dir}: not a DRAW run ({cfg['model'].get('_target_')})")
    norm = NormSpec.from_cfg(cfg["norm"], cfg["data"].get("batch_size"))
    extra = ckpt["model"].get("_extra_state") or {}
    model_cfg = {**cfg["model"], "image_size": extra["image_size"]}
    model = hydra.utils.instantiate(model_cfg, _convert_="all", norm=norm)
    model.load_state_dict(ckpt["model"])
    summary = run_dir / "summary.json"
    epoch = json.loads(summary.read_text()).get("epoch") if summary.exists() else None
    return model.eval(), norm.kind, ckpt["step"], epoch


def runs_of_spec(spec_path: Path, scale: str) -> list[Path]:
    """One run per norm (the lowest seed) of a figure's sweep folder, LN first."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from figure import load_spec, sweep_dir

    root = sweep_dir(load_spec(str(spec_path)), scale)
    runs = [r for r in find_runs(root) if (r.path / "checkpoints" / "last.pt").exists()] \
        if root.exists() else []
    if not runs:
        raise SystemExit(f"no checkpointed runs under {root}: run `make figure4` first, or give "
                         "run directories")
    best: dict[str, object] = {}
    for r in sorted(runs, key=lambda r: r.get("seed") or 0):
        best.setdefault(r.get("norm.kind"), r)
    return [best[k].path for k in sorted(best, key=lambda k: ORDER.get(k, 9))]


def tile(images: torch.Tensor, cols: int, pad: int = 1) -> torch.Tensor:
    """(n, A, A) -> one (rows (A + pad), cols (A + pad)) image, padded with zeros (white in
    the gray_r colour map)."""
    n, a, _ = images.shape
    rows = math.ceil(n / cols)
    out = torch.zeros(rows * (a + pad) + pad, cols * (a + pad) + pad)
    for k in range(n):
        r, c = divmod(k, cols)
        out[pad + r * (a + pad): pad + r * (a + pad) + a,
            pad + c * (a + pad): pad + c * (a + pad) + a] = images[k]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, help="run directories (one panel each)")
    p.add_argument("--n", type=int, default=64, help="samples per panel")
    p.add_argument("--steps", type=int, default=4,
                   help="also show the canvas after every glimpse for this many samples")
    p.add_argument("--seed", type=int, default=0, help="the same noise for every panel")
    p.add_argument("--spec", type=Path, default=SPEC)
    p.add_argument("--scale", default="cpu", help="with no run dirs: the figure's runs at this scale")
    p.add_argument("--out", type=Path, default=None,
                   help="PNG (default results/draw_samples[_<scale>].png)")
    args = p.parse_args(argv)
    if args.n < 1 or args.steps < 0:
        p.error("--n must be >= 1 and --steps >= 0")
    runs = args.runs or runs_of_spec(args.spec, args.scale)
    out = args.out or ROOT / "results" / (
        "draw_samples.png" if args.runs or args.scale == "cpu" else f"draw_samples_{args.scale}.png")

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
    cols = math.ceil(math.sqrt(args.n))
    ratios = [1.0] + ([max(args.steps / glimpses, 0.15)] if args.steps else [])
    fig, axes = plt.subplots(len(ratios), len(runs), squeeze=False,
                             figsize=(3.2 * len(runs), 3.6 * sum(ratios) + 0.4),
                             gridspec_kw={"height_ratios": ratios})
    for j, (run_dir, model, norm, step, epoch) in enumerate(models):
        g = torch.Generator().manual_seed(args.seed)
        canvases = model.sample(max(args.n, args.steps), generator=g, steps=True)  # (T, k, A, A)
        ax = axes[0][j]
        ax.imshow(tile(canvases[-1, : args.n], cols), cmap="gray_r", vmin=0, vmax=1,
                  interpolation="nearest")
        when = f"{step} updates" + (f", epoch {epoch:.0f}" if epoch is not None else "")
        ax.set_title(f"{LABELS.get(norm, norm)}\n{when}", fontsize=8)
        ax.axis("off")
        if args.steps:
            seq = canvases[:, : args.steps].transpose(0, 1).flatten(0, 1)  # sample-major
            ax = axes[1][j]
            ax.imshow(tile(seq, model.glimpses), cmap="gray_r", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_title(f"canvas after glimpse 1..{model.glimpses}", fontsize=8)
            ax.axis("off")
        print(f"{LABELS.get(norm, norm)}: {run_dir} ({when})")
    fig.suptitle(f"DRAW samples, sigmoid(c_T) (seed {args.seed}, {glimpses} glimpses)",
                 fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
