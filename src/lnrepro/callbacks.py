"""Hydra callbacks: fail with one line, before any job starts, when no experiment is chosen,
when outputs cannot be written, when the run directory is in use by another run, or when a job
of a sweep would not compose (an unknown key, an unknown option)."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import json
import logging
import math
import os
import shlex
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from hydra.experimental.callback import Callback

from lnrepro.artifacts import remove_stale_temps
from lnrepro.checks import is_int
from lnrepro.errors import ConfigError, one_line

log = logging.getLogger(__name__)

OUTPUTS_HINT = "set hydra.run.dir, hydra.sweep.dir or LNREPRO_OUTPUTS to a writable folder"


def check_writable(path: str | Path, what: str = "run outputs", hint: str = OUTPUTS_HINT) -> None:
    """Create `path` (as Hydra is about to) and prove it writable; else one ConfigError line."""
    p = Path(path).absolute()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".write_test.{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write {what} to {p} ({e.strerror}): {hint}") from None


# ---- one run per run directory --------------------------------------------------------------
LOCK_FILE = "run.lock"
_held: dict[Path, int] = {}  # lock file -> the descriptor this process holds its flock on


def _holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except ValueError:
        return {}


def _who(holder: dict) -> str:
    return (
        f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
        f"{holder.get('started', '?')}"
    )


def lock_run_dir(run_dir: str | Path) -> bool:
    """Lock `run_dir` for this process: `<run_dir>/run.lock` names the host and process, and an
    flock on it lasts as long as the process (the kernel drops it on any exit, kill -9 too).

    A run that holds the lock stops a second one with one ConfigError line naming it. A lock
    file whose flock is free was left by a dead process: on this host it is taken over (so
    `resume=true` works after a kill -9); from another host it is respected (the flock may not
    reach across machines) and named. Re-entrant; under multi-process training only rank 0
    locks. Released by `unlock_run_dir` or at exit. Returns whether this call took the lock."""
    path = (Path(run_dir) / LOCK_FILE).absolute()
    if path in _held or int(os.environ.get("RANK") or 0) != 0:
        return False
    host = socket.gethostname()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(
                f"{path.parent} is in use by another run ({_who(holder)}): wait "
                "for it to end, or choose another hydra.run.dir"
            ) from None
        try:  # the holder may have removed the file between our open and flock: lock anew
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    holder = _holder(fd)
    if holder.get("host", host) != host:
        os.close(fd)
        raise ConfigError(
            f"{path.parent} is locked by {_who(holder)}: wait for that run to "
            f"end; if it is gone (e.g. the machine crashed), delete {path}"
        )
    if holder:
        log.warning(
            "%s: taking over the lock of process %s, which is no longer running",
            path.parent,
            holder.get("pid"),
        )
    me = {"host": host, "pid": os.getpid(), "started": datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    if not _held:
        atexit.register(_unlock_all)
    _held[path] = fd
    _remove_stale_temps(path.parent)
    return True


def _remove_stale_temps(run_dir: Path) -> None:
    """The temporary files of writers killed during a write (a checkpoint's
    `checkpoints/.last.pt.<pid>.tmp` after a kill -9): removed, with one line, once the run
    directory is this process's."""
    removed = [f for d in (run_dir, run_dir / "checkpoints") for f in remove_stale_temps(d)]
    if removed:
        log.info(
            "%s: removed %d temporary file(s) of killed writers (%.1f MB): %s",
            run_dir,
            len(removed),
            sum(size for _, size in removed) / 1e6,
            ", ".join(str(p.relative_to(run_dir)) for p, _ in removed),
        )


def unlock_run_dir(run_dir: str | Path) -> None:
    path = (Path(run_dir) / LOCK_FILE).absolute()
    fd = _held.pop(path, None)
    if fd is not None:
        try:
            path.unlink(missing_ok=True)  # while still locked: a waiter then locks anew
        except OSError:
            pass
        os.close(fd)


def _unlock_all() -> None:
    for path in list(_held):
        unlock_run_dir(path.parent)


