"""Cost per update of the candidate norm relative to the suite's main reference (its first
`references` entry: LN in experiments/scorecard/suite.yaml), measured in the scorecard's own
invocation on the machine it runs on.

Both norms' models are built from the entry's config (the figure's CPU-scale experiment at the
setting) and trained on one synthetic batch of the entry's batch size (the data module's
`synthetic_batch`: the real batch's shapes without reading the data), with one torch thread,
as each of the parallel launcher's two lanes runs. Interleaved: in every repeat each norm takes
`warmup` untimed updates then `steps` timed ones, the order alternating between repeats
(candidate first, then the reference first), so that a change of the machine's load falls on
both. Each repeat gives a ratio (candidate / reference seconds per update); the scorecard
reports their geometric mean with the engine's 95 % t interval over the repeats' log ratios
(`linear_interval`) and their range, the CPU, and the 1-minute load average before and after.
The loss is not checked: a diverging norm still has a cost.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field

import torch

from lnrepro.claims.stats import Interval, linear_interval
from lnrepro.golden import cpu_capability, cpu_name

CANDIDATE, REFERENCE = "candidate", "reference"  # the two timed configs (`measure`)


@dataclass
class Cost:
    """The per-update time of the candidate against the reference on one entry."""

    ratios: list[float] = field(default_factory=list)  # one per repeat: candidate / reference
    # CANDIDATE or REFERENCE -> s/update per repeat
    seconds: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    warmup: int = 0
    interval: Interval | None = None  # of the mean log ratio
    load: tuple[float, float] | None = None  # 1-minute load average before, after
    machine: str = ""
    error: str = ""  # why it was not measured

    @property
    def ratio(self) -> float | None:
        """The geometric mean of the repeats' ratios."""
        if not self.ratios:
            return None
        return math.exp(sum(math.log(r) for r in self.ratios) / len(self.ratios))

    def text(self) -> str:
        """`1.12x [1.05, 1.19] (range 1.04-1.20, 5 repeats)` or why it is missing."""
        if self.error:
            return f"not measured ({self.error})"
        out = f"{self.ratio:.3g}x"
        if self.interval is not None:
            out += f" [{math.exp(self.interval.low):.3g}, {math.exp(self.interval.high):.3g}]"
        lo, hi = min(self.ratios), max(self.ratios)
        return out + f" (range {lo:.3g}-{hi:.3g}, {len(self.ratios)} repeats)"


def machine() -> str:
    """The CPU, its vector capability and core count."""
    return f"{cpu_name()} ({cpu_capability()}, {os.cpu_count()} cores)"


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def build(cfg):
    """(model, task, optimizer, batch, grad_clip) of a composed config, built as lnrepro.train
    builds them, on a synthetic batch of the config's batch size (no data read)."""
    import hydra
    from omegaconf import OmegaConf, open_dict

    from lnrepro import build as run_build
    from lnrepro.distributed import World

    with open_dict(cfg):
        if "senteval" in cfg.task:  # the skip-thought task's evaluation hook: not timed
            cfg.task.senteval = None
    data = OmegaConf.to_container(cfg.data, resolve=True)
    module = sys.modules[hydra.utils.get_object(data.pop("_target_")).__module__]
    norm = run_build.build_norm(cfg, data["batch_size"], World())
    task = run_build.build(cfg.task)
    torch.manual_seed(cfg.seed)
    syn = module.synthetic_batch(data, data["batch_size"], torch.Generator().manual_seed(0))
    model = run_build.build(cfg.model, norm=norm, **syn.model_kwargs)
    optimizer, _, _ = run_build.build_optimizer(cfg.optim, model)
    return model, task, optimizer, syn.batch, cfg.trainer.grad_clip


def _seconds_per_update(parts, steps: int, warmup: int) -> float:
    """`warmup` untimed updates, then the mean wall time of `steps` timed ones."""
    model, task, optimizer, batch, clip = parts
    model.train()
    for k in range(warmup + steps):
        if k == warmup:
            start = time.perf_counter()
        loss, _ = task.training_step(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    return (time.perf_counter() - start) / steps


def measure(cfgs: dict, steps: int = 20, warmup: int = 3, repeats: int = 5) -> Cost:
    """Interleaved timing of the configs {CANDIDATE: cfg, REFERENCE: cfg} (composed)."""
    cost = Cost(steps=steps, warmup=warmup, machine=machine())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    before = _load()
    try:
        parts = {name: build(cfg) for name, cfg in cfgs.items()}
        cost.seconds = {name: [] for name in parts}
        for r in range(repeats):
            order = list(parts) if r % 2 == 0 else list(reversed(parts))
            for name in order:
                cost.seconds[name].append(_seconds_per_update(parts[name], steps, warmup))
    except Exception as e:  # noqa: BLE001  (a norm that cannot be timed: said in its row)
        cost.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
        return cost
    finally:
        torch.set_num_threads(threads)
    after = _load()
    cost.load = (before, after) if before is not None else None
    mine, ref = cost.seconds[CANDIDATE], cost.seconds[REFERENCE]
    cost.ratios = [c / r for c, r in zip(mine, ref)]
    if len(cost.ratios) > 1:
        cost.interval = linear_interval([[math.log(r) for r in cost.ratios]], [1.0])
    return cost
