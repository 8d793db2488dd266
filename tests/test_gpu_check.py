"""scripts/gpu_check.py (`make gpu-check`): its CPU half runs on a bare machine (torch and numpy
only: no Hydra, omegaconf, PyYAML, W&B or installed package), and its config reader reads every
config as Hydra does."""

import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch
from helpers import ROOT, load_script
from omegaconf import OmegaConf

SCRIPT = ROOT / "scripts" / "gpu_check.py"
RESULT = ROOT / "results" / "gpu_check.md"

# Run in `python -I -S` (no site: neither the venv's .pth files, so not the editable lnrepro
# install, nor PYTHONPATH), with only torch's and numpy's site directory on sys.path and a finder
# that refuses the packages a bare machine lacks (they share that directory here).
BARE = """
import importlib.abc, runpy, sys
BLOCKED = {"hydra", "omegaconf", "yaml", "wandb", "datasets", "submitit"}
class Bare(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (a bare machine)")
sys.meta_path.insert(0, Bare())
sys.path += SITES
sys.argv = [SCRIPT] + ARGS
runpy.run_path(SCRIPT, run_name="__main__")
"""


@pytest.fixture(scope="module")
def gpu_check():
    return load_script("gpu_check")


def _stat(path: Path):
    return path.stat().st_mtime_ns if path.exists() else None


@pytest.mark.slow
def test_cpu_half_runs_without_hydra(tmp_path):
    sites = sorted({str(Path(m.__file__).parents[1]) for m in (torch, numpy)})
    code = BARE.replace("SITES", repr(sites)).replace("SCRIPT", repr(str(SCRIPT)))
    code = code.replace("ARGS", "[]")
    before = _stat(RESULT)
    env = {"PATH": os.environ.get("PATH", ""), "CUDA_VISIBLE_DEVICES": "", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "GPU half SKIPPED" in out and "GPU half skipped" in out.splitlines()[-1]
    assert "the built-in YAML reader" in out  # PyYAML was not importable
    for name in (
        "pi_mnist",
        "cnn_mnist",
        "cnn_cifar10",
        "lm_ptb_char",
        "lm_ptb_word",
        "draw",
        "handwriting",
        "skip_thoughts",
    ):
        lines = [ln for ln in out.splitlines() if f"] {name}: " in ln]
        assert any("parameters" in ln and "GFLOP" in ln for ln in lines), lines  # full width
        tiny = next(ln for ln in lines if "tiny updates" in ln)
        assert tiny.count("fp32 ok") == 3, tiny
    assert "no report written" in out and _stat(RESULT) == before  # no CPU-only results file


def test_bare_guard_blocks_hydra(tmp_path):
    """The environment above really lacks Hydra and omegaconf (and the installed package)."""
    sites = sorted({str(Path(m.__file__).parents[1]) for m in (torch, numpy)})
    code = BARE.split("sys.argv")[0].replace("SITES", repr(sites)) + (
        "for name in ('hydra', 'omegaconf', 'yaml', 'lnrepro'):\n"
        "    try:\n        __import__(name)\n        print('IMPORTED', name)\n"
        "    except ImportError:\n        pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and "IMPORTED" not in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "path",
    sorted(ROOT.glob("configs/**/*.yaml")),
    ids=lambda p: str(p.relative_to(ROOT / "configs")),
)
def test_yaml_reader_reads_every_config_as_omegaconf(gpu_check, path):
    expected = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    assert gpu_check.parse_yaml(path.read_text(), str(path)) == expected
    assert gpu_check._load_yaml.__wrapped__(path) == expected  # PyYAML, where installed


@pytest.mark.slow
def test_compose_matches_hydra(gpu_check, compose):
    """Every experiment config composes as Hydra composes it (values with resolver calls, such
    as data_dir's ${oc.env:..}, stay unresolved in the script: they are compared by key only)."""
    for path in sorted((ROOT / "configs" / "experiment").glob("*.yaml")):
        ours = gpu_check.compose(path.stem, "bn")
        theirs = OmegaConf.to_container(
            compose([f"experiment={path.stem}", "norm=bn"]), resolve=True
        )
        for key in ("name", "seed", "norm", "model", "task", "optim", "trainer", "data"):
            mine, want = ours[key], theirs[key]
            if isinstance(mine, dict):
                assert set(mine) == set(want), (path.stem, key)
                mine = {k: v for k, v in mine.items() if "${" not in str(v)}
                want = {k: want[k] for k in mine}
            assert mine == want, (path.stem, key)


@pytest.mark.slow
def test_report_only_with_out_on_cpu(gpu_check, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "check.md"
    assert gpu_check.main(["--experiments", "pi_mnist", "--out", str(out)]) == 0
    text = out.read_text()
    assert "**GPU half skipped: no CUDA device.**" in text
    # 784-1000-1000-10 with LN gains and biases; 60 epochs of 55,000 // 128 = 429 updates
    assert "| pi_mnist | 60 epochs x 429 | 25,740 | 1.80M |" in text
    assert "Training speed" not in text


def test_bad_config_value_is_one_clear_error(gpu_check):
    with pytest.raises(gpu_check.ConfigReadError, match="model.vocab_size"):
        gpu_check.check_resolved({"vocab_size": "???"}, "model")
    with pytest.raises(gpu_check.ConfigReadError, match="unexpected indentation"):
        gpu_check.parse_yaml("a: 1\n    b: 2\n")
