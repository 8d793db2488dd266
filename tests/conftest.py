"""Shared fixtures: a tiny MNIST in the real IDX format, config composition, CLI runs."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# W&B off for speed; the one W&B test turns offline mode on for itself.
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
            struct.pack(">IIII", 2051, n, 28, 28) + x.numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + y.to(torch.uint8).numpy().tobytes())
    return root


@pytest.fixture(scope="session", autouse=True)
def cache_root(tmp_path_factory) -> Path:
    """The session's caches (parsed corpora, binarizations, file digests) go to a temporary
    folder, not the user's ~/.cache/lnrepro; a LNREPRO_CACHE set by the user is kept."""
    os.environ.setdefault("LNREPRO_CACHE", str(tmp_path_factory.mktemp("cache")))
    return Path(os.environ["LNREPRO_CACHE"])


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    return write_idx_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture
def compose():
    """compose(overrides) -> the config `python -m lnrepro.train <overrides>` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import lnrepro  # noqa: F401  (registers the ${lnrepro_root:} resolver)

    def _compose(overrides):
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
            return hydra_compose("train", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def run_cli(args, tmp_path: Path, data_dir: Path | None, timeout=600, env=None, multirun=False):
    """`python -m lnrepro.train` as a user runs it; returns the CompletedProcess."""
    e = {**os.environ, "LNREPRO_OUTPUTS": str(tmp_path / "outputs"), **(env or {})}
    if data_dir is not None:
        e["LNREPRO_DATA"] = str(data_dir)
    cmd = [sys.executable, "-m", "lnrepro.train"] + (["-m"] if multirun else []) + list(args)
    return subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli(tmp_path, tiny_mnist):
    def _cli(*args, data_dir=tiny_mnist, **kw):
        return run_cli(args, tmp_path, data_dir, **kw)

    return _cli
