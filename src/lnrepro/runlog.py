"""RunLogger: `metrics.jsonl` + `summary.json` in the run directory always; W&B as a mirror.

The local files are the source of truth (figures and comparisons read them); W&B gets the same
keys (`split/name`, e.g. `val/err`, `train/nll`, `batch/loss`). Without an API key W&B runs
offline into `<run_dir>/wandb/` (upload later with `wandb sync <run_dir>/wandb/offline-run-*`).
W&B's summaries do not select on the test set: a test metric (and any metric of a split evaluated
only at the end) keeps its last value, a validation or train-eval metric its best and its last
(`summary_ops`). W&B itself prints nothing (its banner and footer are some 30 lines per run);
two log lines say where the run is and, at the end, how to upload it.
W&B never stops a run: when the service cannot be reached within `logger.init_timeout` seconds
the run logs offline (one warning), and a later failure turns the mirror off (one warning).
A failed write of a run file (disk full, permissions, quota) is one OutputError line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import netrc
import os
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from lnrepro import REPO_ROOT
from lnrepro.artifacts import atomic_write_text, output_error
from lnrepro.errors import ConfigError, one_line

log = logging.getLogger(__name__)


class BelowLevel(logging.Filter):
    """Passes records below `level`: INFO lines go to stdout, warnings and errors to stderr
    (configs/train.yaml, hydra.job_logging)."""

    def __init__(self, level: str | int = logging.WARNING):
        super().__init__()
        self.level = logging.getLevelName(level) if isinstance(level, str) else level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def git_commit() -> str:
    """HEAD of the repository this package runs from, '+dirty' when it has local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
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


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return bool(netrc.netrc().authenticators(host))
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(requested: str) -> str:
    """auto -> online with an API key, offline without (nothing is lost; `wandb sync` later).
    Online requested without a key is one ConfigError line."""
    mode = os.environ.get("WANDB_MODE") or requested
    mode = "offline" if mode == "dryrun" else mode  # W&B's old name for offline
    if mode == "auto":
        return "online" if _has_wandb_key() else "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ConfigError(
            f"logger.mode (or WANDB_MODE) must be auto, online, offline or disabled, got {mode!r}"
        )
    if mode == "online" and not _has_wandb_key():
        where = "WANDB_MODE=online" if os.environ.get("WANDB_MODE") else "logger.mode=online"
        raise ConfigError(
            f"W&B online mode ({where}) needs an API key: run `wandb login` or "
            "set WANDB_API_KEY, or use logger.mode=offline (upload later with "
            "`wandb sync`) or logger=none"
        )
    return mode


def run_tags(cfg: dict) -> list[str]:
    """The W&B tags of a run: the automatic ones (`logger.auto_tags`: experiment, norm, batch
    size, seed) and then the user's own (`logger.tags=[mine]` adds, it does not replace)."""
    tags = [str(t) for key in ("auto_tags", "tags") for t in cfg.get(key) or []]
    return list(dict.fromkeys(tags))


