"""Reading runs back: the config, summary.json and metrics.jsonl of each run directory, and
(optionally) the same from the W&B API.

Figures and comparisons read the local files, never W&B, so nothing depends on a server.
A run whose summary.json is missing (crashed or killed: "incomplete") or says otherwise
("interrupted", "diverged") is reported with that status, never silently dropped; its final
and best values then come from what metrics.jsonl holds.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lnrepro import REPO_ROOT  # importing lnrepro registers ${lnrepro_root:}, used in saved configs
from lnrepro.errors import ConfigError, DataError
from lnrepro.runlog import run_tags

# Config keys that say where or how a run ran, not what it computed: two runs that differ only
# in these (and the seed) are repetitions of one configuration.
NOT_SETUP = (
    "seed",
    "paths",
    "logger",
    "resume",
    "threads",
    "device",
    "optimized_metric",
    "trainer.progress",
    "trainer.line_seconds",
    "data.data_dir",
)
# Keys that name what another key names: the norm's class (`norm._target_`) is named by its
# short name `norm.kind`, which the runs saved before `_target_` have alone; so they group with
# the runs of the same norm since.
NAMED_ELSEWHERE = ("norm._target_",)
ROW_KEYS = ("step", "epoch", "time")


class _NormDisplay:
    """How figures, tables and samplers draw and order the runs of a norm, by its short name:
    what its class declares (`lnrepro.nn.norm.display`: LN red, BN blue, baseline gray, WN
    green, RMSNorm orange, first LN, then none, then BN); other norms get matplotlib's default
    colour and come after these. Read when first asked (the norms import torch)."""

    def __init__(self, field: int):
        self.field = field

    def get(self, kind, default=None):
        from lnrepro.nn.norm import display

        value = display(kind)[self.field]
        return default if value is None else value


COLORS = _NormDisplay(1)  # COLORS.get(kind): a matplotlib colour or None
NORM_ORDER = _NormDisplay(2)  # NORM_ORDER.get(kind): lower first


@dataclass
class Run:
    path: Path
    config: dict
    summary: dict
    rows: list[dict] = field(repr=False)

    @property
    def status(self) -> str:
        return self.summary.get("status", "incomplete")

    def get(self, dotted: str, default=None):
        """A config value by dotted key, e.g. `data.batch_size`, `norm.kind`."""
        node = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def series(self, key: str, x: str = "epoch") -> tuple[list[float], list[float]]:
        pts = [(r[x], r[key]) for r in self.rows if x in r and isinstance(r.get(key), (int, float))]
        return [p[0] for p in pts], [p[1] for p in pts]

    # ---- what comparisons select and show --------------------------------------------------
    @property
    def name(self) -> str | None:
        return self.get("name", self.summary.get("experiment"))

    @property
    def seed(self):
        return self.get("seed", self.summary.get("seed"))

    @property
    def group(self) -> str | None:
        """The W&B group: the experiment, or the sweep that launched the run."""
        return self.get("logger.group") or self.name

    @property
    def tags(self) -> list[str]:
        """The run's W&B tags: the automatic ones, then the user's (lnrepro.runlog.run_tags)."""
        return run_tags(self.get("logger") or {})

    @property
    def steps(self):
        return self.summary.get("step", self.rows[-1]["step"] if self.rows else None)

    @property
    def wall_time(self):
        return self.summary.get("wall_time", self.rows[-1].get("time") if self.rows else None)

    def metrics(self) -> list[str]:
        """Every metric metrics.jsonl logged, in first-seen order."""
        seen = dict.fromkeys(k for r in self.rows for k in r if k not in ROW_KEYS)
        return list(seen)

    def metric(self, key: str, which: str = "final"):
        """`final` (last evaluation) or `best` (lowest: errors, NLL, BPC) value of a metric:
        from summary.json when the run wrote one, else from metrics.jsonl."""
        value = (self.summary.get(which) or {}).get(key)
        if value is None:
            _, ys = self.series(key, "step")
            ys = [y for y in ys if math.isfinite(y)] if which == "best" else ys
            value = (min(ys) if which == "best" else ys[-1]) if ys else None
        return _number(value)

    def setup(self) -> dict:
        """The flattened config without seed, NOT_SETUP and NAMED_ELSEWHERE keys: equal for
        repetitions."""
        return {
            k: v
            for k, v in flatten(self.config).items()
            if not any(k == p or k.startswith(p + ".") for p in NOT_SETUP + NAMED_ELSEWHERE)
        }


def _number(v):
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):  # how RunLogger writes non-finite
        return float(v)
    return v


def fmt_value(v, digits: int = 4, none: str = "-") -> str:
    """A value as tables and CSV files show it: a float to `digits` significant digits (nan and
    inf as such), None as `none`, anything else as str()."""
    if v is None:
        return none
    if isinstance(v, float):
        return f"{v:.{digits}g}" if math.isfinite(v) else str(v)
    return str(v)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _load_config(cfg_file: Path) -> dict:
    try:
        cfg = OmegaConf.load(cfg_file)
    except Exception as e:  # noqa: BLE001  (cut or hand-edited YAML: the run still shows)
        warn(f"{cfg_file}: not readable ({type(e).__name__}): the run's config is unknown")
        return {}
    if not isinstance(cfg, DictConfig):
        warn(f"{cfg_file}: not a mapping: the run's config is unknown")
        return {}
    try:  # interpolations such as logger.group: ${name}
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001  (a resolver this process lacks: keep the raw values)
        return OmegaConf.to_container(cfg, resolve=False)


def warn(message: str) -> None:
    """One warning line on stderr (a run file that is read only in part)."""
    print(f"warning: {message}", file=sys.stderr)


def _read_summary(path: Path) -> dict:
    """summary.json as a dict; an unreadable one is a warning and {} (the run then counts as
    incomplete, its values come from metrics.jsonl)."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        warn(f"{path}: not readable ({type(e).__name__}): the run is shown as incomplete")
        return {}
    if not isinstance(summary, dict):
        warn(f"{path}: not a JSON object: the run is shown as incomplete")
        return {}
    return summary


