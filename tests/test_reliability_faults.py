"""Faults around a run: a signal to a parallel sweep's process, a kill -9 during a checkpoint
write, a missing dataset, and a data notice said on every run. Each gets one clear line and a
non-zero exit, or works, and loses nothing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, TINY, run_cli, tiny_cfg, write_idx_mnist

from lnrepro.callbacks import lock_run_dir, unlock_run_dir
from lnrepro.data import common
from lnrepro.data import verify as V
from lnrepro.data.cifar10 import load_cifar10_tensors
from lnrepro.data.mnist import FILES, load_mnist_tensors
from lnrepro.errors import DataError
from lnrepro.train import run


def tree(root: Path) -> list[str] | None:
    """Every path under `root` (None: `root` does not exist)."""
    if not root.exists():
        return None
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def live_children(pid: int) -> list[int]:
    """The child processes of `pid` that run (zombies excluded), from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(name))
    return out


def running(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def dead_pid() -> int:
    """The pid of a process that has ended."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- 1. a signal to the process of a parallel sweep ----------------------------------------
def start_parallel_sweep(tmp_path: Path, data: Path, sweep: Path) -> subprocess.Popen:
    """Two jobs in joblib workers that cannot end on their own, each checkpointing every 5
    updates."""
    args = [o for o in TINY if o != "threads=1"] + [
        "trainer.epochs=1000",
        "trainer.ckpt_every=5",
        "trainer.progress=lines",
        "norm=ln,none",
        "hydra/launcher=parallel",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {
        **os.environ,
        "LNREPRO_DATA": str(data),
        "LNREPRO_OUTPUTS": str(tmp_path / "outputs"),
        "LNREPRO_CACHE": str(tmp_path / "cache"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "lnrepro.train", "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_both_checkpoints(proc: subprocess.Popen, sweep: Path) -> list[int]:
    """Wait until both jobs have a checkpoint; returns the sweep process's children then (the
    two workers and the resource trackers)."""
    deadline = time.time() + 300
    while len(list(sweep.glob("*/checkpoints/last.pt"))) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the jobs wrote no checkpoint in 300 s"
        time.sleep(0.1)
    return live_children(proc.pid)


def kill_all(proc: subprocess.Popen, children: list[int]) -> None:
    """kill -9 what is left of a sweep (its process and the children it had), so that a failed
    test leaves no process behind."""
    for pid in running(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=30)


def assert_every_job_stopped_with_a_checkpoint(sweep: Path) -> None:
    jobs = sorted(p.parent.parent for p in sweep.glob("*/checkpoints/last.pt"))
    assert len(jobs) == 2
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        ckpt = torch.load(job / "checkpoints" / "last.pt", weights_only=False)
        assert summary["status"] == "interrupted" and ckpt["step"] == summary["step"], job
        assert "stopped by signal 15" in (job / "train.log").read_text()
        assert not list(job.rglob("*.tmp")) and not (job / "run.lock").exists()


@pytest.mark.slow  # end to end: a parallel sweep in a subprocess
def test_sigterm_to_a_parallel_sweep_checkpoints_every_job_and_leaves_no_process(
    tmp_path, tiny_mnist
):
    sweep = tmp_path / "sweep"
    proc = start_parallel_sweep(tmp_path, tiny_mnist, sweep)
    children = []
    try:
        children = wait_for_both_checkpoints(proc, sweep)
        assert len(children) >= 2, children
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)  # returns once nothing holds its pipes
        deadline = time.time() + 10
        while running(children) and time.time() < deadline:
            time.sleep(0.2)
        assert running(children) == [], "workers or resource trackers outlived the sweep"
    finally:
        kill_all(proc, children)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "stopped by SIGTERM" in line and "2 running job(s) saved a checkpoint" in line
    assert "resume=true" in line and f"hydra.sweep.dir={sweep}" in line and "norm=ln,none" in line
    # each job said how to resume it
    assert err.count("checkpoint saved, continue with resume=true hydra.run.dir=") == 2
    assert_every_job_stopped_with_a_checkpoint(sweep)


@pytest.mark.slow
def test_workers_of_a_killed_sweep_checkpoint_and_exit(tmp_path, tiny_mnist):
    """kill -9 of the sweep's process: its workers see it gone, checkpoint and exit."""
    sweep = tmp_path / "sweep"
    proc = start_parallel_sweep(tmp_path, tiny_mnist, sweep)
    children = []
    try:
        children = wait_for_both_checkpoints(proc, sweep)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.time() + 60
        while running(children) and time.time() < deadline:
            time.sleep(0.2)
        assert running(children) == [], "the workers outlived their sweep"
    finally:
        kill_all(proc, children)
    assert_every_job_stopped_with_a_checkpoint(sweep)


