"""How numbers, norms and settings are written in the claims tables."""

from __future__ import annotations

import math
import statistics


def label(norm: str) -> str:
    """A norm's name in the claims tables, as its class declares it (LN, BN, baseline; others
    their short name)."""
    from lnrepro.nn.norm import display  # (torch: only when a table is written)

    return display(norm)[0]


def setting(where: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]} {v}" for k, v in where.items())


def num(v: float, sig: int = 4) -> str:
    """A number for the tables: `sig` significant digits, thousands separated, no exponent
    above 1000."""
    if not math.isfinite(v):
        return str(v)
    text = f"{v:.{sig}g}"
    return f"{v:,.0f}" if "e+" in text or abs(v) >= 1000 else text


def summary(name: str, values: list[float]) -> str:
    """`LN 0.0223 ± 0.0025 (n=3)`: mean ± sample standard deviation over seeds."""
    if not values:
        return f"{name} – (n=0)"
    if len(values) == 1:
        return f"{name} {num(values[0])} (n=1)"
    return (
        f"{name} {num(statistics.fmean(values))} ± {num(statistics.stdev(values), 2)} "
        f"(n={len(values)})"
    )


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
