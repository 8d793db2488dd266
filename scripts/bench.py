"""Speed benchmarks, each a ratio against a reference measured in the same run.

    python scripts/bench.py [--quick]          (make bench) -> results/bench.md

MLP of Sec. 6.6 (784-1000-1000-10), per norm and batch size:
  - steps/s through the real training loop (lnrepro.trainer.Trainer on in-memory data);
  - the loop's overhead against a bare forward+backward+optimizer step of the same model
    on pre-sliced batches (target: under 15 % at batch 4);
  - at batch 128, the bare step's FLOP rate against a bare 1024x1024 matmul (target >= 70 %).
Convnet of Sec. 6.7 (lnrepro.models.cnn.ConvNet, paper-scale widths), batch 128:
  - forward+backward+Adam step time per norm; LN-conv against BN-conv (target <= 1.3x) and
    against no norm, all measured in the same run.

    python scripts/bench.py --parts cnn        only the convnet section (the others are kept)

Figure 6 runs (`--parts figure`): the real entrypoint's run (`lnrepro.train.run`, pi_mnist_cpu
on the real MNIST, one thread as in a figure lane) against the bare forward+backward+Adam step
of the same model, batch and optimizer on batches already in memory, both timed in this
process (target: at most 1.25x). The run is shortened; its s/update is extrapolated to the
figure's budget from its own training time per update and time per evaluation pass.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from lnrepro import REPO_ROOT as ROOT
from lnrepro.data.common import TensorData
from lnrepro.models.cnn import ConvNet
from lnrepro.models.mlp import MLP
from lnrepro.nn.norm import NormSpec
from lnrepro.runlog import RunLogger
from lnrepro.tasks.classification import Classification
from lnrepro.trainer import Trainer, TrainerConfig

SIZES = (784, 1000, 1000, 10)


def bare_steps(model, opt, batches) -> None:
    """Forward, cross-entropy, backward and an optimizer step per batch: the step alone."""
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_gflops(repeats: int) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    n = 20
    t = median_time(lambda: [a @ b for _ in range(n)], repeats)
    return 2 * 1024**3 * n / t / 1e9


def step_flops(batch: int) -> int:
    """Matmul FLOPs of one training step: forward, weight gradients, input gradients (not for
    the first layer)."""
    mm = [i * o for i, o in itertools.pairwise(SIZES)]
    return 2 * batch * (sum(mm) + sum(mm) + sum(mm[1:]))


def make_data(batch: int, n: int) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 784, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorData({"train": (x, y)}, batch, seed=0)


def bench_mlp(norm: str, batch: int, steps: int, repeats: int) -> dict:
    # the norm as `norm=<norm>` configures it (BN's unbiased: auto resolved at this batch size)
    spec = NormSpec.from_cfg(
        yaml.safe_load((ROOT / "configs" / "norm" / f"{norm}.yaml").read_text()), batch
    )
    data = make_data(batch, max(batch * steps, batch * 2))

    def fresh():
        torch.manual_seed(0)
        model = MLP(norm=spec)
        return model, torch.optim.Adam(model.parameters(), 1e-3, fused=True)

    # bare: pre-sliced batches, nothing but the step itself
    model, opt = fresh()
    batches = list(data.train_batches(0))[:steps]

    def bare():
        bare_steps(model, opt, batches)

    bare()  # warm-up
    t_bare = median_time(bare, repeats) / len(batches)

    # the real loop: Trainer.fit over the same number of steps (no evaluation passes)
    def loop():
        m, o = fresh()
        with tempfile.TemporaryDirectory() as d:
            logger = RunLogger(d, {}, None, {})
            cfg = TrainerConfig(
                max_steps=len(batches),
                eval_at_start=False,
                eval_splits=[],
                log_every=100,
                ckpt_every=10**9,
                progress="lines",
            )
            tr = Trainer(m, Classification(), data, o, cfg, logger, d)
            tr.save = lambda: None  # checkpoint I/O is not the loop's per-step cost
            t = time.perf_counter()
            tr.fit()
            dt = time.perf_counter() - t
            logger.close()
        return dt

    loop()
    t_loop = statistics.median(loop() for _ in range(repeats)) / len(batches)
    return {
        "norm": norm,
        "batch": batch,
        "bare_ms": t_bare * 1e3,
        "loop_ms": t_loop * 1e3,
        "steps_per_s": 1 / t_loop,
        "overhead": t_loop / t_bare - 1,
        "gflops": step_flops(batch) / t_bare / 1e9,
    }


def bench_cnn(norm: str, batch: int, steps: int, repeats: int, image: tuple[int, int]) -> dict:
    """Bare forward+backward+Adam step of the Sec. 6.7 convnet on random images."""
    channels, side = image
    torch.manual_seed(0)
    model = ConvNet(channels, side, norm=NormSpec(kind=norm))
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.rand(batch, channels, side, side, generator=g),
            torch.randint(0, 10, (batch,), generator=g),
        )
        for _ in range(steps)
    ]

    def run():
        bare_steps(model, opt, batches)

    run()  # warm-up
    return {
        "norm": norm,
        "image": f"{channels}x{side}x{side}",
        "batch": batch,
        "step_ms": median_time(run, repeats) / steps * 1e3,
    }


def replace_section(out: Path, header: str, section: list[str]) -> None:
    """Write `section` (starting with `## <header>`) into the markdown file `out`, keeping its
    other `## ` sections (each script/part owns its own section)."""
    head = ["# Benchmarks", ""]
    others: list[str] = []
    if out.exists():
        parts = out.read_text().split("\n## ")
        others = ["## " + s.rstrip("\n") for s in parts[1:] if not s.startswith(header)]
    body = "\n".join(section).rstrip("\n")
    text = "\n".join(head) + "\n" + "\n\n".join([body] + others) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def measured_line(args, repeats: int) -> str:
    return (
        f"Measured {datetime.date.today()} on {platform.machine()} "
        f"({platform.processor() or 'cpu'}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, by `python scripts/bench.py --parts {args.parts}"
        f"{' --quick' if args.quick else ''}`. Medians of {repeats} repeats."
    )


def mlp_section(args, repeats: int) -> list[str]:
    ref = matmul_gflops(repeats)
    rows = []
    for batch, steps in ((128, 20 if args.quick else 60), (4, 300 if args.quick else 1500)):
        for norm in ("ln", "bn", "none"):
            r = bench_mlp(norm, batch, steps, repeats)
            rows.append(r)
            print(r, flush=True)
    lines = [
        "## MLP of Sec. 6.6 (784-1000-1000-10, Adam fused, CPU)",
        "",
        measured_line(args, repeats),
        "",
        f"Reference in the same run: bare 1024x1024 fp32 matmul = {ref:.1f} GFLOP/s.",
        "",
        (
            "| norm | batch | bare step (ms) | training loop (ms/step) | steps/s | loop overhead "
            "| step GFLOP/s | vs matmul |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['norm']} | {r['batch']} | {r['bare_ms']:.3f} | {r['loop_ms']:.3f} | "
            f"{r['steps_per_s']:.0f} | {100 * r['overhead']:+.1f} % | {r['gflops']:.1f} | "
            f"{100 * r['gflops'] / ref:.0f} % |"
        )
    return lines + [
        "",
        (
            "Loop overhead = training-loop time per step / bare forward+backward+Adam step time - 1 "
            "(target < 15 % at batch 4). 'vs matmul' = the bare step's matmul FLOP rate against the "
            "1024x1024 matmul (target >= 70 % at batch 128; batch 4 is bound by memory traffic of "
            "Adam and the weight gradients, not FLOPs)."
        ),
    ]


def cnn_section(args, repeats: int) -> list[str]:
    steps = 3 if args.quick else 10
    lines = [
        (
            "## Convnet of Sec. 6.7 (conv3x3 x2, pool, conv3x3 x2, pool, fc; channels 32/64, fc 256, "
            "Adam fused, CPU)"
        ),
        "",
        measured_line(args, repeats),
        "",
        "| input | batch | LN step (ms) | BN step (ms) | none step (ms) | LN / BN | LN / none |",
        "|---|---|---|---|---|---|---|",
    ]
    for image in ((1, 28), (3, 32)):  # MNIST, CIFAR-10
        r = {n: bench_cnn(n, 128, steps, repeats, image) for n in ("ln", "bn", "none")}
        print(r, flush=True)
        ms = {n: v["step_ms"] for n, v in r.items()}
        lines.append(
            f"| {r['ln']['image']} | 128 | {ms['ln']:.1f} | {ms['bn']:.1f} | "
            f"{ms['none']:.1f} | {ms['ln'] / ms['bn']:.2f}x | {ms['ln'] / ms['none']:.2f}x |"
        )
    return lines + [
        "",
        (
            "Forward+backward+Adam step on random images (target: LN / BN <= 1.3x). Conv LN is "
            "`F.layer_norm` over (C, H, W) per case plus a per-channel gain and bias; conv BN is "
            "`F.batch_norm` (oneDNN's fused kernel)."
        ),
    ]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides)


def bench_figure_run(norm: str, batch: int, steps: int, repeats: int) -> dict:
    """One shortened Figure 6 run of `norm` at `batch` and the bare step of its model."""
    from omegaconf import OmegaConf

    from lnrepro.build import build, build_optimizer
    from lnrepro.train import run

    overrides = [
        "experiment=pi_mnist_cpu",
        f"norm={norm}",
        f"data.batch_size={batch}",
        "logger=none",
        "threads=1",
        "trainer.progress=lines",
    ]
    full = _compose(overrides)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as every run does (lnrepro.train)
    # the bare step: the run's own model, optimizer and first `steps` batches, in memory
    spec = NormSpec.from_cfg(full.norm, batch)
    torch.manual_seed(1)
    data = build(full.data, seed=1, device=torch.device("cpu"))
    model = build(full.model, norm=spec, **data.model_kwargs)
    opt = build_optimizer(full.optim, model)[0]
    batches = list(itertools.islice(data.train_batches(0), steps))
    bare_steps(model, opt, batches[:20])  # warm-up
    t_bare = median_time(lambda: bare_steps(model, opt, batches), repeats) / len(batches)
    # the real run, shortened to `steps` updates (its first evaluation included)
    cfg = _compose([*overrides, "trainer.epochs=null", f"trainer.max_steps={steps}"])
    with tempfile.TemporaryDirectory() as d:
        summary = run(cfg, Path(d) / "run")
    evals = 2  # the first evaluation and the last
    t_eval = summary["eval_time"] / evals
    spe = data.steps_per_epoch
    epochs = OmegaConf.to_container(full.trainer, resolve=True)["epochs"]
    n_updates = round(epochs * spe)
    n_evals = 1 + round(epochs * full.trainer.evals_per_epoch)
    figure_s = summary["s_per_step"] + n_evals * t_eval / n_updates
    return {
        "norm": norm,
        "batch": batch,
        "bare_ms": 1e3 * t_bare,
        "train_ms": 1e3 * summary["s_per_step"],
        "eval_s": t_eval,
        "updates": n_updates,
        "evals": n_evals,
        "figure_ms": 1e3 * figure_s,
        "ratio": figure_s / t_bare,
    }


def figure_section(args, repeats: int) -> list[str]:
    rows = []
    for batch, steps in ((128, 100 if args.quick else 430), (4, 500 if args.quick else 3000)):
        for norm in ("ln", "bn", "none"):
            rows.append(bench_figure_run(norm, batch, steps, repeats))
            print(rows[-1], flush=True)
    lines = [
        "## Figure 6 runs against their bare step (pi_mnist_cpu, real MNIST, 1 thread)",
        "",
        measured_line(args, repeats),
        "",
        (
            "| norm | batch | bare step (ms) | run: training (ms/update) | training / bare "
            "| run: one evaluation (s) | figure run: updates, evaluations | figure run (ms/update) "
            "| figure run / bare step |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['norm']} | {r['batch']} | {r['bare_ms']:.2f} | {r['train_ms']:.2f} | "
            f"{r['train_ms'] / r['bare_ms']:.2f}x | {r['eval_s']:.2f} | {r['updates']:,}, {r['evals']} | {r['figure_ms']:.2f} | "
            f"{r['ratio']:.2f}x |"
        )
    return lines + [
        "",
        (
            "The run is `lnrepro.train.run` of pi_mnist_cpu shortened to "
            f"{'100 / 500' if args.quick else '430 / 3,000'} updates (batch 128 / 4) with its "
            "first and last evaluation; 'figure run' adds the "
            "figure's evaluation passes (2 an epoch and one at the start) to its training time "
            "per update, over the figure's budget (20 epochs at batch 128, 5 at batch 4). The "
            "bare step is forward, cross-entropy, backward and Adam on the run's first batches "
            "held in memory. Target: figure run / bare step <= 1.25x. 'training / bare' leaves "
            "the evaluation passes out: what the loop, the data module and the logging add to a "
            "step."
        ),
    ]


SECTIONS = {
    "mlp": ("MLP of Sec. 6.6", mlp_section),
    "cnn": ("Convnet of Sec. 6.7", cnn_section),
    "figure": ("Figure 6 runs", figure_section),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    p.add_argument("--parts", default="mlp,cnn,figure", help="comma-separated: mlp, cnn, figure")
    p.add_argument("--out", default=str(ROOT / "results" / "bench.md"))
    args = p.parse_args(argv)
    repeats = 3 if args.quick else 5
    out = Path(args.out)
    for part in args.parts.split(","):
        if part not in SECTIONS:
            p.error(f"unknown part {part!r}: choose from {', '.join(SECTIONS)}")
        header, section = SECTIONS[part]
        replace_section(out, header, section(args, repeats))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
