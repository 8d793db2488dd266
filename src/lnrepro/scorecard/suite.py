"""The scorecard's suite (experiments/scorecard/suite.yaml): per tier, the entries a candidate
norm runs through, each a figure spec at one grid setting with its primary metric, margin,
secondary metrics and speed span, and the suite's baselines and references (the norms the
candidate is compared with: data of the suite, never names in the code); checked when loaded,
one line per mistake."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lnrepro import REPO_ROOT
from lnrepro.claims.confirm import confirmatory_norms
from lnrepro.claims.specs import higher_is_better
from lnrepro.claims.text import label
from lnrepro.claims.text import setting as setting_text
from lnrepro.errors import ConfigError
from lnrepro.runs import load_spec

SUITE = REPO_ROOT / "experiments" / "scorecard" / "suite.yaml"
EXPERIMENTS = REPO_ROOT / "experiments"
SCALE = "cpu"  # the scorecard runs the figures' CPU scale


@dataclass(frozen=True)
class Metric:
    """A metric of an entry: compared as a ratio of geometric means (`log`) or a difference."""

    key: str
    log: bool
    higher: bool = False


@dataclass
class Entry:
    """One benchmark of the suite: a figure at a grid setting, run with `seeds`."""

    figure: str
    spec: dict  # experiments/<figure>.yaml
    setting: dict
    primary: Metric
    margin: float  # a ratio (> 1) when primary.log, else an absolute difference (> 0)
    why: str
    secondary: list[Metric]
    speed: dict  # {metric, steps: [lo, hi], log}
    seeds: list[int]
    baselines: list[str]  # the suite's baselines that this figure's confirmatory runs have
    references: list[str]  # the suite's references: compared with the candidate (Holm family)
    columns: list[str] = field(default_factory=list)  # the suite's baselines: the tables' arms
    titles: dict = field(default_factory=dict)  # norm -> its title in the tables (suite.yaml)
    cost: dict = field(default_factory=dict)  # {warmup, steps, repeats}

    @property
    def main_reference(self) -> str:
        """The first reference: the cost per update is timed against it, and the forest plot
        shows the effect against it."""
        return self.references[0]

    def title(self, norm: str) -> str:
        """A baseline's name in the scorecard's tables and plot: its title in the suite's
        `titles`, else its label (lnrepro.nn.norm: the class's `label`, else its kind)."""
        return str(self.titles.get(norm) or label(norm))

    @property
    def name(self) -> str:
        """`figure6_pi_mnist (batch_size 128)`."""
        return self.figure + (f" ({setting_text(self.setting)})" if self.setting else "")

    @property
    def slug(self) -> str:
        """The entry's folder under outputs/scorecards/<name>/: figure/setting."""
        point = ",".join(f"{k}={v}" for k, v in self.setting.items()) or "default"
        return f"{self.figure}/{point}"

    @property
    def experiment(self) -> str:
        return self.spec["scales"][SCALE]["experiment"]

    def overrides(self) -> list[str]:
        """The figure's CPU-scale overrides, then the entry's grid setting."""
        extra = list(self.spec["scales"][SCALE].get("overrides") or [])
        return extra + [f"{k}={v}" for k, v in self.setting.items()]

    @property
    def margin_text(self) -> str:
        return f"ratio {self.margin:g}" if self.primary.log else f"± {self.margin:g}"


def load_suite(path: Path = SUITE) -> dict:
    """The suite file as a dict (YAML anchors resolved)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"no scorecard suite at {path} ({e.strerror})") from None


def entries(
    suite: dict, tier: str, experiments: Path = EXPERIMENTS, seeds: list[int] | None = None
) -> list[Entry]:
    """The entries of `tier`, each with its figure spec; `seeds` replaces every entry's."""
    tiers = suite.get("tiers") or {}
    if tier not in tiers:
        raise ConfigError(f"scorecard tier {tier!r} is not in the suite (tiers: {sorted(tiers)})")
    arms = _arms(suite)
    return [_entry(suite, arms, e, Path(experiments), seeds) for e in tiers[tier]]


def _norms(suite: dict, key: str) -> list[str]:
    """The suite's `key` (baselines, references): a non-empty list of norm names, no repeats."""
    raw = suite.get(key)
    if not (isinstance(raw, list) and raw and all(isinstance(n, str) and n for n in raw)):
        raise ConfigError(f"scorecard {key} must be a non-empty list of norm names, not {raw!r}")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"scorecard {key} names a norm twice: {raw}")
    return list(raw)


