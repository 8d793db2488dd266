"""The variational bound of DRAW on binarized images (Sec. 6.4, Figure 4), in nats per image.

    bound(x) = -log D(x | c_T) + sum_t KL(Q(Z_t | h^enc_t) || N(0, I))     (Gregor et al. Eq. 9-12)

an upper bound on -log p(x). Training minimises its mean over the batch with one posterior
sample per image (the reparameterisation z = mu + sigma * eps). Metrics: `bound` (the figure's
"test variational bound"), `recon` (the Bernoulli reconstruction NLL) and `kl` (summed over the
glimpses), each a mean per image.

Evaluation draws its posterior noise from a generator seeded with `eval_seed` at the start of
every split, so successive evaluations compare the model on the same noise (less jitter between
points of the curve) and evaluating does not move the training run's random stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lnrepro.contracts import Task


def gaussian_kl(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over the last dim (Gregor et al. Eq. 11):
    1/2 sum(mu^2 + sigma^2 - 2 log sigma - 1)."""
    return 0.5 * (mu.square() + (2 * log_sigma).exp() - 2 * log_sigma - 1).sum(-1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log D(x | c_T) per case, nats (Gregor et al. Eq. 9-10): Bernoulli cross-entropy with
    means sigmoid(logits), summed over the pixels. (B, A, A) -> (B,)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


class VariationalBound(Task):
    """Loss and metrics for batches `(x,)` of binary images (B, A, A); no state between batches.

    Args:
        eval_seed: seed of the posterior noise used in evaluation.
    """

    loss_reduction = "mean"  # the bound averaged over the images

    def __init__(self, eval_seed: int = 0):
        self.eval_seed = int(eval_seed)

    @staticmethod
    def _terms(model, x, generator=None):
        x = x.to(torch.get_default_dtype())
        logits, mu, log_sigma = model(x, generator=generator)  # (B, A, A), (T, B, Z) twice
        recon = bernoulli_nll(logits, x)
        return recon, gaussian_kl(mu, log_sigma).sum(0)  # KL per glimpse (T, B), then over t

    def training_step(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        (x,) = batch
        recon, kl = self._terms(model, x)
        loss = (recon + kl).mean()
        return loss, {
            "bound": loss.detach(),
            "recon": recon.mean().detach(),
            "kl": kl.mean().detach(),
        }

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict[str, float]:
        """Mean bound, reconstruction and KL (nats per image) over the images of the batches."""
        sums, n, gen = None, 0, None
        for (x,) in batches:
            if gen is None:
                gen = torch.Generator(device=x.device).manual_seed(self.eval_seed)
            recon, kl = self._terms(model, x, gen)
            part = torch.stack([recon.sum(), kl.sum()]).double()
            sums = part if sums is None else sums + part  # one synchronisation per split
            n += len(x)
        if not n:
            return {}
        recon, kl = (sums.cpu() / n).tolist()
        return {"bound": recon + kl, "recon": recon, "kl": kl}
