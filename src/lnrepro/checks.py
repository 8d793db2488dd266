"""Checks of config values that every module repeats: integers that must be positive (or at
least some minimum), and strings where a factory's signature wants a number, with the one
ConfigError line they raise. `True` is not an integer here, although Python says it is."""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping

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


# what a parameter annotated with these takes is a number (torch.Tensor: an optimizer's lr)
_NUMBER_TYPES = (int, float, complex)
_SEQUENCES = (
    list,
    tuple,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
)


def _numeric(hint) -> bool:
    """`hint` accepts numbers and nothing else but None (and tensors): int, float,
    float | None, Union[float, Tensor]; not bool, not int | str."""
    if hint is None or hint is type(None):
        return False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (
            bool(args)
            and all(_numeric(a) or _is_tensor(a) for a in args)
            and any(_numeric(a) for a in args)
        )
    return isinstance(hint, type) and issubclass(hint, _NUMBER_TYPES) and hint is not bool


def _is_tensor(hint) -> bool:
    return isinstance(hint, type) and hint.__name__ == "Tensor"


def _number_list(hint) -> bool:
    """`hint` is a sequence of numbers: tuple[int, ...], list[float], Sequence[int],
    tuple[float, float] (Optional allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(args) == 1 and _number_list(args[0])
    if typing.get_origin(hint) not in _SEQUENCES:
        return False
    args = [a for a in typing.get_args(hint) if a is not Ellipsis]
    return bool(args) and all(_numeric(a) for a in args)


def _hint(param: inspect.Parameter, namespace: dict):
    """A parameter's annotation as an object (`from __future__ import annotations` leaves a
    string, evaluated here in the function's module; one that does not evaluate: None)."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return None
    if isinstance(ann, str):
        try:
            return eval(ann, namespace)  # an annotation of this project's or torch's code
        except Exception:  # noqa: BLE001  (a name only imported for type checking)
            return None
    return ann


def number_params(target: Callable) -> dict[str, str]:
    """{parameter: "number" | "list"} for the parameters of `target` (a function or a class:
    its __init__) that take a number or a list of numbers: by annotation, else (none) by a
    number default. {} when the signature cannot be read."""
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    func = target.__init__ if isinstance(target, type) else target
    namespace = dict(getattr(inspect.unwrap(func), "__globals__", {}))
    module = inspect.getmodule(target)
    namespace.update(vars(module) if module else {})
    out = {}
    for name, param in sig.parameters.items():
        hint = _hint(param, namespace)
        if hint is None and param.annotation is inspect.Parameter.empty:
            default = param.default
            if isinstance(default, _NUMBER_TYPES) and not isinstance(default, bool):
                out[name] = "number"
        elif _numeric(hint):
            out[name] = "number"
        elif _number_list(hint):
            out[name] = "list"
    return out


def check_numbers(values: Mapping, target: Callable, prefix: str, skip: Iterable[str] = ()) -> None:
    """ConfigError "<prefix>.<key> must be a number, got 'abc'" (or "a list of numbers") for the
    first value in `values` that is a string where `target` takes a number (or has a string in
    a list of numbers): instead of the TypeError deep inside the factory or the training loop
    (`'<=' not supported between instances of 'float' and 'str'`). Keys in `skip`, keys
    starting with `_` (_target_, _partial_) and keys the target does not name are left alone."""
    wanted = number_params(target)
    skip = set(skip)
    for key, value in values.items():
        kind = wanted.get(key)
        if kind is None or key in skip or str(key).startswith("_"):
            continue
        if kind == "number" and isinstance(value, str):
            raise ConfigError(f"{prefix}.{key} must be a number, got {value!r}")
        if kind == "list" and (
            isinstance(value, str)
            or (isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value))
        ):
            raise ConfigError(f"{prefix}.{key} must be a list of numbers, got {value!r}")
