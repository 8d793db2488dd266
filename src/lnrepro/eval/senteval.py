"""SentEval-style transfer evaluation of frozen sentence vectors (Kiros et al. 2015's protocol,
Kiros et al. 2015; the LN paper's Table 3).

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

Training-time metrics (`as_metrics`), as the papers report them: `<task>_acc` = accuracy (%),
`sick_r`, `sick_rho` (higher is better, `HIGHER_IS_BETTER`) and `sick_mse` (lower is better).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lnrepro.data.verify import verify_files
from lnrepro.errors import ConfigError, DataError
from lnrepro.eval.scoring import (
    DEFAULT_CS,
    _predict,
    _standardise,
    choose_c,
    cv_accuracy,
    expected_score,
    fit_logreg,
    pearson,
    sick_target,
    spearman,
)

log = logging.getLogger(__name__)

TASKS = ("MR", "CR", "SUBJ", "MPQA", "TREC", "SICK")
BINARY = {
    "MR": [("rt-polarity.pos", 1), ("rt-polarity.neg", 0)],
    "CR": [("custrev.pos", 1), ("custrev.neg", 0)],
    "SUBJ": [
        (("subj.subjective", "quote.tok.gt9.5000"), 1),
        (("subj.objective", "plot.tok.gt9.5000"), 0),
    ],
    "MPQA": [("mpqa.pos", 1), ("mpqa.neg", 0)],
}
TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


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
    for split, name in (
        ("train", "SICK_train.txt"),
        ("dev", "SICK_trial.txt"),
        ("test", "SICK_test_annotated.txt"),
    ):
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


# ---- tasks --------------------------------------------------------------------------------------
Encoder = Callable[[list[str]], torch.Tensor]


def eval_binary(encode: Encoder, root: Path, task: str, opts: dict) -> dict:
    sents, y = load_binary(root, task)
    cap = opts.get("max_examples")
    if cap and len(y) > cap:  # a fixed random subset (for quick training-time curves)
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:cap]
        sents, y = [sents[i] for i in keep.tolist()], y[keep]
    x = encode(sents)
    r = cv_accuracy(
        x,
        y,
        opts.get("folds", 10),
        opts.get("inner_folds", 3),
        opts.get("cs", DEFAULT_CS),
        opts.get("max_iter", 200),
    )
    return {"acc": r["acc"], "n": len(y)}


def eval_trec(encode: Encoder, root: Path, opts: dict) -> dict:
    d = load_trec(root)
    (xtr_s, ytr), (xte_s, yte) = d["train"], d["test"]
    xtr, xte = _standardise(encode(xtr_s), encode(xte_s), ref=None)
    all_train = torch.ones(1, len(ytr), dtype=torch.bool)
    c = choose_c(
        xtr,
        ytr,
        all_train,
        opts.get("inner_folds", 3),
        opts.get("cs", DEFAULT_CS),
        len(TREC_CLASSES),
        opts.get("max_iter", 200),
    )
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
    return {
        "r": pearson(pred, gold),
        "rho": spearman(pred, gold),
        "mse": float(((pred - gold) ** 2).mean()),
        "dev_r": dev_r[best],
        "C": float(cs[best]),
        "n": sum(len(v[2]) for v in d.values()),
    }


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


HIGHER_IS_BETTER = frozenset(
    {f"{t.lower()}_acc" for t in TASKS if t != "SICK"} | {"sick_r", "sick_rho"}
)


def as_metrics(results: dict) -> dict[str, float]:
    """The numbers the trainer logs: <task>_acc (%), sick_r, sick_rho, sick_mse. Skipped tasks
    give no entry."""
    m = {}
    for task, r in results.items():
        if "skipped" in r:
            continue
        if task == "SICK":
            m.update(sick_r=r["r"], sick_rho=r["rho"], sick_mse=r["mse"])
        else:
            m[f"{task.lower()}_acc"] = r["acc"]
    return m


def check_files(data_dir: str | Path, tasks, verify: bool = True) -> None:
    """Every listed task's files: read now (a missing or unreadable one is one DataError before
    training, not at the first evaluation), the known ones verified against their checksums."""
    root = Path(data_dir).expanduser()
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(
            f"task.senteval.tasks: unknown task(s) {unknown}; choose from {', '.join(TASKS)}"
        )
    verify_files(
        "SentEval",
        root,
        [f for t in tasks if (root / t).is_dir() for f in sorted((root / t).iterdir())],
        verify,
    )
    for task in tasks:
        try:
            if task in BINARY:
                load_binary(root, task)
            elif task == "TREC":
                load_trec(root)
            else:
                load_sick(root)
        except Skipped as e:
            raise DataError(
                f"SentEval task {task} cannot run: {e}. Add its files, or leave it "
                "out of task.senteval.tasks"
            ) from None


def format_table(results: dict) -> str:
    rows = ["| task | score | details |", "|---|---|---|"]
    for task, r in results.items():
        if "skipped" in r:
            rows.append(f"| {task} | skipped | {r['skipped']} |")
        elif task == "SICK":
            rows.append(
                f"| SICK | r {r['r']:.4f} / rho {r['rho']:.4f} / MSE {r['mse']:.4f} | "
                f"trial r {r['dev_r']:.4f}, C {r['C']:g}, {r['time']:.1f} s |"
            )
        else:
            rows.append(f"| {task} | {r['acc']:.2f} % | n {r['n']}, {r['time']:.1f} s |")
    return "\n".join(rows)
