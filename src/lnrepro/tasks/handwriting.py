"""Handwriting synthesis task (LN paper Sec. 6.5, Figure 5; Graves 2013 Sec. 5): the negative
log-likelihood of the pen offsets given the text, in nats per sequence and per point."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lnrepro.contracts import Task

LOG_2PI = math.log(2 * math.pi)


def sequences(strokes: torch.Tensor, lengths: torch.Tensor, chars: torch.Tensor):
    """A batch of `lnrepro.data.iam_ondb.StrokeData` -> time-first model inputs and targets.

    strokes (B, L, 3) zero padded, lengths (B,), chars (B, U) padded with -1. The targets are
    the B sequences cut to the longest one, (T, B, 3); the inputs are the targets shifted one
    step later behind a zero vector (x_1 = 0 predicts the first offset, x_t = target_{t-1});
    mask (T, B) marks the real points; chars cut to the longest text.
    """
    T = int(lengths.max())
    target = strokes[:, :T].transpose(0, 1)
    x = torch.cat([target.new_zeros(1, *target.shape[1:]), target[:-1]])
    mask = (torch.arange(T, device=lengths.device).unsqueeze(1) < lengths).to(target.dtype)
    U = int((chars >= 0).sum(1).max())
    return x, target, mask, chars[:, :U]


def mdn_nll(params, target: torch.Tensor) -> torch.Tensor:
    """-log Pr(target | y) in nats for every point (Graves Eq. 17-26): the mixture of bivariate
    Gaussians over (dx, dy) plus the Bernoulli end-of-stroke term. target (..., 3) -> (...).

    Computed in the log domain (log-sum-exp over components, log sigma directly, never
    1/sigma^2), so very small sigmas give large but finite values and gradients."""
    e_logit, log_pi, mu, log_sigma, rho = params
    z = (target[..., None, :2] - mu) * torch.exp(-log_sigma)  # (..., M, 2)
    z1, z2 = z.unbind(-1)
    one_m = 1.0 - rho * rho
    Z = z1 * z1 + z2 * z2 - 2.0 * rho * z1 * z2
    # log N(x | mu, sigma, rho) = -log(2 pi s1 s2 sqrt(1 - rho^2)) - Z / (2 (1 - rho^2))
    log_n = -LOG_2PI - log_sigma.sum(-1) - 0.5 * torch.log(one_m) - Z / (2.0 * one_m)
    nll_xy = -torch.logsumexp(log_pi + log_n, -1)
    nll_eos = F.binary_cross_entropy_with_logits(e_logit, target[..., 2], reduction="none")
    return nll_xy + nll_eos


class HandwritingTask(Task):
    """Loss and metrics for `HandwritingSynthesis` on IAM-OnDB batches.

    The training loss is the NLL SUMMED over the points and the sequences of the batch
    (Graves' objective, Eq. 26, summed over the batch): its derivatives are per-sequence
    derivatives, which the model's Graves-style clipping hooks expect; Adam does not care about
    the scale. Metrics: `nll_seq`, the mean NLL of a sequence in nats (Figure 5's y-axis; each
    sequence cut to data.max_len points) and `nll_point`, nats per point. No state is carried
    between batches: each batch holds whole (truncated) lines.
    """

    # summed over the sequences (Graves Eq. 26): on several processes the gradients are summed,
    # so each process's clipping hooks see the per-sequence derivatives of one process
    loss_reduction = "sum"

    def training_step(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, target, mask, chars = sequences(*batch)
        y, _ = model(x, chars)
        total = (mdn_nll(model.mdn(y), target) * mask).sum()
        nats = total.detach()
        return total, {"nll_seq": nats / x.shape[1], "nll_point": nats / mask.sum()}

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict[str, float]:
        total, points, lines = 0.0, 0.0, 0
        for batch in batches:
            x, target, mask, chars = sequences(*batch)
            y, _ = model(x, chars)
            total = total + (mdn_nll(model.mdn(y), target) * mask).sum().double()
            points = points + mask.sum().double()
            lines += x.shape[1]
        total = float(torch.as_tensor(total).cpu())
        return {"nll_seq": total / lines, "nll_point": total / float(torch.as_tensor(points))}
