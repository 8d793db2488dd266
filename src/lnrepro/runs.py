"""Reading run directories back: the config, summary.json and metrics.jsonl of each run.

Figures and comparisons read these local files, never W&B, so nothing depends on a server.
A run whose summary.json is missing (killed) or says otherwise is reported with its status
("running/killed", "diverged", "interrupted"), never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf


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
        pts = [(r[x], r[key]) for r in self.rows if key in r and isinstance(r[key], (int, float))]
        return [p[0] for p in pts], [p[1] for p in pts]


def load_run(path: str | Path) -> Run:
    path = Path(path)
    cfg_file = path / ".hydra" / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=False) if cfg_file.exists() else {}
    summary = {}
    if (path / "summary.json").exists():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except ValueError:
            summary = {}
    rows = []
    metrics = path / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break  # a line cut by a kill: keep what came before
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
