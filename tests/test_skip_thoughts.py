"""Skip-thoughts (Sec. 6.3): corpus, vocabulary, teacher forcing, SentEval maths and protocol,
end to end through the entrypoint on a tiny corpus and tiny SentEval files."""

from __future__ import annotations

import gzip
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import ROOT, metrics_rows, run_cli

from lnrepro.data.books import books, triple_index
from lnrepro.data.text import (
    EOS_ID,
    PAD_ID,
    UNK_ID,
    build_vocab,
    document_sentences,
    split_sentences,
    tokenize,
)
from lnrepro.errors import DataError
from lnrepro.eval.scoring import cv_accuracy, expected_score, pearson, sick_target, spearman
from lnrepro.eval.senteval import as_metrics, run_senteval
from lnrepro.models.skip_thoughts import SkipThoughts, load_encoder
from lnrepro.runs import find_runs
from lnrepro.tasks.skip_thoughts import SkipThoughtsTask

WORDS = ["the cat", "a dog", "my friend", "the old man", "a girl"]
VERBS = ["saw", "liked", "found", "walked past"]
OBJS = ["the house", "a tree", "the river", "an apple"]


def story(rng: random.Random, n: int) -> list[str]:
    return [
        f"{rng.choice(WORDS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJS)}."
        for _ in range(n)
    ]


def write_corpus(root: Path, n_docs: int = 4, n_sent: int = 40) -> Path:
    """<root>/books/: prose files (paragraphs, one gzipped) and one sentence-per-line file."""
    rng = random.Random(0)
    d = root / "books"
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        sents = story(rng, n_sent)
        paras = [" ".join(sents[k : k + 5]) for k in range(0, n_sent, 5)]
        # wrap the paragraphs' lines as Gutenberg files do
        text = "\n\n".join(
            "\n".join(p[j : j + 60] for j in range(0, len(p), 60)).replace("\n ", " \n")
            for p in paras
        )
        if i == 0:
            with gzip.open(d / f"doc{i}.txt.gz", "wt") as f:
                f.write(text)
        else:
            (d / f"doc{i}.txt").write_text(text)
    (d / "lines.txt").write_text("\n".join(story(rng, n_sent)) + "\n")
    return root


def write_senteval(root: Path, skip: tuple[str, ...] = ()) -> Path:
    """Tiny files in SentEval's layout; tasks in `skip` are left out."""
    rng = random.Random(1)
    s = root / "senteval"

    def put(task, name, lines):
        if task in skip:
            return
        (s / task).mkdir(parents=True, exist_ok=True)
        (s / task / name).write_text("\n".join(lines) + "\n", encoding="latin-1")

    pos = [f"{rng.choice(WORDS)} is good and nice ." for _ in range(15)]
    neg = [f"{rng.choice(WORDS)} is bad , awful ." for _ in range(15)]
    put("MR", "rt-polarity.pos", pos)
    put("MR", "rt-polarity.neg", neg)
    put("CR", "custrev.pos", pos)
    put("CR", "custrev.neg", neg)
    put("SUBJ", "subj.subjective", pos)
    put(
        "SUBJ",
        "subj.objective",
        [f"{rng.choice(WORDS)} {rng.choice(VERBS)} it ." for _ in range(15)],
    )
    put("MPQA", "mpqa.pos", ["good", "nice"] * 8)
    put("MPQA", "mpqa.neg", ["bad", "awful"] * 8)
    labels = [
        "NUM:date When did it happen ?",
        "HUM:ind Who saw the cat ?",
        "LOC:city Where is the river ?",
        "DESC:def What is a tree ?",
    ]
    put("TREC", "train_5500.label", [rng.choice(labels) for _ in range(24)])
    put("TREC", "TREC_10.label", labels * 2)
    for name, n in (
        ("SICK_train.txt", 30),
        ("SICK_trial.txt", 10),
        ("SICK_test_annotated.txt", 12),
    ):
        rows = ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"]
        for i in range(n):
            a, b = story(rng, 2)
            rows.append(f"{i}\t{a}\t{b}\t{rng.uniform(1, 5):.1f}\tNEUTRAL")
        put("SICK", name, rows)
    return root


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems (conftest.one_thread)


