"""Hydra callbacks: fail with one line, before any job starts, when outputs cannot be written
or when a job of a sweep would not compose (an unknown key, an unknown option)."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from lnrepro.errors import ConfigError


def check_writable(path: str | Path) -> None:
    """Create `path` (as Hydra is about to) and prove it writable; else one ConfigError line."""
    p = Path(path).absolute()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write_test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write run outputs to {p} ({e.strerror}): set hydra.run.dir, "
                          "hydra.sweep.dir or LNREPRO_OUTPUTS to a writable folder") from None


class CheckOutputDir(Callback):
    """Hydra only warns when a callback raises, then fails with a traceback in its own mkdir:
    so print the one line and exit here (SystemExit passes through Hydra's handlers)."""

    def _check(self, path) -> None:
        try:
            check_writable(path)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(e.exit_code) from None

    def on_run_start(self, config, **kwargs) -> None:
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(config.hydra.sweep.dir)


# A grid up to this many jobs is composed job by job; a larger one (or an Optuna search space)
# value by value: every value of each swept key, with the other keys at their first values.
MAX_GRID_CHECK = 256


def _first_line(e: BaseException) -> str:
    """Hydra's composition errors span several lines: the first, plus what the rest adds."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = (lines[0] if lines else type(e).__name__).rstrip(".")
    if "is not in struct" in f"{e} {e.__cause__}":
        msg += ": no such key in the config (+key=value adds one)"
    options = getattr(e, "options", None)  # MissingConfigException: the group's choices
    return msg + (f" (available: {', '.join(options)})" if options else "")


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
        raise ConfigError(f"the sweep's overrides do not parse: {_first_line(e)}") from None
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
    return [first[:i] + [x] + first[i + 1:] for i, v in enumerate(lists) for x in v[1:]] + [first]


def check_sweep(config) -> int:
    """Compose each job's config exactly as the launcher will; the first one that does not
    compose (an unknown key, an unknown group option, ...) is one ConfigError line. Returns the
    number of configs checked."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    loader = GlobalHydra.instance().config_loader()
    jobs = sweep_jobs(config)
    varies = [i for i in range(len(jobs[0])) if len({job[i] for job in jobs}) > 1]
    for n, job in enumerate(jobs):
        try:
            loader.load_sweep_config(config, job)
        except (HydraException, OmegaConfBaseException) as e:
            shown = f" ({' '.join(job[i] for i in varies)})" if varies else ""
            raise ConfigError(f"the sweep cannot run, job {n}{shown} does not compose: "
                              f"{_first_line(e)}; no job was started") from None
    return len(jobs)


class CheckSweep(Callback):
    """Before a multirun launches anything: every job's config must compose (check_sweep),
    so that a typo in a swept key stops the sweep with one line, not after some jobs ran."""

    def on_multirun_start(self, config, **kwargs) -> None:
        try:
            check_sweep(config)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(e.exit_code) from None
