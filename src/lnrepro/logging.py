"""RunLogger: `metrics.jsonl` + `summary.json` in the run directory always; W&B as a mirror.

The local files are the source of truth (figures and comparisons read them); W&B gets the same
keys (`split/name`, e.g. `val/err`, `train/nll`, `batch/loss`). Without an API key W&B runs
offline into `<run_dir>/wandb/` (upload later with `wandb sync <run_dir>/wandb/offline-run-*`).
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
import secrets
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

from lnrepro import REPO_ROOT


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename, so a kill never leaves a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def git_commit() -> str:
    """HEAD of the repository this package runs from, '+dirty' when it has local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _jsonable(v):
    """JSON has no NaN/inf: write them as the strings "nan", "inf", "-inf"."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def wandb_mode(requested: str) -> str:
    """auto -> online with an API key, offline without (nothing is lost; `wandb sync` later)."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (OSError, netrc.NetrcParseError):
        pass
    return "offline"


class RunLogger:
    """Appends one JSON object per logging event to metrics.jsonl and mirrors it to W&B.

    Args:
        run_dir: the Hydra run directory.
        config: the resolved config (a plain dict), recorded in W&B and summary.json.
        wandb_cfg: `cfg.logger` as a dict (None or `enabled: false` turns W&B off).
        meta: seed, git commit, ... recorded in both.
        resume_step: on resume, the checkpoint's step: later lines (written after that
            checkpoint by the interrupted run) are dropped so the file equals an
            uninterrupted run's.
    """

    def __init__(self, run_dir, config: dict, wandb_cfg: dict | None, meta: dict,
                 resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.config, self.meta = config, meta
        if resume_step is None:
            self.path.write_text("")
        else:
            self._truncate_after(resume_step)
        self._file = open(self.path, "a")
        self.wandb = None
        if wandb_cfg and wandb_cfg.get("enabled", True):
            self._init_wandb(wandb_cfg, resume=resume_step is not None)

    def _truncate_after(self, step: int) -> None:
        keep = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= step:
                        keep.append(line)
                except (ValueError, KeyError):
                    break  # a line cut by the kill: everything after it is gone too
        atomic_write_text(self.path, "".join(s + "\n" for s in keep))

    def _init_wandb(self, cfg: dict, resume: bool) -> None:
        import wandb  # lazy: slow to import, and optional for the local files

        mode = wandb_mode(cfg.get("mode", "auto"))
        if mode == "disabled":
            return
        id_file = self.run_dir / "wandb_id"
        if resume and id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(6)  # W&B ids: lower-case letters and digits
            atomic_write_text(id_file, run_id)
        self.wandb = wandb.init(
            project=cfg.get("project"),
            entity=cfg.get("entity"),
            group=cfg.get("group"),
            tags=[str(t) for t in cfg.get("tags") or []],
            name=cfg.get("name"),
            config={**self.config, "_meta": self.meta},
            dir=str(self.run_dir),
            mode=mode,
            id=run_id,
            resume="allow",
            # Hydra's basic launcher runs every job of a multirun in this process: each job
            # must get (and finish) its own run instead of W&B's default "return_previous".
            reinit="finish_previous",
            settings=wandb.Settings(console="off", x_disable_stats=True),
        )
        log.info("W&B %s run %s in %s", mode, run_id, self.run_dir / "wandb")

    def log(self, step: int, epoch: float, time: float, metrics: dict[str, float]) -> None:
        row = {"step": step, "epoch": round(epoch, 6), "time": round(time, 3)}
        row.update({k: _jsonable(float(v)) for k, v in metrics.items()})
        self._file.write(json.dumps(row, allow_nan=False) + "\n")
        self._file.flush()
        if self.wandb is not None:
            self.wandb.log({"epoch": epoch, **metrics}, step=step)

    def write_summary(self, summary: dict) -> None:
        summary = {**summary, **self.meta, "config": self.config}
        atomic_write_text(
            self.run_dir / "summary.json", json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n"
        )
        if self.wandb is not None:
            for k, v in summary.items():
                if k != "config":
                    self.wandb.summary[k] = v

    def close(self, exit_code: int = 0) -> None:
        self._file.close()
        if self.wandb is not None:
            self.wandb.finish(exit_code=exit_code)
            self.wandb = None
