"""GPU acceptance check of the paper-scale experiments: `make gpu-check` (docs/gpu.md).

Every paper-scale experiment (configs/experiment/*.yaml but *_cpu*) is composed by Hydra's
compose API as `python -m lnrepro.train experiment=<name> norm=<ln|bn|none>` composes it (but
task.senteval=null), built by lnrepro.build's functions and fed by its data module's
`synthetic_batch` (lnrepro.contracts.SyntheticBatch): the real shapes and dtypes, no data file.
CPU half (alone without a GPU; then no report unless --out): each config x norm builds at full
width (meta device) and, at reduced width (SMALL), trains a float32 and a bf16 update on the CPU,
recording the norm layers and LSTM/GRU modules it calls. GPU half: those LSTM/GRU calls on CUDA
against the CPU; timed updates of every experiment x norm x precision (32, bf16 autocast) x mode
(eager, compiled LSTM/GRU steps) at full width (s/update, peak memory, projected hours);
the norm layers of those runs keep float32 statistics under bf16 autocast. ~7 min on one GPU.
Needs torch, numpy, hydra-core and tqdm (lnrepro.build imports them), not the installed package.
    python scripts/gpu_check.py [--budget-s 360] [--updates 24] [--experiments draw ...]
                                [--compile-mode default] [--out results/gpu_check.md]
Exit status: 0 every check passed, 1 one failed (the report says which), 2 a package is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib.util
import logging
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # a bare GPU machine has the repository, not the package
NEEDED = {"torch": "torch", "hydra": "hydra-core", "yaml": "PyYAML", "tqdm": "tqdm"}
if missing := [pkg for mod, pkg in NEEDED.items() if importlib.util.find_spec(mod) is None]:
    print(
        f"error: gpu_check needs {', '.join(missing)}: pip install {' '.join(missing)}",
        file=sys.stderr,
    )
    sys.exit(2)  # (docs/gpu.md: what a bare GPU machine needs)

import hydra
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from lnrepro import build as run_build
from lnrepro.distributed import World
from lnrepro.errors import ConfigError
from lnrepro.nn.rnn import GRUCell, LSTMCell
from lnrepro.runlog import git_commit
from lnrepro.trainer import autocast

CONFIGS = ROOT / "configs"
NORMS, PRECISIONS = ("ln", "bn", "none"), ("32", "bf16")
DEFAULT_OUT = ROOT / "results" / "gpu_check.md"
SMALL_BATCH, SMALL_LENGTH = 4, 8
# the CPU half's reduced widths (full width: 1-75 s an update on a small CPU), per model config
SMALL = {
    "mlp": {"hidden": [32, 32]},
    "cnn": {"channels": [4, 8], "hidden": 16},
    "lstm_lm": {"emb_dim": 8, "hidden_size": 16},
    "draw": {"glimpses": 4, "enc_size": 16, "dec_size": 16, "z_size": 4},
    "handwriting": {"hidden_size": 16, "window_components": 2, "mixture_components": 3},
    "skip_thoughts": {"emb_dim": 8, "hidden_size": 16},
    "reader": {"emb_dim": 8, "hidden_size": 16},
    "order_embeddings": {"dim_word": 8, "dim": 16},
}
UPCAST_TOL = 2**-6  # relative to max |y|: a few bf16 roundings (2^-9 each) of the output
CELL_TOL = 1e-4  # float32, TF32 off: relative to each tensor's max |value|
START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {msg}", flush=True)


def compose(name: str, norm: str):
    """(config, reduced copy): what `python -m lnrepro.train experiment=<name> norm=<norm>`
    composes, without the SentEval hook; the copy at batch SMALL_BATCH with its model config's
    SMALL widths (an unknown key is an error)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        over = [f"experiment={name}", f"norm={norm}"]
        cfg = hydra_compose("train", overrides=over, return_hydra_config=True)
    GlobalHydra.instance().clear()
    small = {"data.batch_size": SMALL_BATCH}
    small |= {f"model.{k}": v for k, v in SMALL.get(cfg.hydra.runtime.choices.model, {}).items()}
    with open_dict(cfg):
        del cfg["hydra"]
        if "senteval" in cfg.task:
            cfg.task.senteval = None
    reduced = copy.deepcopy(cfg)
    for key, value in small.items():
        OmegaConf.update(reduced, key, value, merge=False)
    return cfg, reduced


