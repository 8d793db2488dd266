"""Resuming a run: `resume=true hydra.run.dir=<run dir>` continues the checkpoint in that
folder, started again with the overrides the run was started with (`with_saved_overrides`,
on the command line before Hydra composes), refused in one ConfigError line when this run's
config, thread count or world size would not continue it exactly (`checkpoint_to_resume`),
and the refused attempt leaves the folder's .hydra/ record as it was."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import shlex
from pathlib import Path

import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lnrepro import distributed
from lnrepro.artifacts import atomic_write, read_checkpoint
from lnrepro.errors import ConfigError, DataError, LnreproError, one_line
from lnrepro.trainer import STATE_KEYS

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


def check_resumable(
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


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path, config: dict, world) -> dict | None:
    """The checkpoint to continue (checked against this run's config, threads and world size),
    or None for a fresh run; a checkpoint without resume=true is one ConfigError."""
    ckpt_path = run_dir / "checkpoints" / "last.pt"
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
            check_resumable(ckpt["config"], config, threads, _hydra_choices(run_dir))
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


def load_into(trainer, ckpt: dict) -> None:
    """The checkpoint's state into the built trainer (model, optimizer, RNG, task, step)."""
    ckpt_path = trainer.run_dir / "checkpoints" / "last.pt"
    try:
        trainer.load_state_dict(ckpt)
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise DataError(
            f"{ckpt_path} does not fit this run's model or optimizer ({one_line(e)})"
        ) from None
    log.info("resumed %s at step %d (epoch %.2f)", trainer.run_dir, trainer.step, trainer.epoch)


# The run directory's .hydra/ files as they were before this process (with_saved_overrides):
# Hydra rewrites them before the job starts, so a refused resume would leave the refused
# config there as the run's record; checkpoint_to_resume puts them back when it refuses.
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
