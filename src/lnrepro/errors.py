"""User-facing failures: each is reported as one clear line and a non-zero exit (train.py)."""

try:
    from hydra.errors import CompactHydraException
except ImportError:  # a bare torch + numpy machine (scripts/gpu_check.py): plain exceptions
    CompactHydraException = Exception


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


class OutputError(LnreproError):
    """A run output or cache that cannot be written (disk full, permissions, quota)."""


class DivergenceError(LnreproError):
    """The training loss became NaN or inf."""

    exit_code = 3


class Interrupted(LnreproError):
    """SIGINT/SIGTERM during training: a checkpoint was written, resume=true continues."""

    exit_code = 130


def one_line(e: BaseException) -> str:
    """A library's error as one line: Hydra's composition errors span several lines (the first
    says what is wrong, the rest lists the choices, which are kept); others keep their first."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = (lines[0] if lines else type(e).__name__).rstrip(".")
    if "is not in struct" in f"{e} {e.__cause__}":
        key = str(getattr(e.__cause__, "full_key", None) or getattr(e, "full_key", None) or "")
        if key.split(".")[0] == "norm":  # an option another norm has: adding it would be
            # silently ignored by this one, so no "+key=value" hint here
            msg += ": the chosen norm has no such option (configs/norm/<kind>.yaml lists them)"
        else:
            msg += ": no such key in the config (+key=value adds one)"
    options = getattr(e, "options", None)  # MissingConfigException: the group's choices
    return msg + (f" (available: {', '.join(options)})" if options else "")