def _read_rows(path: Path, complete: bool) -> list[dict]:
    """The rows of metrics.jsonl. A line that is not a JSON object with a `step` is skipped
    with a warning naming the file and the line, and the lines after it still load; an empty
    file is a warning too. Only the last line of a run without summary.json, cut by a kill
    (no newline at its end), is dropped silently: that run is shown as incomplete anyway."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        warn(f"{path}: not readable ({type(e).__name__}): no rows")
        return []
    if not text.strip():
        warn(f"{path}: empty: no rows")
        return []
    lines = text.splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
        elif not (i == len(lines) and not complete and not text.endswith("\n")):
            warn(f"{path}:{i}: not a metrics row, skipped: {line[:60]!r}")
    return rows


def load_run(path: str | Path) -> Run:
    path = Path(path)
    cfg_file = path / ".hydra" / "config.yaml"
    config = _load_config(cfg_file) if cfg_file.exists() else {}
    summary = _read_summary(path / "summary.json") if (path / "summary.json").exists() else {}
    metrics = path / "metrics.jsonl"
    rows = _read_rows(metrics, complete=bool(summary)) if metrics.exists() else []
    if not config and summary.get("config"):
        config = summary["config"]
    return Run(path, config, summary, rows)


def find_runs(*roots: str | Path) -> list[Run]:
    """Every run directory (one holding metrics.jsonl) at or below the given paths."""
    found = []
    for root in roots:
        root = Path(root)
        candidates = [root] if (root / "metrics.jsonl").exists() else []
        candidates += sorted(p.parent for p in root.rglob("metrics.jsonl") if p.parent != root)
        found += [load_run(p) for p in candidates]
    return found


def select_runs(
    runs: list[Run], experiment=None, group=None, norm=None, tag=None, where: dict | None = None
) -> list[Run]:
    """Runs matching every given filter; each filter is a collection of accepted values
    (`where`: dotted config key -> accepted values, compared as strings)."""

    def ok(value, accepted) -> bool:
        return not accepted or str(value) in {str(a) for a in accepted}

    return [
        r
        for r in runs
        if ok(r.name, experiment)
        and ok(r.group, group)
        and ok(r.get("norm.kind"), norm)
        and (not tag or set(tag) & set(r.tags))
        and all(ok(r.get(k), v) for k, v in (where or {}).items())
    ]


def differing_keys(runs: list[Run]) -> list[str]:
    """Setup keys whose value is not the same in all runs (what a comparison table shows)."""
    setups = [r.setup() for r in runs]
    keys = dict.fromkeys(k for s in setups for k in s)
    return [
        k
        for k in keys
        if len({json.dumps(s.get(k), sort_keys=True, default=str) for s in setups}) > 1
    ]


def seed_groups(runs: list[Run]) -> list[list[Run]]:
    """Completed runs that differ only in the seed (and NOT_SETUP keys) form one group; every
    other run (incomplete, interrupted, diverged) is a group of its own, so that a partial
    run never enters a mean."""
    groups: dict[str, list[Run]] = {}
    for i, r in enumerate(runs):
        key = json.dumps(r.setup(), sort_keys=True, default=str) if r.status == "completed" else i
        groups.setdefault(str(key), []).append(r)
    return list(groups.values())


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1 in the denominator; None for one value).
    A NaN or infinite value (a diverged run, a hand-edited summary) makes both non-finite: the
    mean nan or inf, the std nan (statistics.stdev itself fails on them)."""
    spread = None
    if len(values) > 1:
        spread = statistics.stdev(values) if all(map(math.isfinite, values)) else math.nan
    return statistics.fmean(values), spread