# ---- 2. the temporary file of a checkpoint write killed by kill -9 --------------------------
def plant_temporaries(run_dir: Path, live_pid: int) -> tuple[list[Path], list[Path]]:
    """(temporary files of dead writers, of a live one) as atomic_write names them."""
    ckpts = run_dir / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    dead = dead_pid()
    stale = [ckpts / f".last.pt.{dead}.tmp", run_dir / f".summary.json.{dead}.tmp"]
    kept = [ckpts / f".last.pt.{live_pid}.tmp"]
    for f in stale + kept:
        f.write_bytes(b"\0" * 100_000)
    return stale, kept


def test_locking_a_run_dir_removes_the_temporaries_of_dead_writers_only(tmp_path, caplog):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale, kept = plant_temporaries(tmp_path, live.pid)
        (tmp_path / "checkpoints" / "last.pt").write_bytes(b"good")
        (tmp_path / ".notes.txt.tmp").write_bytes(b"not atomic_write's")
        with caplog.at_level("INFO", logger="lnrepro"):
            assert lock_run_dir(tmp_path)
        unlock_run_dir(tmp_path)
    finally:
        live.kill()
        live.wait()
    assert not any(f.exists() for f in stale) and all(f.exists() for f in kept)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == b"good"
    assert (tmp_path / ".notes.txt.tmp").exists()
    (line,) = [r.getMessage() for r in caplog.records if "temporary file" in r.getMessage()]
    assert "removed 2 temporary file(s) of killed writers (0.2 MB)" in line
    assert "checkpoints/.last.pt." in line and str(live.pid) not in line


@pytest.mark.slow  # whole training runs
def test_resume_removes_the_temporary_checkpoint_of_a_killed_write(compose, tiny_mnist, tmp_path):
    run_dir = tmp_path / "run"
    run(tiny_cfg(compose, tiny_mnist, "trainer.max_steps=5"), run_dir)
    stale, kept = plant_temporaries(run_dir, os.getppid())
    cfg = tiny_cfg(compose, tiny_mnist, "trainer.max_steps=10", "resume=true")
    assert run(cfg, run_dir)["step"] == 10
    assert not any(f.exists() for f in stale) and all(f.exists() for f in kept)


