"""Hardening: damaged and truncated data, concurrent runs, failing writes, W&B without
network, and one clear line for every bad input. Every test makes its fault on small files it
writes (or on a socket on 127.0.0.1 that never answers), bounded in time."""

from __future__ import annotations

import errno
import io
import json
import lzma
import os
import resource
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, TINY, metrics_rows, run_cli, tiny_cfg, write_idx_mnist

from lnrepro.artifacts import atomic_write
from lnrepro.callbacks import LOCK_FILE, lock_run_dir, unlock_run_dir
from lnrepro.data import verify as V
from lnrepro.data.iam_ondb import iam_ondb, load_raw_lines
from lnrepro.data.ptb import ptb
from lnrepro.errors import ConfigError, DataError, OutputError
from lnrepro.train import run


def assert_one_error_line(p, code: int = 2) -> str:
    """Exit `code`, no traceback, and exactly one error line on stderr (other stderr lines may
    only be warnings); returns the error line."""
    out = p.stdout + p.stderr
    assert p.returncode == code, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "[WARNING]" not in ln]
    assert len(errors) == 1, p.stderr[-3000:]
    return errors[0]


def cli_env(tmp_path: Path, data_dir: Path, **extra) -> dict:
    env = {
        **os.environ,
        "LNREPRO_OUTPUTS": str(tmp_path / "outputs"),
        "LNREPRO_DATA": str(data_dir),
        "LNREPRO_CACHE": str(tmp_path / "cache"),
    }
    env.update(extra)
    return env


def start_cli(args, env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lnrepro.train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(cond, proc=None, timeout=120.0):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.05)


# ---- 1. damaged archives --------------------------------------------------------------------
def tiny_iam_archives(root: Path, damage=None) -> Path:
    """<root>/iam_ondb/{lineStrokes,ascii}-all.tar.xz from the synthetic forms of
    test_handwriting; `damage(tar_bytes) -> tar_bytes` alters the strokes tar before xz."""
    from test_handwriting import write_iam

    trees = write_iam(root / "trees", n_forms=8)
    out = root / "data" / "iam_ondb"
    out.mkdir(parents=True)
    for kind in ("lineStrokes", "ascii"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(trees / "iam_ondb" / kind, arcname=kind)
        data = buf.getvalue()
        if damage is not None and kind == "lineStrokes":
            data = damage(data)
        (out / f"{kind}-all.tar.xz").write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ))
    return root / "data"


