"""GPU acceptance check of the paper-scale experiments (issue 16, item 5): `make gpu-check`.

Runs on any machine with a CUDA GPU, also a bare one with only Python, torch and numpy (no
Hydra, omegaconf, PyYAML, W&B or datasets; no dataset files; no network). For every paper-scale
experiment (configs/experiment/<name>.yaml) and norm (ln, bn, none) it builds the model from the
config's sizes, feeds synthetic batches of the real shapes, and runs a few dozen updates with the
experiment's optimizer, gradient clipping and task loss (lnrepro.tasks), at precision 32 and
bf16 (torch.autocast), eager and, for the recurrent models, with each LSTM/GRU cell step
compiled (torch.compile). It records s/update (CUDA-synchronised, after warm-up), peak memory
and the hours the config's full budget of updates would take, checks every recurrent cell's
CUDA output and gradients against the CPU (float32), checks that the norms compute their
statistics in float32 under bf16 autocast, and writes results/gpu_check.md. About 7 minutes
on one modern GPU: every experiment gets its share of the time budget, which cuts the updates
per row (a row whose compilation no longer fits says so).

The CPU half always runs (on a machine without a GPU it is all that runs, it says that the GPU
half was skipped, and it writes no file unless --out is given): the config reader on every
experiment config; every paper-scale model built at full width on the meta device (parameters,
matmul FLOPs and eager ops per update, a FLOP-based cost estimate); two float32 updates per
experiment and norm at REDUCED width on tiny batches (full width takes 1-75 s an update on a
small CPU), then one bf16 update under CPU autocast; the bf16 norm check (on the GPU if any).

    python scripts/gpu_check.py [--budget-s 360] [--updates 24] [--experiments draw ...]
                                [--compile-mode default] [--out results/gpu_check.md]
Exit status: 0 when every check passed, 1 when one failed (the report says which); bf16 results
computed on the CPU are informational, those on the GPU count.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import functools
import importlib
import logging
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# A bare GPU machine has the repository but not the package installed (no pip install -e .),
# so this script, and only this script, imports the project's source from <repo>/src directly.
# lnrepro/__init__.py and lnrepro/errors.py import omegaconf / hydra only when installed.
sys.path.insert(0, str(ROOT / "src"))

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from lnrepro.data.books import Triples
from lnrepro.data.text import EOS_ID, PAD_ID
from lnrepro.nn.norm import BatchNorm, GroupLN, LayerNorm, NormSpec, SeqBatchNorm
from lnrepro.nn.rnn import GRU, LSTM, GRUCell, LSTMCell

CONFIGS = ROOT / "configs"
PAPER = (
    "pi_mnist",
    "cnn_mnist",
    "cnn_cifar10",
    "lm_ptb_char",
    "lm_ptb_word",
    "draw",
    "handwriting",
    "skip_thoughts",
)
NORMS = ("ln", "bn", "none")
PRECISIONS = ("32", "bf16")
DEFAULT_OUT = ROOT / "results" / "gpu_check.md"
START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f}s] {msg}", flush=True)


# ---- a small YAML reader: PyYAML is not part of a bare torch install ----------------------------


class ConfigReadError(Exception):
    """A config this script cannot read or use (one line naming the file or key)."""


def load_yaml(path: Path):
    """A YAML file as plain dicts/lists: PyYAML when installed, else `parse_yaml`."""
    return copy.deepcopy(_load_yaml(Path(path)))


@functools.cache
def _load_yaml(path: Path):
    text = path.read_text()
    try:
        import yaml
    except ImportError:
        return parse_yaml(text, str(path))
    return yaml.safe_load(text)


def parse_yaml(text: str, name: str = "<yaml>"):
    """The YAML subset of configs/: block mappings and sequences, flow [..] and {..}, plain and
    quoted scalars, `|` / `>` block scalars, comments. Anything else is a ConfigReadError."""
    lines = _lines(text, name)
    if not lines:
        return None
    value, i = _block(lines, 0, lines[0][1], name)
    if i != len(lines):
        raise ConfigReadError(f"{name}:{lines[i][0]}: unexpected indentation")
    return value


def _lines(text: str, name: str) -> list:
    """(line number, indent, text, block scalar or None) of each non-empty line."""
    raw, out, k = text.splitlines(), [], 0
    while k < len(raw):
        body = _strip_comment(raw[k])
        k += 1
        if not body.strip():
            continue
        indent = len(body) - len(body.lstrip(" "))
        if "\t" in body[: indent + 1]:
            raise ConfigReadError(f"{name}:{k}: tab in indentation")
        m = re.match(r"^(.*:)\s+([|>])[-+]?$", body.strip())
        if m:
            block, k = _block_scalar(raw, k, indent, m.group(2))
            out.append((k, indent, m.group(1), block))
            continue
        out.append((k, indent, body.strip(), None))
    return out


def _block_scalar(raw: list, k: int, indent: int, style: str):
    """The lines of a `|` / `>` scalar after line k - 1 (those indented deeper, or blank)."""
    body = []
    while k < len(raw) and (not raw[k].strip() or len(raw[k]) - len(raw[k].lstrip()) > indent):
        body.append(raw[k])
        k += 1
    while body and not body[-1].strip():
        body.pop()
    cut = min((len(s) - len(s.lstrip()) for s in body if s.strip()), default=0)
    body = [s[cut:] for s in body]
    return ("\n".join(body) if style == "|" else " ".join(s for s in body if s)) + "\n", k


def _strip_comment(s: str) -> str:
    quote = None
    for k, ch in enumerate(s):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"" and (k == 0 or s[k - 1] in " [{,:"):
            quote = ch
        elif ch == "#" and (k == 0 or s[k - 1] in " \t"):
            return s[:k].rstrip()
    return s.rstrip()


def _is_item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _block(lines, i, indent, name):
    if _is_item(lines[i][2]):
        return _sequence(lines, i, indent, name)
    return _mapping(lines, i, indent, name)


def _mapping(lines, i, indent, name):
    out = {}
    while i < len(lines) and lines[i][1] == indent and not _is_item(lines[i][2]):
        no, _, text, block = lines[i]
        key, rest = _split_key(text)
        if key is None:
            raise ConfigReadError(f"{name}:{no}: expected `key: value`, got {text!r}")
        i += 1
        if block is not None:
            out[key] = block
        elif rest:
            out[key] = _value(rest, name, no)
        elif i < len(lines) and (
            lines[i][1] > indent or (lines[i][1] == indent and _is_item(lines[i][2]))
        ):
            out[key], i = _block(lines, i, lines[i][1], name)
        else:
            out[key] = None
    if i < len(lines) and lines[i][1] > indent:
        raise ConfigReadError(f"{name}:{lines[i][0]}: unexpected indentation")
    return out, i


def _sequence(lines, i, indent, name):
    out = []
    while i < len(lines) and lines[i][1] == indent and _is_item(lines[i][2]):
        no, _, text, block = lines[i]
        rest = text[1:].lstrip()
        if not rest:
            if i + 1 < len(lines) and lines[i + 1][1] > indent:
                value, i = _block(lines, i + 1, lines[i + 1][1], name)
            else:
                value, i = None, i + 1
        elif _split_key(rest)[0] is not None and rest[0] not in "'\"[{":
            lines[i] = (no, indent + len(text) - len(rest), rest, block)  # `- key: v` opens a map
            value, i = _mapping(lines, i, lines[i][1], name)
        else:
            value, i = _value(rest, name, no), i + 1
        out.append(value)
    return out, i


def _split_key(text: str):
    """`key: rest` -> (key, rest); (None, None) when the text is no mapping entry."""
    depth, quote = 0, None
    for k, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"" and k == 0:
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == ":" and depth == 0 and (k + 1 == len(text) or text[k + 1] == " "):
            key = text[:k].strip()
            return (_scalar(key) if key[:1] in "'\"" else key), text[k + 1 :].strip()
    return None, None


def _value(text: str, name: str, no: int):
    if text[0] in "[{":
        value, end = _flow(text, 0, name, no)
        if text[end:].strip():
            raise ConfigReadError(f"{name}:{no}: text after a flow collection: {text!r}")
        return value
    return _scalar(text)


def _flow(s: str, k: int, name: str, no: int):
    """A flow collection or plain scalar starting at s[k] -> (value, index after it)."""
    while s[k] == " ":
        k += 1
    if s[k] not in "[{":
        start, depth = k, 0
        while k < len(s) and (depth or s[k] not in ",]}"):
            depth += 1 if s.startswith("${", k) else (-1 if s[k] == "}" and depth else 0)
            k += 1
        return _scalar(s[start:k].strip()), k
    close, out = ("]", []) if s[k] == "[" else ("}", {})
    k += 1
    while True:
        while k < len(s) and s[k] in " ,":
            k += 1
        if k >= len(s):
            raise ConfigReadError(f"{name}:{no}: unclosed flow collection")
        if s[k] == close:
            return out, k + 1
        if close == "]":
            value, k = _flow(s, k, name, no)
            out.append(value)
        else:
            colon = s.index(":", k)
            key = s[k:colon].strip()
            out[key], k = _flow(s, colon + 1, name, no)


_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _scalar(text: str):
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].encode().decode("unicode_escape")
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.lower() in (".inf", "+.inf", "-.inf", ".nan"):
        return float(text.lower().replace(".", ""))
    return text


# ---- composing a config as Hydra does for these files ------------------------------------------


def _merge(a, b):
    """b over a: mappings merge key by key, anything else is replaced."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(a.get(k), v)
        return out
    return copy.deepcopy(b)