# ---- text, vocabulary, triples ---------------------------------------------------------------
def test_sentence_splitting_and_tokens():
    text = 'He came home.  She left!\nDid they "win"? "Yes," he said. 3 dogs ran.'
    assert split_sentences(text) == [
        "He came home.",
        "She left!",
        'Did they "win"?',
        '"Yes," he said.',
        "3 dogs ran.",
    ]
    assert split_sentences("Mr. Holmes met J. Watson. They ran.") == [
        "Mr. Holmes met J. Watson.",
        "They ran.",
    ]
    assert tokenize("Don't STOP, now!") == ["don", "'", "t", "stop", ",", "now", "!"]
    # paragraphs: wrapped lines are joined; lines: one sentence a line
    prose = "First one. Second\none.\n\nThird one.\n\n\nFourth.\n"
    assert document_sentences(prose, "paragraphs") == [
        "First one.",
        "Second one.",
        "Third one.",
        "Fourth.",
    ]
    assert document_sentences("a b .\nc d .\n", "auto") == ["a b .", "c d ."]
    assert document_sentences(prose, "auto") == document_sentences(prose, "paragraphs")


def test_vocabulary_top_words_and_specials():
    sents = [tokenize(s) for s in ["the cat sat .", "the dog sat .", "the end ."]]
    vocab = build_vocab(sents, 6)
    assert vocab[:3] == ["<pad>", "<eos>", "<unk>"]
    assert (PAD_ID, EOS_ID, UNK_ID) == (0, 1, 2)
    assert vocab[3:] == [".", "the", "sat"]  # counts 3, 3, 2; ties alphabetical


def test_corpus_triples_stay_within_documents(tmp_path, monkeypatch):
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    write_corpus(tmp_path, n_docs=2, n_sent=12)
    d = books(str(tmp_path), paths=["books"], vocab_size=100, batch_size=4, val_triples=0)
    doc = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    assert triple_index(doc).tolist() == [1, 6, 7]
    # 3 files of 12 sentences: 10 triples each
    assert len(d.train) == 30 and d.max_len == 30
    b = next(d.train_batches(0))
    idx = d.train[:1]
    one = d._batch(idx)
    assert torch.equal(one.prev[0], d.ids[idx[0] - 1, : one.prev.shape[1]])
    assert torch.equal(one.nxt[0], d.ids[idx[0] + 1, : one.nxt.shape[1]])
    assert b.cur.shape[0] == 4 and (b.cur == EOS_ID).sum() == 4  # one <eos> per sentence
    # the Arrow cache (HF datasets) under the cache root is used the second time (same
    # content); tests/test_books.py checks that nothing is tokenised again
    assert list((tmp_path / "cache" / "books").rglob("*.arrow"))
    d2 = books(str(tmp_path), paths=["books"], vocab_size=100, batch_size=4, val_triples=0)
    assert torch.equal(d2.ids, d.ids) and d2.vocab == d.vocab


def test_empty_corpus_is_one_clear_error(tmp_path):
    (tmp_path / "books").mkdir()
    with pytest.raises(DataError, match="empty corpus"):
        books(str(tmp_path), paths=["books"])
    (tmp_path / "books" / "blank.txt").write_text("\n\n  \n")
    with pytest.raises(DataError, match="empty corpus"):
        books(str(tmp_path), paths=["books"])


# ---- model: teacher forcing ------------------------------------------------------------------
def test_decoders_are_teacher_forced_on_the_neighbours():
    torch.manual_seed(0)
    m = SkipThoughts(20, emb_dim=6, hidden_size=8, norm="ln").eval()
    prev = torch.tensor([[5, 6, 7, EOS_ID], [8, 9, EOS_ID, PAD_ID]])
    cur = torch.tensor([[4, 5, EOS_ID], [10, EOS_ID, PAD_ID]])
    nxt = torch.tensor([[11, 12, EOS_ID], [13, 14, EOS_ID]])
    seen = {}

    def spy(name):
        def hook(module, args, out):
            seen[name] = args[0]

        return hook

    m.dec_prev.register_forward_hook(spy("prev"))
    m.dec_next.register_forward_hook(spy("next"))
    lp, ln = m(prev, cur, nxt)
    h = m.encode_ids(cur)
    E = 6
    for name, tgt in (("prev", prev), ("next", nxt)):
        x = seen[name]  # (L, B, E + H)
        assert x.shape[0] == tgt.shape[1]
        assert torch.allclose(x[0, :, :E], m.embedding.weight[EOS_ID].expand(2, E))
        assert torch.allclose(x[1:, :, :E], m.embedding(tgt[:, :-1].t()))  # w_{t-1} at step t
        assert torch.allclose(x[:, :, E:], h.expand(x.shape[0], -1, -1))  # encoding every step
    # the encoding is the state at each sentence's own last token (padding ignored)
    assert torch.allclose(h[1], m.encode_ids(cur[1:, :2])[0], atol=1e-6)
    # logits at step t do not see target[:, t:] (causal), but do see the current sentence
    nxt2 = nxt.clone()
    nxt2[:, 1:] = 3
    _, ln2 = m(prev, cur, nxt2)
    assert torch.allclose(ln[:2], ln2[:2]) and not torch.allclose(ln[2], ln2[2])
    _, ln3 = m(prev, torch.tensor([[6, 6, EOS_ID], [7, EOS_ID, PAD_ID]]), nxt)
    assert not torch.allclose(ln[0], ln3[0])
    # the task's loss: mean NLL of each decoder over its non-pad targets
    from lnrepro.data.books import Triples

    loss, met = SkipThoughtsTask().training_step(m, Triples(prev, cur, nxt))
    keep = prev.t().flatten() != PAD_ID
    ref_prev = F.cross_entropy(lp.flatten(0, 1)[keep], prev.t().flatten()[keep])
    assert torch.allclose(met["prev_nll"], ref_prev)
    assert torch.allclose(loss, met["prev_nll"] + met["next_nll"])