def break_a_middle_header(data: bytes) -> bytes:
    """Overwrite the header checksum of a member in the middle: Python's tarfile stops there
    without an error, as at the end of the archive."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    at = members[len(members) // 2].offset + 148  # the chksum field
    return data[:at] + b"XXXXXXX\0" + data[at + 8 :]


def test_a_damaged_member_header_is_refused_and_nothing_is_cached(tmp_path):
    data = tiny_iam_archives(tmp_path, damage=break_a_middle_header)
    archive = data / "iam_ondb" / "lineStrokes-all.tar.xz"
    with tarfile.open(archive) as tar:  # the fault: tarfile reads a prefix and says nothing
        assert 0 < len([m for m in tar if m.isfile()]) < 24
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"lineStrokes-all.tar.xz.*damaged"):
        load_raw_lines(data, cache_dir=cache, verify=False)
    assert not cache.exists() or not list(cache.iterdir())


def test_a_damaged_xz_stream_is_refused_and_nothing_is_cached(tmp_path):
    data = tiny_iam_archives(tmp_path)
    archive = data / "iam_ondb" / "lineStrokes-all.tar.xz"
    raw = archive.read_bytes()
    mid = len(raw) // 2
    archive.write_bytes(raw[:mid] + bytes(b ^ 0xFF for b in raw[mid : mid + 16]) + raw[mid + 16 :])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"lineStrokes-all.tar.xz.*(damaged|truncated)"):
        iam_ondb(str(data), cache_dir=str(cache), verify=False)
    assert not cache.exists() or not list(cache.iterdir())
    # an intact synthetic copy is not the recorded IAM-OnDB: refused unless data.verify=false
    good = tiny_iam_archives(tmp_path / "good")
    with pytest.raises(DataError, match="does not match the recorded checksum.*data.verify=false"):
        load_raw_lines(good, cache_dir=cache)
    raw_lines, _ = load_raw_lines(good, cache_dir=cache, verify=False)
    assert len(raw_lines) == 24


def test_extracted_trees_are_counted(tmp_path):
    from test_handwriting import write_iam

    data = write_iam(tmp_path / "d", n_forms=3)
    with pytest.raises(DataError, match=r"lineStrokes.*9 found.*12,195"):
        load_raw_lines(data, cache_dir=tmp_path / "c")
    raw, _ = load_raw_lines(data, cache_dir=tmp_path / "c", verify=False)
    assert len(raw) == 9


@pytest.mark.slow
def test_damaged_archive_through_the_entrypoint(tmp_path):
    data = tiny_iam_archives(tmp_path, damage=break_a_middle_header)
    args = [
        "experiment=handwriting_cpu",
        "data.verify=false",
        "data.batch_size=2",
        "trainer.max_steps=2",
        "logger=none",
        "threads=1",
        f"hydra.run.dir={tmp_path}/run",
    ]
    p = subprocess.run(
        [sys.executable, "-m", "lnrepro.train", *args],
        cwd=ROOT,
        env=cli_env(tmp_path, data),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = assert_one_error_line(p)
    assert "lineStrokes-all.tar.xz" in line and "damaged" in line
    assert not list((tmp_path / "cache").rglob("lines_*"))
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---- 2. one run per run directory -----------------------------------------------------------
HOLD = (
    "import sys, time; from lnrepro.callbacks import lock_run_dir; lock_run_dir(sys.argv[1]); "
    "print('locked', flush=True); time.sleep(120)"
)


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_a_second_run_stops_naming_the_first_and_a_dead_ones_lock_is_taken_over(
    compose, tiny_mnist, tmp_path
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "locked"
        cfg = tiny_cfg(compose, tiny_mnist, "trainer.max_steps=3")
        with pytest.raises(
            ConfigError,
            match=rf"in use by another run \(process {first.pid} on "
            rf"{socket.gethostname()}",
        ):
            run(cfg, run_dir)
        assert not (run_dir / "metrics.jsonl").exists()
    finally:
        first.kill()  # kill -9: the lock file stays behind, stale
        first.wait()
    holder = json.loads((run_dir / LOCK_FILE).read_text())
    assert holder["pid"] == first.pid
    assert run(cfg, run_dir)["status"] == "completed"  # the stale lock is taken over
    assert not (run_dir / LOCK_FILE).exists()  # and removed at the end


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_a_lock_from_another_host_is_respected_and_named(compose, tiny_mnist, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).write_text(
        json.dumps({"host": "node-17", "pid": 4242, "started": "2024-01-01T00:00:00"})
    )
    with pytest.raises(ConfigError, match=r"locked by process 4242 on node-17.*delete"):
        run(tiny_cfg(compose, tiny_mnist, "trainer.max_steps=3"), run_dir)
    assert json.loads((run_dir / LOCK_FILE).read_text())["host"] == "node-17"


def test_only_rank_zero_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert lock_run_dir(tmp_path) is False and not (tmp_path / LOCK_FILE).exists()
    monkeypatch.setenv("RANK", "0")
    assert lock_run_dir(tmp_path) is True and (tmp_path / LOCK_FILE).exists()
    assert lock_run_dir(tmp_path) is False  # held already: re-entrant
    unlock_run_dir(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()


@pytest.mark.slow
def test_concurrent_runs_into_one_directory(tmp_path, tiny_mnist):
    run_dir = tmp_path / "run"
    env = cli_env(tmp_path, tiny_mnist)
    base = [*TINY, "trainer.epochs=1000", "trainer.progress=lines", f"hydra.run.dir={run_dir}"]
    first = start_cli(base, env)
    try:
        wait_for(lambda: (run_dir / "metrics.jsonl").exists(), first)
        second = subprocess.run(
            [sys.executable, "-m", "lnrepro.train", *base, "seed=7"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        line = assert_one_error_line(second)
        assert f"process {first.pid}" in line and "in use by another run" in line
        assert first.poll() is None  # the first run goes on, its files untouched
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err[-2000:]
    assert "seed: 1" in (run_dir / ".hydra" / "config.yaml").read_text()
    steps = [r["step"] for r in metrics_rows(run_dir / "metrics.jsonl")]
    assert steps == sorted(steps)
    assert not (run_dir / LOCK_FILE).exists()


@pytest.mark.slow
def test_resume_after_kill_9_takes_over_the_stale_lock(tmp_path, tiny_mnist):
    run_dir = tmp_path / "run"
    env = cli_env(tmp_path, tiny_mnist)
    # a run that cannot end on its own before the kill (with a short one, a fast machine
    # finished it, and removed its lock, between the first checkpoint and the kill)
    args = [*TINY, "trainer.epochs=1000", "trainer.ckpt_every=5", f"hydra.run.dir={run_dir}"]
    proc = start_cli(args, env)
    wait_for(lambda: (run_dir / "checkpoints" / "last.pt").exists(), proc)
    proc.kill()
    proc.communicate()
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == proc.pid
    step = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["step"]
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnrepro.train",
            *args,
            "resume=true",
            f"trainer.max_steps={step + 3}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"taking over the lock of process {proc.pid}" in p.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert not (run_dir / LOCK_FILE).exists()


# ---- 3. failing writes ----------------------------------------------------------------------
def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"good")

    def half_then_full(f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match=r"cannot write .*last.pt \(No space left on device\)"):
        atomic_write(target, half_then_full)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint(tmp_path, tiny_mnist):
    """A file-size limit makes the checkpoint write fail midway (as a full disk or a quota):
    one line, exit 2, no temporary file, the last good checkpoint intact, summary 'failed'."""
    run_dir = tmp_path / "run"
    env = cli_env(tmp_path, tiny_mnist)
    args = [*TINY, "trainer.epochs=null", "trainer.eval_every=5", f"hydra.run.dir={run_dir}"]
    p = subprocess.run(
        [sys.executable, "-m", "lnrepro.train", *args, "trainer.max_steps=5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "last.pt"
    good = ckpt.read_bytes()
    limit = len(good) // 2

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run(
        [sys.executable, "-m", "lnrepro.train", *args, "trainer.max_steps=10", "resume=true"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=small_files,
        check=False,
    )
    line = assert_one_error_line(p)
    assert "cannot write" in line and "last.pt" in line and "File too large" in line
    assert ckpt.read_bytes() == good
    assert sorted(x.name for x in ckpt.parent.iterdir()) == ["last.pt"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "File too large" in summary["reason"]
    assert not (run_dir / LOCK_FILE).exists()


# ---- 4. W&B ---------------------------------------------------------------------------------
@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join(5)
    for c in conns:
        c.close()
    srv.close()


def wandb_env(tmp_path, data_dir, **extra) -> dict:
    env = {
        k: v
        for k, v in cli_env(tmp_path, data_dir).items()
        if not k.startswith(("WANDB_", "NETRC"))
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        WANDB_CONFIG_DIR=str(home / "wandb_config"),
        WANDB_CACHE_DIR=str(home / "wandb_cache"),
        WANDB_DATA_DIR=str(home / "wandb_data"),
    )
    env.update(extra)
    return env


@pytest.mark.slow
def test_wandb_that_never_answers_continues_offline_in_bounded_time(
    tmp_path, tiny_mnist, silent_server
):
    env = wandb_env(tmp_path, tiny_mnist, WANDB_API_KEY="a" * 40, WANDB_BASE_URL=silent_server)
    run_dir = tmp_path / "run"
    args = [
        *[a for a in TINY if not a.startswith("logger=")],
        "logger=wandb",
        "logger.init_timeout=5",
        "trainer.max_steps=3",
        f"hydra.run.dir={run_dir}",
    ]
    t0 = time.time()
    p = subprocess.run(
        [sys.executable, "-m", "lnrepro.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert time.time() - t0 < 120
    warned = [ln for ln in p.stderr.splitlines() if "W&B" in ln and "[WARNING]" in ln]
    assert len(warned) == 1 and "wandb sync" in warned[0], p.stderr[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_wandb_online_without_a_key_is_one_line(tmp_path, tiny_mnist):
    env = wandb_env(tmp_path, tiny_mnist, WANDB_MODE="online")
    args = [
        *[a for a in TINY if not a.startswith("logger=")],
        "logger=wandb",
        f"hydra.run.dir={tmp_path}/run",
    ]
    p = subprocess.run(
        [sys.executable, "-m", "lnrepro.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = assert_one_error_line(p)
    assert "online" in line and "API key" in line and "wandb login" in line


# ---- 5. bad config values: one line, exit 2 -------------------------------------------------
BAD = {
    "unknown norm": (["norm=gn"], ["norm/gn", "bn, ln, none"]),
    "unknown experiment": (["experiment=nope"], ["experiment/nope", "pi_mnist_cpu"]),
    "seed not an integer": (["seed=abc"], ["seed", "'abc'"]),
    "negative threads": (["threads=-2"], ["threads", "-2"]),
    "zero threads": (["threads=0"], ["threads", "positive"]),
    "resume not a bool": (["resume=maybe"], ["resume", "'maybe'"]),
    "verify not a bool": (["data.verify=maybe"], ["data.verify", "'maybe'"]),
    "unknown key": (["lr=0.1"], ["lr"]),
    "zero batch size": (["data.batch_size=0"], ["data.batch_size", "0"]),  # fails inside the job
}


# multiruns take the same paths as single runs: one case of each kind (option, value, key)
MULTIRUN = ("unknown norm", "seed not an integer", "unknown key", "zero batch size")
CASES = [(c, False) for c in BAD] + [(c, True) for c in MULTIRUN]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, multirun", CASES, ids=list(BAD) + [f"{c} (multirun)" for c in MULTIRUN]
)
def test_bad_values_are_one_line_and_exit_2(tmp_path, tiny_mnist, case, multirun):
    overrides, expected = BAD[case]
    keys = {o.split("=")[0] for o in overrides}
    args = [a for a in TINY if a.split("=")[0] not in keys] + overrides
    extra = [f"hydra.sweep.dir={tmp_path}/sweep"] if multirun else [f"hydra.run.dir={tmp_path}/r"]
    p = run_cli(args + extra, tmp_path, tiny_mnist, multirun=multirun, timeout=300)
    line = assert_one_error_line(p)
    for text in expected:
        assert text in line, line


@pytest.mark.slow
def test_no_experiment_and_help(tmp_path):
    p = run_cli(["norm=ln"], tmp_path, None, timeout=120)
    line = assert_one_error_line(p)
    assert "experiment=" in line and "pi_mnist_cpu" in line and "skip_thoughts" in line
    p = run_cli(["--help"], tmp_path, None, timeout=120)
    assert p.returncode == 0 and "Traceback" not in p.stdout + p.stderr, p.stderr[-3000:]
    assert "experiment" in p.stdout and "pi_mnist_cpu" in p.stdout and "handwriting" in p.stdout


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_a_checkpoint_without_the_expected_keys(compose, tiny_mnist, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    torch.save({"step": 3, "model": {}}, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(DataError, match=r"last.pt is not a complete checkpoint.*missing.*config"):
        run(tiny_cfg(compose, tiny_mnist, "resume=true"), tmp_path)


# ---- 6. verification ------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def record(monkeypatch, dataset: str, folder: Path, names, label=V.ORIGINAL, algo="sha256"):
    """Record the current content of `folder/<name>` as a known copy of `dataset`."""
    known = {**V.KNOWN[dataset]}
    for name in names:
        digest = V.file_digests(folder / name)[algo]
        known[V.content_name(Path(name))] = {f"{algo}:{digest}": label}
    monkeypatch.setitem(V.KNOWN, dataset, known)


def test_truncated_but_valid_text_is_refused(tmp_path, cache, monkeypatch):
    from test_lm import write_ptb

    data = write_ptb(tmp_path / "d")
    folder = data / "ptb"
    record(monkeypatch, "Penn Treebank", folder, ["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"])
    assert ptb(data, "word", 2, 5, 2).vocab_size > 3  # the recorded copy verifies
    test = folder / "ptb.test.txt"
    lines = test.read_text().splitlines(keepends=True)
    test.write_text("".join(lines[: 2 * len(lines) // 3]))  # cut cleanly at a line end
    with pytest.raises(DataError, match=r"ptb.test.txt does not match the recorded checksum"):
        ptb(data, "word", 2, 5, 2)
    assert ptb(data, "word", 2, 5, 2, verify=False).vocab_size > 3  # a user's own copy


def test_digests_are_remembered_per_path_size_and_mtime(tmp_path, cache, monkeypatch):
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(1000))
    first = V.file_digests(f)
    monkeypatch.setattr(V.hashlib, "md5", lambda *a: pytest.fail("hashed again"))
    assert V.file_digests(f) == first
    f.write_bytes(os.urandom(1000))
    with pytest.raises(pytest.fail.Exception, match="hashed again"):
        V.file_digests(f)


def test_original_and_reconstruction_both_verify(tmp_path, cache, monkeypatch, caplog):
    raw = write_idx_mnist(tmp_path / "d", n_train=30, n_test=10) / "MNIST" / "raw"
    files = [
        raw / f
        for f in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]
    record(monkeypatch, "MNIST", raw, [f.name for f in files[1:]], algo="md5")
    record(monkeypatch, "MNIST", raw, [files[0].name], label=V.MNIST_RECONSTRUCTION)
    with caplog.at_level("INFO", logger="lnrepro"):
        V.verify_files("MNIST", raw, files, verify=True)
    assert "near-exact reconstruction" in caplog.text
    files[2].write_bytes(files[2].read_bytes()[:-784])  # one test image less
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte does not match"):
        V.verify_files("MNIST", raw, files, verify=True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="lnrepro"):
        V.verify_files("MNIST", raw, files, verify=False)
    assert "data.verify=false" in caplog.text


def test_missing_senteval_files_stop_the_task_build(tmp_path):
    """The skip-thoughts task reads its SentEval files when it is built (before the data and
    the first update), not at the first evaluation."""
    from test_skip_thoughts import write_senteval

    from lnrepro.tasks.skip_thoughts import SkipThoughtsTask

    write_senteval(tmp_path, skip=("CR",))
    senteval = {"data_dir": str(tmp_path / "senteval"), "tasks": ["MR", "CR"]}
    with pytest.raises(DataError, match=r"SentEval task CR.*custrev.pos not found"):
        SkipThoughtsTask(senteval, verify=False)
    senteval["tasks"] = ["MR", "TREC"]
    assert SkipThoughtsTask(senteval, verify=False).senteval["tasks"] == ["MR", "TREC"]
    with pytest.raises(ConfigError, match="unknown task"):
        SkipThoughtsTask({**senteval, "tasks": ["MRR"]}, verify=False)


# ---- 7. caches: one root, keyed by content, never in the data folder; threads on resume ------
def test_caches_live_under_the_cache_root_keyed_by_content(tmp_path, cache):
    data = tiny_iam_archives(tmp_path)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    _, cached = load_raw_lines(data, verify=False)
    assert not cached and len(list((cache / "iam_ondb").glob("lines_*.npz"))) == 1
    archive = data / "iam_ondb" / "ascii-all.tar.xz"
    os.utime(archive, (1e9, 1e9))  # same content, new mtime: the same cache
    assert load_raw_lines(data, verify=False)[1] is True
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written here


def test_an_unwritable_cache_root_is_one_line_before_training(
    compose, tiny_mnist, tmp_path, monkeypatch
):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("LNREPRO_CACHE", str(blocker / "cache"))
    with pytest.raises(ConfigError, match="cannot write caches to .*LNREPRO_CACHE"):
        run(tiny_cfg(compose, tiny_mnist), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_resume_checks_the_thread_count(compose, tiny_mnist, tmp_path):
    before = torch.get_num_threads()
    try:
        run(tiny_cfg(compose, tiny_mnist, "trainer.max_steps=5", "threads=1"), tmp_path)
        with pytest.raises(
            ConfigError,
            match=r"1 thread.*this run 2.*threads=1.*"
            r"resume_allow_different_threads=true",
        ):
            run(
                tiny_cfg(compose, tiny_mnist, "trainer.max_steps=10", "threads=2", "resume=true"),
                tmp_path,
            )
        s = run(
            tiny_cfg(
                compose,
                tiny_mnist,
                "trainer.max_steps=10",
                "threads=2",
                "resume=true",
                "resume_allow_different_threads=true",
            ),
            tmp_path,
        )
        assert s["status"] == "completed" and s["step"] == 10
    finally:
        torch.set_num_threads(before)
