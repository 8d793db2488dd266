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

Two tiers check a rerun (tests/test_golden.py; one rerun per case feeds both):
  - bit-exact: against this machine's own set, every field equal;
  - portable: against the sets of the other CPUs, within tolerances measured between two CPUs
    (`PORTABLE`, `portable_mismatches`), so a machine with no set of its own (or an incomplete
    one) still checks its numbers. Rows before the first update (the initial evaluation) must
    agree to `FIRST_REL` and `FIRST_EXAMPLES`; later rows to the case's own tolerance, since
    float32 training drifts apart from the first update on as another kernel sums in another
    order. Error rates are compared as counts of examples (`EXAMPLES` gives each denominator).
    `python scripts/golden.py compare A B` prints the differences between two recorded sets.

Golden files change only in a commit that says why the numbers move on purpose (a kernel
that reorders floating-point sums, a metric renamed or stored in another form), with the
mapping of old to new fields in `tests/test_golden.py` (FIELD_MAP).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
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
        "lm_ptb_word_cpu_compressed",
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
            "data.exclude_query_entities=false",  # as recorded, before it became the default
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


# A case's numerics revision, bumped with the reason in the commit that deliberately moves its
# float results (a kernel that reorders sums, say). A file recorded at an older revision cannot
# match bit for bit on any CPU: the bit-exact tier skips it with the command that re-records it,
# the portable tier still checks it. Files without the field were recorded at revision 1.
_KERNEL = (
    "the fused LSTM kernel: plain LSTM through it, weight gradients as torch.mm (427b2ed, 4ca7847)"
)
NUMERICS: dict[str, tuple[int, str]] = {
    f"{case}_{norm}": (2, _KERNEL)
    for case in ("lm_ptb_char", "lm_ptb_word", "handwriting")
    for norm in ("ln", "none")
}


def numerics_of(name: str) -> int:
    """The current numerics revision of a case (1 unless NUMERICS says otherwise)."""
    return NUMERICS.get(name, (1, ""))[0]


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
        "numerics": numerics_of(name),
        "rows": rows,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


# ---- the portable tier ----------------------------------------------------------------------

# Rows before the first update (the initial evaluation). Measured between the recorded sets: at
# most 5.5e-7 relative (lm_ptb_word_ln, AVX2 against AVX-512), no error count differs.
FIRST_REL = 2e-6
FIRST_EXAMPLES = 1

# The denominator of every error rate (or accuracy) of a case, so a rate compares as a count of
# examples: evaluation sizes from the case's overrides, `batch/err` over log_every x batch_size
# examples. SentEval's MR accuracy is a percentage over 300 examples (count = value x 3).
# tests/test_golden.py checks that every recorded rate times its denominator is an integer.
EXAMPLES: dict[str, dict[str, float]] = {
    "pi_mnist_bs128": {"train/err": 1000, "val/err": 10000, "test/err": 10000, "batch/err": 1280},
    "pi_mnist_bs4": {"train/err": 1000, "val/err": 10000, "test/err": 10000, "batch/err": 40},
    "cnn_mnist": {"train/err": 500, "val/err": 1000, "batch/err": 1280},
    "reader": {"val/err": 3025, "batch/err": 320},
    "skip_thoughts": {"senteval/mr_acc": 300 / 100},
}


@dataclass(frozen=True)
class Tolerance:
    """A case's tolerance after the first update: `rel` for continuous metrics (losses, NLL,
    bpc, perplexity, bounds, correlations), `examples` for error rates."""

    rel: float
    examples: int = 2


