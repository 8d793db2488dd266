"""Classification task: softmax cross-entropy (NLL in nats) and error rate."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lnrepro.contracts import Task


class Classification(Task):
    """Loss and metrics for (inputs, labels) batches; no state between batches."""

    loss_reduction = "mean"  # cross-entropy averaged over the cases

    def training_step(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        err = (logits.detach().argmax(1) != y).float().mean()
        return loss, {"loss": loss.detach(), "err": err}

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict[str, float]:
        """Mean NLL and error over all examples of the given batches."""
        nll = torch.zeros((), dtype=torch.float64)
        wrong, n = 0, 0
        for x, y in batches:
            logits = model(x)
            nll += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            wrong += int((logits.argmax(1) != y).sum())
            n += len(y)
        return {"nll": float(nll) / n, "err": wrong / n}
