"""scripts/gpu_check.py (`make gpu-check`): every paper-scale config composed by Hydra and built
by lnrepro.build's functions runs a synthetic batch through its model and task on the CPU; every
data module offers the `synthetic_batch` hook (lnrepro.contracts.SyntheticBatch), which reads no
file and gives the real data's types, shapes, dtypes and sizes; the script runs on a bare GPU
machine that has torch, numpy, hydra-core and tqdm but not the installed package."""

import builtins
import importlib.metadata
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import hydra
import pytest
import torch
from helpers import ROOT, load_script
from omegaconf import OmegaConf
from packaging.requirements import Requirement

from lnrepro import build
from lnrepro.contracts import SyntheticBatch

SCRIPT = ROOT / "scripts" / "gpu_check.py"
RESULT = ROOT / "results" / "gpu_check.md"
DATA = sorted((ROOT / "configs" / "data").glob("*.yaml"))
PAPER = sorted(
    p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml") if "_cpu" not in p.stem
)
# in the fast lane: one experiment of each kind of model (MLP, convnet, LSTM, GRU), ~1.5-2 s
# each on the 2-core machine under load (three Hydra compositions, builds and updates); the
# other experiments take 2-3.5 s and are marked slow
FAST = {"pi_mnist", "cnn_mnist", "lm_ptb_char", "order_embeddings"}


@pytest.fixture(scope="module")
def gpu_check():
    return load_script("gpu_check")


def _hook(cfg_path: Path):
    factory = hydra.utils.get_object(OmegaConf.load(cfg_path)._target_)
    return getattr(sys.modules[factory.__module__], "synthetic_batch", None)


@pytest.mark.parametrize("path", DATA, ids=lambda p: p.stem)
def test_every_data_module_offers_synthetic_batch(path, monkeypatch):
    """configs/data/<name>.yaml's module has the hook; it reads no file (open is refused) and
    gives a SyntheticBatch of CPU tensors with the batch size and `length` asked for."""
    hook = _hook(path)
    assert callable(hook), f"{path.name}: its module has no synthetic_batch (lnrepro.contracts)"
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"synthetic_batch opened a file: {args[:1]}")

    monkeypatch.setattr(builtins, "open", refuse)
    for length in (None, 5):
        out = hook(cfg, 3, torch.Generator().manual_seed(0), length)
        assert isinstance(out, SyntheticBatch)
        tensors = [t for t in out.batch if isinstance(t, torch.Tensor)]
        assert tensors and all(t.device.type == "cpu" for t in tensors)
        assert any(3 in t.shape for t in tensors), [t.shape for t in tensors]
        if (
            length
            and tensors[0].dim() > 1
            and "mnist" not in path.stem
            and "cifar" not in path.stem
        ):
            assert any(5 in t.shape for t in tensors), (path.stem, [t.shape for t in tensors])
        assert isinstance(out.model_kwargs, dict)
        assert out.steps_per_epoch is None or out.steps_per_epoch > 0


def _like(fake, real, where: str) -> None:
    """Same structure, types and dtypes; same sizes except time/length dimensions (those may
    differ: a real batch is cut to its longest case)."""
    assert type(fake) is type(real), where
    assert len(fake) == len(real), where
    for k, (a, b) in enumerate(zip(fake, real)):
        assert type(a) is type(b), (where, k)
        if isinstance(a, torch.Tensor):
            assert (a.dtype, a.dim()) == (b.dtype, b.dim()), (where, k, a.dtype, b.dtype)


