"""Order embeddings: the order-violation ranking loss and caption / image retrieval metrics
(Vendrov et al. 2016; the paper's Sec. 6.1, Table 2 and Figure 1).

Order (Vendrov et al. Sec. 2): the reversed product order on the positive orthant, x <= y iff
x_k >= y_k for every k, with order-violation penalty (their Eq. 2)

    E(x, y) = || max(0, y - x) ||^2,        zero exactly when x <= y.

Captions are abstractions of images, so an image lies BELOW its captions (image <= caption):
a caption's coordinates must not exceed its image's, and the penalty of a pair is
E(image, caption) = ||max(0, s - i)||^2 for caption embedding s and image embedding i (their
code: `order_violations(s, im) = max(0, s - im)^2`).

Loss (their contrastive_loss, margin alpha = 0.05), over a batch of B matching pairs (s_k, i_k),
every other caption and every other image of the batch a contrastive term:

    sum_k [ sum_{c != k} max(0, alpha - E(i_k, s_c) + E(i_k, s_k))      (contrastive captions)
          + sum_{j != k} max(0, alpha - E(i_j, s_k) + E(i_k, s_k)) ]    (contrastive images)

summed, not averaged, as theirs (the scale matters for the gradient clipping only).

Retrieval (their evaluation.py), within a fold of N images and 5N captions, by the penalty:
  * caption retrieval (image query): rank of the first of the image's 5 captions;
  * image retrieval (caption query): rank of the caption's image.
R@K = % of queries with rank <= K, mean r = mean rank (1 = first). A tie with the correct item
counts against the model (ranks are never optimistic). Metrics are means over the folds.

Logged as the paper's Table 2 reports them: `<q>_r<K>` = R@K (%, higher is better; q = cap:
caption retrieval, img: image retrieval), `<q>_mean_r` (lower is better), and `rsum` = R@1 + R@5
+ R@10 of image retrieval: Vendrov et al.'s model selection (the validation model with the
highest sum is kept), so the trainer's best `val/rsum` (a maximum, `higher_is_better`) is
their best model.
"""

from __future__ import annotations

import torch

from lnrepro import distributed
from lnrepro.contracts import Task
from lnrepro.data.text import PAD_ID
from lnrepro.errors import ConfigError

CAPS_PER_IMAGE = 5
KS = (1, 5, 10)
# caption rows x images x dims formed at once: small on CPU, where a chunk that stays in the
# cache is several times faster (1 s instead of 5 s for a 5,000 x 1,000 x 256 fold)
CHUNK_ELEMENTS = {"cpu": 2**18, "cuda": 2**26}


