"""The command line around Hydra: `python -m lnrepro.train` and the `lnrepro-train` console
script (`entrypoint`), one Hydra job's errors (`one_job`: one logged line and its exit code; in
a sweep the other jobs go on and the sweep exits with the largest code), the value a sweeper
optimises (`objective`) and the job's identity for W&B (`job_identity`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from lnrepro import distributed, hydra_patch, resume
from lnrepro.errors import ConfigError, Interrupted, LnreproError

log = logging.getLogger("lnrepro")


def entrypoint(main: Callable[[], None]) -> None:
    """Hydra's `main` with one-line errors (lnrepro.hydra_patch); `resume=true
    hydra.run.dir=<dir>` with the run's own overrides (lnrepro.resume.with_saved_overrides);
    on ranks > 0 of a torchrun, Hydra writes nothing into the run dir."""
    hydra_patch.install(failed_exit_code)
    sys.argv[1:] = resume.with_saved_overrides(sys.argv[1:])
    try:
        sys.argv[1:] = distributed.hydra_args(sys.argv[1:])
    except LnreproError as e:
        if distributed.env_world().is_main:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    main()


def one_job(job: Callable[[], object]):
    """What one Hydra job returns: `job()`, or for an LnreproError its line logged (by rank 0
    alone for a config error, which every rank has) and then the exit code, or in a sweep a
    `JobFailed` so that the other jobs still run (a signal stops the whole sweep)."""
    try:
        return job()
    except LnreproError as e:
        if distributed.env_world().is_main or not isinstance(e, ConfigError):
            log.error("%s", e)
        if HydraConfig.get().mode == RunMode.MULTIRUN and not isinstance(e, Interrupted):
            # returned, not raised: Hydra would add an "Error executing job" line to the one
            # logged here; the sweep then exits with e.exit_code (failed_exit_code)
            _FAILED.append(e.exit_code)
            return JobFailed(e.exit_code, str(e))
        sys.exit(e.exit_code)


class JobFailed:
    """What a multirun job that stopped on an LnreproError returns (its line is logged): the
    sweep goes on, then exits with the largest code (`failed_exit_code`). float() is nan, so that a
    sweeper that optimises the return value (Optuna) records the trial as failed."""

    def __init__(self, exit_code: int, message: str):
        self.exit_code, self.message = exit_code, message

    def __float__(self) -> float:
        return float("nan")

    def __repr__(self) -> str:
        return f"JobFailed({self.exit_code}: {self.message})"


_FAILED: list[int] = []  # exit codes of this process's failed jobs (in-process launchers)


def failed_exit_code(returns) -> int | None:
    """The largest exit code of the failed jobs, None when none failed: this process's, and
    those a launcher brought back from its workers (the nested lists of JobReturn that
    `Hydra.multirun` returns)."""
    codes = list(_FAILED)
    stack = [returns]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(getattr(item, "_return_value", None), JobFailed):
            codes.append(item._return_value.exit_code)
    return max(codes, default=None)


def objective(summary: dict, key: str) -> float:
    """The summary value a sweeper optimises: `optimized_metric: best.val/err` is
    summary["best"]["val/err"] (the lowest validation error); a top-level key such as
    `wall_time` works too. An unknown key is one ConfigError line."""
    section, _, metric = key.partition(".")
    node = summary.get(section)
    value = node.get(metric) if isinstance(node, dict) and metric else node
    if not isinstance(value, (int, float)):
        known = [f"{k}.{m}" for k in ("best", "final") for m in summary.get(k) or {}]
        raise ConfigError(
            f"optimized_metric={key} is not in this run's summary (known: {', '.join(known)})"
        )
    return float(value)


# overrides the W&B run name already says (`<experiment>/<norm>_bs<batch>_s<seed>`)
NAMED_KEYS = ("norm", "seed", "data.batch_size")


def job_identity() -> tuple[str, str]:
    """W&B job type (sweep for a multirun's job, else train) and the sweep's other overrides
    (Hydra's override_dirname without the keys the run name has)."""
    if not HydraConfig.initialized():
        return "train", ""
    hc = HydraConfig.get()
    parts = [
        o
        for o in str(hc.job.override_dirname or "").split(",")
        if o and o.split("=")[0] not in NAMED_KEYS
    ]
    return ("sweep" if hc.mode == RunMode.MULTIRUN else "train"), ",".join(parts)