# Per case, the rule of `python scripts/golden.py suggest` over every pair of recorded sets (AMD
# EPYC AVX2, AMD EPYC AVX-512, Intel Xeon AVX-512): rel = 3x the largest relative difference
# after the first update (at least 1e-5), rounded up to 1/2/5; examples = 2x the largest
# difference in examples (at least 2). The comments give the measured pair. The runs that
# drift most are the chaotic ones: BN at batch 4, the LN reader, word PTB's LN-LSTM under SGD
# with lr 1; their first rows still agree to FIRST_REL.
PORTABLE: dict[str, Tolerance] = {
    "pi_mnist_bs128_ln": Tolerance(0.0001),  # 2.5e-05, 0
    "pi_mnist_bs128_bn": Tolerance(0.001, 8),  # 2.9e-04, 4
    "pi_mnist_bs128_none": Tolerance(0.002, 25),  # 5.6e-04, 12
    "pi_mnist_bs4_ln": Tolerance(1e-05),  # 2.6e-07, 0
    "pi_mnist_bs4_bn": Tolerance(0.05, 72),  # 7.1e-03, 36
    "pi_mnist_bs4_none": Tolerance(1e-05),  # 1.2e-07, 0
    "cnn_mnist_ln": Tolerance(0.005, 5),  # 1.4e-03, 2
    "cnn_mnist_bn": Tolerance(0.005, 3),  # 1.1e-03, 1
    "cnn_mnist_none": Tolerance(0.005, 7),  # 7.6e-04, 3
    "lm_ptb_char_ln": Tolerance(0.05),  # 6.9e-03, 0 (1 pair: AVX2 vs AVX-512 AMD)
    "lm_ptb_char_bn": Tolerance(1e-05),  # 1.3e-08, 0
    "lm_ptb_char_none": Tolerance(1e-05),  # 9.1e-08, 0
    "lm_ptb_word_ln": Tolerance(0.5),  # 1.3e-01, 0 (1 pair: AVX2 vs AVX-512 AMD)
    "lm_ptb_word_bn": Tolerance(1e-05),  # 2.7e-07, 0
    "lm_ptb_word_none": Tolerance(1e-05),  # 5.0e-07, 0
    "draw_ln": Tolerance(1e-05),  # 4.2e-07, 0
    "draw_bn": Tolerance(1e-05),  # 2.5e-06, 0
    "draw_none": Tolerance(1e-05),  # 6.3e-07, 0
    "handwriting_ln": Tolerance(0.0001),  # 2.0e-05, 0 (1 pair: AVX2 vs AVX-512 AMD)
    "handwriting_bn": Tolerance(1e-05),  # 1.2e-07, 0
    "handwriting_none": Tolerance(1e-05),  # 6.7e-08, 0
    "skip_thoughts_ln": Tolerance(2e-05),  # 3.6e-06, 0
    "skip_thoughts_bn": Tolerance(2e-05),  # 5.4e-06, 0
    "skip_thoughts_none": Tolerance(2e-05),  # 5.6e-06, 0
    "reader_ln": Tolerance(0.1, 87),  # 1.9e-02, 43
    "reader_bn": Tolerance(1e-05),  # 6.7e-08, 0
    "reader_none": Tolerance(1e-05),  # 7.5e-08, 0
}

EXACT = ("step", "epoch")  # fields that must agree exactly in both tiers


def recorded_sets() -> list[Path]:
    """Every CPU's golden folder, this machine's included."""
    return sorted(d for d in GOLDEN_DIR.iterdir() if d.is_dir()) if GOLDEN_DIR.is_dir() else []


def differences(name: str, got: list[dict], want: list[dict]) -> list[dict]:
    """Each field of `got` that differs from `want`: its row, step, metric, whether the row comes
    before the first update, and the difference (relative, or in examples for error rates)."""
    if len(got) != len(want):
        raise ValueError(f"{name}: {len(got)} metrics rows, the recorded set has {len(want)}")
    counts = EXAMPLES.get(name.rsplit("_", 1)[0], {})
    out = []
    for i, (g, w) in enumerate(zip(got, want)):
        if set(g) != set(w):
            raise ValueError(f"{name} row {i}: fields {sorted(g)} != {sorted(w)}")
        first = w.get("step") == 0
        for key, b in w.items():
            a = g[key]
            if a == b:
                continue
            diff = {"row": i, "step": w.get("step"), "metric": key, "first": first}
            if key in EXACT or not all(isinstance(v, (int, float)) for v in (a, b)):
                diff.update(kind="exact", value=math.inf)
            elif key in counts:
                diff.update(kind="examples", value=abs(a - b) * counts[key])
            elif math.isnan(a) or math.isnan(b):
                diff.update(kind="rel", value=math.inf)
            else:
                diff.update(kind="rel", value=abs(a - b) / max(abs(a), abs(b), 1e-12))
            out.append(diff | {"got": a, "want": b})
    return out


def portable_mismatches(name: str, got: list[dict], want: list[dict]) -> list[str]:
    """The differences of a rerun from another CPU's recorded rows beyond the portable tier's
    tolerances, one line each (empty: the rerun agrees)."""
    tol = PORTABLE[name]
    bad = []
    for d in differences(name, got, want):
        if d["kind"] == "examples":
            limit = FIRST_EXAMPLES if d["first"] else tol.examples
            ok = d["value"] <= limit + 1e-6
            unit = "examples"
        else:
            limit = FIRST_REL if d["first"] else tol.rel
            ok = d["value"] <= limit
            unit = "relative"
        if not ok:
            bad.append(
                f"step {d['step']} {d['metric']}: {d['got']!r} vs {d['want']!r} "
                f"({d['value']:.3g} {unit} > {limit:g})"
            )
    return bad
