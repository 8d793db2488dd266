"""Helpers shared by the test modules (conftest.py holds the fixtures built on them): the tiny
MNIST in IDX format, the tiny pi_mnist overrides, the entrypoint as a subprocess, metrics.jsonl
rows, scripts/*.py as modules, the real-data check of `@pytest.mark.realdata`, and the records of
an offline W&B run file."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Overrides that shrink pi_mnist to a few seconds on the tiny MNIST below.
TINY = [
    "experiment=pi_mnist_cpu",
    "data.val_size=40",
    "data.train_eval_size=null",
    "data.eval_batch_size=64",
    "model.hidden=[32,32]",
    "data.batch_size=16",
    "trainer.epochs=4",
    "trainer.evals_per_epoch=2",
    "trainer.log_every=5",
    "logger=none",
    "threads=1",
    "data.verify=false",  # synthetic data, not the recorded MNIST (lnrepro.data.verify)
]


def write_idx_mnist(root: Path, n_train: int = 200, n_test: int = 60, seed: int = 0) -> Path:
    """MNIST/raw/ with the four IDX files torchvision reads; digit c is a bright 7x7 block at a
    class-dependent place plus noise, so a small MLP learns it within a few steps."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = torch.randint(0, 10, (n,), generator=g)
        x = (torch.rand(n, 28, 28, generator=g) * 60).to(torch.uint8)
        for i, c in enumerate(y.tolist()):
            r, col = 2 + (c // 5) * 12, 2 + (c % 5) * 5
            x[i, r : r + 7, col : col + 5] = 255
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + x.numpy().tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + y.to(torch.uint8).numpy().tobytes()
        )
    return root


def tiny_cfg(compose, data_dir, *extra):
    """The TINY pi_mnist config on `data_dir` (the `compose` fixture), plus `extra` overrides."""
    return compose(TINY + [f"paths.data_dir={data_dir}"] + list(extra))


def run_cli(args, tmp_path: Path, data_dir: Path | None, timeout=600, env=None, multirun=False):
    """`python -m lnrepro.train` as a user runs it; returns the CompletedProcess (the caller
    checks its returncode)."""
    e = {**os.environ, "LNREPRO_OUTPUTS": str(tmp_path / "outputs"), **(env or {})}
    if data_dir is not None:
        e["LNREPRO_DATA"] = str(data_dir)
    cmd = [sys.executable, "-m", "lnrepro.train"] + (["-m"] if multirun else []) + list(args)
    return subprocess.run(
        cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout, check=False
    )


def metrics_rows(path: Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (`path`: the file)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def rows_without_time(path: Path) -> list[dict]:
    """metrics_rows without the wall-clock field, for comparing two runs."""
    return [{k: v for k, v in row.items() if k != "time"} for row in metrics_rows(path)]


def load_script(name: str):
    """scripts/<name>.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the real datasets: `@pytest.mark.realdata("MNIST/raw", ...)` (conftest.py) -------------
def real_data_missing(*paths: str) -> str | None:
    """Why a test of the real datasets cannot run (None when it can): LNREPRO_DATA unset, or one
    of `paths` (relative to it) absent."""
    data = os.environ.get("LNREPRO_DATA")
    if not data:
        return "needs the real datasets: LNREPRO_DATA is not set"
    for p in paths:
        if not (Path(data) / p).exists():
            return f"needs the real datasets: {p} is not under LNREPRO_DATA={data}"
    return None


# ---- offline W&B run files -----------------------------------------------------------------
# `run-<id>.wandb` is W&B's LevelDB-style log: a 7-byte header (":W&B", magic, version), then
# 32 KiB blocks of records, each a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle,
# 4 last) and a piece of a serialized `wandb_internal_pb2.Record`.
WANDB_BLOCK = 32768


def wandb_records(path: Path) -> list:
    """The records of an offline W&B run file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, buf, chunks = 7, b"", []
    while pos + 7 <= len(data):
        space = WANDB_BLOCK - pos % WANDB_BLOCK
        if space < 7:  # the rest of a block too small for a header is padding
            pos += space
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0:
            break
        piece, pos = data[pos : pos + length], pos + length
        if kind == 1:
            chunks.append(piece)
        elif kind == 2:
            buf = piece
        elif kind == 3:
            buf += piece
        elif kind == 4:
            chunks.append(buf + piece)
            buf = b""
    out = []
    for c in chunks:
        r = pb.Record()
        r.ParseFromString(c)
        out.append(r)
    return out


def run_info(path: Path) -> dict:
    """{name, job_type, group, metrics: {name: (step_metric, summary kinds)}, summary: {key: value},
    artifacts: [(name, type)]} of one offline run file."""
    info = {"metrics": {}, "summary": {}, "artifacts": []}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info.update(name=r.run.display_name, job_type=r.run.job_type, group=r.run.run_group)
        elif kind == "metric":
            s = r.metric.summary
            kinds = {k for k in ("min", "max", "last", "mean", "best") if getattr(s, k, False)}
            info["metrics"][r.metric.name] = (r.metric.step_metric, kinds)
        elif kind == "summary":
            for u in r.summary.update:
                if u.key:
                    info["summary"][u.key] = json.loads(u.value_json)
        elif kind == "artifact":
            info["artifacts"].append((r.artifact.name, r.artifact.type))
    return info
