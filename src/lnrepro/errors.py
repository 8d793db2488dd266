"""User-facing failures: each is reported as one clear line and a non-zero exit (train.py)."""

from hydra.errors import CompactHydraException


class LnreproError(CompactHydraException):
    """A problem the user can fix (config, data, divergence); never a bug in the code.

    A CompactHydraException, so that Hydra prints only the message (no traceback) when it
    reports a failed job of a multirun.
    """

    exit_code = 2


class ConfigError(LnreproError):
    """A config value that cannot work (unknown norm, batch size 0, BN at batch size 1, ...)."""


class DataError(LnreproError):
    """Missing or corrupt dataset files."""


class DivergenceError(LnreproError):
    """The training loss became NaN or inf."""

    exit_code = 3


class Interrupted(LnreproError):
    """SIGINT/SIGTERM during training: a checkpoint was written, resume=true continues."""

    exit_code = 130
