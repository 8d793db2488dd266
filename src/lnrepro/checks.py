"""Checks of config values that every module repeats: integers that must be positive (or at
least some minimum), with the one ConfigError line they raise. `True` is not an integer here,
although Python says it is."""

from __future__ import annotations

from lnrepro.errors import ConfigError


def is_int(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value, name: str) -> int:
    """`value` when it is an integer >= 1; else ConfigError "<name> must be a positive integer,
    got <value!r>" (`name` as the user writes it, e.g. "data.batch_size")."""
    if not is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def int_at_least(value, name: str, minimum: int = 1, allow_none: bool = False):
    """`value` when it is an integer >= `minimum` (or None, when allowed); else ConfigError
    "<name> must be an integer >= <minimum>, got <value!r>"."""
    if value is None and allow_none:
        return None
    if not is_int(value) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
