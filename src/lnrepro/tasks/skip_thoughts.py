"""Skip-thought task: the two decoders' teacher-forced cross-entropy, and SentEval as an
evaluation split (Ba et al. 2016, Sec. 6.3, Figure 3, Table 3)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from lnrepro.data.books import PAD_ID, SentEvalRequest
from lnrepro.eval.senteval import as_metrics, format_table, run_senteval

log = logging.getLogger(__name__)


def _nll(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits (L, B, V) against target (B, L), <pad> positions ignored."""
    return F.cross_entropy(logits.flatten(0, 1), target.t().flatten(), ignore_index=PAD_ID,
                           reduction=reduction)


class SkipThoughtsTask:
    """Loss = mean NLL per token of the previous sentence + that of the next sentence (nats),
    each over its non-<pad> targets (words and <eos>). Kiros et al. sum over words; the mean
    only rescales the gradient, which Adam ignores apart from clipping.

    Metrics (lower is better, the trainer's convention): training `loss`, `prev_nll`, `next_nll`;
    split "val" the same on held-out triples; split "senteval" (a `SentEvalRequest`) the
    SentEval scores as error rates, `<task>_err` = 100 - accuracy (%), and for SICK
    `sick_1mr` = 1 - Pearson r, `sick_1mrho` = 1 - Spearman rho, `sick_mse`
    (lnrepro.eval.senteval.as_metrics). Skipped SentEval tasks (missing files) give no metric
    and one warning with the reason.
    """

    def training_step(self, model, batch):
        lp, ln = model(batch.prev, batch.cur, batch.nxt)
        prev, nxt = _nll(lp, batch.prev), _nll(ln, batch.nxt)
        loss = prev + nxt
        return loss, {"loss": loss.detach(), "prev_nll": prev.detach(), "next_nll": nxt.detach()}

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict[str, float]:
        sums = {"prev": 0.0, "next": 0.0}
        counts = {"prev": 0, "next": 0}
        for batch in batches:
            if isinstance(batch, SentEvalRequest):
                return self.senteval(model, batch)
            lp, ln = model(batch.prev, batch.cur, batch.nxt)
            for k, logits, tgt in (("prev", lp, batch.prev), ("next", ln, batch.nxt)):
                sums[k] += float(_nll(logits, tgt, "sum"))
                counts[k] += int((tgt != PAD_ID).sum())
        prev = sums["prev"] / max(counts["prev"], 1)
        nxt = sums["next"] / max(counts["next"], 1)
        return {"loss": prev + nxt, "prev_nll": prev, "next_nll": nxt}

    def senteval(self, model, req: SentEvalRequest) -> dict[str, float]:
        opts = dict(req.options)
        batch = opts.pop("encode_batch_size", 256)
        max_len = opts.pop("max_len", None)
        results = run_senteval(lambda s: model.encode(s, batch, max_len), req.data_dir,
                               req.tasks, **opts)
        log.info("SentEval\n%s", format_table(results))
        return as_metrics(results)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
