"""The committed results of one figure: results/<stem>.csv and results/<stem>_curves.csv."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from lnrepro.claims.text import label


@dataclass
class FigureData:
    """The completed runs of results/<stem>.csv and, if committed, their curves."""

    spec: dict
    stem: str
    runs: list[dict]
    curves: dict | None  # (norm, seed, grid values) -> metric -> [(step, epoch, value)]
    missing: str = ""  # why there are no runs at all

    @property
    def grid_keys(self) -> list[str]:
        return list(self.spec.get("grid") or {})

    def key(self, row: dict) -> tuple:
        return (row["norm"], str(row["seed"]), tuple(str(row[k]) for k in self.grid_keys))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_figure(results: Path, spec: dict, scale: str = "cpu") -> FigureData:
    stem = spec["name"] if scale == "cpu" else f"{spec['name']}_{scale}"
    table = results / f"{stem}.csv"
    if not table.exists():
        return FigureData(spec, stem, [], None, f"no results/{stem}.csv")
    runs = [r for r in read_csv(table) if r.get("status") == "completed"]
    data = FigureData(spec, stem, runs, None)
    curves_file = results / f"{stem}_curves.csv"
    if curves_file.exists():
        data.curves = {}
        for row in read_csv(curves_file):
            point = (int(row["step"]), _float(row["epoch"]), _float(row["value"]))
            data.curves.setdefault(data.key(row), {}).setdefault(row["metric"], []).append(point)
    return data


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def matching(data: FigureData, norm: str, where: dict) -> list[dict]:
    """Completed runs of one norm at the given grid values, by seed."""
    rows = [
        r
        for r in data.runs
        if r["norm"] == norm and all(str(r.get(k)) == str(v) for k, v in where.items())
    ]
    return sorted(rows, key=lambda r: int(r["seed"]))


def final_values(data: FigureData, norm: str, where: dict, metric: str) -> list[float]:
    """Each seed's final value (column final_<metric>, or <metric> such as s_per_update)."""
    col = f"final_{metric}"
    vals = [_float(r.get(col, r.get(metric, ""))) for r in matching(data, norm, where)]
    return [v for v in vals if math.isfinite(v)]


def seed_curves(
    data: FigureData, norm: str, where: dict, metric: str, reasons: list[str]
) -> dict[str, list]:
    """Seed -> the metric's finite points [(step, epoch, value)] after the first update; a
    completed run without any is named in `reasons`."""
    out = {}
    for r in matching(data, norm, where):
        points = (data.curves or {}).get(data.key(r), {}).get(metric, [])
        points = sorted(p for p in points if p[0] > 0 and math.isfinite(p[2]))
        if points:
            out[r["seed"]] = points
        else:
            reasons.append(f"{label(norm)} seed {r['seed']} has no {metric} curve")
    return out
