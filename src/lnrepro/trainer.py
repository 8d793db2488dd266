"""The one training loop: steps, evaluation, checkpoint/resume, NaN guard, progress, logging.

It knows nothing about any experiment. It needs:
  - `data.train_batches(epoch, start)`, `data.eval_batches(split)`, `data.steps_per_epoch`;
  - an optional learning-rate scheduler (torch.optim.lr_scheduler), stepped after every update
    (`scheduler_interval="step"`) or at the end of every epoch ("epoch");
  - `task.training_step(model, batch) -> (loss, {name: tensor})`,
    `task.evaluate(model, batches) -> {name: float}` (lower is better for every metric),
    `task.state_dict()` / `task.load_state_dict()` for state carried between batches.

Mixed precision (`precision`: 32 | bf16 | 16): the forward pass and loss of every training step
and every evaluation run under torch.autocast (device type of the model's parameters), in
bfloat16 or float16; parameters, gradients and optimizer state stay float32, and the norms
compute their statistics in float32 (lnrepro.nn.norm). float16 scales the loss with a
torch.amp.GradScaler (gradients unscaled before clipping; its state is in the checkpoint).
torch 2.x autocasts to float16 on the CPU too (slowly: fp16 matmuls have no fast CPU kernels).
`compile`: the model's forward runs through torch.compile; checkpoints hold the uncompiled
module's state_dict.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from lnrepro import distributed
from lnrepro.artifacts import atomic_write
from lnrepro.checks import is_int, positive_int
from lnrepro.contracts import is_higher_better
from lnrepro.errors import ConfigError, DivergenceError, Interrupted, OutputError
from lnrepro.runlog import RunLogger

log = logging.getLogger(__name__)

# trainer.precision -> autocast dtype (None: float32, no autocast)
PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
_HALF = (torch.bfloat16, torch.float16)
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainerConfig:
    """`cfg.trainer`. The budget is `max_steps`, or `epochs` whole epochs when it is null."""

    epochs: float | None = 1
    max_steps: int | None = None
    evals_per_epoch: int = 1  # evaluation passes per epoch (and one at the end)
    eval_every: int | None = None  # steps between evaluations; overrides evals_per_epoch when set
    evals: int | None = None  # that many evaluations spread evenly over the step budget
    eval_steps: list = field(default_factory=list)  # extra evaluations after these updates
    eval_at_fractions: list = field(default_factory=list)  # ... at these fractions of the budget
    eval_log_spaced: bool = False  # ... at 1, 2, 4, ..., 64 % of the budget
    eval_at_start: bool = True  # evaluate the initial model (step 0) too
    eval_splits: list = field(default_factory=lambda: ["train", "val", "test"])
    final_eval_splits: list = field(default_factory=list)  # evaluated once, after the last step
    limit_eval_batches: int | None = None  # at most this many batches a split (debug=smoke)
    log_every: int = 100  # steps between `batch/*` rows (running means of the training batches)
    ckpt_every: int | None = None  # steps between checkpoints; None: at every evaluation
    # (a checkpoint is also written at the end and when SIGINT/SIGTERM stops the run)
    grad_clip: float | None = None  # max global gradient norm (None: no clipping)
    progress: str = "auto"  # auto: a tqdm bar on a terminal, log lines otherwise | bar | lines
    line_seconds: float = 15.0  # at most one progress line per this many seconds
    precision: str | int = 32  # 32 | bf16 | 16: float32, or mixed precision (autocast)
    compile: bool = False  # torch.compile the model
    compile_mode: str | None = None  # torch.compile's mode, e.g. reduce-overhead on CUDA
    save_best: bool = False  # also keep checkpoints/best.pt: the model of the best best_metric
    best_metric: str | None = None  # "split/name"; None: the validation split's main metric

    def __post_init__(self):
        def positive(name, allow_none=False, allow_zero=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not ok or v < 0 or (v == 0 and not allow_zero):
                raise ConfigError(f"trainer.{name} must be a positive number, got {v!r}")

        positive("epochs", allow_none=True)
        positive("max_steps", allow_none=True)
        if self.epochs is None and self.max_steps is None:
            raise ConfigError("set trainer.epochs or trainer.max_steps")
        positive("evals_per_epoch")
        positive("eval_every", allow_none=True)
        self._check_schedule()
        positive("limit_eval_batches", allow_none=True)
        positive("log_every")
        positive("ckpt_every", allow_none=True)
        positive("grad_clip", allow_none=True)
        if self.progress not in ("auto", "bar", "lines"):
            raise ConfigError(f"trainer.progress must be auto|bar|lines, got {self.progress!r}")
        if isinstance(self.precision, bool) or str(self.precision) not in PRECISIONS:
            raise ConfigError(f"trainer.precision must be 32|bf16|16, got {self.precision!r}")
        self.precision = str(self.precision)
        if not isinstance(self.compile, bool):
            raise ConfigError(f"trainer.compile must be true or false, got {self.compile!r}")
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(
                f"trainer.compile_mode must be null or one of "
                f"{'|'.join(COMPILE_MODES[1:])}, got {self.compile_mode!r}"
            )
        if not isinstance(self.save_best, bool):
            raise ConfigError(f"trainer.save_best must be true or false, got {self.save_best!r}")
        metric = self.best_metric
        if metric is not None and (not isinstance(metric, str) or "/" not in metric):
            raise ConfigError(
                f"trainer.best_metric must be null or a logged metric such as val/err, got "
                f"{metric!r}"
            )

    def _check_schedule(self) -> None:
        """The evaluation schedule's own keys (see `eval_steps`), one ConfigError line each."""
        if self.evals is not None:
            positive_int(self.evals, "trainer.evals")
            if self.eval_every is not None:
                raise ConfigError("set trainer.eval_every or trainer.evals, not both")
        steps, fractions = self.eval_steps, self.eval_at_fractions
        if not isinstance(steps, (list, tuple)) or not all(is_int(s) and s > 0 for s in steps):
            raise ConfigError(
                f"trainer.eval_steps must be a list of positive integers (updates), got {steps!r}"
            )
        if not isinstance(fractions, (list, tuple)) or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1
            for f in fractions
        ):
            raise ConfigError(
                "trainer.eval_at_fractions must be a list of numbers in (0, 1] (fractions of "
                f"the step budget), got {fractions!r}"
            )
        if not isinstance(self.eval_log_spaced, bool):
            raise ConfigError(
                f"trainer.eval_log_spaced must be true or false, got {self.eval_log_spaced!r}"
            )


