"""Hydra callbacks: fail with one line, before any job starts, when no experiment is chosen,
when outputs cannot be written, when the run directory is in use by another run, or when a job
of a sweep would not compose (an unknown key, an unknown option)."""

from __future__ import annotations

import atexit
import fcntl
import itertools
import json
import logging
import math
import os
import socket
import sys
from datetime import datetime
from pathlib import Path

from hydra.experimental.callback import Callback

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
    return True


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