def wandb_filters(
    experiment=None, group=None, norm=None, tag=None, where: dict | None = None
) -> dict:
    """`select_runs`'s filters as a W&B API query (MongoDB syntax), so that the server
    returns only the matching runs; values that read as numbers or booleans match those too."""

    def values(vs):
        out = []
        for v in vs:
            out.append(v)
            for cast in (int, float):
                try:
                    out.append(cast(v))
                    break
                except (TypeError, ValueError):
                    continue
            if str(v).lower() in ("true", "false"):
                out.append(str(v).lower() == "true")
        return {"$in": out}

    terms = [
        {key: values(vs)}
        for key, vs in (
            ("config.name", experiment),
            ("group", group),
            ("config.norm.kind", norm),
            ("tags", tag),
            *((f"config.{k}", v) for k, v in (where or {}).items()),
        )
        if vs
    ]
    return {"$and": terms} if terms else {}


def load_wandb_runs(project: str, timeout: int = 30, filters: dict | None = None) -> list[Run]:
    """The runs of a W&B project ("entity/project") through the W&B API, as Run objects
    (config, summary and history as RunLogger logged them); `filters` (`wandb_filters`) are
    applied by the server, so only the matching runs' histories are downloaded. Needs an API
    key and network; runs logged offline are read from their run directories instead (or
    `wandb sync` first)."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("--wandb needs the wandb package (pip install wandb)") from None
    if not os.environ.get("WANDB_API_KEY") and not _netrc_has_wandb():
        raise ConfigError(
            "--wandb needs a W&B API key (set WANDB_API_KEY or run `wandb login`); "
            "without one, compare the local run directories"
        )
    try:
        api_runs = list(wandb.Api(timeout=timeout).runs(project, filters=filters or {}))
    except Exception as e:  # noqa: BLE001  (no network, bad key, unknown project: one line)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read W&B project {project!r}: {msg}") from None
    states = {"finished": "completed", "running": "running"}
    out = []
    for wr in api_runs:
        config = {k: v for k, v in dict(wr.config).items() if not k.startswith("_")}
        summary = {k: v for k, v in dict(wr.summary).items() if not k.startswith("_")}
        summary.setdefault("status", states.get(wr.state, "incomplete"))  # RunLogger's, if any
        rows = [
            {
                "step": h.get("_step"),
                "time": h.get("_runtime"),
                **{k: v for k, v in h.items() if not k.startswith("_")},
            }
            for h in wr.scan_history()
        ]
        out.append(Run(Path(f"wandb:{project}/{wr.id}"), config, summary, rows))
    return out


def _netrc_has_wandb() -> bool:
    import netrc

    try:
        return bool(netrc.netrc().authenticators("api.wandb.ai"))
    except (OSError, netrc.NetrcParseError):
        return False


# ---- the run folders of a figure (experiments/<figure>.yaml) --------------------------------
def outputs_root() -> Path:
    """Where runs are written: $LNREPRO_OUTPUTS, else <repo>/outputs (configs/paths/default.yaml)."""
    return Path(os.environ.get("LNREPRO_OUTPUTS", str(REPO_ROOT / "outputs")))


def load_spec(path: str | Path) -> dict:
    """A figure's spec, experiments/<figure>.yaml, with its interpolations resolved."""
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def sweep_dir(spec: dict, scale: str) -> Path:
    """The folder of a figure's grid at a scale: <outputs>/figures/<name>/<scale>/."""
    return outputs_root() / "figures" / spec["name"] / scale


def spec_runs(spec: dict, scale: str) -> tuple[Path, list[Run]]:
    """The sweep folder of a figure at a scale and every run under it (none if it is missing)."""
    root = sweep_dir(spec, scale)
    return root, (find_runs(root) if root.exists() else [])


def checkpointed_run_per_norm(spec_path: str | Path, scale: str, target: str) -> list[Path]:
    """One run per norm (the lowest seed) of a figure's sweep folder that has
    checkpoints/last.pt, LN first (NORM_ORDER). None at all: SystemExit naming `make target`."""
    root, runs = spec_runs(load_spec(spec_path), scale)
    runs = [r for r in runs if (r.path / "checkpoints" / "last.pt").exists()]
    if not runs:
        raise SystemExit(
            f"no checkpointed runs under {root}: run `make {target}` first, or give run directories"
        )
    first: dict[str, Run] = {}
    for r in sorted(runs, key=lambda r: r.get("seed") or 0):
        first.setdefault(r.get("norm.kind"), r)
    return [first[k].path for k in sorted(first, key=lambda k: NORM_ORDER.get(k, 9))]