# ---- stopping a parallel sweep --------------------------------------------------------------
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _children(pid: int) -> list[int]:
    """The live (not zombie) child processes of `pid`, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.append(int(name))
    return out


def _loky_workers(pid: int) -> list[int]:
    """The joblib (loky) worker processes of `pid` (not its resource trackers)."""
    workers = []
    for child in _children(pid):
        try:
            if b"popen_loky" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            continue
    return workers


def _in_a_run(pid: int) -> bool:
    """Whether process `pid` holds a run directory: a job between `lock_run_dir` and
    `unlock_run_dir` (an open `run.lock`), i.e. one that can save a checkpoint."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(f"/{LOCK_FILE}"):
                return True
        except OSError:
            continue
    return False


def resume_command(config) -> str:
    """The command that continues the multirun `config` describes, in the same folders:
    its overrides, resume=true and its hydra.sweep.dir."""
    drop = ("resume", "hydra.sweep.dir", "hydra.mode")
    overrides = [
        o
        for o in [*config.hydra.overrides.task, *config.hydra.overrides.hydra]
        if o.lstrip("+~").split("=")[0] not in drop
    ]
    return shlex.join(
        ["python", "-m", "lnrepro.train", "-m", *overrides, "resume=true"]
        + [f"hydra.sweep.dir={config.hydra.sweep.dir}"]
    )


def _say(line: str, fd: int = 2) -> None:
    """One line on stderr (`fd` 2) or stdout from a signal handler, unbuffered: the interrupted
    code may have been writing to sys.stderr or sys.stdout."""
    with contextlib.suppress(OSError):
        os.write(fd, f"{line}\n".encode())


def _watch_sweep(parent: int) -> None:
    """A sweep worker's thread: when the sweep's process is gone (kill -9), stop this worker's
    job as its SIGTERM would (a checkpoint at the next step boundary), then end the worker."""
    from lnrepro.trainer import stop_pending

    while os.getppid() == parent:
        time.sleep(0.5)
    if stop_pending() is None:  # (a second signal would mean "stop now")
        os.kill(os.getpid(), signal.SIGTERM)
    idle = 0
    while idle < 3:  # no run directory held for a second: the job has ended, or never began
        time.sleep(0.5)
        idle = 0 if _held else idle + 1
    os._exit(128 + signal.SIGTERM)


class SweepSignals(Callback):
    """Stopping a sweep whose jobs run in joblib's worker processes (hydra/launcher=parallel):
    SIGTERM or SIGINT (Ctrl-C) to the sweep's process is forwarded to its workers as SIGTERM;
    each running job saves a checkpoint at its next step boundary and says how to resume it (the
    trainer's stop flag), and a job not yet started does not start. Once every running job has
    stopped, the sweep's process exits 128 + the signal (143, 130) with one line giving the
    command that continues the sweep, and its workers end with it. A second signal stops at once
    (each job keeps its last checkpoint). A worker whose sweep process dies (kill -9) stops its
    job the same way, then exits.

    The sweep's process blocks both signals in its main thread (a helper thread receives them),
    so that its workers start with them blocked and lose none before they take them over at
    their first job's start (`lnrepro.trainer.sweep_worker_signals`). Linux only (/proc);
    elsewhere, and with n_jobs=1 (the jobs run in the sweep's process), nothing changes."""

    _pid: int | None = None  # the sweep's process; what the workers get of this object

    def __getstate__(self) -> dict:
        return {"_pid": self._pid}

    def on_multirun_start(self, config, **kwargs) -> None:
        launcher = config.hydra.launcher
        if (
            "joblib" not in str(launcher.get("_target_"))
            or launcher.get("n_jobs") == 1
            or not Path("/proc/self/fd").is_dir()
        ):
            return
        self._pid, self._stopping = os.getpid(), None
        self._resume = resume_command(config)
        self._old = {sig: signal.signal(sig, self._stop) for sig in STOP_SIGNALS}
        helper = threading.Thread(target=threading.Event().wait, name="sweep-signals", daemon=True)
        helper.start()  # started before the block: the thread that receives the signals
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def on_multirun_end(self, config, **kwargs) -> None:
        if self._pid is None or self._pid != os.getpid():
            return
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _stop(self, signum, frame) -> None:
        name, code = signal.Signals(signum).name, 128 + signum
        if self._stopping is not None:
            _say(
                f"error: {name} again: the sweep stops now, its jobs keep their last "
                f"checkpoints; continue it with: {self._resume}"
            )
            raise SystemExit(code)
        self._stopping = signum
        workers = _loky_workers(self._pid)
        running = [pid for pid in workers if _in_a_run(pid)]
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        _say(f"{name}: {len(running)} running job(s) save a checkpoint and stop", fd=1)
        while any(_in_a_run(pid) for pid in workers):
            time.sleep(0.1)
        _say(
            f"error: the sweep was stopped by {name}; its {len(running)} running job(s) saved a "
            f"checkpoint. Continue it with: {self._resume}"
        )
        raise SystemExit(code)

    def on_job_start(self, config, **kwargs) -> None:
        if self._pid is None or os.getpid() == self._pid:
            return
        from lnrepro.trainer import stop_pending, sweep_worker_signals

        global _worker_of
        if _worker_of != self._pid:  # this worker's first job
            _worker_of = self._pid
            sweep_worker_signals()
            threading.Thread(target=_watch_sweep, args=(self._pid,), daemon=True).start()
        signum = stop_pending() or (signal.SIGTERM if os.getppid() != self._pid else None)
        if signum is not None:  # the sweep is stopping, or its process is gone
            log.info("not started: the sweep is stopping (%s)", signal.Signals(signum).name)
            raise SystemExit(128 + signum)