def order_violation(s: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    """Captions s (C, D), images im (M, D) -> (C, M): E(im_m, s_c) = ||max(0, s_c - im_m)||^2
    (Vendrov et al. Eq. 2), formed in chunks of captions to bound memory."""
    size = CHUNK_ELEMENTS["cpu" if s.device.type == "cpu" else "cuda"]
    rows = max(1, size // max(1, im.shape[0] * im.shape[1]))
    return torch.cat([_violations(s[a : a + rows], im) for a in range(0, s.shape[0], rows)])


def _violations(s: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
    d = s[:, None, :] - im[None]
    if torch.is_grad_enabled() and d.requires_grad:
        return d.clamp(min=0).square().sum(-1)
    d.clamp_(min=0)  # evaluation: in place, one temporary per chunk
    return d.mul_(d).sum(-1)


def contrastive_loss(errors: torch.Tensor, margin: float) -> torch.Tensor:
    """Summed hinge loss of a (B, B) penalty matrix whose diagonal holds the matching pairs
    (rows: captions, columns: images): every off-diagonal entry is a contrastive caption for
    its column's image and a contrastive image for its row's caption."""
    pos = errors.diagonal()
    contrastive_caps = (margin - errors + pos[None, :]).clamp(min=0)
    contrastive_imgs = (margin - errors + pos[:, None]).clamp(min=0)
    off = ~torch.eye(errors.shape[0], dtype=torch.bool, device=errors.device)
    return (contrastive_caps + contrastive_imgs)[off].sum()


def contrastive_loss_of_cases(
    s: torch.Tensor, im: torch.Tensor, lo: int, hi: int, margin: float
) -> torch.Tensor:
    """The terms of `contrastive_loss` that belong to the pairs lo .. hi-1 of a batch of
    captions s (B, D) and images im (B, D), pair k = (s_k, im_k): the contrastive captions of
    image k (column k of the penalty matrix) and the contrastive images of caption k (row k).
    Every term belongs to one pair, so the sums over a partition of 0 .. B-1 add up to
    `contrastive_loss(order_violation(s, im), margin)`: under torchrun each process takes its
    own pairs against the whole global batch (Vendrov et al. 2016: every other caption and
    image of the batch is a contrastive term)."""
    n = hi - lo
    rows = order_violation(s[lo:hi], im)  # (n, B): captions lo..hi-1 x every image
    cols = order_violation(s, im[lo:hi])  # (B, n): every caption x images lo..hi-1
    k = torch.arange(n, device=s.device)
    pos = rows[k, lo + k]  # E(i_k, s_k) of the own pairs
    contrastive_imgs = (margin - rows + pos[:, None]).clamp(min=0)  # row k: images j != k
    contrastive_caps = (margin - cols + pos[None, :]).clamp(min=0)  # column k: captions c != k
    own = torch.zeros(n, s.shape[0], dtype=torch.bool, device=s.device)
    own[k, lo + k] = True
    return contrastive_imgs[~own].sum() + contrastive_caps[~own.t()].sum()


def image_ranks(errors: torch.Tensor) -> torch.Tensor:
    """Image retrieval: (5N, N) caption x image penalties -> (5N,) 1-based rank of each
    caption's image (caption c describes image c // 5) among the N images."""
    caps = torch.arange(errors.shape[0], device=errors.device)
    gt = errors[caps, caps // CAPS_PER_IMAGE]
    return (errors <= gt[:, None]).sum(1)  # the image itself counts 1; ties count against


def caption_ranks(errors: torch.Tensor) -> torch.Tensor:
    """Caption retrieval: (5N, N) penalties -> (N,) 1-based rank of the best of each image's
    5 captions among the 5N captions."""
    e = errors.t()  # (N, 5N): image queries
    img = torch.arange(e.shape[1], device=e.device) // CAPS_PER_IMAGE
    mine = img[None, :] == torch.arange(e.shape[0], device=e.device)[:, None]
    best = e.masked_fill(~mine, float("inf")).min(1).values
    return ((e <= best[:, None]) & ~mine).sum(1) + 1  # ties count against the model


def recall_metrics(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    """1-based ranks -> {prefix_r1, prefix_r5, prefix_r10: R@K (%), prefix_mean_r: mean rank}."""
    r = ranks.double()
    out = {f"{prefix}_r{k}": 100.0 * float((r <= k).double().mean()) for k in KS}
    out[f"{prefix}_mean_r"] = float(r.mean())
    return out


def retrieval_metrics(errors: torch.Tensor) -> dict[str, float]:
    """All Table 2 metrics (see the module docstring) of one fold's penalties."""
    out = {
        **recall_metrics(caption_ranks(errors), "cap"),
        **recall_metrics(image_ranks(errors), "img"),
    }
    out["rsum"] = sum(out[f"img_r{k}"] for k in KS)
    return out


class OrderEmbeddingsTask(Task):
    """Training: `contrastive_loss` of the batch's order violations (metric `loss`); under
    torchrun each process's `contrastive_loss_of_cases` of its own pairs against the gathered
    global batch, which sum to it.
    Evaluation: the retrieval metrics per fold (one `Pairs` of 5N captions and N images per
    batch), averaged over the folds.

    Args:
        margin: alpha of the hinge (Vendrov et al.'s order model: 0.05).
        encode_batch_size: captions encoded at once in evaluation (no effect on the numbers).
    """

    higher_is_better = frozenset({f"{q}_r{k}" for q in ("cap", "img") for k in KS} | {"rsum"})
    # every caption of the batch is a contrastive term of every other image (Vendrov et al.
    # Eq. 4): under torchrun each process gathers every process's embeddings (with autograd)
    # and sums the terms of its own pairs against the whole global batch
    # (`contrastive_loss_of_cases`); the processes' losses, and gradients, sum to the batch's
    loss_reduction = "sum"
    loss_communicates = True  # the gather: its shares' losses add up inside a process group

    def __init__(self, margin: float = 0.05, encode_batch_size: int = 1000):
        if not margin > 0:
            raise ConfigError(f"task.margin must be > 0, got {margin}")
        self.margin, self.encode_batch_size = float(margin), int(encode_batch_size)

    def training_step(self, model, batch):
        s, im = model(batch.ids, batch.images)
        world = distributed.current()
        if not world.active:  # one process: the whole batch's loss
            loss = contrastive_loss(order_violation(s, im), self.margin)
            return loss, {"loss": loss.detach()}
        # torchrun: this process's pairs against the global batch; its `loss` metric times the
        # world size, so the mean over the processes (distributed.ShardedTask) is the batch's
        lo, hi = distributed.share_bounds(len(s))
        s, im = distributed.all_gather_cases(s), distributed.all_gather_cases(im)
        loss = contrastive_loss_of_cases(s, im, lo, hi, self.margin)
        return loss, {"loss": loss.detach() * world.size}

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict[str, float]:
        folds = [retrieval_metrics(self.fold_errors(model, b)) for b in batches]
        return {k: sum(f[k] for f in folds) / len(folds) for k in folds[0]} if folds else {}

    def fold_errors(self, model, fold) -> torch.Tensor:
        """(5N, N) penalties of a fold's captions against its images. Captions are encoded in
        batches of similar length, each cut to its longest caption (less padding to read)."""
        lengths = (fold.ids != PAD_ID).sum(1)
        s = None
        for idx in lengths.argsort().split(self.encode_batch_size):
            e = model.encode_captions(fold.ids[idx, : int(lengths[idx].max())])
            s = e.new_empty(len(lengths), e.shape[1]) if s is None else s
            s[idx] = e
        return order_violation(s, model.encode_images(fold.images))