def _experiment(name: str, choices: dict, seen: tuple = ()) -> dict:
    """configs/experiment/<name>.yaml with the experiments it extends; `choices` receives its
    `override /<group>: <option>` entries."""
    if name in seen:
        raise ConfigReadError(f"experiment {name} includes itself")
    path = CONFIGS / "experiment" / f"{name}.yaml"
    if not path.exists():
        raise ConfigReadError(f"no config {path}")
    node = load_yaml(path) or {}
    defaults = list(node.pop("defaults", None) or [])
    if "_self_" not in defaults:
        defaults.append("_self_")
    out: dict = {}
    for entry in defaults:
        if entry == "_self_":
            out = _merge(out, node)
        elif isinstance(entry, str):
            out = _merge(out, _experiment(entry, choices, seen + (name,)))
        elif isinstance(entry, dict) and len(entry) == 1:
            ((key, option),) = entry.items()
            if not key.startswith("override /"):
                raise ConfigReadError(f"{path.name}: unsupported defaults entry {entry}")
            choices[key.split("/", 1)[1]] = option
        else:
            raise ConfigReadError(f"{path.name}: unsupported defaults entry {entry!r}")
    return out


def compose(experiment: str, norm: str) -> dict:
    """What `python -m lnrepro.train experiment=<experiment> norm=<norm>` composes, for the keys
    this script uses (the `hydra` and `logger` nodes are left out)."""
    root = load_yaml(CONFIGS / "train.yaml")
    choices = {}
    for entry in root.pop("defaults"):
        if isinstance(entry, dict):
            choices.update(entry)
    root.pop("hydra", None)
    choices["norm"] = norm
    exp = _experiment(experiment, choices)
    cfg = root
    for group in ("paths", "norm", "data", "model", "task", "optim"):
        if choices.get(group):
            cfg = _merge(cfg, {group: load_yaml(CONFIGS / group / f"{choices[group]}.yaml")})
    cfg = _merge(cfg, exp)
    cfg["_choices"] = {k: v for k, v in choices.items() if isinstance(v, str)}
    return resolve(cfg)


_REF = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


def resolve(cfg: dict) -> dict:
    """Resolve `${a.b}` references to other keys; resolver calls (`${oc.env:..}`, `${now:..}`)
    stay as they are (`need` refuses such a value where it is used)."""

    def lookup(path, depth):
        node = cfg
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return walk(node, depth + 1)

    def walk(v, depth=0):
        if depth > 20:
            raise ConfigReadError("interpolation cycle in the config")
        if isinstance(v, dict):
            return {k: walk(x, depth) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, depth) for x in v]
        if not isinstance(v, str) or "${" not in v:
            return v
        m = _REF.fullmatch(v)
        if m:
            found = lookup(m.group(1), depth)
            return v if found is None else found
        return _REF.sub(lambda m: _as_text(lookup(m.group(1), depth), m.group(0)), v)

    return walk(cfg)


