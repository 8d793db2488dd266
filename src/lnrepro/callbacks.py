"""Hydra callbacks: fail with one line, before any job starts, when outputs cannot be written."""

from __future__ import annotations

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