@pytest.mark.realdata("MNIST/raw", "ptb")
@pytest.mark.parametrize(
    "experiment", ["pi_mnist", "cnn_mnist", "draw", "lm_ptb_char", "lm_ptb_word"]
)
def test_synthetic_batch_is_like_the_real_data(gpu_check, experiment, real_data):
    """Against the real data module of the composed config: the batch's structure and dtypes,
    the shapes (batch and sizes; lengths as the config's), the model kwargs the data decides
    (vocabulary and image sizes) and the updates per epoch behind the projected hours."""
    cfg = gpu_check.compose(experiment, "ln")[0]
    data = build.build(cfg.data, seed=1, device="cpu")
    real = next(iter(data.train_batches(0)))
    node = OmegaConf.to_container(cfg.data, resolve=True)
    fake = _hook_of(node)(node, node["batch_size"], torch.Generator().manual_seed(0))
    _like(fake.batch, real, experiment)
    assert [t.shape for t in fake.batch if isinstance(t, torch.Tensor)] == [
        t.shape for t in real if isinstance(t, torch.Tensor)
    ]
    for key, value in fake.model_kwargs.items():
        assert data.model_kwargs[key] == value, key
    assert fake.steps_per_epoch == data.steps_per_epoch


def _hook_of(node: dict):
    return sys.modules[hydra.utils.get_object(node["_target_"]).__module__].synthetic_batch


@pytest.mark.parametrize(
    "experiment", [pytest.param(e, marks=[pytest.mark.slow] * (e not in FAST)) for e in PAPER]
)
def test_cpu_half(gpu_check, experiment):
    """Each norm of a paper-scale config builds at full width and trains a finite float32 (and
    bf16) update at reduced width through its model and task; the norm layers (ln, bn) and the
    LSTM/GRU cells it called (forward or scan) are recorded for the GPU half's checks."""
    norms, rnns = {}, {}
    start = time.perf_counter()
    info, rows = gpu_check.cpu_check(experiment, norms, rnns)
    took = time.perf_counter() - start
    assert [r["norm"] for r in rows] == ["ln", "bn", "none"]
    for r in rows:
        assert isinstance(r["fp32"], float) and math.isfinite(r["fp32"]), r
        assert isinstance(r["bf16"], float), r  # informational on the CPU, but it runs
    assert info["params"] > 0 and info["budget"]
    assert {label for label, *_ in norms.values()} >= {f"{experiment} ln", f"{experiment} bn"}
    assert bool(rnns) == info["recurrent"]
    print(f"{experiment}: {took:.1f} s")


@pytest.mark.slow
def test_gpu_half_code_on_the_cpu(gpu_check):
    """What the GPU half runs, with the CPU standing in for the GPU: each recorded LSTM cell
    call against itself (error 0), the norm statistics check, a timed row that records the norm
    layers, and the report with every table."""
    norms, rnns = {}, {}
    info, rows = gpu_check.cpu_check("lm_ptb_char", norms, rnns)
    cpu = torch.device("cpu")
    cells = [gpu_check.device_row(k, call, cpu) for k, call in rnns.items()]
    assert {c["cell"] for c in cells} == {
        f"lm_ptb_char {n}: LSTMCell.scan" for n in gpu_check.NORMS
    }
    assert all(c["ok"] and c["err"] == 0 for c in cells), cells
    upcast = [gpu_check.upcast_row(k, call, cpu) for k, call in norms.items()]
    assert upcast and all(x["ok"] and x["dtype"] == "bfloat16" for x in upcast), upcast
    small = gpu_check.compose("lm_ptb_char", "bn")[1]
    args = gpu_check.parse_args(["--updates", "4"])
    spied = {}
    row = gpu_check.timed(small, "32", False, args, 0.2, cpu,
                          lambda m: gpu_check.recording(m, spied, "lm bn", gpu_check.is_norm))  # fmt: skip
    assert row["status"] == "ok" and 3 <= row["updates"] <= 4 and row["s"] > 0, row
    assert any(k.startswith("SeqBatchNorm") for k in spied), spied
    row |= {"experiment": "lm_ptb_char", "norm": "bn", "precision": "32", "mode": "eager"}
    report = {"machine": ["m"], "gpu_skipped": None, "facts": {"lm_ptb_char": info}, "cpu": rows,
              "upcast_device": "cuda", "upcast": upcast, "cells": cells, "speed": [row],
              "settings": "S."}  # fmt: skip
    text = gpu_check.render(report)
    hours = f"{row['s'] * info['updates'] / 3600:.1f}"
    assert (
        f"| lm_ptb_char | bn | 32 | eager | {row['updates']} | {row['s']:.4f} | nan | {hours} |"
        in text
    )
    assert "LSTM/GRU modules: CUDA against CPU" in text and "GPU half skipped" not in text
    assert gpu_check.failures(report) == []


