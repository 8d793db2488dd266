"""SentEval scoring (Kiros et al. 2015's protocol; the LN paper's Table 3): the classifiers and
statistics that turn frozen sentence vectors into the reported numbers. `senteval.py` reads the
tasks' files and runs these.

Classifiers: L2-regularised logistic regression (sigmoid for 2 classes, softmax otherwise),
fitted by full-batch L-BFGS in torch, every (fold, C) problem of a task in one batched run
(`fit_logreg`); nested cross-validation (`cv_accuracy`, `choose_c`). SICK: Tai et al.'s target
distribution (`sick_target`), the expected score (`expected_score`), Pearson r and Spearman rho.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lnrepro.errors import ConfigError

DEFAULT_CS = (1.0, 4.0, 16.0, 64.0, 256.0)


# ---- SICK maths ---------------------------------------------------------------------------------
def sick_target(scores: torch.Tensor, n_classes: int = 5) -> torch.Tensor:
    """Tai et al. (2015): score y in [1, K] -> p with p_{floor(y)} = floor(y) - y + 1 and
    p_{floor(y)+1} = y - floor(y) (classes 1..K at columns 0..K-1), so sum_k k p_k = y."""
    y = scores.double().clamp(1, n_classes)
    fl = y.floor()
    p = torch.zeros(len(y), n_classes, dtype=torch.float64)
    lo = (fl - 1).long()
    p.scatter_(1, lo[:, None], (fl - y + 1)[:, None])
    hi = fl.long().clamp(max=n_classes - 1)  # y = K: all mass on K (the add below is 0)
    p.scatter_add_(1, hi[:, None], (y - fl)[:, None])
    return p


def expected_score(probs: torch.Tensor) -> torch.Tensor:
    """sum_k k p_k for classes k = 1..K."""
    k = torch.arange(1, probs.shape[1] + 1, dtype=probs.dtype)
    return probs @ k


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n, ties get their average rank."""
    x = x.double()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(1, len(x) + 1, dtype=torch.float64)
    vals, inv = torch.unique(x, return_inverse=True)
    sums = torch.zeros(len(vals), dtype=torch.float64).index_add_(0, inv, ranks)
    counts = torch.zeros(len(vals), dtype=torch.float64).index_add_(0, inv, torch.ones_like(x))
    return (sums / counts)[inv]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    return pearson(_ranks(a), _ranks(b))


