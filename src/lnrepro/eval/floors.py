"""Trivial floors: what a model that learned nothing useful scores on the same examples.

A comparison "A beats B" means little when B never beat a trivial model: the claims table gates
every arm that enters a claim on the floor of its metric (a sanity row), and a figure draws the
floor as a reference line. Each floor is computed on exactly the examples the runs are scored on,
through the experiment's own data module:

* `unigram`: a language model that ignores the context, p(w) = count(w) / N over the training
  text (every symbol of the training vocabulary occurs there, so no smoothing is needed). Its
  perplexity (words) or bits per character over the evaluated targets of each split.
* `linear_classifier`: a multinomial logistic regression on the flattened images (MNIST's
  classic linear baseline, about 7.5 % test error: LeCun et al. 1998 list 12 % for a plain
  linear classifier), fitted by full-batch L-BFGS on the training split, its error on each split.
* The attentive reader's floors (random candidate, most frequent and most recent entity in the
  document) live with its corpus, `lnrepro.data.cloze_stats`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def unigram(streams) -> dict[str, float]:
    """Mean negative log-likelihood (nats per symbol) of the unigram model of the training text
    over each evaluation split's scored targets (`lnrepro.data.ptb.TokenStreams`: every token of
    a stream after its first, the same targets as the runs' val/test)."""
    counts = torch.bincount(streams.train.flatten(), minlength=streams.vocab_size)
    logp = (counts.double() / counts.sum()).log()
    out = {}
    for split, s in streams.splits.items():
        out[split] = float(-logp[s[1:].flatten().cpu()].mean())
    return out


def lm_floors(streams) -> dict[str, float]:
    """The unigram floor in the units the language-model task logs: <split>/ppl (word level) or
    <split>/bpc (character level), and <split>/nll in nats."""
    nll = unigram(streams)
    words = streams.vocab_size > 256
    out = {}
    for split, v in nll.items():
        out[f"{split}/nll"] = v
        if words:
            out[f"{split}/ppl"] = math.exp(v)
        else:
            out[f"{split}/bpc"] = v / math.log(2)
    return out


def linear_classifier(splits: dict, iters: int = 100, l2: float = 1e-4) -> dict[str, float]:
    """<split>/err of a multinomial logistic regression fitted on splits["train"] (x: (N, D)
    floats, y: (N,) labels), with a small L2 penalty so the optimum is unique; float64 and a
    fixed start (zeros), so the number depends on the data only."""
    x, y = (t.cpu() for t in splits["train"])
    x = x.reshape(len(x), -1).double()
    k = int(y.max()) + 1
    w = torch.zeros(x.shape[1] + 1, k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def logits(inp):
        return inp @ w[:-1] + w[-1]

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits(x), y) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    out = {}
    with torch.no_grad():
        for split, (xs, ys) in splits.items():
            pred = logits(xs.cpu().reshape(len(xs), -1).double()).argmax(1)
            out[f"{split}/err"] = float((pred != ys.cpu()).double().mean())
    return out
