"""Forward+backward speed of lnrepro.nn.rnn against torch.nn.LSTM / torch.nn.GRU.

Setup: hidden 512, batch 32, seq 100, input 512, one layer, float32, training mode; loss =
out.sum(); the time covers forward, backward and nothing else (gradients set to None before).

Protocol (single runs on a shared 2-core machine vary from 1.10x to 1.35x for the same code):
all models are timed round-robin (one pass of each, then the next round), so load from other
processes hits them alike; a repeat is 2 warm-up rounds and 9 timed ones, and gives each model
the median of its rounds and its ratio to the torch module of the same family; the benchmark
runs 3 repeats, records the 1-minute load average after each, and reports the median ratio
over the repeats (the ms column: the median over the repeats of the medians). On CPU with the
default thread count; also on CUDA (torch = cuDNN) when available.

"LSTM ln", "LSTM rms" and "LSTM none" are the fused path where it applies (lnrepro.nn.fused_lstm: the
sequence as one autograd Function, C++ time loops, oneDNN GEMMs; "none" is the same kernel with
its norms off, "rms" the kernel without centering); "LSTM ln, step loop" (and "rms") is the layer with `fused=False`, the autograd loop every
other norm takes. Two "autograd loop" rows time the LN-LSTM equations written as a straightforward loop (input
projection batched, h @ W_hh.T per step, autograd for everything), stepping through time with
xin[t] (what one usually writes) or with xin.unbind(0): they show what the layer's techniques
(unbind, the deferred W_hh gradient) buy.

`--compiled` adds the layers through `torch.compile` (inductor, default mode: what
`trainer.compile=true` does): "LSTM ln, compiled" is the step loop compiled (the fused Function
steps aside under the compiler). Each compiled module is built once and compiled by its first
call, timed apart and reported as "first call" (tracing the 100-step loop forward and backward);
the rounds time the compiled code only.

results/bench_rnn.md keeps one section per CPU, headed by the CPU's name, torch's CPU capability
(AVX2, AVX512, ...), the thread count and the date; a run writes or replaces only its own CPU's
section (same name and capability) and keeps the others.

    python scripts/bench_rnn.py [--quick] [--compiled] [--repeats 3] [--out results/bench_rnn.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from lnrepro.golden import cpu_name
from lnrepro.nn import fused_lstm
from lnrepro.nn.rnn import GRU, LSTM

T, B, I, H = 100, 32, 512, 512
ROOT = Path(__file__).resolve().parents[1]


class LoopLNLSTM(nn.Module):
    """Eq. 20-22 as a plain autograd loop (benchmark reference only)."""

    def __init__(self, unbind: bool):
        super().__init__()
        self.cell, self.unbind = LSTM(I, H, norm="ln").layers[0], unbind

    def forward(self, x):
        cell = self.cell
        xin = cell.input_term(x)
        h = c = x.new_zeros(x.shape[1], H)
        outs = []
        for x_t in xin.unbind(0) if self.unbind else (xin[t] for t in range(len(xin))):
            gates = x_t + cell.norm_hh(h @ cell.weight_hh.t())
            i, f, g, o = gates.chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(cell.norm_c(c))
            outs.append(h)
        return torch.stack(outs), None


def step_loop(model: LSTM) -> LSTM:
    for cell in model.layers:
        cell.fused = False
    return model


def models(compiled: bool = False) -> dict[str, tuple[str, nn.Module]]:
    """name -> (family, module); the family's first entry is the ratio's reference."""
    table = {
        "torch.nn.LSTM": ("LSTM", nn.LSTM(I, H)),
        "LSTM none": ("LSTM", LSTM(I, H, norm="none")),
        "LSTM ln": ("LSTM", LSTM(I, H, norm="ln")),
        "LSTM bn": ("LSTM", LSTM(I, H, norm="bn")),
        "LSTM ln, step loop": ("LSTM", step_loop(LSTM(I, H, norm="ln"))),
        "LSTM rms": ("LSTM", LSTM(I, H, norm="rms")),
        "LSTM rms, step loop": ("LSTM", step_loop(LSTM(I, H, norm="rms"))),
        "LSTM ln, autograd loop, xin[t]": ("LSTM", LoopLNLSTM(unbind=False)),
        "LSTM ln, autograd loop, unbind": ("LSTM", LoopLNLSTM(unbind=True)),
        "torch.nn.GRU": ("GRU", nn.GRU(I, H)),
        "GRU none": ("GRU", GRU(I, H, norm="none")),
        "GRU ln": ("GRU", GRU(I, H, norm="ln")),
        "GRU bn": ("GRU", GRU(I, H, norm="bn")),
    }
    if compiled:
        for fam in ("LSTM", "GRU"):
            for norm in ("none", "ln", "bn"):
                layer = (LSTM if fam == "LSTM" else GRU)(I, H, norm=norm)
                table[f"{fam} {norm}, compiled"] = (fam, torch.compile(layer))
    return dict(sorted(table.items(), key=lambda kv: kv[1][0] != "LSTM"))  # LSTM rows first


def step_time(model: nn.Module, x: torch.Tensor, sync) -> float:
    for p in model.parameters():
        p.grad = None
    sync()
    start = time.perf_counter()
    model(x)[0].sum().backward()
    sync()
    return time.perf_counter() - start


def build(device: str, compiled: bool) -> tuple[dict, dict[str, float]]:
    """The models on `device`, and for each compiled one the seconds of its first call (the
    compilation)."""
    torch.manual_seed(0)
    table = {name: (fam, m.to(device).train()) for name, (fam, m) in models(compiled).items()}
    x = torch.randn(T, B, I, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    first = {}
    for name, (_, model) in table.items():
        if name.endswith("compiled"):
            first[name] = step_time(model, x, sync)
            print(f"{device} {name}: first call {first[name]:.0f} s", flush=True)
    return table, first


def bench(
    device: str, table: dict, warmup: int, rounds: int
) -> list[tuple[str, str, float, float]]:
    """One repeat: (device, model, median ms, ratio to the family's torch module) per model."""
    torch.manual_seed(0)
    x = torch.randn(T, B, I, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in table}
    for r in range(warmup + rounds):
        for name, (_, model) in table.items():
            t = step_time(model, x, sync)
            if r >= warmup:
                times[name].append(t)
    rows, ref = [], {}
    for name, (fam, _) in table.items():
        ms = statistics.median(times[name]) * 1e3
        ref.setdefault(fam, ms)
        rows.append((device, name, ms, ms / ref[fam]))
    return rows


def repeated(devices, warmup: int, rounds: int, repeats: int, compiled: bool = False):
    """`repeats` whole benchmarks: rows (device, model, median ms, median ratio), the
    1-minute load average after each repeat, and the compiled models' first-call seconds."""
    built = {d: build(d, compiled) for d in devices}
    runs, loads = [], []
    for _ in range(repeats):
        runs.append([row for d in devices for row in bench(d, built[d][0], warmup, rounds)])
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))
    rows = []
    for k, (device, name, _, _) in enumerate(runs[0]):
        ms = statistics.median(run[k][2] for run in runs)
        ratios = [run[k][3] for run in runs]
        rows.append((device, name, ms, statistics.median(ratios), min(ratios), max(ratios)))
    first = {(d, n): sec for d in devices for n, sec in built[d][1].items()}
    return rows, loads, first