# ---- 3. missing data: the data folder is only read -----------------------------------------
@pytest.mark.slow  # the entrypoint in a subprocess
@pytest.mark.parametrize("folder", ["empty", "absent"])
def test_missing_mnist_is_one_line_and_the_data_folder_is_untouched(tmp_path, folder):
    data = tmp_path / "data"
    if folder == "empty":
        data.mkdir()
    before = tree(data)
    p = run_cli(
        [*TINY, f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        data,
        timeout=300,
        env={"LNREPRO_CACHE": str(tmp_path / "cache")},
    )
    assert p.returncode == 2, p.stderr[-3000:]
    assert tree(data) == before  # nothing created there; an absent folder stays absent
    assert "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if "[ERROR]" in ln or ln.startswith("error")]
    assert len(errors) == 1, p.stderr[-3000:]
    line = errors[0]
    assert f"missing in {data}/MNIST/raw/" in line and "train-images-idx3-ubyte" in line
    assert "LNREPRO_DATA" in line and "only read" in line
    assert ("does not exist" in line) == (folder == "absent")


@pytest.mark.parametrize("folder", ["empty", "absent"])
def test_loaders_never_create_anything_in_a_named_data_folder(tmp_path, folder, monkeypatch):
    from torchvision.datasets import CIFAR10, MNIST

    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    if folder == "empty":
        data.mkdir()
    before = tree(data)
    # a download would be attempted here before: it must not even start
    monkeypatch.setattr(MNIST, "download", lambda self: pytest.fail("download started"))
    monkeypatch.setattr(CIFAR10, "download", lambda self: pytest.fail("download started"))
    with pytest.raises(DataError, match=r"MNIST not found: .*only read.*unset LNREPRO_DATA"):
        load_mnist_tensors(data)
    with pytest.raises(DataError, match=r"CIFAR-10 not found in .*only read.*LNREPRO_DATA"):
        load_cifar10_tensors(data)
    with pytest.raises(DataError, match=r"data.download=false"):
        load_mnist_tensors(data, download=False)
    assert tree(data) == before


def test_downloads_go_to_the_default_data_folder_and_a_failed_one_leaves_nothing(
    tmp_path, monkeypatch
):
    from torchvision.datasets import MNIST

    cache = tmp_path / "cache"
    monkeypatch.setenv("LNREPRO_CACHE", str(cache))
    default = tmp_path / "repo" / "data"
    monkeypatch.setattr(common, "default_data_dir", lambda: default)

    def offline(self):
        Path(self.raw_folder).mkdir(parents=True)  # as torchvision does, before it fails
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno network")

    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(DataError, match="the download failed: Error downloading"):
        load_mnist_tensors(default)
    assert not default.exists() and list(cache.iterdir()) == []

    monkeypatch.setattr(MNIST, "download", lambda self: write_idx_mnist(Path(self.root)))
    (trx, _), (tex, _) = load_mnist_tensors(default, verify=False)
    assert (len(trx), len(tex)) == (200, 60)
    assert sorted(p.name for p in (default / "MNIST" / "raw").iterdir()) == sorted(FILES)
    assert list(cache.iterdir()) == []  # the temporary download folder is gone


def test_gzipped_mnist_is_read_in_place(tmp_path):
    import gzip

    raw = write_idx_mnist(tmp_path / "plain") / "MNIST" / "raw"
    zipped = tmp_path / "zipped" / "MNIST" / "raw"
    zipped.mkdir(parents=True)
    for f in FILES:
        (zipped / f"{f}.gz").write_bytes(gzip.compress((raw / f).read_bytes()))
    before = tree(tmp_path / "zipped")
    a = load_mnist_tensors(raw.parent.parent, verify=False)
    b = load_mnist_tensors(zipped.parent.parent, verify=False)
    assert all(torch.equal(x, y) for s, t in zip(a, b) for x, y in zip(s, t))
    assert tree(tmp_path / "zipped") == before


@pytest.mark.realdata("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-images-idx3-ubyte")
def test_real_mnist_reads_as_torchvision_reads_it(real_data):
    from torchvision.datasets import MNIST

    ours = load_mnist_tensors(real_data, download=False, verify=False)
    for (x, y), train in zip(ours, (True, False)):
        ds = MNIST(str(real_data), train=train, download=False)
        assert torch.equal(x, ds.data) and torch.equal(y, ds.targets.long())


# ---- 4. the notice about a reconstructed MNIST file ----------------------------------------
@pytest.mark.slow  # whole training runs
def test_a_data_notice_is_said_once_per_cache_and_recorded_in_every_summary(
    compose, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    data = write_idx_mnist(tmp_path / "d")
    raw = data / "MNIST" / "raw"
    known = {
        f: {
            "sha256:" + hashlib.sha256((raw / f).read_bytes()).hexdigest(): (
                V.MNIST_RECONSTRUCTION if f == "train-images-idx3-ubyte" else V.ORIGINAL
            )
        }
        for f in FILES
    }
    monkeypatch.setitem(V.KNOWN, "MNIST", known)
    said = []
    for n in range(2):
        caplog.clear()
        with caplog.at_level("INFO", logger="lnrepro"):
            run(
                tiny_cfg(compose, data, "trainer.max_steps=2", "data.verify=true"),
                tmp_path / f"r{n}",
            )
        said.append(sum("NOT the original file" in r.getMessage() for r in caplog.records))
        summary = json.loads((tmp_path / f"r{n}" / "summary.json").read_text())
        assert summary["data_notes"] == [f"MNIST train-images-idx3-ubyte: {V.MNIST_RECONSTRUCTION}"]
    assert said == [1, 0]
    assert tree(data) == sorted(["MNIST", "MNIST/raw", *(f"MNIST/raw/{f}" for f in FILES)])
