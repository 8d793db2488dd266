"""SentEval-style transfer evaluation of frozen sentence vectors (Kiros et al. 2015's protocol,
PAPER.md B.6; the LN paper's Table 3).

Tasks and files (SentEval's layout and names, `<senteval_dir>/`):
  MR    MR/rt-polarity.{pos,neg}            binary, 10-fold CV
  CR    CR/custrev.{pos,neg}                binary, 10-fold CV
  SUBJ  SUBJ/subj.{subjective,objective}    binary, 10-fold CV (or quote/plot.tok.gt9.5000)
  MPQA  MPQA/mpqa.{pos,neg}                 binary, 10-fold CV
  TREC  TREC/train_5500.label, TREC_10.label  6 coarse classes, train/test split
  SICK  SICK/SICK_train.txt, SICK_trial.txt, SICK_test_annotated.txt  relatedness 1..5
A task whose files are missing is reported as skipped, with the reason; the others still run.

Classifiers: L2-regularised logistic regression (sigmoid for 2 classes, softmax otherwise),
fitted by full-batch L-BFGS in torch (no scikit-learn). The objective is scikit-learn's,
0.5 ||w||^2 + C sum_i loss_i (intercept not penalised), written per example as
mean loss + ||w||^2 / (2 C n). Every (fold, C) problem of a task is fitted in ONE batched
L-BFGS run (their objectives are independent and summed; the weights of all problems form one
(D, P) matrix, so each iteration is one GEMM), which is what makes the nested CV cheap.
Features are standardised with the mean and std of all of a task's sentence vectors (no labels
used), for the conditioning of L-BFGS.

  * MR, CR, SUBJ, MPQA: `folds` (10) outer folds of a fixed permutation (seed 0); in each, C is
    chosen by `inner_folds`-fold CV on the outer training part (mean inner accuracy), then
    refitted on the whole outer training part and scored on the outer test fold. Reported:
    accuracy over all examples (%). Kiros et al. scan C = 2^0..2^8 with 10 inner folds; the
    default here is C in {2^0, 2^2, 2^4, 2^6, 2^8} and 3 inner folds (DOCUMENTED REDUCTION, to
    keep an evaluation pass within a few minutes on one CPU thread).
  * TREC: C by `inner_folds`-fold CV on the 5,452 training questions, refit on all of them,
    accuracy on the 500 test questions.
  * SICK: features [|u - v|, u * v] of the two sentences' vectors; target = Tai et al.'s
    distribution over the scores 1..5 (`sick_target`); a softmax regression (the "small
    classifier") fitted to it with the cross-entropy to the soft target (= KL up to a constant);
    prediction = expected score sum_k k p_k (`expected_score`). The L2 strength is chosen on
    SICK trial by Pearson r (Kiros et al.: Adam with early stopping on the trial Pearson r);
    reported: Pearson r, Spearman rho and MSE on SICK test.

Training-time metrics (`as_metrics`, lower is better, the trainer's convention): `<task>_err`
= 100 - accuracy (%), `sick_1mr` = 1 - r, `sick_1mrho` = 1 - rho, `sick_mse`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from lnrepro.errors import ConfigError

log = logging.getLogger(__name__)

TASKS = ("MR", "CR", "SUBJ", "MPQA", "TREC", "SICK")
BINARY = {
    "MR": [("rt-polarity.pos", 1), ("rt-polarity.neg", 0)],
    "CR": [("custrev.pos", 1), ("custrev.neg", 0)],
    "SUBJ": [(("subj.subjective", "quote.tok.gt9.5000"), 1),
             (("subj.objective", "plot.tok.gt9.5000"), 0)],
    "MPQA": [("mpqa.pos", 1), ("mpqa.neg", 0)],
}
TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
DEFAULT_CS = (1.0, 4.0, 16.0, 64.0, 256.0)


class Skipped(Exception):
    """A task that cannot run (missing files); the message is the reason."""


# ---- readers ------------------------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    text = path.read_bytes().decode("latin-1")  # SentEval reads these files as latin-1
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _need(folder: Path, names) -> Path:
    names = (names,) if isinstance(names, str) else tuple(names)
    for n in names:
        if (folder / n).exists():
            return folder / n
    raise Skipped(f"{folder / names[0]} not found")


def load_binary(root: Path, task: str) -> tuple[list[str], torch.Tensor]:
    sents, labels = [], []
    for names, label in BINARY[task]:
        lines = _lines(_need(root / task, names))
        sents += lines
        labels += [label] * len(lines)
    return sents, torch.tensor(labels)


def load_trec(root: Path) -> dict:
    out = {}
    for split, name in (("train", "train_5500.label"), ("test", "TREC_10.label")):
        sents, labels = [], []
        for line in _lines(_need(root / "TREC", name)):
            tag, _, text = line.partition(" ")
            coarse = tag.split(":")[0]
            if coarse not in TREC_CLASSES:
                raise Skipped(f"{root / 'TREC' / name}: unknown label {tag!r}")
            sents.append(text)
            labels.append(TREC_CLASSES.index(coarse))
        out[split] = (sents, torch.tensor(labels))
    return out


def load_sick(root: Path) -> dict:
    out = {}
    for split, name in (("train", "SICK_train.txt"), ("dev", "SICK_trial.txt"),
                        ("test", "SICK_test_annotated.txt")):
        a, b, y = [], [], []
        rows = _lines(_need(root / "SICK", name))
        for line in rows[1:]:  # header: pair_ID sentence_A sentence_B relatedness_score ...
            cols = line.split("\t")
            if len(cols) < 4:
                continue
            a.append(cols[1])
            b.append(cols[2])
            y.append(float(cols[3]))
        if not y:
            raise Skipped(f"{root / 'SICK' / name} holds no pairs")
        out[split] = (a, b, torch.tensor(y, dtype=torch.float64))
    return out


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
def fit_logreg(x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, cs: torch.Tensor,
               n_classes: int, max_iter: int = 200, dtype=torch.float32
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
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=10,
                            tolerance_grad=1e-6, tolerance_change=1e-10,
                            line_search_fn="strong_wolfe")
    if soft:
        target = y.to(dtype)
    elif k == 1:
        target = y.to(dtype)[:, None]

    def closure():
        opt.zero_grad()
        logits = (x @ w + b).view(-1, p_count, k)
        if k == 1:
            loss_i = F.binary_cross_entropy_with_logits(
                logits[..., 0], target.expand(-1, p_count), reduction="none")
        elif soft:
            loss_i = -(F.log_softmax(logits, -1) * target[:, None, :]).sum(-1)
        else:
            loss_i = -F.log_softmax(logits, -1).gather(
                -1, y[:, None, None].expand(-1, p_count, 1))[..., 0]
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


def choose_c(x: torch.Tensor, y: torch.Tensor, within: torch.Tensor, inner_folds: int,
             cs, n_classes: int, max_iter: int, seed: int = 1) -> torch.Tensor:
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


def cv_accuracy(x: torch.Tensor, y: torch.Tensor, folds: int = 10, inner_folds: int = 3,
                cs=DEFAULT_CS, max_iter: int = 200, seed: int = 0) -> dict:
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


# ---- tasks --------------------------------------------------------------------------------------
Encoder = Callable[[list[str]], torch.Tensor]


def eval_binary(encode: Encoder, root: Path, task: str, opts: dict) -> dict:
    sents, y = load_binary(root, task)
    cap = opts.get("max_examples")
    if cap and len(y) > cap:  # a fixed random subset (for quick training-time curves)
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:cap]
        sents, y = [sents[i] for i in keep.tolist()], y[keep]
    x = encode(sents)
    r = cv_accuracy(x, y, opts.get("folds", 10), opts.get("inner_folds", 3),
                    opts.get("cs", DEFAULT_CS), opts.get("max_iter", 200))
    return {"acc": r["acc"], "n": len(y)}


def eval_trec(encode: Encoder, root: Path, opts: dict) -> dict:
    d = load_trec(root)
    (xtr_s, ytr), (xte_s, yte) = d["train"], d["test"]
    xtr, xte = _standardise(encode(xtr_s), encode(xte_s), ref=None)
    all_train = torch.ones(1, len(ytr), dtype=torch.bool)
    c = choose_c(xtr, ytr, all_train, opts.get("inner_folds", 3), opts.get("cs", DEFAULT_CS),
                 len(TREC_CLASSES), opts.get("max_iter", 200))
    w, b = fit_logreg(xtr, ytr, all_train, c, len(TREC_CLASSES), opts.get("max_iter", 200))
    acc = 100.0 * float((_predict(xte, w, b)[0] == yte).double().mean())
    return {"acc": acc, "n": len(ytr) + len(yte), "C": float(c[0])}


def sick_features(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([(u - v).abs(), u * v], 1)


def eval_sick(encode: Encoder, root: Path, opts: dict) -> dict:
    d = load_sick(root)
    feats = {s: sick_features(encode(a), encode(b)) for s, (a, b, _) in d.items()}
    tr, dev, te = _standardise(feats["train"], feats["dev"], feats["test"], ref=feats["train"])
    target = sick_target(d["train"][2])
    cs = torch.tensor(list(opts.get("sick_cs", (0.25, 1.0, 4.0, 16.0))), dtype=torch.float64)
    masks = torch.ones(len(cs), len(tr), dtype=torch.bool)
    w, b = fit_logreg(tr, target, masks, cs, 5, opts.get("max_iter", 200))

    def scores(x, p):
        return expected_score(torch.softmax((x.to(w.dtype) @ w[p] + b[p]).double(), -1))

    dev_r = [pearson(scores(dev, p), d["dev"][2]) for p in range(len(cs))]
    best = max(range(len(cs)), key=lambda p: dev_r[p] if math.isfinite(dev_r[p]) else -2)
    pred, gold = scores(te, best), d["test"][2]
    return {"r": pearson(pred, gold), "rho": spearman(pred, gold),
            "mse": float(((pred - gold) ** 2).mean()), "dev_r": dev_r[best],
            "C": float(cs[best]), "n": sum(len(v[2]) for v in d.values())}


def run_senteval(encode: Encoder, data_dir: str | Path, tasks=TASKS, **opts) -> dict:
    """Run the tasks on `encode(sentences) -> (N, H)`; returns {task: result}, a result being
    the task's numbers plus "time" (s), or {"skipped": reason}. Options: folds, inner_folds, cs,
    sick_cs, max_iter, max_examples (cap per binary task; null: all)."""
    root = Path(data_dir).expanduser()
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown SentEval task(s) {unknown}: choose from {', '.join(TASKS)}")
    out = {}
    for task in tasks:
        t0 = time.perf_counter()
        try:
            if not root.is_dir():
                raise Skipped(f"SentEval folder {root} not found")
            if task in BINARY:
                res = eval_binary(encode, root, task, opts)
            elif task == "TREC":
                res = eval_trec(encode, root, opts)
            else:
                res = eval_sick(encode, root, opts)
        except Skipped as e:
            log.warning("SentEval %s skipped: %s", task, e)
            out[task] = {"skipped": str(e)}
            continue
        res["time"] = time.perf_counter() - t0
        out[task] = res
    return out


def as_metrics(results: dict) -> dict[str, float]:
    """Lower-is-better numbers for the trainer: <task>_err (%), sick_1mr, sick_1mrho, sick_mse.
    Skipped tasks give no entry."""
    m = {}
    for task, r in results.items():
        if "skipped" in r:
            continue
        if task == "SICK":
            m.update(sick_1mr=1 - r["r"], sick_1mrho=1 - r["rho"], sick_mse=r["mse"])
        else:
            m[f"{task.lower()}_err"] = 100.0 - r["acc"]
    return m


def format_table(results: dict) -> str:
    rows = ["| task | score | details |", "|---|---|---|"]
    for task, r in results.items():
        if "skipped" in r:
            rows.append(f"| {task} | skipped | {r['skipped']} |")
        elif task == "SICK":
            rows.append(f"| SICK | r {r['r']:.4f} / rho {r['rho']:.4f} / MSE {r['mse']:.4f} | "
                        f"trial r {r['dev_r']:.4f}, C {r['C']:g}, {r['time']:.1f} s |")
        else:
            rows.append(f"| {task} | {r['acc']:.2f} % | n {r['n']}, {r['time']:.1f} s |")
    return "\n".join(rows)