def build(cfg, device, length: int | None = None):
    """(model, task, optimizer, batch, steps per epoch) of a composed config, in lnrepro.train's
    order and by its functions, the data module's synthetic_batch standing in for the data."""
    run_build.check_config_numbers(cfg)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    module = sys.modules[hydra.utils.get_object(data.pop("_target_")).__module__]
    if not callable(hook := getattr(module, "synthetic_batch", None)):
        raise ConfigError(f"{module.__name__} has no synthetic_batch (lnrepro.contracts)")
    norm = run_build.build_norm(cfg, data["batch_size"], World())
    task = run_build.build(cfg.task)
    torch.manual_seed(cfg.seed)
    syn = hook(data, data["batch_size"], torch.Generator().manual_seed(0), length)
    with torch.device(device):
        model = run_build.build(cfg.model, norm=norm, **syn.model_kwargs).to(device)
    if str(device) == "meta":
        return model, task, None, None, syn.steps_per_epoch
    optimizer, _, _ = run_build.build_optimizer(cfg.optim, model)
    return model, task, optimizer, mapped(lambda t: t.to(device), syn.batch), syn.steps_per_epoch


def mapped(fn, obj):
    """fn on every tensor in nested (named) tuples, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: mapped(fn, v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        items = [mapped(fn, v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


def tensors(obj) -> list[torch.Tensor]:
    out = []
    mapped(out.append, obj)
    return out


def update(cfg, model, task, opt, batch, precision: str) -> torch.Tensor:
    """One training step in the trainer's order: loss under autocast, finite check, backward,
    clipping, optimizer step."""
    with autocast(precision, tensors(batch)[0].device.type):
        loss, _ = task.training_step(model, batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {float(loss)}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.trainer.grad_clip:
        params = [p for p in model.parameters() if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(params, cfg.trainer.grad_clip)
    opt.step()
    return loss.detach()


def budget(cfg, steps_per_epoch) -> tuple[int | None, str]:
    """Updates of the config's full run and how they were counted."""
    if (t := cfg.trainer).max_steps or steps_per_epoch is None:
        return t.max_steps, f"max_steps {t.max_steps:,}" if t.max_steps else f"{t.epochs} epochs"
    return math.ceil(t.epochs * steps_per_epoch), f"{t.epochs} epochs x {steps_per_epoch:,}"


def is_norm(m) -> bool:
    return type(m).__module__.startswith("lnrepro.nn.norm")


def is_rnn(m) -> bool:
    return isinstance(m, (LSTMCell, GRUCell))


@contextlib.contextmanager
def recording(model, calls: dict, label: str, want):
    """Records the first call (forward, or an LSTM/GRU cell's scan) of each kind of module
    `want(m)` picks: calls[key] = (label, the module before the call, method, args, kwargs);
    key: the class (+ " unbiased"), for cells also the label and method."""

    def record(m, method, args, kwargs):
        kind = type(m).__name__ + " unbiased" * (getattr(m, "unbiased", 0) is True)
        key = f"{label}: {kind}.{method}" if is_rnn(m) else kind
        if key not in calls and args and isinstance(args[0], torch.Tensor):
            (c := copy.deepcopy(m)).__dict__.pop("scan", None)
            calls[key] = (label, c, method, *mapped(lambda t: t.detach().clone(), (args, kwargs)))

    def traced(m, scan):
        return lambda *args, **kwargs: (record(m, "scan", args, kwargs), scan(*args, **kwargs))[1]

    picked = [m for m in model.modules() if want(m)]
    hooks = [m.register_forward_pre_hook(lambda m, a, k: record(m, "forward", a, k),
                                         with_kwargs=True) for m in picked]  # fmt: skip
    for m in (m for m in picked if is_rnn(m)):
        m.scan = traced(m, m.scan)
    try:
        yield
    finally:
        for m in picked:
            m.__dict__.pop("scan", None)
        for h in hooks:
            h.remove()