_worker_of: int | None = None  # in a sweep worker: the sweep's process, once set up


def check_run_keys(cfg) -> None:
    """The top-level keys every run reads, and data.verify, as one ConfigError line: checked
    first in a run, and for every job of a sweep before any job starts."""
    from omegaconf import OmegaConf

    from lnrepro.data.verify import check_flag

    if OmegaConf.is_missing(cfg, "name"):
        raise ConfigError(
            "choose an experiment: experiment=<name> (python -m lnrepro.train --help lists them)"
        )
    if not is_int(cfg.seed) or not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2^32), got {cfg.seed!r}")
    threads = cfg.threads
    if threads is not None and (not is_int(threads) or threads < 1):
        raise ConfigError(
            f"threads must be a positive integer, or null for torch's default "
            f"(all cores), got {threads!r}"
        )
    for key in ("resume", "resume_allow_different_threads"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    if "verify" in (cfg.get("data") or {}):
        check_flag(cfg.data.verify)


def experiment_choices() -> list[str]:
    from hydra.core.global_hydra import GlobalHydra

    return GlobalHydra.instance().config_loader().get_group_options("experiment")


def _fail(e: ConfigError):
    """Hydra only warns when a callback raises (then fails with a traceback of its own): so
    print the one line and exit here (SystemExit passes through Hydra's handlers)."""
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(e.exit_code) from None


class CheckOutputDir(Callback):
    """An experiment is chosen, the output folder is writable and (single run) the run
    directory is locked for this run, before Hydra writes anything into it."""

    def _check(self, config, dir_key: str, lock: bool = False) -> None:
        try:
            experiment = config.hydra.runtime.choices.get("experiment")
            swept = any(
                o.lstrip("+~").split("=")[0] == "experiment" for o in config.hydra.overrides.task
            )
            if experiment is None and not swept:
                raise ConfigError(
                    "choose an experiment: experiment=<name>, one of "
                    f"{', '.join(experiment_choices())}"
                )
            path = config.hydra[dir_key].dir
            check_writable(path)
            if lock:
                lock_run_dir(path)
        except ConfigError as e:
            _fail(e)

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config, "run", lock=True)

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(config, "sweep")


# A grid up to this many jobs is composed job by job; a larger one (or an Optuna search space)
# value by value: every value of each swept key, with the other keys at their first values.
MAX_GRID_CHECK = 256


