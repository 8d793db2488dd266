"""The one entrypoint: build data, model (with the norm switch), task and optimizer from the
config, then run the one training loop.

    python -m lnrepro.train experiment=pi_mnist_cpu norm=ln|bn|none [key=value ...]
    python -m lnrepro.train -m experiment=pi_mnist_cpu norm=ln,bn,none data.batch_size=128,4
    python -m lnrepro.train resume=true hydra.run.dir=<run dir>   # its own overrides + these
    torchrun --nproc_per_node=2 -m lnrepro.train experiment=pi_mnist_cpu   # DDP: distributed.py
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shlex
import sys
from functools import partial
from pathlib import Path

import hydra
import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from lnrepro import distributed
from lnrepro.artifacts import atomic_write, read_checkpoint
from lnrepro.callbacks import check_run_keys, check_writable, lock_run_dir, unlock_run_dir
from lnrepro.data.common import cache_root
from lnrepro.data.verify import pop_notes
from lnrepro.errors import ConfigError, DataError, Interrupted, LnreproError, one_line
from lnrepro.nn.norm import Norm, NormSpec
from lnrepro.runlog import NullLogger, RunLogger, check_logger, git_commit
from lnrepro.trainer import STATE_KEYS, DistributedTrainer, Trainer, TrainerConfig

log = logging.getLogger("lnrepro")

# Keys that may differ between a checkpoint's config and the resuming run's config.
# (The data may move: models check what must match, e.g. the LM's vocabulary hash.)
# `threads` may change as a key (null and 4 can mean the same); the thread COUNT is checked
# apart (_thread_change): results are bit-exact only per thread count.
RESUME_MAY_CHANGE = (
    "resume",
    "resume_allow_different_threads",
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.progress",
    "trainer.line_seconds",
    "threads",
    "logger",
    "paths",
    "data.data_dir",
    "data.verify",
    "device",
    "optimized_metric",
    "trainer.compile",
    "trainer.compile_mode",
)


def build(node, **kwargs):
    """`hydra.utils.instantiate`, reporting a bad config value as one ConfigError line."""
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, LnreproError):
            raise cause from None
        raise ConfigError(str(e).replace("\n", " ")) from None
    except MissingMandatoryValue as e:
        raise ConfigError(f"a required config value is missing: {e.full_key} (???)") from None


# overrides the W&B run name already says (`<experiment>/<norm>_bs<batch>_s<seed>`)
NAMED_KEYS = ("norm", "seed", "data.batch_size")


def _job_identity() -> tuple[str, str]:
    """W&B job type (sweep for a multirun's job, else train) and the sweep's other overrides
    (Hydra's override_dirname without the keys the run name has)."""
    if not HydraConfig.initialized():
        return "train", ""
    hc = HydraConfig.get()
    parts = [
        o
        for o in str(hc.job.override_dirname or "").split(",")
        if o and o.split("=")[0] not in NAMED_KEYS
    ]
    return ("sweep" if hc.mode == RunMode.MULTIRUN else "train"), ",".join(parts)


def check_config_numbers(cfg: DictConfig) -> None:
    """A string where a number is wanted (optim.lr=abc, optim.scheduler.step_size=abc,
    data.val_size=abc, model.hidden=abc, norm.eps=abc, trainer.line_seconds=abc, ...) as one
    ConfigError line naming the key, before anything is built or trained: each node is checked
    against the signature of what it builds (lnrepro.checks.check_numbers); without this, such
    a value fails as a TypeError deep inside torch or the loop, or only when it is first used."""
    from lnrepro.checks import check_numbers

    def values(node) -> dict:
        out = {}
        for k in node:
            if OmegaConf.is_missing(node, k):
                continue  # ??? (filled from the data)
            try:
                v = node[k]
            except OmegaConfBaseException:
                continue  # an interpolation that does not resolve: reported where it is used
            out[k] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        return out

    def target(node):
        try:
            return hydra.utils.get_object(str(node._target_))
        except Exception:  # noqa: BLE001  (an unknown _target_: `build` says so in one line)
            return None

    built = [(key, cfg.get(key)) for key in ("data", "model", "task", "optim")]
    optim = cfg.get("optim")
    if isinstance(optim, DictConfig) and isinstance(optim.get("scheduler"), DictConfig):
        built.append(("optim.scheduler", optim.scheduler))
    for key, node in built:
        if isinstance(node, DictConfig) and "_target_" in node and (t := target(node)):
            check_numbers(values(node), t, key, skip=("scheduler", "interval"))
    check_numbers(values(cfg.trainer), TrainerConfig, "trainer")
    if isinstance(cfg.get("norm"), DictConfig):
        check_numbers(values(cfg.norm), NormSpec, "norm")


def build_optimizer(node, model):
    """The optimizer (a partial: `Adam(params, **cfg.optim)`) and its optional learning-rate
    schedule `optim.scheduler` (a partial over torch.optim.lr_scheduler, plus `interval`:
    step | epoch, popped before it is built). Bad values (lr < 0, ...) are one ConfigError."""
    optim = OmegaConf.to_container(node, resolve=True)
    sched = optim.pop("scheduler", None)
    try:
        optimizer = build(optim)(model.parameters())
        if sched is None:
            return optimizer, None, "step"
        interval = sched.pop("interval", "step")
        return optimizer, build(sched)(optimizer), interval
    except (TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"optim: {e}") from None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"device={name!r} is not usable here: {e}") from None
    return device


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


# keys added to the configs after checkpoints were written, with the value that means what those
# checkpoints did (a checkpoint without the key resumes when the run has that value)
ADDED_KEYS = {
    "norm.sync": False,
    "trainer.precision": 32,
    "trainer.eval_steps": [],
    "trainer.eval_at_fractions": [],
    "trainer.eval_log_spaced": False,
    "trainer.save_best": False,
}


def _check_resumable(
    saved: dict,
    now: dict,
    threads: tuple[int, int] | None = None,
    choices: tuple[dict, dict] | None = None,
) -> None:
    """A checkpoint's config (`saved`) against this run's (`now`): every key that may not
    change on resume (RESUME_MAY_CHANGE) and differs, and `threads` ((checkpoint's, this run's)
    thread counts, when they differ and that is not allowed), in one ConfigError line: each key
    with its old -> new value, then the overrides that make this run match the checkpoint.
    `choices` (the run's config-group choices when it started, and this run's): a switched
    group (norm=bn for an LN run) is matched by switching it back, not key by key."""
    a, b = _flat(saved), _flat(now)
    a.update({k: v for k, v in ADDED_KEYS.items() if k in b and k not in a})
    differ = sorted(
        k
        for k in set(a) | set(b)
        if a.get(k) != b.get(k)
        and not any(k == p or k.startswith(p + ".") for p in RESUME_MAY_CHANGE)
    )
    if not differ and threads is None:
        return
    parts, fixes = [], []
    if differ:
        shown = ", ".join(f"{k}: {_shown(a, k)} -> {_shown(b, k)}" for k in differ)
        n = len(differ)
        parts.append(
            f"the config differs from the checkpoint's in {n} key{'s' * (n > 1)} ({shown})"
        )
        groups = _switched_groups(*choices) if choices else {}
        fixes += [hydra_override(g, c) for g, c in groups.items()]
        if not set(groups) & {"experiment", "debug", "sweep"}:  # (these set keys anywhere)
            fixes += dict.fromkeys(
                _override_to_match(k, saved, a, b) for k in differ if k.split(".")[0] not in groups
            )
    way = ""
    if threads is not None:
        old, new = threads
        parts.append(
            f"the checkpoint was trained with {old} thread{'s' * (old != 1)} and this run "
            f"{new}; results are bit-exact only per thread count"
        )
        fixes.append(f"threads={old}")
        way = f" (or resume_allow_different_threads=true instead of threads={old})"
    raise ConfigError(
        f"cannot resume: {' and '.join(parts)}. To continue the checkpoint add "
        f"{' '.join(shlex.quote(f) for f in fixes)}{way}, or start a new run in another "
        "hydra.run.dir"
    )


_ABSENT = "(absent)"


def _switched_groups(saved: dict, now: dict) -> dict:
    """{group: the run's choice} for the config groups (norm, optim, data, experiment, ...)
    whose choice differs, except Hydra's own and those that may change on resume."""
    return {
        g: c
        for g, c in saved.items()
        if g in now
        and now[g] != c
        and not g.startswith("hydra/")
        and g.split("/")[0] not in RESUME_MAY_CHANGE
    }


def _hydra_choices(run_dir: Path) -> tuple[dict, dict] | None:
    """The config-group choices the run started with (its .hydra/hydra.yaml as it was before
    this process, with_saved_overrides) and this run's; None outside the entrypoint."""
    before = next(
        (data for path, data in _kept_hydra_files(run_dir) if path.name == "hydra.yaml"), None
    )
    if before is None or not HydraConfig.initialized():
        return None
    try:
        saved = yaml.safe_load(before)["hydra"]["runtime"]["choices"]
        now = OmegaConf.to_container(HydraConfig.get().runtime.choices)
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    return (saved, now) if isinstance(saved, dict) and isinstance(now, dict) else None


def _shown(flat: dict, key: str) -> str:
    return repr(flat[key]) if key in flat else _ABSENT


def _override_to_match(key: str, saved: dict, a: dict, b: dict) -> str:
    """The override that gives `key` the checkpoint's value: key=value; a key this config
    lacks: +key=value; a key the checkpoint lacks (the code gained it since): key=null, which
    compares equal (`resume` reads a missing key as null). Where one side holds a value in place
    of a whole node (optim.scheduler: null against a scheduler), the node is set as a whole."""
    parts = key.split(".")
    for i in range(1, len(parts)):
        prefix = ".".join(parts[:i])
        if prefix in b or prefix in a:  # a leaf on one side, a node on the other
            node = saved
            for p in parts[:i]:
                node = node.get(p) if isinstance(node, dict) else None
            return hydra_override(prefix, node)
    if key not in a:
        return hydra_override(key, None)
    return hydra_override(key, a[key], add=key not in b)


_BARE = re.compile(r"[A-Za-z_/][\w./-]*")


def hydra_override(key: str, value, add: bool = False) -> str:
    """`key=value` in Hydra's override syntax (`+key=value` with `add`), for a value as a
    config holds it: null, true, 0.001, adam, 'a b', '1.5' (a string that reads as a number),
    [0.9,0.999], {a:1}. Hydra parses it back to `value`."""
    return f"{'+' if add else ''}{key}={_hydra_value(value)}"


def _hydra_value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(map(_hydra_value, v)) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    if _BARE.fullmatch(s) and s.lower() not in ("true", "false", "null", "nan", "inf"):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _thread_change(saved: int | None, now: int, allow: bool) -> tuple[int, int] | None:
    """(checkpoint's, this run's) thread count when they differ and that is not allowed; with
    resume_allow_different_threads=true a warning and None."""
    if saved is None or saved == now:
        return None
    if not allow:
        return saved, now
    log.warning(
        "resuming although the checkpoint was trained with %d thread%s and this run %d; results "
        "are bit-exact only per thread count (resume_allow_different_threads=true)",
        saved, "s" * (saved != 1), now,
    )  # fmt: skip
    return None


def _load_checkpoint(path: Path) -> dict:
    ckpt = read_checkpoint(path)
    missing = [
        k for k in (*STATE_KEYS, "config", "meta") if not isinstance(ckpt, dict) or k not in ckpt
    ]
    if missing:
        raise DataError(
            f"{path} is not a complete checkpoint of this project (missing: "
            f"{', '.join(missing)}): delete it, or choose another hydra.run.dir"
        )
    return ckpt


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train one configured run in `run_dir`, which is locked for it (a second run into it
    stops with one line); returns the summary (as in summary.json)."""
    check_run_keys(cfg)
    run_dir = Path(run_dir)
    is_main = distributed.current().is_main  # under torchrun rank 0 alone writes the run dir
    if is_main:
        check_writable(run_dir)
    took = lock_run_dir(run_dir) if is_main else False
    try:
        return _run(cfg, run_dir)
    finally:
        if took:
            unlock_run_dir(run_dir)


def _run(cfg: DictConfig, run_dir: Path) -> dict:
    check_writable(cache_root(), "caches", "set LNREPRO_CACHE to a writable folder")
    config = OmegaConf.to_container(cfg, resolve=True)
    check_logger(config["logger"])
    check_config_numbers(cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    # Subnormal floats (below 1.2e-38) run ~20x slower on x86 CPUs: Adam's running averages of
    # dead ReLU units decay into them (46-84 % of exp_avg in the first two pi-MNIST layers after
    # a batch-4 run, one Adam step 34 ms instead of 1.6 ms); flushed to zero, they change no
    # float32 weight (an update of 1e-38 / (sqrt(v) + 1e-8) is far below a weight's ulp).
    torch.set_flush_denormal(True)
    world = distributed.current()
    device = distributed.device_for(resolve_device(str(cfg.device)), world)
    batch_size = cfg.data.get("batch_size")  # the global batch, split over the processes
    norm = _norm_spec(cfg, batch_size, world)
    trainer_cfg = TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
    ckpt_path = run_dir / "checkpoints" / "last.pt"
    ckpt = _checkpoint_to_resume(cfg, ckpt_path, config, world)

    pop_notes()  # (what an earlier run in this process read is not this run's)
    task, data, model = _build_parts(cfg, norm, device, world)
    optimizer, scheduler, interval = build_optimizer(cfg.optim, model)
    meta = {
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "experiment": cfg.name,
        "norm": norm.kind,
        "batch_size": batch_size,
        "n_params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),  # results are bit-exact per thread count
        **distributed.bn_meta(norm, batch_size, world),  # world size, BN statistics
        "data_notes": pop_notes(),  # files read that are not the originals (data.verify)
    }
    logger = _logger(cfg, run_dir, config, meta, ckpt, task, world)
    make = Trainer if not world.active else partial(DistributedTrainer, world=world)
    trainer = make(model, task, data, optimizer, trainer_cfg, logger, run_dir,
                   checkpoint_extra={"config": config, "meta": meta}, scheduler=scheduler,
                   scheduler_interval=interval)  # fmt: skip
    exit_code = 1
    try:
        if ckpt:
            _resume(trainer, ckpt, ckpt_path)
        log.info(
            "%s | norm=%s batch=%s seed=%s | %d params | %d steps (%d per epoch) | %s",
            cfg.name, norm.kind, batch_size, cfg.seed, meta["n_params"], trainer.total_steps,
            data.steps_per_epoch, run_dir,
        )  # fmt: skip
        summary = trainer.fit()
        logger.write_summary(summary)
        exit_code = 0
        return summary
    finally:
        logger.close(exit_code)


def _norm_spec(cfg: DictConfig, batch_size, world) -> Norm:
    """The run's norm (lnrepro.nn.norm.Norm, the class of `norm._target_`); a norm that cannot
    train with this batch size (BN at batch size 1) is one ConfigError."""
    norm = NormSpec.from_cfg(cfg.norm, batch_size)
    distributed.rank_batch(batch_size, world, norm)
    norm.check_batch(batch_size)
    return norm


def _checkpoint_to_resume(cfg: DictConfig, ckpt_path: Path, config: dict, world) -> dict | None:
    """The checkpoint to continue (checked against this run's config, threads and world size),
    or None for a fresh run; a checkpoint without resume=true is one ConfigError."""
    run_dir = ckpt_path.parent.parent
    if ckpt_path.exists():
        if not cfg.resume:
            if world.is_main:
                _restore_hydra_files(run_dir)
            raise ConfigError(
                f"{run_dir} already holds a checkpoint: pass resume=true to continue it, or "
                "choose another hydra.run.dir"
            )
        try:
            ckpt = _load_checkpoint(ckpt_path)
            threads = _thread_change(
                ckpt["meta"].get("threads"),
                torch.get_num_threads(),
                cfg.resume_allow_different_threads,
            )
            _check_resumable(ckpt["config"], config, threads, _hydra_choices(run_dir))
            distributed.check_resume(ckpt["meta"].get("world_size"), world)
        except LnreproError:
            if world.is_main:
                _restore_hydra_files(run_dir)
            raise
        return ckpt
    if cfg.resume:  # a warning only when an earlier run left files but no checkpoint (a
        # figure target passes resume=true to every job, and a clean tree has nothing to resume)
        fresh = not (run_dir / "metrics.jsonl").exists()
        (log.info if fresh else log.warning)(
            "resume=true but %s has no checkpoint: starting from step 0", run_dir
        )
    return None


def _build_parts(cfg: DictConfig, norm: NormSpec, device, world):
    """Task, data module and model (lnrepro.contracts), in the order that fixes the random
    numbers: the task first (it checks its own files, e.g. SentEval, before the data loads),
    then the seed, the data, the model."""
    task = build(cfg.task)
    torch.manual_seed(cfg.seed)
    data = build(cfg.data, seed=cfg.seed, device=device)
    # shape fields the data decides (vocab_size, image size, ...) fill the model config's `???`
    dims = data.model_kwargs
    for k, v in dims.items():
        if k in cfg.model and not OmegaConf.is_missing(cfg.model, k) and cfg.model[k] != v:
            raise ConfigError(f"model.{k}={cfg.model[k]} does not match the data ({k}={v})")
    model = build(cfg.model, norm=norm, **dims).to(device)
    norm.check_model(model)  # a model that ignored a part of its norm: one line, not a silent run
    return distributed.wrap(task, data, model, world, device, cfg.seed)


def _logger(cfg: DictConfig, run_dir: Path, config: dict, meta: dict, ckpt, task, world):
    """metrics.jsonl + W&B on the main process; nothing on the others."""
    if not world.is_main:
        return NullLogger()
    logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
    job_type, overrides = _job_identity()
    logger_cfg["job_type"] = logger_cfg.get("job_type") or job_type
    return RunLogger(run_dir, config, logger_cfg, {**meta, "overrides": overrides},
                     resume_step=ckpt["step"] if ckpt else None,
                     higher_is_better=task.higher_is_better)  # fmt: skip


def _resume(trainer, ckpt: dict, ckpt_path: Path) -> None:
    try:
        trainer.load_state_dict(ckpt)
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise DataError(
            f"{ckpt_path} does not fit this run's model or optimizer ({one_line(e)})"
        ) from None
    log.info("resumed %s at step %d (epoch %.2f)", trainer.run_dir, trainer.step, trainer.epoch)


# absolute, so that the `lnrepro-train` console script finds it too (Hydra resolves a relative
# path against the module, pkg://configs, when the app is not run as __main__)
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig):
    hc = HydraConfig.get()
    try:
        with distributed.process_group(str(cfg.get("device", "auto"))):  # torchrun: DDP
            summary = run(cfg, distributed.run_dir(hc.runtime.output_dir))
        key = cfg.get("optimized_metric")  # e.g. best.val/err: returned to the sweeper (Optuna)
        return objective(summary, key) if key else None
    except LnreproError as e:
        if distributed.env_world().is_main or not isinstance(e, ConfigError):
            log.error("%s", e)  # (a config error: every rank has it, rank 0 says it)
        if hc.mode == RunMode.MULTIRUN and not isinstance(e, Interrupted):
            # the other jobs still run; the sweep then exits with e.exit_code (cli). Returned,
            # not raised: Hydra would add an "Error executing job" line to the one logged here
            _FAILED.append(e.exit_code)
            return JobFailed(e.exit_code, str(e))
        sys.exit(e.exit_code)  # a signal stops the whole sweep, not only this job


class JobFailed:
    """What a multirun job that stopped on an LnreproError returns (its line is logged): the
    sweep goes on, then exits with the largest code (`_one_line`). float() is nan, so that a
    sweeper that optimises the return value (Optuna) records the trial as failed."""

    def __init__(self, exit_code: int, message: str):
        self.exit_code, self.message = exit_code, message

    def __float__(self) -> float:
        return float("nan")

    def __repr__(self) -> str:
        return f"JobFailed({self.exit_code}: {self.message})"


_FAILED: list[int] = []  # exit codes of this process's failed jobs (in-process launchers)


def _failed_codes(returns) -> list[int]:
    """Exit codes of failed jobs: this process's, and those a launcher brought back from its
    workers (the nested lists of JobReturn that `Hydra.multirun` returns)."""
    codes = list(_FAILED)
    stack = [returns]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(getattr(item, "_return_value", None), JobFailed):
            codes.append(item._return_value.exit_code)
    return codes


def objective(summary: dict, key: str) -> float:
    """The summary value a sweeper optimises: `optimized_metric: best.val/err` is
    summary["best"]["val/err"] (the lowest validation error); a top-level key such as
    `wall_time` works too. An unknown key is one ConfigError line."""
    section, _, metric = key.partition(".")
    node = summary.get(section)
    value = node.get(metric) if isinstance(node, dict) and metric else node
    if not isinstance(value, (int, float)):
        known = [f"{k}.{m}" for k in ("best", "final") for m in summary.get(k) or {}]
        raise ConfigError(
            f"optimized_metric={key} is not in this run's summary (known: {', '.join(known)})"
        )
    return float(value)


def _one_line(run_and_report):
    """Hydra's `run_and_report` (which prints a config that does not compose over 10-20 lines
    and exits 1), except that such a config (an unknown group option or key, an override that
    does not parse) is one line and exit 2, as every other bad value; and a sweep whose jobs
    failed with an LnreproError (each logged by its job, `JobFailed`) exits with the largest
    code. HYDRA_FULL_ERROR=1
    still shows Hydra's full report."""

    def report(func):
        def call():
            try:
                returns = func()
                codes = _failed_codes(returns)
                if codes:
                    sys.exit(max(codes))
                return returns
            except LnreproError as e:
                sys.exit(e.exit_code)
            except (HydraException, OmegaConfBaseException) as e:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"error: {one_line(e)}", file=sys.stderr)
                sys.exit(2)

        return run_and_report(call)

    return report


