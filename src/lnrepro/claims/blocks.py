"""Generated blocks of the figure notes (results/<figure>.md): the numbers a note takes from
results/<figure>.csv sit between `<!-- generated:NAME -->` and `<!-- /generated -->`, written by
`make claims` and compared by `make claims-check`; the prose around them is the note's own.

Blocks (NAME):
- runs: one row per arm (grid values, norm): its seeds, status, each tabled metric's final
  value (mean ± sample sd over the seeds), seconds per update, minutes a run, and where the
  rows came from (their recorded commits and config hashes, or "not recorded").
- claims: one row per claim of the figure as results/claims.md has it (the claims engine's
  numbers: what was tested, the effect with its 95 % interval, the one-sided p values, the
  verdict, confirmatory rows raw and Holm-adjusted with the verdict of the exploratory seeds they
  replaced), so a note's discussion never restates a number by hand.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from pathlib import Path

from lnrepro.claims.provenance import NOT_RECORDED
from lnrepro.claims.results import _float, read_csv
from lnrepro.claims.tables import pfmt
from lnrepro.claims.text import _cell, label, num

BLOCK = re.compile(
    r"(<!-- generated:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /generated -->)", re.DOTALL
)


def _spread(values: list[float]) -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return num(values[0])
    return f"{num(statistics.fmean(values))} ± {num(statistics.stdev(values), 2)}"


def _range(values: list[float], sig: int = 3) -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "–"
    low, high = num(min(values), sig), num(max(values), sig)
    return low if low == high else f"{low}-{high}"


def _provenance(rows: list[dict], column: str, width: int) -> str:
    values = sorted({r.get(column) or NOT_RECORDED for r in rows})
    return ", ".join(v if v == NOT_RECORDED else f"`{v[:width]}`" for v in values)


def runs_block(spec: dict, rows: list[dict], rep=None) -> str:
    """The `runs` block of a figure: its CSV's rows grouped by arm."""
    grid_keys = list(spec.get("grid") or {})
    keys = spec.get("table") or [m["key"] for m in spec.get("metrics") or []]
    arms: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        arms[(*(r.get(k) for k in grid_keys), r["norm"])].append(r)
    head = [*(k.split(".")[-1] for k in grid_keys), "norm", "seeds", "status"]
    head += [f"final {k}" for k in keys] + ["s / update", "minutes a run", "commit", "config"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, group in arms.items():
        statuses = sorted({r.get("status", "") for r in group})
        cells = [*arm[:-1], label(arm[-1]), ", ".join(str(r["seed"]) for r in group)]
        cells.append(", ".join(statuses))
        cells += [_spread([_float(r.get(f"final_{k}", "")) for r in group]) for k in keys]
        cells.append(_range([_float(r.get("s_per_update", "")) for r in group]))
        cells.append(_range([_float(r.get("wall_time_s", "")) / 60 for r in group], 2))
        cells += [_provenance(group, "commit", 12), _provenance(group, "config_hash", 12)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    source = f"results/{spec['name']}.csv"
    caption = (
        f"From [{spec['name']}.csv]({spec['name']}.csv) ({len(rows)} runs): final values as "
        "mean ± sample sd over the seeds; commit and config hash as the runs recorded them "
        f"({NOT_RECORDED}: run before {source} carried them)."
    )
    return "\n".join([caption, "", *lines]) + "\n"


def claims_block(spec: dict, rows: list[dict], rep=None) -> str:
    """The `claims` block of a figure: its rows of the claims report `rep`."""
    if rep is None:
        raise ValueError("the claims block needs the claims report (lnrepro.claims.render.build)")
    lines = [
        (
            "| claim | tested (threshold fixed in advance) | we get | effect [95 % interval] "
            "| p for / against | verdict |"
        ),
        "|---|---|---|---|---|---|",
    ]
    results = [r for r in rep.results if r.figure == spec["name"]]
    for r in results:
        p = f"{pfmt(r.p_support)} / {pfmt(r.p_contradict)}" if r.p_support is not None else "–"
        if r.confirmatory:
            verdict = f"confirmatory: **{r.verdict_text()}**; Holm: **{r.holm}**"
            if r.earlier:
                verdict += f" (exploratory seeds: {r.earlier})"
        elif r.claim["check"] == "sanity":  # a gate, not a claim: never confirmatory
            verdict = r.verdict_text()
        else:
            verdict = f"exploratory: {r.verdict_text()}"
        cells = [f"`{r.claim['id']}`", r.tested, r.measured, r.effect_text(), p, verdict]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    caption = (
        f"The claims on [{spec['name']}.csv]({spec['name']}.csv), as [claims.md](claims.md) "
        f"computes them ({len(results)} rows; p: one-sided at the claim's threshold)."
    )
    return "\n".join([caption, "", *lines]) + "\n"


GENERATORS = {"runs": runs_block, "claims": claims_block}


def render(text: str, spec: dict, rows: list[dict], rep=None) -> str:
    """`text` with every generated block's body rewritten (an unknown NAME: ValueError); `rep`:
    the claims report, which the `claims` block reads."""

    def body(m: re.Match) -> str:
        make = GENERATORS.get(m.group("name"))
        if make is None:
            raise ValueError(f"unknown generated block {m.group('name')!r}")
        return m.group(1) + make(spec, rows, rep) + m.group(4)

    return BLOCK.sub(body, text)


def differing(old: str, new: str) -> list[str]:
    """Names of the generated blocks whose bodies differ between two versions of a note (or
    'the generated blocks' when they no longer pair up)."""
    a, b = list(BLOCK.finditer(old)), list(BLOCK.finditer(new))
    if [m.group("name") for m in a] != [m.group("name") for m in b]:
        return ["the generated blocks"]
    return [x.group("name") for x, y in zip(a, b) if x.group("body") != y.group("body")]


def note_files(root: Path, specs: list[dict], rep=None) -> dict[Path, str]:
    """{results/<figure>.md: its text with the generated blocks rewritten} for every figure
    note that has a generated block and a CSV; `rep`: the claims report (`claims` blocks)."""
    out = {}
    for spec in specs:
        note = root / "results" / f"{spec['name']}.md"
        table = root / "results" / f"{spec['name']}.csv"
        if not note.exists() or not table.exists():
            continue
        text = note.read_text()
        if BLOCK.search(text):
            out[note] = render(text, spec, read_csv(table), rep)
    return out