# ---- batched logistic regression ----------------------------------------------------------------
def fit_logreg(
    x: torch.Tensor,
    y: torch.Tensor,
    masks: torch.Tensor,
    cs: torch.Tensor,
    n_classes: int,
    max_iter: int = 200,
    dtype=torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """P independent L2 logistic regressions in one L-BFGS run.

    x (N, D) features; y (N,) class ids, or (N, K) target distributions (soft labels);
    masks (P, N) bool: the training examples of problem p; cs (P,): scikit-learn's C of each.
    Returns W (P, D, K') and b (P, K'), K' = 1 for two classes with hard labels (sigmoid),
    else K (softmax). Computed in float32 by default (twice the GEMM speed of float64; the
    accuracies agree to ~0.1 %)."""
    x = x.to(dtype)
    soft = y.dim() == 2
    k = 1 if (n_classes == 2 and not soft) else n_classes
    p_count, d = masks.shape[0], x.shape[1]
    w = torch.zeros(d, p_count * k, dtype=dtype, requires_grad=True)
    b = torch.zeros(p_count * k, dtype=dtype, requires_grad=True)
    m = masks.to(dtype).t()  # (N, P)
    n_p = m.sum(0).clamp_min(1)
    weight = m / n_p  # mean over each problem's examples
    lam = 1.0 / (cs.to(dtype) * n_p)  # ||w||^2 / (2 C n)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )
    if soft:
        target = y.to(dtype)
    elif k == 1:
        target = y.to(dtype)[:, None]

    def closure():
        opt.zero_grad()
        logits = (x @ w + b).view(-1, p_count, k)
        if k == 1:
            loss_i = F.binary_cross_entropy_with_logits(
                logits[..., 0], target.expand(-1, p_count), reduction="none"
            )
        elif soft:
            loss_i = -(F.log_softmax(logits, -1) * target[:, None, :]).sum(-1)
        else:
            loss_i = -F.log_softmax(logits, -1).gather(-1, y[:, None, None].expand(-1, p_count, 1))[
                ..., 0
            ]
        reg = 0.5 * (lam * w.view(d, p_count, k).pow(2).sum((0, 2))).sum()
        loss = (loss_i * weight).sum() + reg
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().view(d, p_count, k).permute(1, 0, 2), b.detach().view(p_count, k)


def _predict(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Class ids (P, N) of every problem's classifier on x."""
    logits = torch.einsum("nd,pdk->pnk", x.to(w.dtype), w) + b[:, None, :]
    return (logits[..., 0] > 0).long() if w.shape[2] == 1 else logits.argmax(-1)


def _standardise(*xs: torch.Tensor, ref: torch.Tensor | None = None):
    ref = torch.cat(xs) if ref is None else ref
    mean, std = ref.double().mean(0), ref.double().std(0).clamp_min(1e-8)
    return [(x.double() - mean) / std for x in xs]


def _folds(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """Fold id of each of n examples: a fixed permutation cut into k near-equal parts."""
    if n < k:
        raise ConfigError(f"{k} folds need at least {k} examples, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fold = torch.empty(n, dtype=torch.long)
    fold[perm] = torch.arange(n) % k
    return fold


def choose_c(
    x: torch.Tensor,
    y: torch.Tensor,
    within: torch.Tensor,
    inner_folds: int,
    cs,
    n_classes: int,
    max_iter: int,
    seed: int = 1,
) -> torch.Tensor:
    """For each row of `within` (G, N) bool (a training set), the C of `cs` with the best mean
    accuracy over `inner_folds` folds of that set. Returns (G,) C values."""
    cs = torch.tensor(list(cs), dtype=torch.float64)
    masks, vals, cvals = [], [], []
    for g in range(within.shape[0]):
        idx = torch.nonzero(within[g]).flatten()
        fold = _folds(len(idx), inner_folds, seed + g)
        for f in range(inner_folds):
            tr = torch.zeros(x.shape[0], dtype=torch.bool)
            tr[idx[fold != f]] = True
            va = torch.zeros(x.shape[0], dtype=torch.bool)
            va[idx[fold == f]] = True
            for c in cs:
                masks.append(tr)
                vals.append(va)
                cvals.append(c)
    masks, vals = torch.stack(masks), torch.stack(vals)
    w, b = fit_logreg(x, y, masks, torch.stack(cvals), n_classes, max_iter)
    pred = _predict(x, w, b)  # (P, N)
    acc = ((pred == y[None]) & vals).sum(1).double() / vals.sum(1).clamp_min(1)
    acc = acc.view(within.shape[0], inner_folds, len(cs)).mean(1)  # (G, C)
    return cs[acc.argmax(1)]


def cv_accuracy(
    x: torch.Tensor,
    y: torch.Tensor,
    folds: int = 10,
    inner_folds: int = 3,
    cs=DEFAULT_CS,
    max_iter: int = 200,
    seed: int = 0,
) -> dict:
    """Nested CV accuracy (%) of logistic regression on features x (N, D), labels y (N,)."""
    (x,) = _standardise(x)
    n_classes = int(y.max()) + 1
    fold = _folds(len(y), folds, seed)
    train = torch.stack([fold != f for f in range(folds)])  # (folds, N)
    chosen = choose_c(x, y, train, inner_folds, cs, n_classes, max_iter)
    w, b = fit_logreg(x, y, train, chosen, n_classes, max_iter)
    pred = _predict(x, w, b)
    test = ~train
    correct = ((pred == y[None]) & test).sum()
    return {"acc": 100.0 * float(correct) / len(y), "C": [float(c) for c in chosen]}
