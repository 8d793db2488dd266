"""The one replacement of a private Hydra function: `hydra._internal.utils.run_and_report`,
which Hydra's `main` calls by name around composing the config and running the job or sweep
(`hydra._internal.utils._run_hydra`). No public route does its two parts:

* A config that does not compose (an unknown group option or key, an override that does not
  parse) is printed by run_and_report over 10-20 lines and exits 1; here it is one line and
  exit 2, as every other bad value. (HYDRA_FULL_ERROR=1 makes run_and_report re-raise, but it
  also changes every other report of the run; set by the user, it still shows Hydra's report.)
* The JobReturns of a sweep's jobs, which a launcher brings back from its worker processes,
  reach only this function (`hydra.main` returns nothing), so without it a sweep whose jobs
  failed would exit 0.

Checked with hydra-core CHECKED_WITH; tests/test_hydra_patch.py fails on any other version, so
that whoever upgrades Hydra re-reads `_run_hydra` and `run_and_report` before moving the pin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from lnrepro.errors import LnreproError, one_line

CHECKED_WITH = "1.3.8"


def install(exit_code: Callable[[Any], int | None]) -> None:
    """Replace run_and_report by `one_line_errors` of it (once per process)."""
    import hydra._internal.utils as hydra_utils

    if not getattr(hydra_utils.run_and_report, "one_line_errors", False):
        hydra_utils.run_and_report = one_line_errors(hydra_utils.run_and_report, exit_code)


def one_line_errors(run_and_report, exit_code: Callable[[Any], int | None]):
    """Hydra's `run_and_report`, except that a config that does not compose is one line and
    exit 2, an LnreproError exits with its code, and a run or sweep for which
    `exit_code(what it returned)` is a code (its jobs failed) exits with that code."""

    def report(func):
        def call():
            try:
                returns = func()
            except LnreproError as e:
                sys.exit(e.exit_code)
            except (HydraException, OmegaConfBaseException) as e:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"error: {one_line(e)}", file=sys.stderr)
                sys.exit(2)
            if code := exit_code(returns):
                sys.exit(code)
            return returns

        return run_and_report(call)

    report.one_line_errors = True
    return report