def _as_text(value, fallback: str) -> str:
    return fallback if value is None or isinstance(value, (dict, list)) else str(value)


def need(cfg: dict, dotted: str):
    """cfg[a][b].. or a ConfigReadError naming the key (missing, `???` or unresolved)."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigReadError(f"{cfg.get('name')}: no config key {dotted}")
        node = node[part]
    if node == "???" or (isinstance(node, str) and "${" in node):
        raise ConfigReadError(f"{cfg.get('name')}: {dotted} = {node!r} cannot be resolved here")
    return node


def check_resolved(node: dict, where: str) -> None:
    for k, v in node.items():
        if v == "???" or (isinstance(v, str) and "${" in v):
            raise ConfigReadError(f"{where}.{k} = {v!r} cannot be resolved by this script")


# ---- what the data would supply: sizes, budgets, synthetic batches of the real shapes ----------

PTB_TRAIN_TOKENS = {"ptb_char": 5_017_482, "ptb_word": 929_589}  # counted with lnrepro.data.ptb
PTB_VOCAB = {"ptb_char": 50, "ptb_word": 10_000}
HANDWRITING_CHARS = 64  # ASSUMPTION: characters of the longest line of a batch of 8
TINY = {"batch": 4, "bptt": 8, "points": 12, "chars": 5, "words": 6}
TINY_MODEL = {  # reduced width of the CPU half
    "MLP": {"hidden": [32, 32]},
    "ConvNet": {"channels": [4, 8], "hidden": 16},
    "LSTMLM": {"emb_dim": 8, "hidden_size": 16},
    "DRAW": {"glimpses": 4, "enc_size": 16, "dec_size": 16, "z_size": 4},
    "HandwritingSynthesis": {"hidden_size": 16, "window_components": 2, "mixture_components": 3},
    "SkipThoughts": {"emb_dim": 8, "hidden_size": 16},
}


DATA_KINDS = ("mnist", "cifar10", "binarized_mnist", "ptb_char", "ptb_word", "iam_ondb", "books")


def data_kind(cfg: dict) -> str:
    kind = cfg["_choices"].get("data")
    if kind not in DATA_KINDS:
        raise ConfigReadError(f"{cfg.get('name')}: data={kind} is not known to this script")
    return kind


def data_dims(cfg: dict) -> dict:
    """The model sizes that the data module would supply (train.py's data.model_kwargs)."""
    kind, d = data_kind(cfg), cfg["data"]
    if kind == "mnist":
        return {"in_dim": 784} if d.get("flatten", True) else {"in_channels": 1, "image_size": 28}
    if kind == "cifar10":
        return {"in_channels": 3, "image_size": 32}
    if kind == "binarized_mnist":
        return {"image_size": 28}
    if kind in PTB_VOCAB:
        return {"vocab_size": PTB_VOCAB[kind]}
    if kind == "iam_ondb":
        return {"vocab_size": len(need(cfg, "data.alphabet")) + 1}
    return {"vocab_size": need(cfg, "data.vocab_size")}


def steps_per_epoch(cfg: dict) -> int:
    kind, batch = data_kind(cfg), need(cfg, "data.batch_size")
    if kind in ("mnist", "binarized_mnist", "cifar10"):
        total = 50_000 if kind == "cifar10" else 60_000
        return (total - need(cfg, "data.val_size")) // batch
    if kind in PTB_TRAIN_TOKENS:
        return (PTB_TRAIN_TOKENS[kind] // batch - 1) // need(cfg, "data.bptt")
    raise ConfigReadError(f"{cfg['name']}: no training-set size known for data={kind}")


def budget(cfg: dict) -> tuple[int, str]:
    """Updates of the config's full run and how they were counted."""
    trainer = cfg["trainer"]
    if trainer.get("max_steps"):
        return int(trainer["max_steps"]), f"max_steps {trainer['max_steps']:,}"
    spe, epochs = steps_per_epoch(cfg), need(cfg, "trainer.epochs")
    return math.ceil(epochs * spe), f"{epochs} epochs x {spe:,}"


def make_batch(cfg: dict, tiny: bool, device, seed: int = 0):
    """One training batch as the experiment's data module yields it (synthetic values)."""
    g = torch.Generator().manual_seed(seed)
    kind, dims = data_kind(cfg), data_dims(cfg)
    B = TINY["batch"] if tiny else need(cfg, "data.batch_size")
    if kind in ("mnist", "cifar10"):
        side = dims.get("image_size")
        shape = (dims["in_dim"],) if side is None else (dims["in_channels"], side, side)
        batch = (torch.rand(B, *shape, generator=g), torch.randint(0, 10, (B,), generator=g))
    elif kind == "binarized_mnist":
        batch = ((torch.rand(B, 28, 28, generator=g) < 0.13).float(),)  # ~13 % ink, as MNIST
    elif kind in PTB_VOCAB:
        T = TINY["bptt"] if tiny else need(cfg, "data.bptt")
        tokens = torch.randint(0, PTB_VOCAB[kind], (T + 1, B), generator=g)
        batch = (tokens[:-1], tokens[1:], False)
    elif kind == "iam_ondb":
        batch = _strokes(
            g,
            B,
            TINY["points"] if tiny else need(cfg, "data.max_len"),
            TINY["chars"] if tiny else HANDWRITING_CHARS,
            dims["vocab_size"],
        )
    else:
        L = (TINY["words"] if tiny else need(cfg, "data.max_len")) + 1
        batch = Triples(*(_sentences(g, B, L, dims["vocab_size"]) for _ in range(3)))
    return _to(batch, device)


def _strokes(g, B: int, L: int, U: int, V: int):
    """IAM-OnDB batch: offsets (B, L, 3) with ~1 end of stroke in 20 points, lengths (B,), text
    ids (B, U) padded with -1; the last line is half as long in points and characters."""
    strokes = torch.randn(B, L, 3, generator=g)
    strokes[..., 2] = (torch.rand(B, L, generator=g) < 0.05).float()
    lengths = torch.full((B,), L)
    lengths[-1] = max(1, L // 2)
    strokes[-1, lengths[-1] :] = 0
    chars = torch.randint(0, V, (B, U), generator=g)
    chars[-1, max(1, U // 2) :] = -1
    return strokes, lengths, chars


def _sentences(g, B: int, L: int, V: int) -> torch.Tensor:
    """(B, L) word ids, each sentence ending with <eos>, padded with <pad>; one is full length."""
    ids = torch.randint(3, V, (B, L), generator=g)
    lengths = torch.randint(max(1, L // 3), L + 1, (B,), generator=g)
    lengths[0] = L
    ids[torch.arange(B), lengths - 1] = EOS_ID
    ids[torch.arange(L) >= lengths[:, None]] = PAD_ID
    return ids


def _to(batch, device):
    moved = [x.to(device) if isinstance(x, torch.Tensor) else x for x in batch]
    return Triples(*moved) if isinstance(batch, Triples) else tuple(moved)


# ---- building the run's parts from the config ---------------------------------------------------


def _locate(target: str):
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def norm_spec(cfg: dict) -> NormSpec:
    return NormSpec.from_cfg(cfg["norm"], need(cfg, "data.batch_size"))


def build_model(cfg: dict, tiny: bool = False):
    kwargs = dict(cfg["model"])
    target = kwargs.pop("_target_")
    kwargs.update(data_dims(cfg))
    if tiny:
        kwargs.update(TINY_MODEL[target.rpartition(".")[2]])
    check_resolved(kwargs, "model")
    return _locate(target)(norm=norm_spec(cfg), **kwargs)


def build_task(cfg: dict):
    kwargs = dict(cfg["task"])
    # evaluation hooks (skip-thoughts' SentEval) read datasets and do not change an update's cost
    if "senteval" in kwargs:
        kwargs["senteval"] = None
    kwargs.pop("verify", None)
    check_resolved(kwargs, "task")
    return _locate(kwargs.pop("_target_"))(**kwargs)


def build_optimizer(cfg: dict, params):
    kwargs = dict(cfg["optim"])
    target = kwargs.pop("_target_")
    kwargs.pop("_partial_", None)
    kwargs.pop("scheduler", None)  # a learning-rate schedule does not change an update's cost
    check_resolved(kwargs, "optim")
    return _locate(target)(params, **kwargs)


def is_recurrent(model) -> bool:
    return any(isinstance(m, (LSTMCell, GRUCell)) for m in model.modules())


def autocast(device: torch.device, precision: str):
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class Run:
    """Model, task and optimizer of one experiment/norm on one device; `update()` is one
    training step in the trainer's order (loss, finite check, backward, clip, Adam step)."""

    def __init__(self, cfg: dict, model, device, precision: str):
        self.model, self.device, self.precision = model, device, precision
        self.task = build_task(cfg)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = build_optimizer(cfg, self.params)
        self.clip = cfg["trainer"].get("grad_clip")

    def update(self, batch) -> torch.Tensor:
        with autocast(self.device, self.precision):
            loss, _ = self.task.training_step(self.model, batch)
        if not torch.isfinite(loss):  # the trainer's check (one synchronisation per step)
            raise FloatingPointError(f"loss is {float(loss)}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        return loss.detach()


# ---- counting matmul FLOPs and eager ops of one update, on the meta device ---------------------

aten = torch.ops.aten
# torch's matmul formulas, plus the in-place addmm_ that forms the recurrent weight gradient
FLOP_FORMULAS = {
    **flop_registry,
    aten.addmm_: flop_registry[aten.addmm],
    aten.baddbmm_: flop_registry[aten.baddbmm],
}


class Counter(TorchDispatchMode):
    """Matmul FLOPs (torch.utils.flop_counter's formulas) and the aten ops that run a kernel
    (views and aliases excluded: about the kernel launches of an eager step)."""

    def __init__(self):
        super().__init__()
        self.flops, self.ops = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        schema = func._schema
        self.ops += schema.is_mutable or all(r.alias_info is None for r in schema.returns)
        formula = FLOP_FORMULAS.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def model_outputs(cfg: dict, model, batch):
    """The model's forward on a training batch (the task's call, without its loss)."""
    kind = data_kind(cfg)
    if kind == "iam_ondb":
        strokes, _, chars = batch
        return model(strokes.transpose(0, 1), chars)
    if kind == "books":
        return model(batch.prev, batch.cur, batch.nxt)
    return model(batch[0])


def _float_sum(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return (
            out.float().sum() if out.is_floating_point() else out.new_zeros((), dtype=torch.float)
        )
    return sum(_float_sum(o) for o in out)


# The key of each data's sequence length (DRAW: its glimpses), for `count_update`.
SEQ_KEY = {
    "ptb_char": "data.bptt",
    "ptb_word": "data.bptt",
    "iam_ondb": "data.max_len",
    "books": "data.max_len",
    "binarized_mnist": "model.glimpses",
}


def count_update(cfg: dict) -> tuple[int, float, int]:
    """(parameters, matmul FLOPs, kernel-running ops) of the model's forward + backward at full
    width on the meta device (no memory, no arithmetic). Both counts grow linearly with the
    sequence length: counted at 2 and 4 steps, extrapolated to the config's length."""
    key = SEQ_KEY.get(data_kind(cfg))
    if key is None:
        return _count(cfg)
    length = need(cfg, key)
    (params, f2, o2), (_, f4, o4) = (_count(_with(cfg, key, n)) for n in (2, 4))
    scale = (length - 2) / 2
    return params, f2 + (f4 - f2) * scale, round(o2 + (o4 - o2) * scale)


def _with(cfg: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(cfg)
    group, key = dotted.split(".")
    out[group][key] = value
    return out


def _count(cfg: dict) -> tuple[int, float, int]:
    with torch.device("meta"):
        model = build_model(cfg)
    batch = make_batch(cfg, tiny=False, device="meta")
    with Counter() as counter:
        _float_sum(model_outputs(cfg, model, batch)).backward()
    return sum(p.numel() for p in model.parameters()), counter.flops, counter.ops


# A FLOP-based estimate (NOT a measurement): the larger of the matmul time at ESTIMATE_FLOPS (about
# the float32 peak of an H100 / H200; TF32 is off by default, bf16 tensor cores are ~10x faster)
# and the eager dispatch time at ESTIMATE_OP_S per op; both optimistic, so a lower bound.
ESTIMATE_FLOPS = 60e12
ESTIMATE_OP_S = 5e-6


def estimate_s(flops: float, ops: int) -> float:
    return max(flops / ESTIMATE_FLOPS, ops * ESTIMATE_OP_S)


# ---- checks --------------------------------------------------------------------------------------


def norm_modules() -> dict:
    """The norms of nn/ that statistics are computed in, at the shapes the models feed them."""
    spec = NormSpec(kind="ln")
    return {
        "LayerNorm (N, F)": (LayerNorm(256), (8, 256)),
        "LayerNorm (N, C, H, W)": (LayerNorm(8), (8, 8, 6, 6)),
        "GroupLN (GRU gates)": (GroupLN(spec, (128, 64)), (8, 192)),
        "BatchNorm": (BatchNorm(256), (64, 256)),
        "BatchNorm unbiased (batch < 32)": (BatchNorm(256, unbiased=True), (8, 256)),
        "SeqBatchNorm (T, B, F)": (SeqBatchNorm(256, t_max=4), (4, 64, 256)),
        "SeqBatchNorm unbiased": (SeqBatchNorm(256, t_max=4, unbiased=True), (4, 8, 256)),
        "SeqBatchNorm one step": (SeqBatchNorm(256, t_max=4), (64, 256)),
    }


def upcast_checks(device: torch.device) -> list[dict]:
    """Each norm on bf16 inputs of mean 256 (where bf16 is 2 apart) under bf16 autocast, against
    the float32 norm of the same values: statistics computed in bfloat16 would be off by up to
    a quarter of a standard deviation; in float32 only the output's rounding remains."""
    rows, g = [], torch.Generator().manual_seed(0)
    for name, (module, shape) in norm_modules().items():
        x = (256 + 4 * torch.randn(shape, generator=g)).bfloat16().to(device)
        rows.append({"norm": name, **_try_upcast(module.to(device).train(), x)})
    return rows


@torch.no_grad()
def _try_upcast(module, x) -> dict:
    try:
        ref = copy.deepcopy(module)(x.float())
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            y = module(x)
    except Exception as e:  # noqa: BLE001  (a norm that fails under autocast is a finding)
        return {"dtype": "-", "err": math.nan, "ok": False, "error": _one_line(e)}
    err = float((y.float() - ref).abs().max() / ref.abs().max())
    return {"dtype": str(y.dtype).replace("torch.", ""), "err": err, "ok": err <= UPCAST_TOL}


UPCAST_TOL = 2**-6  # relative to max |y|: a few bf16 roundings (2^-9 each) of the output
CELL_TOL = 1e-4  # float32, TF32 off: relative to each tensor's max |value|
CELL_NORMS = {
    "ln": NormSpec(kind="ln"),
    "bn": NormSpec(kind="bn"),
    "bn unbiased": NormSpec(kind="bn", unbiased=True),
    "none": NormSpec(kind="none"),
}


def cell_checks(device: torch.device) -> list[dict]:
    """LSTM and GRU (ln, bn, bn unbiased, none; one layer, 32 steps, batch 16, 48 -> 64 units, orthogonal
    init) on CUDA against the CPU: outputs, final state, input and parameter gradients and the
    BN running statistics, in float32 with TF32 off."""
    rows = []
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        for cls in (LSTM, GRU):
            for norm, spec in CELL_NORMS.items():
                err = _cell_error(cls, spec, device)
                rows.append({"cell": cls.__name__, "norm": norm, "err": err, "ok": err <= CELL_TOL})
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    return rows


def _cell_error(cls, spec: NormSpec, device: torch.device) -> float:
    torch.manual_seed(0)
    cpu = cls(48, 64, norm=spec, init="orthogonal")
    gpu = copy.deepcopy(cpu).to(device)
    x, w = torch.randn(32, 16, 48), torch.randn(32, 16, 64)
    got = [_cell_pass(gpu, x.to(device), w.to(device)), _cell_pass(cpu, x, w)]
    return max(_rel(a.cpu(), b) for a, b in zip(*got))


def _cell_pass(model, x, w) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    out, final = model(x)
    finals = list(final) if isinstance(final, tuple) else [final]
    ((out * w).sum() + sum(f.square().sum() for f in finals)).backward()
    grads = [p.grad for p in model.parameters()]
    return [out.detach(), *(f.detach() for f in finals), x.grad, *grads, *model.buffers()]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


# ---- the CPU half ---------------------------------------------------------------------------------


def reader_check(names) -> int:
    """Every experiment config composes with every norm; every paper-scale model (`names`)
    builds at full width on the meta device. Returns the number of configs."""
    paths = sorted((CONFIGS / "experiment").glob("*.yaml"))
    for path in paths:
        for norm in NORMS:
            cfg = compose(path.stem, norm)
            if path.stem in names:
                with torch.device("meta"):
                    build_model(cfg)
    log(
        f"config reader: {len(paths)} experiment configs x {len(NORMS)} norms compose "
        f"({'PyYAML' if _has_yaml() else 'the built-in YAML reader'}); {len(names)} paper-scale "
        "models x 3 norms build at full width (meta device)"
    )
    return len(paths)


def _has_yaml() -> bool:
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


def count_rows(names) -> list[dict]:
    rows = []
    for name in names:
        cfg = compose(name, "ln")
        n_updates, how = budget(cfg)
        params, flops, ops = count_update(cfg)
        est = estimate_s(flops, ops)
        rows.append(
            {
                "experiment": name,
                "budget": how,
                "updates": n_updates,
                "params": params,
                "gflop": flops / 1e9,
                "ops": ops,
                "est_s": est,
                "est_h": est * n_updates / 3600,
            }
        )
        log(
            f"{name}: {params / 1e6:.2f}M parameters, {flops / 1e9:.1f} GFLOP and {ops:,} ops "
            f"per update (norm=ln, full width, meta device); budget {how} = {n_updates:,} updates"
        )
    return rows


def tiny_rows(names) -> list[dict]:
    """Two float32 updates per experiment and norm at reduced width (TINY_MODEL) on tiny
    batches, then one bf16 update under CPU autocast (informational: the GPU half's bf16 rows
    are the check)."""
    rows, cpu, threads = [], torch.device("cpu"), torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: more threads only add synchronisation (5x slower)
    try:
        for name in names:
            rows += _tiny_experiment(name, cpu)
    finally:
        torch.set_num_threads(threads)
    return rows


def _tiny_experiment(name: str, cpu) -> list[dict]:
    rows = []
    for norm in NORMS:
        cfg = compose(name, norm)
        torch.manual_seed(0)
        model = build_model(cfg, tiny=True)
        batch = make_batch(cfg, tiny=True, device=cpu)
        rows.append(
            {
                "experiment": name,
                "norm": norm,
                "fp32": _try(_updates, cfg, model, batch, "32", 2),
                "bf16": _try(_updates, cfg, model, batch, "bf16", 1),
            }
        )
    log(
        f"{name}: tiny updates (reduced width) "
        + ", ".join(
            f"{r['norm']} fp32 {_status(r['fp32'])} bf16 {_status(r['bf16'])}" for r in rows
        )
    )
    return rows


def _updates(cfg, model, batch, precision: str, n: int) -> list[float]:
    run = Run(cfg, model, torch.device("cpu"), precision)
    return [float(run.update(batch)) for _ in range(n)]


def _try(fn, *args):
    """fn(*args) or, when it raises, the error as one line (a str)."""
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001  (reported; the exit status counts what matters)
        return "FAILED: " + _one_line(e)


def _status(result) -> str:
    return result if isinstance(result, str) else "ok"


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


# ---- the GPU half ---------------------------------------------------------------------------------


class Clock:
    """The time budget: each experiment gets an equal share of what is left when it starts."""

    def __init__(self, total_s: float):
        self.end = time.perf_counter() + total_s

    def left(self) -> float:
        return self.end - time.perf_counter()


def speed_rows(names, args, clock: Clock, device) -> list[dict]:
    rows = []
    for k, name in enumerate(names):
        deadline = time.perf_counter() + max(0.0, clock.left()) / (len(names) - k)
        log(f"{name}: time cap {max(0.0, deadline - time.perf_counter()):.0f} s for its rows")
        rows += _experiment_rows(name, args, deadline, device)
    return rows


def _experiment_rows(name: str, args, deadline: float, device) -> list[dict]:
    cfgs = {norm: compose(name, norm) for norm in NORMS}
    states, batch = {}, make_batch(cfgs["ln"], tiny=False, device=device)
    plan = [(n, p, False) for p in PRECISIONS for n in NORMS]
    with torch.device("meta"):
        recurrent = is_recurrent(build_model(cfgs["ln"]))
    plan += [(n, p, True) for p in PRECISIONS for n in NORMS] if recurrent else []
    rows = []
    for k, (norm, precision, compiled) in enumerate(plan):
        row = {
            "experiment": name,
            "norm": norm,
            "precision": precision,
            "mode": "compiled" if compiled else "eager",
            "budget": budget(cfgs[norm]),
        }
        left = deadline - time.perf_counter()
        if left <= 0:
            row.update(status="not run (time cap)")
        else:
            row.update(
                _timed(
                    cfgs[norm],
                    states,
                    batch,
                    precision,
                    compiled,
                    args,
                    left / (len(plan) - k),
                    device,
                )
            )
        rows.append(row)
        log(_progress(row))
    return rows


def _fresh_model(cfg: dict, states: dict, device):
    """The model of cfg with the initial weights of its norm (drawn once, kept on the CPU)."""
    norm = cfg["norm"]["kind"]
    if norm not in states:
        torch.manual_seed(cfg["seed"])
        with torch.device(device):
            model = build_model(cfg)
        states[norm] = {
            k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
            for k, v in model.state_dict().items()
        }
        del model
    state = states[norm]
    with torch.device("meta"):
        model = build_model(cfg)
    model = model.to_empty(device=device)
    model.load_state_dict(state)
    return model


def _timed(cfg, states, batch, precision, compiled, args, slice_s, device) -> dict:
    """Warm-up updates, then timed ones: as many as fit in slice_s (at least 3, at most
    args.updates), synchronised before and after."""
    cells = []
    torch.cuda.empty_cache()  # the previous row's memory (freed when it returned)
    try:
        model = _fresh_model(cfg, states, device)
        torch.manual_seed(cfg["seed"])
        run = Run(cfg, model, device, precision)
        if compiled:
            cells = compile_steps(model, args.compile_mode, args.compile_backend)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        first = float(run.update(batch))
        for _ in range(args.warmup - 1):
            run.update(batch)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        run.update(batch)
        torch.cuda.synchronize()
        probe = max(time.perf_counter() - t1, 1e-6)
        more = int(min(args.updates - 1, max(2, (slice_s - (t1 - t0) - probe) / probe)))
        t2 = time.perf_counter()
        for _ in range(more):
            last = run.update(batch)
        torch.cuda.synchronize()
        s = (probe + time.perf_counter() - t2) / (more + 1)
        return {
            "status": "ok",
            "updates": more + 1,
            "s": s,
            "warmup_s": t1 - t0,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "loss": (first, float(last)),
            "graphs": _graph_count() if compiled else None,
        }
    except Exception as e:  # noqa: BLE001  (one row says what failed; the exit status too)
        return {"status": "FAILED: " + _one_line(e)}
    finally:
        for cell in cells:
            cell.__dict__.pop("_step", None)


def compile_steps(model, mode: str, backend: str = "inductor") -> list:
    """torch.compile each LSTM/GRU cell's step function (the Python loop over time stays
    eager): fresh compiler caches per row, so every row pays its own compile time."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()  # per row: the graphs column counts this row's graphs
    # a failing compile is one row's status; not 40 lines of the fake-tensor traceback as well
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
    for key in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, 64)
    cells = [m for m in model.modules() if isinstance(m, (LSTMCell, GRUCell))]
    for cell in cells:
        cell._step = torch.compile(cell._step, mode=mode, backend=backend)
    return cells


def _graph_count():
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001  (a private counter: only a diagnostic)
        return None


def _progress(row: dict) -> str:
    head = f"{row['experiment']} {row['norm']} {row['precision']} {row['mode']}: "
    if row["status"] != "ok":
        return head + row["status"]
    hours = row["s"] * row["budget"][0] / 3600
    return (
        head + f"{row['s'] * 1e3:.1f} ms/update ({row['updates']} timed, warm-up "
        f"{row['warmup_s']:.1f} s), peak {row['peak_gib']:.2f} GiB, {hours:.1f} h for "
        f"{row['budget'][0]:,} updates, loss {row['loss'][0]:.4g} -> {row['loss'][1]:.4g}"
    )


# ---- the report -----------------------------------------------------------------------------------


def machine(device) -> list[str]:
    lines = [
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs",
        (
            f"python {platform.python_version()}, torch {torch.__version__} "
            f"(CUDA {torch.version.cuda}), git {_git_commit()}"
        ),
    ]
    if device is not None:
        p = torch.cuda.get_device_properties(device)
        lines.append(
            f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability "
            f"{p.major}.{p.minor}; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
            f"TF32 cuDNN {torch.backends.cudnn.allow_tf32} (torch's defaults)"
        )
    return lines


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def render(r: dict) -> str:
    out = ["# GPU acceptance check (`make gpu-check`, scripts/gpu_check.py)", ""]
    out += [f"- {line}" for line in r["machine"]]
    out += [
        (
            f"- config reader: {r['reader']} experiment configs x {len(NORMS)} norms compose "
            f"({r['yaml']}); every paper-scale model builds at full width with every norm"
        ),
        "",
    ]
    if r["gpu_skipped"]:
        out += [
            (
                f"**GPU half skipped: {r['gpu_skipped']}.** Only the CPU half ran; no GPU "
                "number below is measured."
            ),
            "",
        ]
    out += _count_table(r["counts"])
    out += _upcast_table(r["upcast"], r["upcast_device"])
    out += _tiny_table(r["tiny"])
    if r.get("cells"):
        out += _cell_table(r["cells"])
    if r.get("speed"):
        out += _speed_table(r["speed"], r["settings"])
    return "\n".join(out) + "\n"


def _count_table(rows) -> list[str]:
    out = [
        "## Paper budgets and model sizes (full width, counted on the meta device)",
        "",
        (
            "Budget: the config's trainer.max_steps, else trainer.epochs x updates per epoch of "
            "the real training set. FLOPs: matmuls of forward + backward (torch.utils."
            "flop_counter); ops: aten ops that run a kernel (views excluded), about the kernel "
            "launches of an eager update. **Estimate, not a measurement**: s/update = max(FLOPs "
            f"/ {ESTIMATE_FLOPS / 1e12:.0f} TFLOP/s, about the float32 peak of an H100 or H200; "
            f"ops x {ESTIMATE_OP_S * 1e6:.0f} us of eager dispatch), a lower bound for an eager "
            "float32 run on one such GPU."
        ),
        "",
        (
            "| experiment | budget | updates | parameters | GFLOP/update | ops/update | "
            "est. s/update | est. hours |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        out.append(
            f"| {x['experiment']} | {x['budget']} | {x['updates']:,} | "
            f"{x['params'] / 1e6:.2f}M | {x['gflop']:.1f} | {x['ops']:,} | "
            f"{x['est_s']:.3f} | {x['est_h']:.1f} |"
        )
    return out + [""]


def _upcast_table(rows, device: str) -> list[str]:
    note = (
        ""
        if device == "cuda"
        else (" Informational on the CPU (CPU autocast); the check is the GPU run's.")
    )
    out = [
        f"## Norm statistics under bf16 autocast ({device})",
        "",
        "bf16 inputs of mean 256 and std 4 (bf16 values there are 2 apart); error = max |y - "
        "y_fp32| / max |y_fp32| against the same norm in float32 on the same values. Float32 "
        f"statistics leave only the output's rounding (limit {UPCAST_TOL:.4f}); bfloat16 "
        "statistics are off by up to a quarter of a standard deviation." + note,
        "",
        "| norm | output dtype | error | statistics |",
        "|---|---|---|---|",
    ]
    for x in rows:
        verdict = "float32" if x["ok"] else "**NOT float32**"
        if x.get("error"):
            verdict = f"**fails under autocast**: {x['error']}"
        err = "-" if math.isnan(x["err"]) else f"{x['err']:.2e}"
        out.append(f"| {x['norm']} | {x['dtype']} | {err} | {verdict} |")
    return out + [""]


def _tiny_table(rows) -> list[str]:
    shrink = "; ".join(
        f"{k}: {', '.join(f'{a}={b}' for a, b in v.items())}" for k, v in TINY_MODEL.items()
    )
    out = [
        "## CPU: two float32 updates and one bf16 update at REDUCED width",
        "",
        (
            f"Tiny batches ({TINY['batch']} cases, {TINY['bptt']} LM steps, {TINY['points']} pen "
            f"points, {TINY['words']}-word sentences) and reduced widths ({shrink}); everything "
            "else from the paper-scale config (optimizer, clipping, task loss, norm settings). "
            "The bf16 update (CPU autocast, after the float32 ones) is informational."
        ),
        "",
        "| experiment | norm | float32 losses | bf16 loss |",
        "|---|---|---|---|",
    ]
    for x in rows:
        out.append(f"| {x['experiment']} | {x['norm']} | {_fmt(x['fp32'])} | {_fmt(x['bf16'])} |")
    return out + [""]


def _fmt(result) -> str:
    return result if isinstance(result, str) else ", ".join(f"{v:.4g}" for v in result)


def _cell_table(rows) -> list[str]:
    out = [
        "## Recurrent cells: CUDA against CPU (float32, TF32 off)",
        "",
        (
            "One layer, 32 steps, batch 16, 48 -> 64 units; outputs, final state, input and "
            "parameter gradients, BN running statistics; error = max |cuda - cpu| / max |cpu| "
            f"over each tensor, limit {CELL_TOL:g}."
        ),
        "",
        "| cell | norm | max error | status |",
        "|---|---|---|---|",
    ]
    for x in rows:
        out.append(
            f"| {x['cell']} | {x['norm']} | {x['err']:.2e} | {'ok' if x['ok'] else '**FAILED**'} |"
        )
    return out + [""]


def _speed_table(rows, settings: str) -> list[str]:
    out = [
        "## Training speed at paper scale (synthetic batches of the real shapes)",
        "",
        settings,
        "",
        (
            "| experiment | norm | precision | mode | updates timed | s/update | peak GiB | "
            "projected hours (budget) | warm-up s | loss first -> last | status |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        if x["status"] != "ok":
            out.append(
                f"| {x['experiment']} | {x['norm']} | {x['precision']} | {x['mode']} |"
                f" | | | | | | {x['status']} |"
            )
            continue
        hours = x["s"] * x["budget"][0] / 3600
        graphs = f" ({x['graphs']} graphs)" if x.get("graphs") else ""
        out.append(
            f"| {x['experiment']} | {x['norm']} | {x['precision']} | {x['mode']} | "
            f"{x['updates']} | {x['s']:.4f} | {x['peak_gib']:.2f} | {hours:.1f} "
            f"({x['budget'][1]}) | {x['warmup_s']:.1f} | {x['loss'][0]:.4g} -> "
            f"{x['loss'][1]:.4g} | ok{graphs} |"
        )
    return out + [""]


def failures(r: dict) -> list[str]:
    """The failed checks: float32 updates, cells and speed rows; the bf16 norm statistics on a
    GPU (on the CPU they and the bf16 updates are informational)."""
    bad = [
        f"tiny update {x['experiment']}/{x['norm']}"
        for x in r["tiny"]
        if isinstance(x["fp32"], str)
    ]
    if r["upcast_device"] == "cuda":
        bad += [f"bf16 statistics of {x['norm']}" for x in r["upcast"] if not x["ok"]]
    bad += [f"cell {x['cell']}/{x['norm']}" for x in r.get("cells", []) if not x["ok"]]
    bad += [
        f"speed {x['experiment']}/{x['norm']}/{x['precision']}/{x['mode']}"
        for x in r.get("speed", [])
        if x["status"].startswith("FAILED")
    ]
    return bad


# ---- main -----------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--budget-s",
        type=float,
        default=360.0,
        help="seconds for the GPU speed rows (default 360: the whole script ~7 min)",
    )
    p.add_argument("--updates", type=int, default=24, help="most timed updates per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed updates per row (>= 1)")
    p.add_argument("--compile-mode", default="default", help="torch.compile mode of the cells")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    p.add_argument("--experiments", nargs="+", default=list(PAPER), choices=PAPER)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"report file (default {DEFAULT_OUT.relative_to(ROOT)}, written only "
        "when the GPU half ran)",
    )
    args = p.parse_args(argv)
    args.warmup = max(1, args.warmup)
    return args


def cpu_half(args, device) -> dict:
    """The checks that need no GPU (the bf16 norm check runs on the GPU when there is one)."""
    report = {
        "machine": machine(device),
        "gpu_skipped": None if device else "no CUDA device",
        "yaml": "PyYAML" if _has_yaml() else "the built-in YAML reader",
        "reader": reader_check(args.experiments),
        "counts": count_rows(args.experiments),
        "tiny": tiny_rows(args.experiments),
    }
    target = device or torch.device("cpu")
    report["upcast"], report["upcast_device"] = upcast_checks(target), target.type
    log(
        "bf16 norm statistics: "
        + ", ".join(
            f"{x['norm']} " + ("fp32" if x["ok"] else "FAILS" if x.get("error") else "NOT fp32")
            for x in report["upcast"]
        )
    )
    return report


def gpu_half(args, device, report: dict) -> None:
    report["cells"] = cell_checks(device)
    log(
        "cells CUDA vs CPU: "
        + ", ".join(f"{x['cell']}/{x['norm']} {x['err']:.1e}" for x in report["cells"])
    )
    report["settings"] = (
        f"Up to {args.updates} timed updates per row after {args.warmup} warm-up updates (the "
        f"warm-up time includes compilation); time budget {args.budget_s:.0f} s, each "
        "experiment a cap of an equal share of what is left when it starts (a row that does not "
        "fit says so). Precision 32 is torch's default (TF32 off for matmuls); bf16 is "
        "torch.autocast. Compiled: each LSTM/GRU cell step through torch.compile(mode="
        f"{args.compile_mode!r}, backend={args.compile_backend!r}), the loop over time eager. "
        "Projected hours: s/update x the budget's updates (no evaluation passes)."
    )
    report["speed"] = speed_rows(args.experiments, args, Clock(args.budget_s), device)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda") if torch.cuda.is_available() else None
    log(
        f"torch {torch.__version__}; "
        + (
            f"GPU {torch.cuda.get_device_name(device)}"
            if device
            else "no CUDA device: the GPU half will be skipped"
        )
    )
    report = cpu_half(args, device)
    if device:
        gpu_half(args, device, report)
    else:
        log("GPU half SKIPPED: no CUDA device (cell checks and speed rows need one)")
    out = args.out or (DEFAULT_OUT if device else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(report))
        log(f"wrote {out}")
    else:
        log("no report written (CPU only; --out FILE writes one)")
    bad = failures(report)
    log(
        "done: "
        + (f"{len(bad)} FAILED: {', '.join(bad)}" if bad else "every check passed")
        + ("" if device else "; GPU half skipped")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