def _arms(suite: dict) -> dict:
    """The suite's `baselines`, `references` (each one of the baselines) and `titles` (a
    baseline -> its title in the tables), checked: Entry's fields of the same names (the
    baselines as `columns`)."""
    baselines = _norms(suite, "baselines")
    references = _norms(suite, "references")
    stray = [n for n in references if n not in baselines]
    if stray:
        raise ConfigError(
            f"scorecard references {stray} are not among the suite's baselines {baselines}"
        )
    titles = suite.get("titles") or {}
    if not isinstance(titles, dict) or not all(isinstance(t, str) for t in titles.values()):
        raise ConfigError(f"scorecard titles must map baselines to titles, not {titles!r}")
    stray = [n for n in titles if n not in baselines]
    if stray:
        raise ConfigError(
            f"scorecard titles {stray} are not among the suite's baselines {baselines}"
        )
    return {"columns": baselines, "references": references, "titles": dict(titles)}


def _entry(suite: dict, arms: dict, raw: dict, experiments: Path, seeds: list[int] | None) -> Entry:
    where = f"scorecard entry {raw.get('figure')!r}"
    path = experiments / f"{raw.get('figure')}.yaml"
    if not path.exists():
        raise ConfigError(f"{where}: no figure spec {path}")
    spec = load_spec(path)
    setting = dict(raw.get("setting") or {})
    _check_setting(spec, setting, where)
    primary = raw.get("primary") or {}
    if primary.get("direction") not in ("lower", "higher"):
        raise ConfigError(f"{where}: primary.direction must be lower or higher")
    margin = primary.get("margin") or {}
    if len(margin) != 1 or not set(margin) <= {"ratio", "absolute"}:
        raise ConfigError(f"{where}: primary.margin must be one of {{ratio: r}}, {{absolute: m}}")
    ((kind, value),) = margin.items()
    if not (isinstance(value, (int, float)) and value > (1 if kind == "ratio" else 0)):
        raise ConfigError(f"{where}: a {kind} margin must be a number above {int(kind == 'ratio')}")
    speed = dict(raw.get("speed") or {})
    steps = speed.get("steps") or []
    if len(steps) != 2 or not all(isinstance(s, int) for s in steps) or steps[0] >= steps[1]:
        raise ConfigError(f"{where}: speed.steps must be [first, last] updates")
    speed.setdefault("higher", higher_is_better(spec, speed.get("metric")))
    sc = spec["scales"][SCALE]
    want = seeds or list(sc.get("confirmatory_seeds") or sc["seeds"])[: int(suite.get("seeds", 3))]
    known = set(confirmatory_norms(spec, SCALE))
    missing = [n for n in arms["references"] if n not in known]
    if missing:
        raise ConfigError(f"{where}: the figure does not run the suite's references {missing}")
    return Entry(
        figure=spec["name"],
        spec=spec,
        setting=setting,
        primary=Metric(primary["metric"], kind == "ratio", primary["direction"] == "higher"),
        margin=float(value),
        why=str(raw.get("why", "")),
        secondary=[_metric(spec, m) for m in raw.get("secondary") or []],
        speed=speed,
        seeds=[int(s) for s in want],
        baselines=[n for n in arms["columns"] if n in known],
        references=list(arms["references"]),
        columns=list(arms["columns"]),
        titles=dict(arms["titles"]),
        cost=_cost(suite.get("cost") or {}),
    )


COST_KEYS = {"warmup": 0, "steps": 1, "repeats": 1}  # the timing's keys and their least values


def _cost(raw: dict) -> dict:
    """The suite's `cost:` (updates per norm and repeat of the timing), checked."""
    for k, v in raw.items():
        if k not in COST_KEYS:
            raise ConfigError(f"scorecard cost.{k}: not one of {sorted(COST_KEYS)}")
        if not (isinstance(v, int) and v >= COST_KEYS[k]):
            raise ConfigError(f"scorecard cost.{k} must be a whole number >= {COST_KEYS[k]}")
    return dict(raw)


def _metric(spec: dict, raw: dict) -> Metric:
    key = raw["metric"]
    higher = raw.get("higher", higher_is_better(spec, key))
    return Metric(key, bool(raw.get("log", False)), bool(higher))


def _check_setting(spec: dict, setting: dict, where: str) -> None:
    """Every key of the setting is a grid key of the figure, at one of its values; every grid
    key is set (an entry is one grid point)."""
    grid = spec.get("grid") or {}
    if set(setting) != set(grid):
        raise ConfigError(f"{where}: setting must give every grid key of the figure {list(grid)}")
    for k, v in setting.items():
        if not any(str(v) == str(g) for g in grid[k]):
            raise ConfigError(f"{where}: {k}={v} is not in the figure's grid {grid[k]}")
