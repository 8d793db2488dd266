"""`make smoke`: every CPU-scale experiment for a few updates through the real entrypoint.

    python scripts/smoke.py [--norm ln] [--jobs 2] [--only pi_mnist_cpu ...] [-- key=value ...]

Runs `python -m lnrepro.train experiment=<name> debug=smoke` (one thread each, plus the
overrides after `--`) for every configs/experiment/*_cpu*.yaml, `--jobs` at a time (default 2,
1 on a one-core machine), into a temporary folder. Each run is forked from a server that has
imported torch and lnrepro.train once (`--fresh`: a new interpreter per run, as before). Prints
one line per experiment as it finishes: ok (wall time and its key validation metric), skipped
(its dataset is not on this machine: the loader's whole "not found" line) or FAILED (the error
line, then the end of its stderr); then a totals line. Exits 1 when one failed. Nothing it
writes is kept.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR=1"
# Seconds of each experiment in a warm `make smoke` (2 at a time on a busy 2-core AMD EPYC,
# load average ~4): the longest start first, so that the two lanes end together. An experiment
# not listed here counts as DEFAULT_COST.
COST = {
    "skip_thoughts_cpu": 40,
    "handwriting_cpu": 16,
    "reader_cpu": 12,
    "cnn_mnist_cpu": 10,
    "lm_ptb_char_cpu": 8,
    "draw_cpu": 6,
    "lm_ptb_word_cpu": 5,
    "lm_ptb_word_cpu_adam": 5,
    "pi_mnist_cpu": 2,
}
DEFAULT_COST = 10


def experiments(root: Path = ROOT) -> list[str]:
    """Every CPU-scale experiment: configs/experiment/*_cpu*.yaml (the `_cpu` configs and their
    variants, e.g. lm_ptb_word_cpu_adam); the other files are the paper's scale."""
    return sorted(p.stem for p in (root / "configs" / "experiment").glob("*_cpu*.yaml"))


class Result(NamedTuple):
    name: str
    status: str  # ok | skipped | FAILED
    seconds: float  # wall time
    detail: str = ""  # ok: the key metric; skipped: the loader's line; FAILED: the error line
    tail: str = ""  # FAILED: the end of its stderr
    cpu: float | None = None  # CPU seconds of the run's process (user + system)

    def line(self) -> str:
        cpu = f" (cpu {self.cpu:5.1f} s)" if self.cpu is not None else ""
        head = f"{self.name:24s} {self.status:7s} {self.seconds:5.1f} s{cpu}"
        return f"{head}  {self.detail}".rstrip()


# The validation metric a smoke line shows, the first of these that the run logged (else its
# first validation metric); plus the first metric of an evaluation hook (SentEval).
KEY_METRICS = ("val/err", "val/bpc", "val/ppl", "val/bound", "val/nll_seq", "val/loss")


def key_metric(run_dir: Path) -> str:
    """The key validation metric of the run's last evaluation (summary.json), and the first
    metric of an evaluation hook when there is one."""
    try:
        final = json.loads((run_dir / "summary.json").read_text()).get("final") or {}
    except (OSError, ValueError):
        return "(no summary.json)"
    val = [k for k in KEY_METRICS if k in final] + [k for k in final if k.startswith("val/")]
    hooks = [k for k in final if "/" in k and k.split("/")[0] not in ("train", "val", "test")]
    shown = (val[:1] + hooks[:1]) or list(final)[:1]
    return " ".join(f"{k}={final[k]:.4g}" for k in shown if isinstance(final[k], (int, float)))


def error_line(stderr: str) -> str:
    """The line that says why a run stopped: its last `[ERROR]` or `error:` line, else the last
    line that is not Hydra's HYDRA_FULL_ERROR hint (an exception's message)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "[ERROR]" in ln or ln.startswith("error:")]
    if errors:
        return errors[-1].split("[ERROR] - ", 1)[-1]
    lines = [ln for ln in lines if not ln.startswith(HYDRA_HINT)]
    return lines[-1] if lines else "(no output)"


def _cpu(usage) -> float:
    return usage.ru_utime + usage.ru_stime


def _subprocess(argv: list[str], env: dict, logs: Path) -> tuple[int, str, float]:
    """`python -m lnrepro.train <argv>` in a fresh interpreter, its stdout and stderr into
    `logs`.stdout / .stderr: (exit code, stderr, CPU seconds)."""
    with open(f"{logs}.stdout", "wb") as out, open(f"{logs}.stderr", "wb") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "lnrepro.train", *argv],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, Path(f"{logs}.stderr").read_text(errors="replace"), _cpu(usage)


def _entrypoint(argv: list[str], env: dict, logs: Path) -> None:
    """In a process forked from the preloaded server: what `python -m lnrepro.train <argv>`
    runs (lnrepro.train.cli), its stdout and stderr into `logs`.stdout / .stderr."""
    for fd, suffix in ((1, ".stdout"), (2, ".stderr")):
        f = os.open(f"{logs}{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    os.environ.update(env)
    os.chdir(ROOT)
    sys.argv = [str(ROOT / "src" / "lnrepro" / "train.py"), *argv]
    code = 0
    try:
        from lnrepro.train import cli

        cli()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001  (as the interpreter would: the traceback, exit 1)
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # a forked child ends with os._exit: run what exit would
    sys.stdout.flush()
    sys.stderr.flush()
    cpu = _cpu(resource.getrusage(resource.RUSAGE_SELF))
    cpu += _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))  # e.g. a C++ extension's build
    Path(f"{logs}.cpu").write_text(f"{cpu}\n")
    sys.exit(code)


def _forked(argv: list[str], env: dict, logs: Path) -> tuple[int, str, float | None]:
    """The entrypoint in a child of a fork server that has imported torch and lnrepro.train
    once (PRELOAD): each run saves the ~5 s of CPU those imports take.
    (exit code, stderr, CPU seconds of the child)"""
    p = _server().Process(target=_entrypoint, args=(argv, env, logs))
    p.start()
    p.join()
    err, cpu = Path(f"{logs}.stderr"), Path(f"{logs}.cpu")
    return (
        p.exitcode,
        err.read_text(errors="replace") if err.exists() else "",
        float(cpu.read_text()) if cpu.exists() else None,
    )


# What the fork server imports before it forks a run: the entrypoint and what building a model
# and an optimizer import (torch._dynamo: a fused Adam; torchvision: the MNIST loaders).
PRELOAD = ["lnrepro.train", "torch._dynamo", "torchvision.datasets"]
_SERVER = None


def _server():
    global _SERVER
    if _SERVER is None:
        import multiprocessing
        import multiprocessing.forkserver

        _SERVER = multiprocessing.get_context("forkserver")
        _SERVER.set_forkserver_preload(PRELOAD)
        multiprocessing.forkserver.ensure_running()
    return _SERVER


def smoke(name: str, norm: str, out: Path, extra: tuple[str, ...] = (), fork: bool = False):
    """One experiment under debug=smoke into `out/<name>`: in a fresh interpreter, or (`fork`)
    forked from the preloaded server."""
    argv = [
        f"experiment={name}",
        f"norm={norm}",
        "debug=smoke",
        f"hydra.run.dir={out / name}",
        *extra,
    ]
    env = {"LNREPRO_OUTPUTS": str(out), "WANDB_MODE": "disabled"}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    code, stderr, cpu = (_forked if fork else _subprocess)(argv, env, out / name)
    took = time.perf_counter() - t0
    if code == 0:
        return Result(name, "ok", took, key_metric(out / name), cpu=cpu)
    line = error_line(stderr)
    if code == 2 and "not found" in line:
        return Result(name, "skipped", took, line, cpu=cpu)
    tail = "\n".join("    " + ln for ln in stderr.strip().splitlines()[-15:])
    return Result(name, "FAILED", took, f"exit {code}: {line}", tail, cpu)


def run_all(
    names, norm: str, jobs: int, out: Path, report=print, fork=True, extra: tuple[str, ...] = ()
) -> list[Result]:
    """Smoke `names`, `jobs` at a time, the costliest first; `report` gets each finished one."""
    order = sorted(names, key=lambda n: -COST.get(n, DEFAULT_COST))
    if fork:
        _server()  # started (and its imports done) before the first run's clock starts
    results = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = [pool.submit(smoke, n, norm, out, extra, fork=fork) for n in order]
        for f in as_completed(runs):
            results.append(f.result())
            report(results[-1])
    return results


def totals(results: list[Result], wall: float, jobs: int) -> str:
    count = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "FAILED")}
    cpu = [r.cpu for r in results if r.cpu is not None]
    return (
        f"{len(results)} experiment{'s' * (len(results) != 1)}: {count['ok']} ok, {count['skipped']} skipped, "
        f"{count['FAILED']} FAILED in {wall:.1f} s ({jobs} at a time; the runs sum to "
        f"{sum(r.seconds for r in results):.1f} s" + (f", {sum(cpu):.1f} s of CPU)" if cpu else ")")
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--norm", default="ln")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--only", nargs="*", help="experiment names (default: every *_cpu*)")
    ap.add_argument(
        "--fresh", action="store_true", help="a fresh interpreter per run (no fork server)"
    )
    ap.add_argument("overrides", nargs="*", help="after --: overrides for every run")
    args = ap.parse_args()
    import multiprocessing

    fork = not args.fresh and "forkserver" in multiprocessing.get_all_start_methods()
    names = args.only or experiments()
    unknown = sorted(
        set(names) - {p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")}
    )
    if unknown:
        print(f"error: no such experiment: {', '.join(unknown)}", file=sys.stderr)
        return 2

    def report(r: Result) -> None:
        print(r.line(), flush=True)
        if r.tail:
            print(r.tail, flush=True)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lnrepro-smoke-") as tmp:
        results = run_all(
            names, args.norm, args.jobs, Path(tmp), report, fork, tuple(args.overrides)
        )
    print(totals(results, time.perf_counter() - t0, args.jobs), flush=True)
    return 1 if any(r.status == "FAILED" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