def test_encode_keeps_order_and_matches_single_sentences():
    torch.manual_seed(0)
    vocab = ["<pad>", "<eos>", "<unk>", "the", "cat", "sat", "."]
    m = SkipThoughts(len(vocab), emb_dim=5, hidden_size=7, norm="ln", vocab=vocab)
    sents = ["the cat sat .", "cat", "The CAT sat on the mat .", "."]
    batched = m.encode(sents, batch_size=2)
    single = torch.cat([m.encode([s]) for s in sents])
    assert batched.shape == (4, 7) and torch.allclose(batched, single, atol=1e-6)
    assert m.ids_of("the dog") == [3, UNK_ID, EOS_ID]


# ---- SentEval maths and protocol -------------------------------------------------------------
def test_cv_logreg_separable_and_shuffled():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    r = cv_accuracy(x, y, folds=5, inner_folds=2, cs=[1.0, 16.0])
    assert r["acc"] > 95.0
    y_rand = torch.randint(0, 2, (300,), generator=g)
    r = cv_accuracy(x, y_rand, folds=5, inner_folds=2, cs=[1.0, 16.0])
    assert 35.0 < r["acc"] < 65.0
    # multi-class (softmax) path
    y3 = torch.bucketize(x[:, 0].contiguous(), torch.tensor([-0.5, 0.5]))
    assert cv_accuracy(x, y3, folds=5, inner_folds=2, cs=[16.0, 256.0])["acc"] > 85.0


def test_sick_target_distribution_and_expected_score():
    p = sick_target(torch.tensor([1.0, 3.6, 5.0, 2.0, 4.2]))
    ref = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [0, 0, 0.4, 0.6, 0],
            [0, 0, 0, 0, 1],
            [0, 1, 0, 0, 0],
            [0, 0, 0, 0.8, 0.2],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(p, ref)
    assert torch.allclose(
        expected_score(p), torch.tensor([1.0, 3.6, 5.0, 2.0, 4.2], dtype=torch.float64)
    )
    assert float(expected_score(torch.tensor([[0.5, 0, 0, 0, 0.5]]))) == pytest.approx(3.0)
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(
        0.8660254, abs=1e-6
    )  # ties take their average rank


def test_missing_task_is_skipped_with_reason(tmp_path):
    write_senteval(tmp_path, skip=("CR", "SICK"))
    res = run_senteval(
        lambda s: torch.randn(len(s), 4),
        tmp_path / "senteval",
        ["MR", "CR", "SICK"],
        folds=3,
        inner_folds=2,
        cs=[1.0],
        max_iter=20,
    )
    assert "not found" in res["CR"]["skipped"] and "custrev" in res["CR"]["skipped"]
    assert "SICK_train.txt" in res["SICK"]["skipped"]
    assert 0 <= res["MR"]["acc"] <= 100
    assert set(as_metrics(res)) == {"mr_acc"}
    assert as_metrics(res)["mr_acc"] == res["MR"]["acc"]
    res = run_senteval(lambda s: torch.randn(len(s), 4), tmp_path / "nowhere", ["TREC"])
    assert "not found" in res["TREC"]["skipped"]


# ---- end to end ------------------------------------------------------------------------------
TINY_ST = [
    "experiment=skip_thoughts_cpu",
    "data.paths=[books]",
    "data.vocab_size=60",
    "data.batch_size=8",
    "data.val_triples=10",
    "task.senteval.folds=3",
    "task.senteval.inner_folds=2",
    "task.senteval.cs=[1,16]",
    "task.senteval.sick_cs=[1]",
    "task.senteval.max_iter=30",
    "model.emb_dim=8",
    "model.hidden_size=16",
    "model.decoder_size=16",
    "trainer.epochs=null",
    "trainer.max_steps=6",
    "trainer.log_every=3",
    "logger=none",
    "threads=1",
    "data.verify=false",  # synthetic SentEval files, not the recorded ones
    "task.senteval.tasks=[MR,SUBJ,MPQA,TREC,SICK]",  # CR is left out of the tiny copy
]


