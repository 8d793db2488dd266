"""Golden runs: a few dozen updates of every CPU-scale experiment and norm, recorded bit for bit
(the cases, and how one is run and recorded; `scripts/golden.py record` is `make golden`,
tests/test_golden.py reruns and compares).

Each case runs the real entrypoint (`python -m lnrepro.train`) on the real datasets under
$LNREPRO_DATA with one thread and W&B off, and stores every `metrics.jsonl` row except the
wall-clock field `time`, plus the torch version and the CPU, in
`tests/golden/<cpu>-<capability>/<case>.json`. The file also holds the overrides it was
recorded with, so a check reruns exactly that.

One set per CPU model and torch CPU capability: the same torch build picks other kernels on
another CPU (AVX2 against AVX-512, oneDNN's choices), and results then differ in the 7th digit
from the first evaluation on. The model name alone is not enough: virtual machines report
generations of a family under one name ("AMD EPYC"), and the set recorded on one of them failed
24 of 27 cases on another that reports AVX-512. A check compares against the set of this
machine (`machine_dir()`: the CPU name and `torch.backends.cpu.get_cpu_capability()`) and
skips, saying so, where none was recorded; `make golden` records one.

Golden files change only in a commit that says why the numbers move on purpose (a kernel
that reorders floating-point sums, a metric renamed or stored in another form), with the
mapping of old to new fields in `tests/test_golden.py` (FIELD_MAP).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from lnrepro import REPO_ROOT as ROOT

GOLDEN_DIR = ROOT / "tests" / "golden"
WALL_CLOCK = ("time",)  # metrics.jsonl fields that are wall-clock times, never compared
COMMON = ["logger=none", "threads=1", "seed=1", "trainer.progress=lines"]

# case -> (experiment, overrides, norms). Each case takes a few dozen updates and ends with
# (at least) one evaluation pass; evaluation sets are capped so a case takes seconds.
CASES: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "pi_mnist_bs128": (
        "pi_mnist_cpu",
        [
            "data.batch_size=128",
            "data.train_eval_size=1000",
            "trainer.epochs=null",
            "trainer.max_steps=30",
            "trainer.eval_every=15",
            "trainer.log_every=10",
        ],
        ("ln", "bn", "none"),
    ),
    "pi_mnist_bs4": (
        "pi_mnist_cpu",
        [  # BN's unbiased small-batch path (Sec. 6.6)
            "data.batch_size=4",
            "data.train_eval_size=1000",
            "trainer.epochs=null",
            "trainer.max_steps=40",
            "trainer.eval_every=40",
            "trainer.log_every=10",
        ],
        ("ln", "bn", "none"),
    ),
    "cnn_mnist": (
        "cnn_mnist_cpu",
        [
            "data.batch_size=128",
            "data.train_eval_size=500",
            "data.val_size=1000",
            "trainer.eval_splits=[train,val]",
            "trainer.epochs=null",
            "trainer.max_steps=20",
            "trainer.eval_every=20",
            "trainer.log_every=10",
        ],
        ("ln", "bn", "none"),
    ),
    "lm_ptb_char": (
        "lm_ptb_char_cpu",
        [
            "data.eval_tokens=5000",
            "model.hidden_size=64",
            "trainer.max_steps=24",
            "trainer.eval_every=12",
            "trainer.log_every=6",
        ],
        ("ln", "bn", "none"),
    ),
    "lm_ptb_word": (
        "lm_ptb_word_cpu",
        [
            "data.eval_tokens=2000",
            "model.hidden_size=64",
            "model.emb_dim=64",
            "trainer.max_steps=24",
            "trainer.eval_every=12",
            "trainer.log_every=6",
        ],
        ("ln", "bn", "none"),
    ),
    "draw": (
        "draw_cpu",
        [
            "data.eval_sizes={train:200,val:200,test:200}",
            "model.glimpses=4",
            "trainer.epochs=null",
            "trainer.max_steps=20",
            "trainer.eval_every=20",
            "trainer.log_every=5",
        ],
        ("ln", "bn", "none"),
    ),
    "handwriting": (
        "handwriting_cpu",
        [
            "data.max_len=60",
            "data.train_eval_lines=16",
            "data.val_eval_lines=16",
            "model.hidden_size=32",
            "trainer.max_steps=20",
            "trainer.eval_every=20",
            "trainer.log_every=5",
        ],
        ("ln", "bn", "none"),
    ),
    "skip_thoughts": (
        "skip_thoughts_cpu",
        [
            "data.val_triples=64",
            "model.hidden_size=64",
            "model.decoder_size=32",
            "task.senteval.tasks=[MR,SICK]",
            "task.senteval.max_examples=300",
            "task.senteval.folds=2",
            "task.senteval.inner_folds=2",
            "task.senteval.cs=[1]",
            "task.senteval.sick_cs=[1]",
            "task.senteval.max_iter=20",
            "trainer.epochs=null",
            "trainer.max_steps=20",
            "trainer.eval_every=20",
            "trainer.eval_at_start=false",
            "trainer.log_every=5",
        ],
        ("ln", "bn", "none"),
    ),
    "reader": (
        "reader_cpu",
        [  # padded batches: masked per-step BN statistics (bn_min_live)
            "trainer.max_steps=20",
            "trainer.eval_every=10",
            "trainer.log_every=5",
        ],
        ("ln", "bn", "none"),
    ),
}


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (else the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels dispatch to here (e.g. AVX512, AVX2)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def machine_dir(cpu: str | None = None, capability: str | None = None) -> Path:
    """tests/golden/<slug of the CPU model and capability>/: the golden set of one kind of CPU."""
    name = f"{cpu or cpu_name()} {capability or cpu_capability()}"
    return GOLDEN_DIR / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def case_names() -> list[str]:
    return [f"{c}_{n}" for c, (_, _, norms) in CASES.items() for n in norms]


def overrides_of(name: str) -> list[str]:
    case, norm = name.rsplit("_", 1)
    experiment, extra, _ = CASES[case]
    return [f"experiment={experiment}", f"norm={norm}", *COMMON, *extra]


def run_case(overrides: list[str], workdir: Path) -> list[dict]:
    """Run the entrypoint with `overrides`; the metrics.jsonl rows without wall-clock fields."""
    run_dir = workdir / "run"
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        "LNREPRO_OUTPUTS": str(workdir / "outputs"),
    }
    cmd = [sys.executable, "-m", "lnrepro.train", *overrides, f"hydra.run.dir={run_dir}"]
    p = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(overrides)} exited {p.returncode}:\n{p.stderr[-3000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows]


def record(name: str) -> Path:
    import torch

    overrides = overrides_of(name)
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_case(overrides, Path(tmp))
    folder = machine_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    doc = {
        "case": name,
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_capability": cpu_capability(),
        "overrides": overrides,
        "rows": rows,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