def sweep_jobs(config) -> list[list[str]]:
    """The override lists to check for the sweep `config` describes: the sweeper's `params`
    (e.g. from configs/sweep/<name>.yaml) followed by the command line, later wins, as
    Hydra's basic and Optuna sweepers merge them. An interval (Optuna) contributes its start."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep
    from hydra.errors import HydraException

    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    try:
        overrides = parser.parse_overrides(lines)
    except HydraException as e:
        raise ConfigError(f"the sweep's overrides do not parse: {one_line(e)}") from None
    values: dict[str, list[str]] = {}
    for o in overrides:
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        elif isinstance(o.value(), IntervalSweep):
            values[key] = [f"{key}={o.value().start}"]
        else:
            raise ConfigError(f"sweep over {o.input_line}: unsupported sweep type")
    lists = list(values.values())
    if math.prod(len(v) for v in lists) <= MAX_GRID_CHECK:
        return [list(job) for job in itertools.product(*lists)]
    first = [v[0] for v in lists]
    return [first[:i] + [x] + first[i + 1 :] for i, v in enumerate(lists) for x in v[1:]] + [first]


def check_sweep(config) -> int:
    """Compose each job's config exactly as the launcher will; the first one that does not
    compose (an unknown key, an unknown group option, ...) or has a bad top-level value
    (check_run_keys) is one ConfigError line. Returns the number of configs checked."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    loader = GlobalHydra.instance().config_loader()
    jobs = sweep_jobs(config)
    varies = [i for i in range(len(jobs[0])) if len({job[i] for job in jobs}) > 1]
    for n, job in enumerate(jobs):
        shown = f" ({' '.join(job[i] for i in varies)})" if varies else ""
        try:
            job_cfg = loader.load_sweep_config(config, job)
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(
                f"the sweep cannot run, job {n}{shown} does not compose: "
                f"{one_line(e)}; no job was started"
            ) from None
        try:
            check_run_keys(job_cfg)
        except ConfigError as e:
            raise ConfigError(
                f"the sweep cannot run, job {n}{shown}: {e}; no job was started"
            ) from None
    return len(jobs)


class CheckSweep(Callback):
    """Before a multirun launches anything: every job's config must compose (check_sweep),
    so that a typo in a swept key stops the sweep with one line, not after some jobs ran."""

    def on_multirun_start(self, config, **kwargs) -> None:
        try:
            check_sweep(config)
        except ConfigError as e:
            _fail(e)


# ---- the table at the end of a multirun -------------------------------------------------------
SUMMARY_FILE = "summary.md"


def _job_overrides(job_dir: Path) -> dict[str, str]:
    """A job's command-line overrides (Hydra's .hydra/overrides.yaml) as key -> value text."""
    import yaml

    try:
        lines = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    except (OSError, yaml.YAMLError):
        return {}
    out = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _job_num(job_dir: Path) -> tuple[int, str]:
    """Sort key: the job number the default subdir (`<num>_<overrides>`) starts with."""
    head = job_dir.name.split("_", 1)[0]
    return (int(head) if head.isdigit() else 1 << 30, job_dir.name)


def _job_error(job_dir: Path) -> str | None:
    """The last error line a job logged (Hydra's <job dir>/<job name>.log), without its prefix."""
    for log_file in sorted(job_dir.glob("*.log")):
        try:
            lines = log_file.read_text(errors="replace").splitlines()
        except OSError:
            continue
        errors = [ln.split(" - ", 1)[-1] for ln in lines if "][ERROR]" in ln]
        if errors:
            return errors[-1]
    return None


def sweep_jobs_dirs(sweep_dir: str | Path, since: float | None = None) -> list[Path]:
    """The job folders of a sweep folder (each holds .hydra/overrides.yaml), in job order;
    with `since` (a time.time()), only those whose overrides were written from then on: the
    jobs of this multirun, not those an earlier one left in a reused folder."""
    root = Path(sweep_dir)
    dirs = [
        p.parent.parent for p in root.glob("**/.hydra/overrides.yaml") if p.parent.parent != root
    ]
    if since is not None:
        dirs = [d for d in dirs if (d / ".hydra" / "overrides.yaml").stat().st_mtime >= since - 1]
    return sorted(dirs, key=_job_num)