# The run directory's .hydra/ files as they were before this process (with_saved_overrides):
# Hydra rewrites them before the job starts, so a refused resume would leave the refused
# config there as the run's record; _checkpoint_to_resume puts them back when it refuses.
_HYDRA_FILES: dict[Path, bytes] = {}


def with_saved_overrides(argv: list[str]) -> list[str]:
    """`resume=true hydra.run.dir=<dir>` alone resumes a run: the overrides it was started with
    (<dir>/.hydra/overrides.yaml, which Hydra saves for every run) go first, then those given
    here, which replace a saved one of the same key (e.g. a new trainer.max_steps) or add to
    them. Done on the command line, before Hydra composes: Hydra builds the config once, from
    the overrides it is given, and then records them (.hydra/, the job's name in a sweep);
    composing a second time inside the job would leave that record on the partial command
    line. It stays one run (hydra.mode=RUN), also for the folder of a sweep's job. A multirun
    (its jobs have their own folders), a run dir that is not plain text, or no saved file
    leaves argv as it is. Also keeps the .hydra/ files of a run dir that holds a
    checkpoint (_HYDRA_FILES), for a refused resume to restore."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    if "-m" in argv or "--multirun" in argv:
        return argv
    parser = OverridesParser.create()
    given = {}
    for arg in argv:
        if arg.startswith("-") or "=" not in arg and not arg.startswith("~"):
            continue
        try:
            (o,) = parser.parse_overrides([arg])
        except HydraException:
            return argv  # Hydra reports it
        given[(o.key_or_group, o.package)] = o
    run_dir = given.get(("hydra.run.dir", None))
    run_dir = run_dir.value() if run_dir is not None and not run_dir.is_delete() else None
    if not isinstance(run_dir, str) or "${" in run_dir:
        return argv
    hydra_dir = Path(run_dir).resolve() / ".hydra"
    if (hydra_dir.parent / "checkpoints" / "last.pt").exists() and hydra_dir.is_dir():
        _HYDRA_FILES.update({f: f.read_bytes() for f in hydra_dir.iterdir() if f.is_file()})
    resume = given.get(("resume", None))
    if resume is None or str(resume.value()).lower() != "true":
        return argv
    try:
        saved = yaml.safe_load((hydra_dir / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return argv
    if not isinstance(saved, list):
        return argv
    added = []
    for text in map(str, saved):
        try:
            (o,) = parser.parse_overrides([text])
        except HydraException:
            return argv  # a hand-edited file: resume as given
        if (o.key_or_group, o.package) not in given:
            added.append(text)
    if not added:
        return argv
    print(
        f"resuming {run_dir} with its overrides from {hydra_dir / 'overrides.yaml'} (those "
        f"given here win): {' '.join(shlex.quote(a) for a in added)}"
    )
    # one run, also for a job of a sweep (its overrides hold sweep=<name>, which sets
    # hydra.mode: MULTIRUN and would start the whole sweep again)
    mode = [] if ("hydra.mode", None) in given else ["hydra.mode=RUN"]
    return added + mode + argv


def _kept_hydra_files(run_dir: Path) -> list[tuple[Path, bytes]]:
    """The .hydra/ files of `run_dir` that with_saved_overrides kept, with their contents."""
    return [(p, d) for p, d in _HYDRA_FILES.items() if p.parent.parent == run_dir.resolve()]


def _restore_hydra_files(run_dir: Path) -> None:
    """Put back the run dir's .hydra/ files as they were before this refused attempt."""
    for path, data in _kept_hydra_files(run_dir):
        with contextlib.suppress(OSError):
            atomic_write(path, lambda f, data=data: f.write(data))


def cli() -> None:
    """`python -m lnrepro.train`: Hydra's entrypoint with one-line errors."""
    import hydra._internal.utils as hydra_utils  # the function Hydra's main calls by name

    hydra_utils.run_and_report = _one_line(hydra_utils.run_and_report)
    sys.argv[1:] = with_saved_overrides(sys.argv[1:])  # resume=true hydra.run.dir=<dir>
    try:  # ranks > 0 of a torchrun: Hydra writes nothing into the run dir
        sys.argv[1:] = distributed.hydra_args(sys.argv[1:])
    except LnreproError as e:
        if distributed.env_world().is_main:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    main()


if __name__ == "__main__":
    cli()