def test_every_paper_model_has_a_reduced_width(gpu_check):
    """The CPU half shrinks every model a paper-scale experiment uses (SMALL, one entry per
    configs/model/*.yaml), and its keys are the model configs' own."""
    assert set(gpu_check.SMALL) == {p.stem for p in (ROOT / "configs" / "model").glob("*.yaml")}
    for name, widths in gpu_check.SMALL.items():
        assert set(widths) <= set(OmegaConf.load(ROOT / "configs" / "model" / f"{name}.yaml"))


@pytest.mark.slow
def test_budget_and_report_on_cpu(gpu_check, tmp_path, monkeypatch, capsys):
    """Without a GPU no report is written unless --out asks; the report gives the paper budget
    (60 epochs of 55,000 // 128 updates) and model size of pi_mnist, and no GPU number."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = RESULT.stat().st_mtime_ns if RESULT.exists() else None
    assert gpu_check.main(["--experiments", "pi_mnist"]) == 0
    assert "GPU half SKIPPED" in capsys.readouterr().out.splitlines()[-1]
    assert (RESULT.stat().st_mtime_ns if RESULT.exists() else None) == before
    out = tmp_path / "check.md"
    assert gpu_check.main(["--experiments", "pi_mnist", "--out", str(out)]) == 0
    text = out.read_text()
    assert "**GPU half skipped: no CUDA device.**" in text
    assert "| pi_mnist | 60 epochs x 429 | 25,740 | 1.80M |" in text
    assert "Training speed" not in text and "| pi_mnist | bn |" in text


def _bare(allowed: set[str], args: list[str], tmp_path) -> subprocess.CompletedProcess:
    """The script on a bare machine: `python -I -S` (no site: not the venv's .pth files, so not
    the editable install) with one folder on sys.path that links only the installed files of
    the distributions in `allowed` and of what they require."""
    keep, todo = set(), [d.lower() for d in allowed]
    while todo:
        if (name := todo.pop()) in keep:
            continue
        keep.add(name)
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name.lower())
    site, bare = Path(torch.__file__).parents[1], tmp_path / "site"
    bare.mkdir()
    for name in keep:
        try:
            files = importlib.metadata.distribution(name).files or []
        except importlib.metadata.PackageNotFoundError:
            continue  # (a requirement of another platform)
        for top in {f.parts[0] for f in files} - {"..", "__pycache__"}:
            if (site / top).exists() and not (bare / top).exists():
                (bare / top).symlink_to(site / top)
    code = f"import runpy, sys; sys.path.append({str(bare)!r}); sys.argv = {[str(SCRIPT), *args]!r}"
    code += f"; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    env = {"PATH": os.environ.get("PATH", ""), "CUDA_VISIBLE_DEVICES": "", "HOME": str(tmp_path)}
    env["LNREPRO_CACHE"] = str(tmp_path / "cache")
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_cpu_half_on_a_bare_machine(tmp_path):
    """torch, numpy, hydra-core and tqdm (with what they require) are enough: the CPU half of
    every paper-scale experiment passes, the GPU half says it was skipped, no file is written."""
    proc = _bare({"torch", "numpy", "hydra-core", "tqdm"}, [], tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for name in PAPER:
        line = next(ln for ln in out.splitlines() if f"] {name}: " in ln)
        assert "FAILED" not in line and line.count(".") >= 6, line
    assert "GPU half SKIPPED" in out.splitlines()[-1] and "no report written" in out


def test_without_hydra_one_line(tmp_path):
    """A machine without hydra-core: one line naming what to install, exit 2."""
    proc = _bare({"torch", "numpy", "tqdm"}, [], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: gpu_check needs hydra-core, PyYAML: pip install hydra-core PyYAML"
    ]
