"""Evaluate a training checkpoint of any experiment on its run's data; prints one metric a line.

    python scripts/eval.py <run>/checkpoints/last.pt|best.pt [--split val,test] [--json FILE]
        [--threads N] [--device cpu] [--no-hooks] [key=value ...]
    make eval CKPT=<run>/checkpoints/best.pt [SPLIT=val,test] [ARGS="--json out.json"]

The model is rebuilt from the checkpoint's own config, and the data module and task are built
as the training entrypoint builds them (lnrepro.train: the same seed, so the same validation
split), then `task.evaluate` runs on each asked split and the task's evaluation hooks run as
at every evaluation of the run (lnrepro.trainer.evaluate_model). By default: the splits the run
evaluated, with its trainer.limit_eval_batches, precision, device and thread count, so the
validation metrics printed for last.pt are those the run logged at its last evaluation.

`key=value` overrides the checkpoint's config, e.g. data.data_dir=/elsewhere (its paths are
saved resolved) or trainer.limit_eval_batches=null (whole splits).

Skip-thoughts: SentEval is its task's evaluation hook. --tasks MR SICK, --senteval DIR,
--folds, --inner-folds and --max-examples set its options (task.senteval); a task whose files
are missing is reported as skipped. `--split none` runs the hooks alone (make eval-skip).
A missing or unreadable checkpoint, or a bad option, is one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lnrepro import REPO_ROOT as ROOT
from lnrepro import distributed
from lnrepro.artifacts import atomic_write_text, read_run_checkpoint
from lnrepro.build import build_norm, build_parts, resolve_device
from lnrepro.errors import ConfigError, DataError, LnreproError, one_line
from lnrepro.trainer import TrainerConfig, autocast, evaluate_model

# --option -> task.senteval key (skip-thoughts); scripts/eval_skip.py's options
SENTEVAL_OPTIONS = {
    "tasks": "tasks",
    "senteval": "data_dir",
    "folds": "folds",
    "inner_folds": "inner_folds",
    "max_examples": "max_examples",
}


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # a usage error: one line (--help shows the usage)
        self.exit(2, f"error: {message} (--help: the usage)\n")


def parse_args(argv=None) -> argparse.Namespace:
    p = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="<run>/checkpoints/last.pt or best.pt (or the run directory)")
    p.add_argument("overrides", nargs="*", help="key=value: changes to the checkpoint's config")
    p.add_argument(
        "--split",
        action="append",
        default=None,
        help="splits to evaluate: val,test (or --split val --split test; none: the hooks alone); "
        "default: the run's trainer.eval_splits and final_eval_splits",
    )
    p.add_argument("--json", default=None, help="also write the metrics to this file")
    p.add_argument("--threads", type=int, default=None, help="default: the run's thread count")
    p.add_argument("--device", default=None, help="default: the run's device setting")
    p.add_argument("--no-hooks", action="store_true", help="no evaluation hooks (SentEval)")
    st = p.add_argument_group("SentEval (skip-thoughts checkpoints)")
    st.add_argument("--tasks", nargs="+", default=None)
    st.add_argument("--senteval", default=None, help="the SentEval folder")
    st.add_argument("--folds", type=int, default=None)
    st.add_argument("--inner-folds", type=int, default=None)
    st.add_argument("--max-examples", type=int, default=None)
    return p.parse_intermixed_args(argv)  # key=value may come after the options


def log_to_stdout() -> None:
    """The library's INFO lines (e.g. the SentEval table) to stdout, warnings to stderr (the
    scripts' own logging; a caller that imports `main` keeps its own)."""
    out = logging.StreamHandler(sys.stdout)
    out.setLevel(logging.INFO)
    out.addFilter(lambda r: r.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter("warning: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [out, err]
    root.setLevel(logging.INFO)


_ABSENT = object()


def run_config(ckpt: dict, overrides: list[str]):
    """The checkpoint's config with `key=value` overrides (a key it lacks: ConfigError)."""
    cfg = OmegaConf.create(ckpt["config"])
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item or OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            raise ConfigError(
                f"override {item!r}: give key=value, a key of the checkpoint's config"
            )
    try:
        cfg.merge_with_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise ConfigError(f"override: {one_line(e)}") from None
    return cfg


def senteval_options(cfg, args) -> dict | None:
    """Skip-thoughts: the run's task.senteval with --tasks etc. applied (None: no SentEval). It
    is taken out of the config before the task is built and given to the task after, so that a
    SentEval task whose files are absent is reported as skipped (as eval-skip always did)
    rather than stopping the evaluation. Those options on another task: ConfigError."""
    given = {k: getattr(args, k) for k in SENTEVAL_OPTIONS if getattr(args, k) is not None}
    if "senteval" not in cfg.task:
        if given:
            options = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise ConfigError(f"{options}: SentEval options, for skip-thoughts checkpoints only")
        return None
    saved = cfg.task.senteval
    if saved is None and not given:
        return None
    data = os.environ.get("LNREPRO_DATA", str(ROOT / "data"))
    opts = OmegaConf.to_container(saved) if saved is not None else {}
    opts.setdefault("data_dir", str(Path(data) / "senteval"))
    opts.update({SENTEVAL_OPTIONS[k]: v for k, v in given.items()})
    cfg.task.senteval = None
    return opts


def evaluate_checkpoint(args, require_model: str | None = None) -> dict:
    """{checkpoint, experiment, norm, step, metrics} of the checkpoint `args.ckpt`."""
    path, ckpt = read_run_checkpoint(args.ckpt)
    target = str((ckpt["config"].get("model") or {}).get("_target_"))
    if require_model and not target.endswith(require_model):
        raise ConfigError(f"not a {require_model} checkpoint (model {target}): use scripts/eval.py")
    cfg = run_config(ckpt, args.overrides)
    trainer = TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
    threads = args.threads or (ckpt.get("meta") or {}).get("threads")
    if threads:  # results are bit-exact per thread count: the run's by default
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as lnrepro.train: subnormal floats flushed to zero
    device = resolve_device(str(args.device or cfg.get("device", "auto")))
    world = distributed.current()
    norm = build_norm(cfg, cfg.data.get("batch_size"), world)
    senteval = senteval_options(cfg, args)
    task, data, model = build_parts(cfg, norm, device)
    if senteval is not None:
        task.senteval = senteval
    try:
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise DataError(f"{path} does not fit its config's model ({one_line(e)})") from None
    if args.split is None:
        splits = [*trainer.eval_splits, *trainer.final_eval_splits]
    else:
        splits = [s for item in args.split for s in item.split(",") if s and s != "none"]
        unknown = [s for s in splits if s not in data.splits]
        if unknown:
            raise ConfigError(
                f"no split {', '.join(unknown)} in this data (splits: {', '.join(data.splits)})"
            )
    model.eval()
    metrics = evaluate_model(
        task,
        data,
        model,
        splits,
        trainer.limit_eval_batches,
        amp=lambda: autocast(trainer.precision, device.type),
        hooks=not args.no_hooks,
    )
    return {
        "checkpoint": str(path),
        "experiment": cfg.get("name"),
        "norm": norm.kind,
        "step": ckpt.get("step"),
        "metrics": metrics,
    }


def main(argv=None, require_model: str | None = None) -> int:
    args = parse_args(argv)
    try:
        result = evaluate_checkpoint(args, require_model)
        print(
            f"{result['checkpoint']}: {result['experiment']} norm={result['norm']} "
            f"step {result['step']}"
        )
        for k, v in result["metrics"].items():  # full precision: as metrics.jsonl has it
            print(f"{k} {v!r}")
        if args.json:
            atomic_write_text(Path(args.json), json.dumps(result, indent=1) + "\n")
    except LnreproError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    log_to_stdout()
    sys.exit(main())