def check_logger(cfg: dict | None) -> None:
    """What RunLogger will need of `cfg.logger`, checked before any data is loaded."""
    if not cfg or not cfg.get("enabled", True):
        return
    timeout = cfg.get("init_timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(
            f"logger.init_timeout must be a positive number of seconds, got {timeout!r}"
        )
    wandb_mode(cfg.get("mode", "auto"))


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

    def __init__(
        self,
        run_dir,
        config: dict,
        wandb_cfg: dict | None,
        meta: dict,
        resume_step: int | None = None,
        higher_is_better: frozenset = frozenset(),
    ):
        self.run_dir = Path(run_dir)
        self.higher_is_better = frozenset(higher_is_better)  # metric names maximised (W&B summary)
        self.path = self.run_dir / "metrics.jsonl"
        self.config, self.meta = config, meta
        if resume_step is None:
            atomic_write_text(self.path, "")
        else:
            self._truncate_after(resume_step)
        try:
            self._file = open(self.path, "a")  # noqa: SIM115 (open for the run, closed by close())
        except OSError as e:
            raise output_error(self.path, e) from None
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
        mode = wandb_mode(cfg.get("mode", "auto"))
        if mode == "disabled":
            return
        import wandb  # lazy: slow to import, and optional for the local files

        run_id = self._wandb_run_id(resume)
        folder = self.run_dir / "wandb"
        fell_back = False
        try:
            if mode == "online":
                try:
                    self.wandb = self._wandb_start(
                        wandb,
                        cfg,
                        run_id,
                        "online",
                        init_timeout=float(cfg.get("init_timeout", 30)),
                    )
                # no network, no answer, a refused key: log offline
                except Exception as e:  # noqa: BLE001
                    log.warning(
                        "W&B could not be reached (%s): logging offline to %s; upload "
                        "later with `wandb sync %s/offline-run-*`",
                        one_line(e),
                        folder,
                        folder,
                    )
                    mode, fell_back = "offline", True
                    wandb.teardown()  # the failed attempt still holds the run id
            if self.wandb is None:
                self.wandb = self._wandb_start(wandb, cfg, run_id, mode)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B is off for this run (%s); metrics.jsonl has every number", one_line(e))
            return
        self.wandb_where = self._wandb_location(mode)
        if not fell_back:  # (the fall-back warning said where)
            log.info("W&B %s run %s: %s", mode, run_id, self.wandb_where)
        self.log_checkpoints = bool(cfg.get("log_checkpoints", False))
        # every curve against the update count, each metric's summary as `summary_ops` says
        self._defined: set[str] = set()
        try:
            self.wandb.define_metric("update")
            self.wandb.define_metric("epoch", step_metric="update")
        except Exception as e:  # noqa: BLE001
            self._wandb_failed(e)

    def _wandb_run_id(self, resume: bool) -> str:
        """The W&B run id: the one in `<run_dir>/wandb_id` when resuming, else a new one
        (written there)."""
        id_file = self.run_dir / "wandb_id"
        if resume and id_file.exists():
            return id_file.read_text().strip()
        run_id = secrets.token_hex(6)  # W&B ids: lower-case letters and digits
        atomic_write_text(id_file, run_id)
        return run_id

    def _wandb_location(self, mode: str) -> str:
        """The offline run's folder (what `wandb sync` takes), or the online run's page."""
        with contextlib.suppress(Exception):
            if mode == "offline":
                return str(self.wandb.settings.sync_dir)
            return str(self.wandb.url or self.wandb.settings.sync_dir)
        return str(self.run_dir / "wandb")

    def _wandb_start(self, wandb, cfg: dict, run_id: str, mode: str, **settings):
        """`wandb.init` of this run in `mode`, with `settings` added to its wandb.Settings.
        silent: W&B prints nothing (its own lines: the log lines of _init_wandb and close)."""
        return wandb.init(
            project=cfg.get("project"),
            entity=cfg.get("entity"),
            group=cfg.get("group"),
            tags=run_tags(cfg),
            name=cfg.get("name") or self.default_name(),
            job_type=cfg.get("job_type") or "train",
            config={**self.config, "_meta": self.meta},
            dir=str(self.run_dir),
            mode=mode,
            id=run_id,
            resume="allow",
            # Hydra's basic launcher runs every job of a multirun in this process: each job
            # must get (and finish) its own run instead of W&B's default "return_previous".
            reinit="finish_previous",
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True, **settings),
        )

    def default_name(self) -> str:
        """`<experiment>/<norm>_bs<batch>_s<seed>`, and a sweep's other overrides after it."""
        m = self.meta
        name = f"{self.config.get('name')}/{m.get('norm')}_bs{m.get('batch_size')}_s{m.get('seed')}"
        return name + (f"_{m['overrides']}" if m.get("overrides") else "")

    def summary_ops(self, key: str) -> str:
        """W&B summary of metric `key` ("split/name"): "last" for a training batch mean, a test
        metric and a metric of a split evaluated only at the end (`trainer.final_eval_splits`),
        so that the runs table never shows the best test value seen (selection on the test
        set); else (validation, train evaluation, SentEval) its best, "min" or "max" in the
        task's direction (lnrepro.contracts.is_higher_better), and its last: W&B's summary
        keys `val/err.min` and `val/err.last`."""
        split, _, name = key.rpartition("/")
        final_only = (self.config.get("trainer") or {}).get("final_eval_splits") or ()
        if split in ("batch", "test") or split in final_only:
            return "last"
        return ("max" if name in self.higher_is_better else "min") + ",last"

    def _define(self, metrics: dict) -> None:
        for k in metrics:
            if k not in self._defined:
                self._defined.add(k)
                self.wandb.define_metric(k, step_metric="update", summary=self.summary_ops(k))

    def log_checkpoint(self, path: Path, step: int) -> None:
        """With `logger.log_checkpoints=true`, the checkpoint as a W&B model artifact (aliases
        latest and step<k>); a failure turns W&B off, never the run."""
        if self.wandb is None or not getattr(self, "log_checkpoints", False):
            return
        try:
            import wandb

            art = wandb.Artifact(
                f"checkpoint-{self.wandb.id}",
                type="model",
                metadata={"step": step, **_jsonable(self.meta)},
            )
            art.add_file(str(path), name="last.pt")
            self.wandb.log_artifact(art, aliases=["latest", f"step{step}"])
        except Exception as e:  # noqa: BLE001
            self._wandb_failed(e)

    def _wandb_failed(self, e: Exception) -> None:
        log.warning(
            "W&B stopped working (%s): it is off for the rest of this run; "
            "metrics.jsonl has every number",
            one_line(e),
        )
        self.wandb = None

    def log(self, step: int, epoch: float, time: float, metrics: dict[str, float]) -> None:
        row = {"step": step, "epoch": round(epoch, 6), "time": round(time, 3)}
        row.update({k: _jsonable(float(v)) for k, v in metrics.items()})
        try:
            self._file.write(json.dumps(row, allow_nan=False) + "\n")
            self._file.flush()
        except OSError as e:
            raise output_error(self.path, e) from None
        if self.wandb is not None:
            try:
                self._define(metrics)
                self.wandb.log({"update": step, "epoch": epoch, **metrics}, step=step)
            except Exception as e:  # noqa: BLE001  (the mirror never stops a run)
                self._wandb_failed(e)

    def write_summary(self, summary: dict) -> None:
        summary = {**summary, **self.meta, "config": self.config}
        atomic_write_text(
            self.run_dir / "summary.json",
            json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n",
        )
        if self.wandb is not None:
            try:
                for k, v in summary.items():
                    if k != "config":
                        self.wandb.summary[k] = v
            except Exception as e:  # noqa: BLE001
                self._wandb_failed(e)

    def close(self, exit_code: int = 0) -> None:
        with contextlib.suppress(OSError):  # a full disk was reported where it happened
            self._file.close()
        if self.wandb is not None:
            try:
                offline = self.wandb.settings.mode == "offline"
                self.wandb.finish(exit_code=exit_code)
                if offline:
                    log.info(
                        "W&B offline run saved: upload it with `wandb sync %s`", self.wandb_where
                    )
                else:
                    log.info("W&B run synced: %s", self.wandb_where)
            except Exception as e:  # noqa: BLE001
                self._wandb_failed(e)
            self.wandb = None


class NullLogger:
    """What ranks > 0 log to: nothing (rank 0 writes metrics, summary and W&B)."""

    def log(self, *args, **kwargs) -> None:
        pass

    def log_checkpoint(self, *args, **kwargs) -> None:
        pass

    def write_summary(self, *args, **kwargs) -> None:
        pass

    def close(self, *args, **kwargs) -> None:
        pass