TITLE = "# RNN layer speed: forward + backward per batch"


def heading_key() -> str:
    """The start of this CPU's section heading: the CPU's name and torch's CPU capability."""
    return f"## {cpu_name()}, CPU capability {torch.backends.cpu.get_cpu_capability()},"


def merge_section(old: str, section: str, key: str) -> str:
    """`old` (the results file's text, or "") with the section whose heading starts with `key`
    replaced by `section` (appended where there is none); every other section kept as it is."""
    head, sections = old, []
    if "\n## " in "\n" + old:
        first = ("\n" + old).index("\n## ")
        head = old[: max(first - 1, 0)] if first else ""
        sections = ["## " + part for part in ("\n" + old)[first + 4 :].split("\n## ")]
    head = head.strip() or TITLE
    sections = [sec.strip() for sec in sections]
    mine = [k for k, sec in enumerate(sections) if sec.startswith(key)]
    if mine:
        sections[mine[0]] = section.strip()
        sections = [sec for k, sec in enumerate(sections) if k not in mine[1:]]
    else:
        sections.append(section.strip())
    return "\n\n".join([head, *sections]) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat of 1 warm-up + 3 timed rounds")
    ap.add_argument("--compiled", action="store_true", help="add torch.compile'd layers")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_rnn.md")
    args = ap.parse_args()
    warmup, rounds, repeats = (1, 3, 1) if args.quick else (2, 9, args.repeats)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows, loads, first = repeated(devices, warmup, rounds, repeats, args.compiled)
    now = datetime.datetime.now().isoformat(timespec="seconds")
    lines = [
        f"{heading_key()} {torch.get_num_threads()} threads, {now[:10]}",
        "",
        f"- date: {now}",
        f"- torch {torch.__version__}, CPU threads {torch.get_num_threads()} ({cpu_name()}, "
        f"{os.cpu_count()} logical CPUs, torch CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()})"
        + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else ""),
        (
            f"- setup: seq {T}, batch {B}, input {I}, hidden {H}, 1 layer, float32, training mode, "
            "loss = out.sum(); time of forward + backward"
        ),
        f"- protocol: models timed round-robin; a repeat = {warmup} warm-up + {rounds} timed "
        f"rounds, median per model; {repeats} repeat(s), 1-minute load average after each: "
        + ", ".join(f"{v:.2f}" for v in loads)
        + (" (--quick)" if args.quick else ""),
        (
            "- ratio: to torch.nn.LSTM (LSTM rows) / torch.nn.GRU (GRU rows) within each repeat; "
            "the median over the repeats, and their range; torch's CPU LSTM runs oneDNN's fused "
            "kernel, on CUDA cuDNN"
        ),
        (
            f"- fused LSTM kernel (lnrepro.nn.fused_lstm: LSTM ln, rms, none) built: "
            f"{fused_lstm.available()}; its "
            f"GEMMs in oneDNN: {fused_lstm.onednn()}"
        ),
    ]
    if first:
        lines.append(
            "- compiled (torch.compile, inductor, default mode): first call (compilation + one "
            "forward + backward), s: "
            + ", ".join(f"{n} {sec:.0f}" for (_, n), sec in first.items())
        )
    lines += [
        "",
        "| device | model | ms / batch | ratio (median) | ratio range over repeats |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {d} | {name} | {ms:.1f} | {ratio:.2f} | {lo:.2f}-{hi:.2f} |"
        for d, name, ms, ratio, lo, hi in rows
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(merge_section(old, section, heading_key()))
    print(f"written to {args.out} (this CPU's section; the others kept)")


if __name__ == "__main__":
    main()