def fail(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"FAILED: {type(e).__name__}: {text[0] if text else ''}"[:200]


def short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def cpu_check(name: str, norms: dict, rnns: dict) -> tuple[dict, list[dict]]:
    """One experiment: each norm's config builds at full width (meta device) and at reduced
    width trains a float32 and a bf16 update on the CPU (one thread: tiny ops), recording its
    norm and LSTM/GRU calls into `norms` and `rnns`. Returns (full-width facts, rows)."""
    info, rows, threads = {"experiment": name}, [], torch.get_num_threads()
    torch.set_num_threads(1)
    for norm in NORMS:
        row = {"experiment": name, "norm": norm, "fp32": "not run", "bf16": "not run"}
        rows.append(row)
        try:
            cfg, small = compose(name, norm)
            model, *_, spe = build(cfg, "meta")
            if norm == "ln":
                info["params"] = sum(p.numel() for p in model.parameters())
                info["recurrent"] = any(map(is_rnn, model.modules()))
                info["updates"], info["budget"] = budget(cfg, spe)
            model, task, opt, batch, _ = build(small, "cpu", SMALL_LENGTH)
            label = f"{name} {norm}"
            with recording(model, norms, label, is_norm), recording(model, rnns, label, is_rnn):
                row["fp32"] = float(update(small, model, task, opt, batch, "32"))
            row["bf16"] = float(update(small, model, task, opt, batch, "bf16"))
        except Exception as e:  # noqa: BLE001  (one row says what failed; the exit status too)
            row["fp32" if row["fp32"] == "not run" else "bf16"] = fail(e)
    torch.set_num_threads(threads)
    log(f"{name}: " + ", ".join(f"{r['norm']} {short(r['fp32'])} {short(r['bf16'])}" for r in rows))
    return info, rows


def upcast_row(key: str, call, device: torch.device) -> dict:
    """A norm layer on bf16 inputs of mean 256 and std 4 (bf16 values there are 2 apart) under
    bf16 autocast against its float32 self on the same values: bfloat16 statistics would be off
    by up to a quarter of a standard deviation, float32 ones leave the output's rounding."""
    label, module, _, args, kwargs = call
    x = 256 + 4 * torch.randn(args[0].shape, generator=torch.Generator().manual_seed(0))
    x, rest, kw = mapped(lambda t: t.to(device), (x.bfloat16(), args[1:], kwargs))
    row = {"norm": key, "where": f"{label}, {tuple(x.shape)}", "dtype": "-", "err": math.nan}
    try:
        with torch.no_grad():
            m = copy.deepcopy(module).to(device).train()
            ref = tensors(copy.deepcopy(m)(x.float(), *rest, **kw))[0]
            with torch.autocast(device.type, dtype=torch.bfloat16):
                y = tensors(m(x, *rest, **kw))[0]
    except Exception as e:  # noqa: BLE001  (a norm that fails under autocast is a finding)
        return {**row, "ok": False, "error": fail(e)}
    err = float((y.float() - ref).abs().max() / ref.abs().max())
    return {**row, "dtype": str(y.dtype)[6:], "err": err, "ok": err <= UPCAST_TOL}


def device_row(key: str, call, device: torch.device) -> dict:
    """A recorded LSTM/GRU call on `device` against the CPU in float32 (TF32 off, main sets it):
    outputs, input and parameter gradients of a fixed random projection, buffers (BN stats)."""
    _, module, method, args, kwargs = call
    got = []
    try:
        for dev in (torch.device("cpu"), device):
            m = copy.deepcopy(module).to(dev).train()
            a, kw = mapped(lambda t, d=dev: t.to(d).requires_grad_(t.is_floating_point()),
                           mapped(torch.clone, (args, kwargs)))  # fmt: skip
            outs = [o for o in tensors(getattr(m, method)(*a, **kw)) if o.is_floating_point()]
            g = torch.Generator().manual_seed(1)
            sum((o * torch.randn(o.shape, generator=g).to(dev)).sum() for o in outs).backward()
            grads = [t.grad for t in tensors((a, kw))] + [p.grad for p in m.parameters()]
            found = outs + grads + [b for b in m.buffers() if b.is_floating_point()]
            got.append([t.detach().cpu() for t in found if t is not None and t.numel()])
        err = max(float((b - a).abs().max() / a.abs().max().clamp(min=1e-12)) for a, b in zip(*got))
    except Exception as e:  # noqa: BLE001
        return {"cell": key, "err": math.nan, "ok": False, "error": fail(e)}
    return {"cell": key, "err": err, "ok": err <= CELL_TOL}


def compile_steps(model, mode: str) -> list:
    """torch.compile each LSTM/GRU cell's step (the loop over time stays eager), with fresh
    compiler caches: every row pays its own compilation."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
    for key in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, 64)
    cells = [m for m in model.modules() if isinstance(m, (LSTMCell, GRUCell))]
    for cell in cells:
        cell._step = torch.compile(cell._step, mode=mode)
    return cells


def timed(cfg, precision: str, compiled: bool, args, slice_s: float, device, spy) -> dict:
    """Warm-up updates, then as many timed ones as fit in slice_s (at least 3, at most
    args.updates), CUDA-synchronised; `spy(model)` (a recording) wraps the first update."""
    cells = []
    torch.cuda.empty_cache()  # the previous row's memory (freed when it returned)
    try:
        model, task, opt, batch, _ = build(cfg, device)
        cells = compile_steps(model, args.compile_mode) if compiled else []
        step = lambda: update(cfg, model, task, opt, batch, precision)
        if cuda := torch.device(device).type == "cuda":  # (else a test on the CPU)
            torch.cuda.reset_peak_memory_stats()
        t0 = clock()
        with spy(model) if spy else contextlib.nullcontext():
            first = float(step())
        step()  # (a second warm-up update)
        t1, _ = clock(), step()
        probe = max(clock() - t1, 1e-6)
        more = int(min(args.updates - 1, max(2, (slice_s - (t1 - t0) - probe) / probe)))
        t2, losses = clock(), [step() for _ in range(more)]
        s = (probe + clock() - t2) / (more + 1)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else math.nan
        row = {"status": "ok", "updates": more + 1, "s": s, "warmup_s": t1 - t0, "peak_gib": peak}
        row["loss"] = (first, float(losses[-1]))
        if compiled:
            row["status"] += f" ({torch._dynamo.utils.counters['stats']['unique_graphs']} graphs)"
        return row
    except Exception as e:  # noqa: BLE001  (one row says what failed; the exit status too)
        return {"status": fail(e)}
    finally:
        for cell in cells:
            cell.__dict__.pop("_step", None)


def clock() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def speed_rows(args, device, facts: dict, norms: dict) -> list[dict]:
    """Each experiment's rows in an equal share of the time left when it starts; the eager
    float32 rows of ln and bn record their norm layers into `norms`."""
    rows, end = [], time.perf_counter() + args.budget_s
    for k, name in enumerate(facts):
        deadline = time.perf_counter() + max(0.0, end - time.perf_counter()) / (len(facts) - k)
        cfgs = {norm: compose(name, norm)[0] for norm in NORMS}
        modes = (False, True) if facts[name].get("recurrent") else (False,)
        plan = [(n, p, c) for c in modes for p in PRECISIONS for n in NORMS]
        for j, (norm, precision, compiled) in enumerate(plan):
            row = {"experiment": name, "norm": norm, "precision": precision}
            row["mode"], left = "compiled" if compiled else "eager", deadline - time.perf_counter()
            spy = None
            if precision == "32" and not compiled and norm != "none":
                spy = lambda m, lb=f"{name} {norm}": recording(m, norms, lb, is_norm)
            if left <= 0:
                row["status"] = "not run (time cap)"
            else:
                row |= timed(
                    cfgs[norm], precision, compiled, args, left / (len(plan) - j), device, spy
                )
            rows.append(row)
            log(" | ".join(speed_cells(row, facts[name].get("updates"))))
    return rows


def speed_cells(x: dict, updates) -> list[str]:
    head = [x["experiment"], x["norm"], x["precision"], x["mode"]]
    if not x["status"].startswith("ok"):
        return head + [""] * 6 + [x["status"]]
    hours = "-" if updates is None else f"{x['s'] * updates / 3600:.1f}"
    loss = f"{x['loss'][0]:.4g} -> {x['loss'][1]:.4g}"
    cells = f"{x['updates']}|{x['s']:.4f}|{x['peak_gib']:.2f}|{hours}|{x['warmup_s']:.1f}|{loss}"
    return head + cells.split("|") + [x["status"]]


def machine(device) -> list[str]:
    now, p = datetime.datetime.now(datetime.timezone.utc), platform
    lines = [f"{now:%Y-%m-%d %H:%M} UTC, {p.node()}, {p.platform()}, git {git_commit()}"]
    lines += [f"python {p.python_version()}, torch {torch.__version__}, hydra {hydra.__version__}"]
    if device is not None:
        gpu, tf32 = torch.cuda.get_device_properties(device), torch.backends.cuda.matmul.allow_tf32
        lines += [f"GPU {gpu.name}, {gpu.total_memory / 2**30:.0f} GiB, TF32 matmul {tf32}"]
    return lines


def render(r: dict) -> str:
    """The report: one table per check (docs/gpu.md says what each column means)."""
    out = ["# GPU acceptance check (`make gpu-check`, scripts/gpu_check.py)", ""]
    out += [f"- {line}" for line in r["machine"]] + [""]
    if r["gpu_skipped"]:
        out += [f"**GPU half skipped: {r['gpu_skipped']}.** No GPU number below is measured.", ""]

    def table(title: str, head: str, rows: list) -> None:
        if rows:
            out.extend([f"## {title}", "", f"| {head} |", "|---" * (head.count("|") + 1) + "|"])
            out.extend(["| " + " | ".join(map(str, row)) + " |" for row in rows] + [""])

    table(
        "Paper-scale experiments (budget: trainer.max_steps, else epochs x updates per epoch)",
        "experiment | budget | updates | parameters",
        [
            [x["experiment"], x.get("budget"), f"{x.get('updates') or 0:,}",
             f"{x.get('params', 0) / 1e6:.2f}M"]
            for x in r["facts"].values()
        ],
    )  # fmt: skip
    table(
        f"CPU: a float32 and a bf16 update at REDUCED width (batch {SMALL_BATCH}, {SMALL_LENGTH} "
        "steps; bf16 informational)",
        "experiment | norm | float32 loss | bf16 loss",
        [[x["experiment"], x["norm"], short(x["fp32"]), short(x["bf16"])] for x in r["cpu"]],
    )
    cuda = r["upcast_device"] == "cuda"
    table(
        f"Norm statistics under bf16 autocast on {r['upcast_device']} (limit {UPCAST_TOL:.4f}"
        + ("" if cuda else "; informational") + ")",
        "norm | called in, input shape | output dtype | error | statistics",
        [
            [x["norm"], x["where"], x["dtype"], f"{x['err']:.2e}",
             x.get("error") or ("float32" if x["ok"] else "**NOT float32**")]
            for x in r["upcast"]
        ],
    )  # fmt: skip
    table(
        f"LSTM/GRU modules: CUDA against CPU (float32, TF32 off, limit {CELL_TOL:g})",
        "module | max error | status",
        [
            [x["cell"], f"{x['err']:.2e}", x.get("error") or ("ok" if x["ok"] else "**FAILED**")]
            for x in r.get("cells", [])
        ],
    )
    table(
        f"Training speed at paper scale. {r.get('settings')}",
        "experiment | norm | precision | mode | updates timed | s/update | peak GiB | projected "
        "hours | warm-up s | loss first -> last | status",
        [speed_cells(x, r["facts"][x["experiment"]].get("updates")) for x in r.get("speed", [])],
    )
    return "\n".join(out)


def failures(r: dict) -> list[str]:
    """Failed checks: the CPU half's builds and float32 updates; on a GPU the norm statistics,
    LSTM/GRU modules and speed rows (bf16 on the CPU is informational)."""
    bad = [f"{x['experiment']}/{x['norm']}" for x in r["cpu"] if isinstance(x["fp32"], str)]
    if r["upcast_device"] == "cuda":
        bad += [f"bf16 statistics of {x['norm']}" for x in r["upcast"] if not x["ok"]]
    bad += [f"CUDA vs CPU {x['cell']}" for x in r.get("cells", []) if not x["ok"]]
    speed = [x for x in r.get("speed", []) if x["status"].startswith("FAILED")]
    return bad + ["speed " + "/".join(speed_cells(x, None)[:4]) for x in speed]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-s", type=float, default=360.0, help="seconds for the speed rows")
    p.add_argument("--updates", type=int, default=24, help="most timed updates per row")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode of the cells")
    names = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml") if "_cpu" not in p.stem)
    p.add_argument("--experiments", nargs="+", default=names, choices=names)
    p.add_argument("--out", type=Path, help="report (default results/gpu_check.md with a GPU)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda") if torch.cuda.is_available() else None
    log(f"torch {torch.__version__}, {torch.cuda.get_device_name(device) if device else 'no GPU'}")
    r = {"machine": machine(device), "gpu_skipped": None if device else "no CUDA device"}
    r |= {"facts": {}, "cpu": [], "upcast_device": "cuda" if device else "cpu"}
    norms, rnns = {}, {}
    for name in args.experiments:
        r["facts"][name], rows = cpu_check(name, norms, rnns)
        r["cpu"] += rows
    if device:
        torch.backends.cuda.matmul.allow_tf32 = False  # (torch's default) float32 matmuls
        r["cells"] = [device_row(k, call, device) for k, call in rnns.items()]
        log("LSTM/GRU CUDA vs CPU: " + ", ".join(f"{x['cell']} {x['err']:.1e}" for x in r["cells"]))
        r["settings"] = (
            f"Up to {args.updates} timed updates per row after 2 warm-up ones "
            f"(compilation included), {args.budget_s:.0f} s for all rows; compiled: "
            f"torch.compile(mode={args.compile_mode!r}) of each LSTM/GRU cell step."
        )
        norms = {}  # on the GPU the norm check takes the layers of the paper-scale runs
        r["speed"] = speed_rows(args, device, r["facts"], norms)
    r["upcast"] = [upcast_row(k, call, device or torch.device("cpu")) for k, call in norms.items()]
    log("bf16 norm statistics: " + ", ".join(f"{x['norm']} {x['err']:.1e}" for x in r["upcast"]))
    out = args.out or (DEFAULT_OUT if device else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(r) + "\n")
    log(f"wrote {out}" if out else "no report written (CPU only; --out FILE writes one)")
    bad = failures(r)
    done = f"{len(bad)} FAILED: {', '.join(bad)}" if bad else "every check passed"
    log(f"done: {done}" + ("" if device else "; GPU half SKIPPED (no CUDA device)"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