@pytest.fixture(scope="module")
def tiny_books(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stdata")
    write_corpus(root)
    write_senteval(root, skip=("CR",))
    return root


@pytest.mark.slow  # end to end: a subprocess or a whole training run
@pytest.mark.parametrize("norm", ["ln", "none"])
def test_end_to_end(tmp_path, tiny_books, norm):
    r = run_cli(TINY_ST + [f"norm={norm}"], tmp_path, tiny_books, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (run,) = find_runs(tmp_path / "outputs")
    assert run.status == "completed" and run.steps == 6
    final = run.summary["final"]
    rows = metrics_rows(run.path / "metrics.jsonl")
    for k in (
        "senteval/mr_acc",
        "senteval/subj_acc",
        "senteval/mpqa_acc",
        "senteval/trec_acc",
        "senteval/sick_r",
        "senteval/sick_rho",
        "senteval/sick_mse",
        "val/loss",
    ):
        assert k in final and math.isfinite(final[k]), k
    assert "senteval/cr_acc" not in final
    assert 0 <= final["senteval/mr_acc"] <= 100
    # accuracies and correlations are maximised: "best" is the highest value logged
    evals = [x for x in rows if "senteval/mr_acc" in x]
    assert run.summary["best"]["senteval/mr_acc"] == max(x["senteval/mr_acc"] for x in evals)
    assert run.summary["best"]["val/loss"] == min(x["val/loss"] for x in evals)
    assert any("batch/loss" in x for x in rows)
    # the encoding API from the checkpoint
    ckpt = run.path / "checkpoints" / "last.pt"
    enc = load_encoder(ckpt)
    v = enc.encode(["The cat saw a tree.", "A dog liked the river."])
    assert v.shape == (2, 16) and torch.isfinite(v).all()
    if norm == "ln":  # the stand-alone evaluator on the same checkpoint
        out = subprocess.run(
            [
                sys.executable,
                "scripts/eval_skip.py",
                str(ckpt),
                "--tasks",
                "MR",
                "CR",
                "--folds",
                "3",
                "--inner-folds",
                "2",
                "--threads",
                "1",
                "--senteval",
                str(tiny_books / "senteval"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "| MR |" in out.stdout and "| CR | skipped |" in out.stdout


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_empty_corpus_through_the_entrypoint(tmp_path):
    (tmp_path / "data" / "books").mkdir(parents=True)
    r = run_cli(
        TINY_ST + ["norm=ln", "task.senteval=null"], tmp_path, tmp_path / "data", timeout=120
    )  # (missing SentEval files would stop the run first)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-2000:]
    assert "empty corpus" in out and "Traceback" not in out


@pytest.mark.realdata("senteval")
def test_real_senteval_layout_is_found(real_data):
    root = real_data / "senteval"
    from lnrepro.eval.senteval import load_binary, load_sick, load_trec

    assert len(load_binary(root, "MR")[1]) == 10662
    assert len(load_binary(root, "SUBJ")[1]) == 10000
    t = load_trec(root)
    assert len(t["train"][1]) == 5452 and len(t["test"][1]) == 500
    s = load_sick(root)
    assert [len(s[k][2]) for k in ("train", "dev", "test")] == [4500, 500, 4927]


def test_bn_trains_a_step_and_encodes():
    """norm=bn works (recurrent BN of lnrepro.nn.rnn, per-step statistics): one update, then
    encoding in evaluation mode with the population statistics."""
    torch.manual_seed(0)
    from lnrepro.data.books import Triples

    vocab = ["<pad>", "<eos>", "<unk>", "the", "cat", "sat", "."]
    m = SkipThoughts(len(vocab), emb_dim=5, hidden_size=7, norm="bn", vocab=vocab)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    batch = Triples(
        torch.tensor([[3, 4, EOS_ID], [5, EOS_ID, PAD_ID]]),
        torch.tensor([[4, 5, 6, EOS_ID], [3, 3, EOS_ID, PAD_ID]]),
        torch.tensor([[6, EOS_ID], [4, EOS_ID]]),
    )
    loss, _ = SkipThoughtsTask().training_step(m, batch)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    v = m.encode(["the cat sat .", "cat"])
    assert v.shape == (2, 7) and torch.isfinite(v).all() and m.training
