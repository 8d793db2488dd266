"""Skip-thought task: the two decoders' teacher-forced cross-entropy, and SentEval as an
evaluation hook (Ba et al. 2016, Sec. 6.3, Figure 3, Table 3)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from lnrepro import distributed
from lnrepro.contracts import Task
from lnrepro.data.text import PAD_ID
from lnrepro.eval.senteval import (
    HIGHER_IS_BETTER,
    as_metrics,
    check_files,
    format_table,
    run_senteval,
)

log = logging.getLogger(__name__)


def _nll(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits (L, B, V) against target (B, L), <pad> positions ignored."""
    return F.cross_entropy(
        logits.flatten(0, 1), target.t().flatten(), ignore_index=PAD_ID, reduction=reduction
    )


def _share_of_mean(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """This process's share of the global batch's mean NLL per non-<pad> token: its summed NLL
    over the non-<pad> tokens of all the processes (the count all-reduced, no gradient). The
    shares sum to the mean over the global batch, and their gradients to its gradient."""
    count = distributed.sum_over_ranks((target != PAD_ID).sum())
    return _nll(logits, target, "sum") / count


class SkipThoughtsTask(Task):
    """Loss = mean NLL per token of the previous sentence + that of the next sentence (nats),
    each over its non-<pad> targets (words and <eos>). Kiros et al. sum over words; the mean
    only rescales the gradient, which Adam ignores apart from clipping. Under torchrun each
    process's loss is its share of the global batch's means (`_share_of_mean`), so the
    processes' losses and gradients sum to the one-process ones (`loss_reduction = "sum"`).

    Metrics: training `loss`, `prev_nll`, `next_nll`; split "val" the same on held-out triples.
    SentEval (`senteval`: {data_dir, tasks, ...options of lnrepro.eval.senteval.run_senteval};
    null: none) is an evaluation hook: at every evaluation it probes the encoder and logs
    "senteval/<task>_acc" (%), "senteval/sick_r", "senteval/sick_rho" (higher is better) and
    "senteval/sick_mse". The listed tasks' files are read when the task is built (with `verify`,
    checked against their recorded checksums), so a missing file stops the run before its
    first update.
    """

    higher_is_better = HIGHER_IS_BETTER
    # a mean over the batch's non-<pad> tokens of each decoder, whose count differs between the
    # shares of several processes: each process divides its share's summed NLL by the count of
    # the whole global batch (an all-reduce, `_share_of_mean`), so the processes' losses, and
    # their gradients, sum to the global batch's
    loss_reduction = "sum"
    loss_communicates = True  # the count: its shares' losses add up inside a process group

    def __init__(self, senteval: dict | None = None, verify: bool = True):
        self.senteval = dict(senteval) if senteval else None
        if self.senteval:
            check_files(self.senteval["data_dir"], list(self.senteval.get("tasks") or []), verify)

    def training_step(self, model, batch):
        lp, ln = model(batch.prev, batch.cur, batch.nxt)
        world = distributed.current()
        if not world.active:  # one process: the batch's means
            prev, nxt = _nll(lp, batch.prev), _nll(ln, batch.nxt)
            loss = prev + nxt
            metrics = {"loss": loss, "prev_nll": prev, "next_nll": nxt}
            return loss, {k: v.detach() for k, v in metrics.items()}
        # torchrun: this process's shares of the global batch's means; its metrics times the
        # world size, so their mean over the processes (distributed.ShardedTask) is the global
        # batch's value
        prev, nxt = _share_of_mean(lp, batch.prev), _share_of_mean(ln, batch.nxt)
        loss = prev + nxt
        metrics = {"loss": loss, "prev_nll": prev, "next_nll": nxt}
        return loss, {k: v.detach() * world.size for k, v in metrics.items()}

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict[str, float]:
        sums = {"prev": 0.0, "next": 0.0}
        counts = {"prev": 0, "next": 0}
        for batch in batches:
            lp, ln = model(batch.prev, batch.cur, batch.nxt)
            for k, logits, tgt in (("prev", lp, batch.prev), ("next", ln, batch.nxt)):
                sums[k] += float(_nll(logits, tgt, "sum"))
                counts[k] += int((tgt != PAD_ID).sum())
        prev = sums["prev"] / max(counts["prev"], 1)
        nxt = sums["next"] / max(counts["next"], 1)
        return {"loss": prev + nxt, "prev_nll": prev, "next_nll": nxt}

    def evaluation_hooks(self, model) -> dict[str, dict[str, float]]:
        if not self.senteval:
            return {}
        opts = dict(self.senteval)
        data_dir, tasks = opts.pop("data_dir"), list(opts.pop("tasks", None) or [])
        batch = opts.pop("encode_batch_size", 256)
        max_len = opts.pop("max_len", None)
        results = run_senteval(lambda s: model.encode(s, batch, max_len), data_dir, tasks, **opts)
        log.info("SentEval\n%s", format_table(results))
        return {"senteval": as_metrics(results)}
