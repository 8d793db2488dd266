"""Where a row of results/<figure>.csv came from: the columns `scripts/figure.py plot` adds to
every run's row, computed from the run's own files (never from the checkout that draws it).

- commit: the git commit the run recorded (summary.json `git_commit`, lnrepro.runlog.git_commit:
  `<sha>+dirty` when tracked files had local changes). A resumed run records the commit it was
  resumed at.
- config_hash: sha256 of the run's resolved config (.hydra/config.yaml, interpolations
  resolved) as sorted JSON, without the keys that say where or how it was logged rather than
  what it computed (HASH_EXCLUDE: seed, paths, hydra, logger, and data.data_dir, which is
  paths.data_dir under another name). Two seeds of one arm share it; any other difference
  (a learning rate, a grid value, a norm) changes it.
- metrics_sha256: sha256 of the bytes of its metrics.jsonl.
- started: the first timestamp of the run's Hydra job log (<job>.log, appended on resume, so
  its first line is the first start), as ISO 8601 with this machine's UTC offset.
- load_avg_1m: the mean 1-minute load average sampled while the run ran, from the samples that
  `scripts/figure.py run` writes beside the runs (<sweep>/loadavg.jsonl; the trainer records
  none). Runs launched elsewhere (slurm) have no samples.

A value a run did not record reads NOT_RECORDED; so do the rows of runs whose folders were
gone when these columns were added.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

NOT_RECORDED = "not recorded"
COLUMNS = ("commit", "config_hash", "metrics_sha256", "started", "load_avg_1m")
HASH_EXCLUDE = ("seed", "paths", "hydra", "logger", "data.data_dir")
LOAD_SAMPLES = "loadavg.jsonl"  # beside the runs of a figure's sweep folder
_LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:,(\d{3}))?\]")


def _drop(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if key in HASH_EXCLUDE:
            continue
        out[k] = _drop(v, key + ".") if isinstance(v, dict) else v
    return out


def config_hash(config: dict) -> str:
    """sha256 (hex) of the resolved config as sorted JSON, without HASH_EXCLUDE keys."""
    text = json.dumps(_drop(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _log_times(run_dir: Path) -> list[float]:
    """The timestamps (POSIX seconds, read as this machine's local time) of the run's Hydra job
    log lines, in file order."""
    times = []
    for log in sorted(Path(run_dir).glob("*.log")):
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            m = _LOG_TIME.match(line)
            if m:
                t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
                times.append(t.timestamp() + int(m.group(2) or 0) / 1000)
    return times


def started_at(run_dir: Path) -> float | None:
    """When the run first started (POSIX seconds): its job log's first timestamp, or None."""
    times = _log_times(run_dir)
    return min(times) if times else None


def iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def parse_iso(text: str) -> float | None:
    """POSIX seconds of a `started` cell; None for NOT_RECORDED or anything unreadable."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def read_load_samples(path: Path) -> list[tuple[float, float]]:
    """[(POSIX seconds, 1-minute load average)] of a loadavg.jsonl (unreadable lines skipped)."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
            out.append((float(row["time"]), float(row["load1"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def mean_load(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    inside = [load for t, load in samples if start <= t <= end]
    return sum(inside) / len(inside) if inside else None


def run_provenance(run, samples: list[tuple[float, float]] = ()) -> dict[str, str]:
    """The COLUMNS of one run (a lnrepro.runs.Run: path, config, summary), NOT_RECORDED where
    the run has no such record."""
    path = Path(run.path)
    start = started_at(path)
    metrics = path / "metrics.jsonl"
    load = None
    if start is not None and samples and metrics.exists():
        load = mean_load(list(samples), start, metrics.stat().st_mtime)
    values = {
        "commit": run.summary.get("git_commit"),
        "config_hash": config_hash(run.config) if run.config else None,
        "metrics_sha256": file_sha256(metrics),
        "started": iso(start) if start is not None else None,
        "load_avg_1m": f"{load:.2f}" if load is not None else None,
    }
    return {k: NOT_RECORDED if v in (None, "", "unknown") else str(v) for k, v in values.items()}
