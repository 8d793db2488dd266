"""Language-modelling task: next-symbol cross-entropy with truncated BPTT (Ha et al. 2017; Cooijmans et al. 2017)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lnrepro.contracts import Task
from lnrepro.errors import ConfigError

UNITS = ("bpc", "ppl")
TIME_REDUCTIONS = ("mean", "sum")


class LanguageModel(Task):
    """Loss, metrics and carried state for `lnrepro.data.ptb.Segment` batches.

    Training carries the LSTM state (h, c) from one segment to the next of the same streams,
    detached, so gradients stop at the segment boundary (truncated BPTT); a segment marked
    `first` (the start of an epoch) starts from zeros. The carried state is part of
    `state_dict`, so a resumed run continues exactly.

    Metrics: `loss` is the mean cross-entropy in nats per symbol; `bpc` = nats / ln 2 (bits per
    character, the char-level unit of Ha et al. 2017 and Cooijmans et al. 2017) or `ppl` = exp(nats) (perplexity, the
    word-level unit). The trainer averages training metrics over the batches of a logging
    interval, so `batch/ppl` is the mean of per-batch perplexities, a little above
    exp(`batch/loss`); evaluation reports the exact exp of the mean.

    Args:
        unit: "bpc" | "ppl".
        time_reduction: how the training loss reduces over a segment's T steps. "mean": the
            cross-entropy per symbol. "sum": summed over the steps and averaged over the streams,
            Zaremba et al.'s (2014) loss: their learning rate 1 and gradient clip 5 apply to it,
            so with "mean" the same numbers take steps T times smaller (20 for their small
            model, 35 for the medium one). Metrics are per symbol either way.
    """

    # cross-entropy averaged over the T x B tokens of a segment: every stream has T of them
    loss_reduction = "mean"

    def __init__(self, unit: str = "bpc", time_reduction: str = "mean"):
        if unit not in UNITS:
            raise ConfigError(f"task.unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if time_reduction not in TIME_REDUCTIONS:
            raise ConfigError(
                f"task.time_reduction must be one of {', '.join(TIME_REDUCTIONS)}, "
                f"got {time_reduction!r}"
            )
        self.unit, self.time_reduction = unit, time_reduction
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None  # (h, c) after the last segment

    def _metric(self, nats: torch.Tensor) -> torch.Tensor:
        return nats / math.log(2) if self.unit == "bpc" else nats.exp()

    def training_step(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y, first = batch  # x, y (T, B)
        state = None if first or self.state is None else tuple(s.to(x.device) for s in self.state)
        logits, state = model(x, state)  # (T, B, V)
        self.state = tuple(s.detach() for s in state)  # truncated BPTT: no gradient across segments
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        nats = loss.detach()
        if self.time_reduction == "sum":  # mean over T x B tokens, times T: sum over T, mean over B
            loss = loss * y.shape[0]
        return loss, {"loss": nats, self.unit: self._metric(nats)}

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict[str, float]:
        """Mean NLL over every target of the split, its segments read in order with their own
        carried state (from zeros; the training state is left alone)."""
        nll, n, state = 0.0, 0, None
        for x, y, first in batches:
            logits, state = model(x, None if first else state)  # (T, B, V)
            # summed on the device in float64: one synchronisation per split, not per segment
            nll = nll + F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").double()
            n += y.numel()
        nats = torch.as_tensor(nll, dtype=torch.float64).cpu() / n
        return {"nll": float(nats), self.unit: float(self._metric(nats))}

    def state_dict(self) -> dict:
        return {"state": None if self.state is None else [s.cpu() for s in self.state]}

    def load_state_dict(self, state: dict) -> None:
        carried = state["state"]
        self.state = None if carried is None else tuple(carried)
