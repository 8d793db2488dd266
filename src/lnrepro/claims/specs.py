"""The claims lists of experiments/*.yaml: the check vocabulary, its validation, the claim in words.

Metrics are lower-is-better (errors, NLL, BPC, perplexity, s/update) unless the figure's
`metrics:` entry says `higher_is_better: true` (accuracies, correlations, recalls). Checks, with A
and B the claim's two norms (A the one the paper favours):

- final_lower: the final value of A is below B's. Effect: mean(A) - mean(B) (or, with
  `log: true`, the ratio of geometric means), Welch t interval. final_higher: the same for a
  higher-is-better metric, A above B.
- faster: A reaches the spec's fixed `level` in at most `max_ratio` of B's updates. Each
  seed's crossing is interpolated in log updates, censored at the grid's ends, and the ratio of
  geometric means gets a Welch interval on the logs (the rule: `speed`). `auc:` adds a
  reported, non-deciding area-under-curve column over a fixed span of updates.
- setting_lower: one norm A, its final value at one grid setting below its value at another
  (`settings: {key: [x, y]}`, e.g. LN gains initialised to 1.0 vs 0.1). Effect: mean(x) - mean(y).
- lower_at: A is below B at the first evaluation at or after `at` (`x`: step or epoch).
- robust: going from one setting to another (`between: {key: [from, to]}`, e.g. batch 128 -> 4),
  A's value rises less than B's. Effect: (A_to - A_from) - (B_to - B_from), a
  Welch-Satterthwaite interval over the four independent groups of seeds.
- comparable: A and B are equal within a margin stated in advance (`margin`: in the metric's
  units, or a ratio > 1 with `log: true`): an equivalence test with the 95 % interval.
- not_testable: a claim about converged values that the CPU budget cannot reach (`reason`).

The verdict rules: `stats`; the checks themselves: `verdicts`.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from lnrepro.claims.text import label, num, setting

CHECKS = (
    "final_lower",
    "final_higher",
    "final_below",
    "setting_lower",
    "faster",
    "lower_at",
    "robust",
    "comparable",
    "not_testable",
)
LOWER_ONLY = ("final_lower", "final_below", "setting_lower", "lower_at", "robust")
ONE_NORM = ("final_below", "setting_lower")  # checks of "lower is better"


def higher_is_better(spec: dict, metric: str) -> bool:
    """Whether the figure declares `metric` higher-is-better (its `metrics:` entry)."""
    return any(
        m.get("key") == metric and m.get("higher_is_better") for m in spec.get("metrics") or []
    )


def claim_higher(spec: dict, c: dict) -> bool:
    """Whether claim `c`'s metric is higher-is-better: the figure's `metrics:` entry, or the
    claim's own `higher_is_better: true` for a metric the figure does not plot (SICK rho)."""
    return bool(c.get("higher_is_better")) or higher_is_better(spec, c.get("metric"))


def describe(c: dict, spec: dict) -> str:
    """The claim as we test it, thresholds included, in words."""
    kind, m = c["check"], c.get("metric")
    if kind == "not_testable":
        return f"not testable: {c['reason']}"
    at = f" ({setting(c['where'])})" if c.get("where") else ""
    if kind == "final_below":
        return f"final {m}{at}: {label(c['norms'][0])} < {c['value']} (fixed bar)"
    if kind == "setting_lower":
        ((key, (x, y)),) = c["settings"].items()
        short = key.split(".")[-1]
        return f"final {m}{at}, {label(c['norms'][0])}: {short} {x} < {short} {y}"
    a, b = (label(n) for n in c["norms"])
    if kind in ("final_lower", "final_higher"):
        return f"final {m}{at}: {a} {'<' if kind == 'final_lower' else '>'} {b}"
    if kind == "lower_at":
        return f"{m} at {c.get('x', 'epoch')} {c['at']}{at}: {a} < {b}"
    if kind == "faster":
        reach = ">=" if claim_higher(spec, c) else "<="
        return (
            f"updates until {m} {reach} {num(c['level'])} (fixed level){at}: "
            f"{a} / {b} < {c['max_ratio']}"
        )
    if kind == "robust":
        ((key, (frm, to)),) = c["between"].items()
        return f"final {m}{at}, rise from {key.split('.')[-1]} {frm} to {to}: {a}'s < {b}'s"
    if kind == "comparable":
        band = (
            f"{a} / {b} within [{num(1 / c['margin'], 3)}, {c['margin']}]"
            if c.get("log")
            else f"|{a} - {b}| < {c['margin']}"
        )
        return f"{m}{at}: {band}"
    raise ValueError(kind)