# trainer.eval_log_spaced: evaluations at 1, 2, 4, ..., 64 % of the step budget (a convergence-
# speed curve needs its early points; the regular schedule adds the rest)
LOG_SPACED_FRACTIONS = tuple(2**k / 100 for k in range(7))


def eval_steps(cfg: TrainerConfig, total_steps: int, steps_per_epoch: int) -> set[int]:
    """The updates after which the loop evaluates (0: the initial model), from the config and
    the step budget `total_steps`:
      - the last update, always; the initial model with `eval_at_start`;
      - `evals` evaluations spread evenly over the budget (the last at its end), or else every
        `eval_every` updates, or else `evals_per_epoch` an epoch; of these regular ones, one less
        than half an interval before the end is left out (a near-duplicate point at the end of
        every curve);
      - and, on top of those, the updates listed in `eval_steps` (those beyond the budget are
        ignored), the nearest updates to `eval_at_fractions` of the budget, and with
        `eval_log_spaced` to 1, 2, 4, ..., 64 % of it.
    Budget-relative steps (`evals`, fractions) move when a resumed run changes its budget."""
    total = total_steps
    steps = {total} | ({0} if cfg.eval_at_start else set())
    if cfg.evals:
        steps |= {max(1, k * total // cfg.evals) for k in range(1, cfg.evals + 1)}
    else:
        interval = cfg.eval_every or max(1, steps_per_epoch // cfg.evals_per_epoch)
        steps |= {s for s in range(interval, total, interval) if 2 * (total - s) >= interval}
    fractions = [*cfg.eval_at_fractions, *(LOG_SPACED_FRACTIONS if cfg.eval_log_spaced else ())]
    steps |= {max(1, round(f * total)) for f in fractions}
    steps |= {s for s in cfg.eval_steps if s <= total}
    return steps


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints between steps and exits cleanly.

    In a worker process of a parallel sweep (`sweep_worker_signals`) SIGTERM alone stops the
    loop, and a SIGTERM that arrived before the loop started (`pending`) stops it at its first
    step boundary: the sweep's process forwards its own stop signal to its workers."""

    signals = (signal.SIGINT, signal.SIGTERM)
    pending: int | None = None  # a sweep worker's stop signal, kept for every later loop
    keep_pending = False  # whether a signal to the loop also sets `pending` (sweep workers)

    def __init__(self):
        self.signum, self._old = _StopFlag.pending, {}

    def __enter__(self):
        for sig in self.signals:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: keep defaults
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        if _StopFlag.keep_pending:
            _StopFlag.pending = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def sweep_worker_signals() -> None:
    """Signal handling of a worker process of a parallel sweep (lnrepro.callbacks.SweepSignals),
    whose stop signal comes from the sweep's process: SIGTERM, whenever it arrives, stops the
    current or the next training loop at a step boundary, after a checkpoint; SIGINT is ignored
    (a terminal's Ctrl-C reaches every process of the group, and the sweep's process forwards it
    as SIGTERM: two signals would mean "stop now"). The sweep's process starts its workers with
    both signals blocked, so that none is lost before this runs; they are unblocked here."""

    def remember(signum, frame):
        if _StopFlag.pending is None:
            _StopFlag.pending = signum

    signal.signal(signal.SIGTERM, remember)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _StopFlag.signals, _StopFlag.keep_pending = (signal.SIGTERM,), True
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def stop_pending() -> int | None:
    """The stop signal a sweep worker received (sweep_worker_signals), else None."""
    return _StopFlag.pending


# what `Trainer.state_dict` writes (train.py adds "config" and "meta"): a checkpoint that lacks
# one is refused before any state is loaded. It also writes "scaler" (the GradScaler's state,
# empty below precision 16), optional: checkpoints from before trainer.precision lack it.
STATE_KEYS = (
    "step",
    "elapsed",
    "eval_time",
    "best",
    "last_eval",
    "acc",
    "acc_n",
    "model",
    "optimizer",
    "scheduler",
    "task",
    "rng_cpu",
    "rng_cuda",
)
SCHEDULER_INTERVALS = ("step", "epoch")
# trainer.save_best without trainer.best_metric: the first of these the validation split reports
# (errors, bits per character, perplexity, DRAW's bound, handwriting's NLL per line, order
# embeddings' recall sum, the skip-thoughts loss), else its first metric
MAIN_METRICS = ("err", "bpc", "ppl", "bound", "nll_seq", "rsum", "loss", "nll")


class Trainer:
    def __init__(
        self,
        model,
        task,
        data,
        optimizer,
        cfg: TrainerConfig,
        logger: RunLogger,
        run_dir,
        checkpoint_extra: dict | None = None,
        scheduler=None,
        scheduler_interval: str = "step",
    ):
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ConfigError(
                f"optim.scheduler.interval must be step|epoch, got {scheduler_interval!r}"
            )
        self.model, self.task, self.data, self.opt = model, task, data, optimizer
        self.scheduler, self.scheduler_interval = scheduler, scheduler_interval
        self.cfg, self.logger = cfg, logger
        self.run_dir = Path(run_dir)
        self.ckpt_path = self.run_dir / "checkpoints" / "last.pt"
        self.extra = checkpoint_extra or {}  # config etc., written into every checkpoint
        spe = data.steps_per_epoch
        self.total_steps = int(cfg.max_steps or math.ceil(cfg.epochs * spe))
        self.eval_steps = eval_steps(cfg, self.total_steps, spe)
        self.best_path = self.run_dir / "checkpoints" / "best.pt"
        self.best_metric = self._best_metric(data) if cfg.save_best else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.device_type = self.params[0].device.type
        # precision 16: loss scaling; otherwise a disabled scaler, whose calls are no-ops
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=cfg.precision == "16")
        # what training and evaluation call; `self.model` (uncompiled) is what checkpoints hold
        self.net = torch.compile(model, mode=cfg.compile_mode) if cfg.compile else model
        # state that a checkpoint carries
        self.step, self.elapsed, self.eval_time = 0, 0.0, 0.0
        self.best: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self._acc: dict[str, torch.Tensor] = {}
        self._acc_n = 0

    # ---- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "eval_time": self.eval_time,
            "best": self.best,
            "last_eval": self.last_eval,
            "acc": {k: v.cpu() for k, v in self._acc.items()},
            "acc_n": self._acc_n,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "task": self.task.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            **self.extra,
        }

    def save(self) -> None:
        """Atomic (a temp file renamed over last.pt): a kill or a full disk (OutputError) leaves
        the last good checkpoint as it was."""
        state = self.state_dict()
        atomic_write(self.ckpt_path, lambda f: torch.save(state, f))
        self.logger.log_checkpoint(self.ckpt_path, self.step)

    def load_state_dict(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        # absent from checkpoints older than trainer.precision (float32: nothing to restore)
        self.scaler.load_state_dict(ckpt.get("scaler", {}))
        if (ckpt["scheduler"] is None) != (self.scheduler is None):
            raise ValueError("the checkpoint and this run differ in having an lr scheduler")
        if self.scheduler is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.task.load_state_dict(ckpt["task"])
        self.step, self.elapsed, self.eval_time = ckpt["step"], ckpt["elapsed"], ckpt["eval_time"]
        self.best, self.last_eval = dict(ckpt["best"]), dict(ckpt["last_eval"])
        device = next(iter(self.params)).device
        self._acc = {k: v.to(device) for k, v in ckpt["acc"].items()}
        self._acc_n = ckpt["acc_n"]
        torch.set_rng_state(ckpt["rng_cpu"])
        if ckpt["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])

    # ---- evaluation -------------------------------------------------------------------
    def evaluate(self, final: bool = False) -> dict[str, float]:
        """One evaluation pass (`evaluate_model`), logged; it leaves the training's random
        streams as they were, so that adding evaluations changes no training step."""
        t0 = time.perf_counter()
        self.model.eval()
        splits = list(self.cfg.eval_splits) + (list(self.cfg.final_eval_splits) if final else [])
        with self._own_rng():
            metrics = evaluate_model(
                self.task, self.data, self.net, splits, self.cfg.limit_eval_batches,
                amp=self._autocast, hooks_model=self.model,
            )  # fmt: skip
        self.model.train()
        improved = set()
        for k, v in metrics.items():  # the best of each metric, in the direction the task says
            sign = -1.0 if is_higher_better(self.task, k) else 1.0
            if math.isfinite(v) and sign * v < sign * self.best.get(k, sign * math.inf):
                self.best[k] = v
                improved.add(k)
        self.last_eval = metrics
        if self.cfg.save_best and self._best_key(metrics, final) in improved:
            self._save_best()
        self.eval_time += time.perf_counter() - t0
        self.logger.log(self.step, self.epoch, self._time(), metrics)
        return metrics

    def _own_rng(self):
        """Evaluation on its own copy of the random streams (CPU, and the model's GPU): dropout
        masks, DRAW's posterior samples and anything else random in the next updates are those
        of a run without this evaluation."""
        device = self.params[0].device
        cuda = [device] if device.type == "cuda" else []
        return torch.random.fork_rng(devices=cuda)

    # ---- best.pt -----------------------------------------------------------------------
    def _best_metric(self, data) -> str | None:
        """trainer.best_metric, checked against the evaluated splits before any update (None:
        the validation split's main metric, named at the first evaluation: `_best_key`)."""
        evaluated = [*self.cfg.eval_splits, *self.cfg.final_eval_splits]
        key = self.cfg.best_metric
        split = key.split("/", 1)[0] if key else "val"
        # (a hook's prefix, such as senteval/, is no data split: checked at the first evaluation)
        if split not in evaluated and (key is None or split in data.splits):
            raise ConfigError(
                f"trainer.save_best ranks checkpoints by {key or 'a validation metric'}, but "
                f"the run does not evaluate the {split} split (trainer.eval_splits="
                f"{list(self.cfg.eval_splits)}): add it, or set trainer.best_metric"
            )
        return key

    def _best_key(self, metrics: dict[str, float], final: bool) -> str | None:
        """The metric best.pt follows, named at the first evaluation when not configured: the
        first of MAIN_METRICS the validation split reports (else its first metric). None at an
        evaluation without it (a split evaluated only at the end)."""
        key = self.best_metric
        if key is None:
            names = [k.split("/", 1)[1] for k in metrics if k.startswith("val/")]
            main = [m for m in MAIN_METRICS if m in names] or names
            if not main:
                raise ConfigError(
                    "trainer.save_best: the evaluation has no val/ metric to rank checkpoints "
                    f"by ({', '.join(metrics)}): set trainer.best_metric"
                )
            key = self.best_metric = f"val/{main[0]}"
        if key not in metrics:
            if not final and key.split("/", 1)[0] in self.cfg.final_eval_splits:
                return None
            raise ConfigError(
                f"trainer.best_metric={key} is not among the evaluated metrics "
                f"({', '.join(metrics)})"
            )
        return key

    def _save_best(self) -> None:
        """checkpoints/best.pt (atomic): the state at this evaluation, whose best_metric beats
        every earlier one. Every checkpoint holds that best value so far (`best`), so a resumed
        run replaces best.pt only when it does better. It is this process's state (under
        torchrun rank 0 evaluates alone: no other rank's RNG): a model to evaluate
        (scripts/eval.py), not a point to resume from."""
        state = Trainer.state_dict(self)
        atomic_write(self.best_path, lambda f: torch.save(state, f))

    # ---- the loop ---------------------------------------------------------------------
    def _autocast(self):
        """torch.autocast to the precision's dtype; nothing at all at precision 32."""
        return autocast(self.cfg.precision, self.device_type)

    @property
    def epoch(self) -> float:
        return self.step / self.data.steps_per_epoch

    def _time(self) -> float:
        return self.elapsed + (time.perf_counter() - self._t0)

    def _log_batches(self) -> dict[str, float]:
        row = {f"batch/{k}": float(v) / self._acc_n for k, v in self._acc.items()}
        if self.scheduler is not None:  # the learning rate of the next update
            row["batch/lr"] = float(self.opt.param_groups[0]["lr"])
        self.logger.log(self.step, self.epoch, self._time(), row)
        self._acc, self._acc_n = {}, 0
        return row

    def fit(self) -> dict:
        """Train to the step budget. Returns the summary (also written to summary.json).
        A run file that cannot be written (OutputError: disk full, permissions, quota) ends
        the run with summary.json saying "failed" and why, when that small file still fits."""
        try:
            return self._fit()
        except OutputError as e:
            try:
                self.logger.write_summary({**self.summary("failed"), "reason": str(e)})
            except OutputError:
                pass
            raise

    def _fit(self) -> dict:
        cfg, spe = self.cfg, self.data.steps_per_epoch
        self._t0 = time.perf_counter()
        bar = self._progress()
        self._last_line, self._start_step = 0.0, self.step
        self._pace_t0, self._pace_eval0 = self._t0, self.eval_time
        self.model.train()
        if self.step == 0 and 0 in self.eval_steps:
            self.evaluate()
        # with a bar, log lines (evaluations, warnings) are printed above it instead of through it
        quiet_bar = logging_redirect_tqdm() if bar is not None else contextlib.nullcontext()
        with _StopFlag() as stop, quiet_bar:
            while self.step < self.total_steps:
                epoch, offset = divmod(self.step, spe)
                for batch in self.data.train_batches(epoch, offset):
                    self._update(batch)
                    done = self.step >= self.total_steps
                    self._report(bar, done)
                    evaluated = self.step in self.eval_steps
                    if evaluated:
                        metrics = self.evaluate(final=done)
                        log.info("eval step %d epoch %.2f %s", self.step, self.epoch, _fmt(metrics))
                    every = cfg.ckpt_every
                    if done or (self.step % every == 0 if every else evaluated):
                        self._checkpoint()
                    if self._stop_requested(stop):
                        self._checkpoint()
                        self.logger.write_summary(self.summary("interrupted"))
                        raise Interrupted(
                            f"stopped by signal {stop.signum} at step {self.step}; checkpoint "
                            f"saved, continue with resume=true hydra.run.dir={self.run_dir}"
                        )
                    if done:
                        break
        if bar is not None:
            bar.close()
        return self.summary("completed")

    def _update(self, batch) -> None:
        """One optimizer update on `batch`; its metrics join the running means."""
        cfg = self.cfg
        with self._autocast():  # forward and loss; backward outside, as torch.amp
            loss, metrics = self.task.training_step(self.net, batch)
        if not torch.isfinite(loss):
            self._diverged(float(loss.detach()))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # scale, unscale_, update: no-ops below 16
        if cfg.grad_clip:
            self.scaler.unscale_(self.opt)  # clip the true gradients
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.scaler.step(self.opt)  # skips the update when a gradient is inf/nan
        self.scaler.update()
        self.step += 1
        per_epoch = self.step % self.data.steps_per_epoch == 0
        if self.scheduler is not None and (self.scheduler_interval == "step" or per_epoch):
            self.scheduler.step()
        for k, v in metrics.items():
            v = v.float() if v.dtype in _HALF else v  # accumulate in float32
            self._acc[k] = self._acc[k] + v if k in self._acc else v.clone()
        self._acc_n += 1

    def _report(self, bar, done: bool) -> None:
        """Every `log_every` updates: the `batch/*` row, and a progress line or the bar."""
        if self.step % self.cfg.log_every == 0 or done:
            row = self._log_batches()
            now = time.perf_counter()
            if bar is not None:
                bar.set_postfix({k.split("/")[1]: f"{v:.4g}" for k, v in row.items()})
            elif now - self._last_line >= self.cfg.line_seconds or done:
                self._last_line = now
                log.info(
                    "step %d/%d epoch %.2f %s | %s",
                    self.step, self.total_steps, self.epoch, _fmt(row),
                    self._pace(self._start_step),
                )  # fmt: skip
        if bar is not None:
            bar.update(1)

    def _stop_requested(self, stop: _StopFlag) -> bool:
        """Whether a signal asks the loop to stop (lnrepro.distributed: on any process)."""
        return stop.signum is not None

    def _pace(self, start_step: int) -> str:
        """Updates/s of this process (evaluation passes excluded) and the time left at that pace
        (the evaluations still to come not counted)."""
        train_time = time.perf_counter() - self._pace_t0 - (self.eval_time - self._pace_eval0)
        rate = (self.step - start_step) / max(train_time, 1e-9)
        left = (self.total_steps - self.step) / rate if rate > 0 else math.inf
        return f"{rate:.3g} updates/s, ETA {hms(left)}"

    def _checkpoint(self) -> None:
        self.elapsed = self._time()
        self._t0 = time.perf_counter()
        self.save()

    def _diverged(self, value: float) -> None:
        where = f"step {self.step + 1} (epoch {self.epoch:.2f})"
        kept = (
            f"the last good checkpoint ({self.ckpt_path}) is kept"
            if self.ckpt_path.exists()
            else "no checkpoint had been written yet"
        )
        self.logger.write_summary(self.summary("diverged"))
        raise DivergenceError(
            f"training loss is {value} at {where}; {kept}. Lower optim.lr or set trainer.grad_clip"
        )

    def summary(self, status: str) -> dict:
        return {
            "status": status,
            "step": self.step,
            "epoch": self.epoch,
            "total_steps": self.total_steps,
            "wall_time": self._time(),
            "eval_time": self.eval_time,
            # training time per update, evaluation passes excluded
            "s_per_step": (self._time() - self.eval_time) / self.step if self.step else None,
            "final": self.last_eval,
            "best": self.best,
            "precision": self.cfg.precision,
            "compile": self.cfg.compile,
        }

    def _progress(self):
        want = self.cfg.progress
        if want == "lines" or (want == "auto" and not sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True)


def _rng_state() -> dict:
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if cuda else None}


class DistributedTrainer(Trainer):
    """The one training loop on each process. Rank 0 evaluates and writes the checkpoint, which
    carries every rank's RNG and task state (`ranks`) and the world size; a stop signal on any
    rank stops every rank at the same step."""

    def __init__(self, *args, world: distributed.World, **kwargs):
        super().__init__(*args, **kwargs)
        self.world = world

    def state_dict(self) -> dict:
        state = super().state_dict()  # every rank: the all-gather below is a collective
        ranks = distributed.all_gather_object({"rng": _rng_state(), "task": self.task.state_dict()})
        return {**state, "world_size": self.world.size, "ranks": ranks}

    def save(self) -> None:
        if self.world.is_main:
            super().save()
        else:
            self.state_dict()

    def load_state_dict(self, ckpt: dict) -> None:
        super().load_state_dict(ckpt)
        mine = ckpt["ranks"][self.world.rank]
        self.task.load_state_dict(mine["task"])
        torch.set_rng_state(mine["rng"]["cpu"])
        if mine["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(mine["rng"]["cuda"])

    def evaluate(self, final: bool = False) -> dict[str, float]:
        return super().evaluate(final) if self.world.is_main else {}

    def _progress(self):
        return super()._progress() if self.world.is_main else None

    def _stop_requested(self, stop) -> bool:
        device = self.params[0].device if self.params else None
        if distributed.any_rank(super()._stop_requested(stop), device) and stop.signum is None:
            stop.signum = signal.SIGTERM  # another rank's signal
        return stop.signum is not None


def autocast(precision: str, device_type: str):
    """torch.autocast to trainer.precision's dtype on `device_type`; nothing at precision 32."""
    dtype = PRECISIONS[str(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def evaluate_model(
    task,
    data,
    net,
    splits,
    limit_batches=None,
    amp=contextlib.nullcontext,
    hooks_model=None,
    hooks: bool = True,
) -> dict[str, float]:
    """One evaluation pass of a model in eval mode: `task.evaluate` on each of `splits` that the
    data has (at most `limit_batches` batches each), under `amp()` (`autocast`), logged as
    "<split>/<name>"; then the task's evaluation hooks (SentEval: encoder + classifier fits) on
    `hooks_model` (the uncompiled model; default `net`; none without `hooks`), in float32, as
    "<prefix>/<name>". What the loop logs at every evaluation and scripts/eval.py prints for a
    checkpoint."""
    metrics = {}
    for split in splits:
        if split not in data.splits:
            continue
        batches = data.eval_batches(split)
        if limit_batches:
            batches = itertools.islice(batches, limit_batches)
        with amp():
            split_metrics = task.evaluate(net, batches)
        metrics.update({f"{split}/{k}": v for k, v in split_metrics.items()})
    hooks_model = net if hooks_model is None else hooks_model
    for prefix, values in (task.evaluation_hooks(hooks_model) if hooks else {}).items():
        metrics.update({f"{prefix}/{k}": v for k, v in values.items()})
    return metrics


def hms(seconds: float) -> str:
    """Seconds as h:mm:ss (? when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    m, sec = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{sec:02d}"


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
