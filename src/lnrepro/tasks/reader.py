"""Cloze question answering (Hermann et al. 2015; the paper's Sec. 6.2): cross-entropy over each
example's candidate entities, and the error rate (1 - accuracy, lower is better, as every metric
of lnrepro.trainer)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lnrepro.contracts import Task


class Reader(Task):
    """Loss and metrics for `lnrepro.data.cloze.ReaderBatch` batches; no carried state.

    The model returns logits that are -inf outside the candidates, so the softmax is over the
    candidates only (lnrepro.models.reader.restrict)."""

    loss_reduction = "mean"  # cross-entropy averaged over the questions

    def training_step(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(batch)
        loss = F.cross_entropy(logits, batch.answer)
        err = (logits.detach().argmax(1) != batch.answer).float().mean()
        return loss, {"loss": loss.detach(), "err": err}

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict[str, float]:
        """Mean NLL (nats) and error over every question of the split."""
        nll = torch.zeros((), dtype=torch.float64)
        wrong, n = 0, 0
        for batch in batches:
            logits = model(batch)
            nll += F.cross_entropy(logits, batch.answer, reduction="sum").double().cpu()
            wrong += int((logits.argmax(1) != batch.answer).sum())
            n += len(batch.answer)
        return {"nll": float(nll) / max(n, 1), "err": wrong / max(n, 1)}