def validate(spec: dict, source: str) -> None:
    """Every claim names a known check and what it needs, stated before any result is seen."""
    ids = set()
    for i, c in enumerate(spec.get("claims") or []):
        where = f"{source}: claim {c.get('id', i)}"
        need = {"id", "section", "quote", "check"}
        if c.get("check") == "not_testable":
            need |= {"reason"}
        else:
            need |= {"metric", "norms"}
            need |= {
                "faster": {"max_ratio", "level"},
                "lower_at": {"at"},
                "robust": {"between"},
                "comparable": {"margin"},
                "final_below": {"value"},
                "setting_lower": {"settings"},
            }.get(c.get("check"), set())
        missing = sorted(k for k in need if c.get(k) in (None, ""))
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if c["check"] not in CHECKS:
            raise ValueError(f"{where}: check must be one of {', '.join(CHECKS)}")
        if c["id"] in ids:
            raise ValueError(f"{where}: duplicate id")
        ids.add(c["id"])
        count = 1 if c["check"] in ONE_NORM else 2
        words = {1: "one", 2: "two"}
        if "norms" in c and (len(c["norms"]) != count or not set(c["norms"]) <= set(spec["norms"])):
            raise ValueError(f"{where}: norms must be {words[count]} of {spec['norms']}")
        if c["check"] == "robust" and (
            len(c["between"]) != 1 or len(next(iter(c["between"].values()))) != 2
        ):
            raise ValueError(f"{where}: between must be {{key: [from, to]}}")
        if c["check"] == "setting_lower" and (
            len(c["settings"]) != 1 or len(next(iter(c["settings"].values()))) != 2
        ):
            raise ValueError(f"{where}: settings must be {{key: [x, y]}}")
        if c["check"] == "lower_at" and c.get("x", "epoch") not in ("step", "epoch"):
            raise ValueError(f"{where}: x must be step or epoch")
        listed = any(m.get("key") == c.get("metric") for m in spec.get("metrics") or [])
        if "higher_is_better" in c and listed:
            raise ValueError(
                f"{where}: higher_is_better is the figure's (metrics:) for {c['metric']}"
            )
        higher = claim_higher(spec, c)
        if higher and c["check"] in LOWER_ONLY:
            raise ValueError(f"{where}: {c['metric']} is higher-is-better: use final_higher")
        if not higher and c["check"] == "final_higher":
            raise ValueError(f"{where}: {c['metric']} is lower-is-better: use final_lower")
        if c["check"] == "faster":
            _check_speed(c, where)
        if c["check"] == "comparable" and c.get("log") and c["margin"] <= 1:
            raise ValueError(f"{where}: with log: true the margin is a ratio > 1")


def _check_speed(c: dict, where: str) -> None:
    """A `faster` claim's level is a number and its AUC span two steps (fixed in the spec)."""
    if isinstance(c["level"], bool) or not isinstance(c["level"], (int, float)):
        raise ValueError(f"{where}: level must be a number read off the exploratory curves")  # noqa: TRY004
    span = (c.get("auc") or {}).get("steps")
    if c.get("auc") is not None and (
        not isinstance(span, list) or len(span) != 2 or not 0 <= span[0] < span[1]
    ):
        raise ValueError(f"{where}: auc must be {{steps: [from, to], log: true|false}}")


def load_specs(experiments: Path, order: list[str] | None = None) -> list[dict]:
    """The experiments/*.yaml that have claims, in `order` (figure names) first, then by name."""
    specs = []
    for path in sorted(experiments.glob("*.yaml")):
        spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if spec.get("claims"):
            validate(spec, f"experiments/{path.name}")
            specs.append(spec)
    rank = {name: i for i, name in enumerate(order or [])}
    return sorted(specs, key=lambda s: (rank.get(s["name"], len(rank)), s["name"]))


def make_targets(makefile: Path) -> tuple[dict[str, str], list[str]]:
    """{figure name: make target} from the figure table (`fig.spec.<target> := <name>`, read by
    FIGURE_RECIPE) and the other recipes that run experiments/<name>.yaml, and the figure names
    in the order of FIGURE_TARGETS (the order `make reproduce` runs them)."""
    targets, current = {}, None
    order_line = ""
    for line in makefile.read_text().splitlines():
        if line.startswith("FIGURE_TARGETS"):
            order_line = line.split("=", 1)[1]
        spec = re.match(r"^fig\.spec\.([A-Za-z0-9_-]+)\s*:?=\s*([A-Za-z0-9_]+)\s*$", line)
        if spec:
            targets[spec.group(2)] = spec.group(1)
            continue
        m = re.match(r"^([A-Za-z0-9_-]+):", line)
        if m:
            current = m.group(1)
        elif line.startswith("\t") and current:
            for name in re.findall(r" run experiments/([A-Za-z0-9_]+)\.yaml", line):
                targets[name] = current
    by_target = {t: n for n, t in targets.items()}
    return targets, [by_target[t] for t in order_line.split() if t in by_target]


def load_family(path: Path, specs: list[dict]) -> list[str]:
    """The claim ids of the Holm family file (`#` comments), each a testable claim of `specs`."""
    if not path.exists():
        return []
    ids = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    ids = [i for i in ids if i]
    known = {c["id"]: c for s in specs for c in s.get("claims") or []}
    for i in ids:
        if i not in known or known[i]["check"] == "not_testable":
            raise ValueError(f"{path.name}: {i} is not a testable claim of experiments/*.yaml")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path.name}: an id is listed twice")
    return ids