def sweep_summary(
    sweep_dir: str | Path,
    since: float | None = None,
    metrics: list[str] | None = None,
    errors: dict[str, str] | None = None,
) -> str:
    """A markdown summary of a sweep folder's jobs: one row per job with the overrides that
    differ between the jobs (their config keys when the overrides do not: lnrepro.runs.
    differing_keys), its status, updates, wall time and each metric's final and best value
    (summary.json, or metrics.jsonl for a run that wrote none: lnrepro.runs.load_run); then the
    jobs that did not complete, each with its status and why (summary.json's reason, else
    `errors`: resolved job folder -> the exception of a crashed job, else the last error line
    of its log). `metrics`: the keys to show; by default every metric the jobs evaluated except
    the training split's (train/*, batch/*)."""
    from lnrepro.runs import differing_keys, fmt_value, load_run

    root = Path(sweep_dir)
    dirs = sweep_jobs_dirs(root, since)
    if not dirs:
        return f"# Sweep {root}\n\nNo job folders found.\n"
    runs = [load_run(d) for d in dirs]
    overrides = [_job_overrides(d) for d in dirs]
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    varies = {k: [o.get(k, "-") for o in overrides] for k in keys}
    varies = {k: v for k, v in varies.items() if len(set(v)) > 1}
    if not varies:
        varies = {k: [r.get(k, "-") for r in runs] for k in differing_keys(runs)}
    if metrics is None:
        logged = dict.fromkeys(
            k for r in runs for k in (*(r.summary.get("final") or {}), *r.metrics())
        )
        evaluated = [k for k in logged if "/" in k and not k.startswith(("batch/", "train/"))]
        metrics = evaluated or [k for k in logged if not k.startswith("batch/")]
    header = ["job", *varies, "status", "step", "time (s)", *(f"{m} final (best)" for m in metrics)]
    rows = []
    for i, (d, r) in enumerate(zip(dirs, runs, strict=True)):
        num = _job_num(d)[0]
        cells = [num if num < 1 << 30 else d.name, *(v[i] for v in varies.values())]
        status = r.status if (d / "summary.json").exists() else "failed (no summary.json)"
        cells += [status, r.steps, fmt_value(r.wall_time, 3)]
        for m in metrics:
            final, best = r.metric(m, "final"), r.metric(m, "best")
            cells.append("-" if final is None else f"{fmt_value(final)} ({fmt_value(best)})")
        rows.append([fmt_value(c).replace("|", "\\|") for c in cells])
    widths = [max(len(row[j]) for row in [header, *rows]) for j in range(len(header))]
    table = [header, ["-" * w for w in widths], *rows]
    done = sum(r.status == "completed" for r in runs)
    lines = [
        f"# Sweep {root}",
        "",
        (
            f"{len(dirs)} jobs, {done} completed. Columns: the overrides that differ between "
            "the jobs, then each metric's final value and (in brackets) its best."
        ),
        "",
        *("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in table),
        "",
    ]
    failed = [i for i, r in enumerate(runs) if r.status != "completed"]
    if failed:
        lines.append(f"Not completed: {len(failed)} of {len(dirs)} jobs")
        for i in failed:
            d, r = dirs[i], runs[i]
            status = r.status if (d / "summary.json").exists() else "no summary.json"
            why = (
                r.summary.get("reason")
                or (errors or {}).get(str(d.resolve()))
                or _job_error(d)
                or "no error line in its log"
            )
            which = " ".join(f"{k}={fmt_value(v[i])}" for k, v in varies.items())
            lines.append(f"- job {rows[i][0]}{f' ({which})' if which else ''}: {status}: {why}")
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """At the end of a multirun: print a table of its jobs (sweep_summary) and write it to
    <sweep dir>/summary.md. Also at exit when a job's crash stops the sweep before its end.
    `metrics`: the metric keys to show (null: every evaluated one but train/*)."""

    def __init__(self, metrics: list[str] | None = None):
        self.metrics = list(metrics) if metrics else None
        self._pending: tuple | None = None
        self._errors: dict[str, str] = {}

    def __getstate__(self) -> dict:  # what a launcher's worker gets: nothing to write there
        return {"metrics": self.metrics, "_pending": None, "_errors": {}}

    def on_multirun_start(self, config, **kwargs) -> None:
        self._pending = (str(config.hydra.sweep.dir), time.time())
        atexit.register(self._write)

    def on_job_end(self, config, job_return, **kwargs) -> None:
        """A job that crashed (an exception other than lnrepro's one-line errors) logged
        nothing: keep its exception for the table (jobs run in this process only)."""
        from hydra.core.utils import JobStatus

        if job_return.status == JobStatus.FAILED:
            e = job_return._return_value
            where = str(Path(config.hydra.runtime.output_dir).resolve())
            self._errors[where] = f"{type(e).__name__}: {one_line(e)}"

    def on_multirun_end(self, config, **kwargs) -> None:
        self._write()

    def _write(self) -> None:
        if self._pending is None:
            return
        sweep_dir, since = self._pending
        self._pending = None
        try:
            text = sweep_summary(sweep_dir, since, self.metrics, self._errors)
            print(f"\n{text}", end="", flush=True)
            (Path(sweep_dir) / SUMMARY_FILE).write_text(text)
        except Exception as e:  # noqa: BLE001  (a summary never changes how the sweep ends)
            log.warning("no sweep summary: %s", one_line(e))
