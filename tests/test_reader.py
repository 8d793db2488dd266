"""The attentive reader (Sec. 6.2): cloze construction, the CNN question files, masking in the
LSTM and per-step BN, the candidate-restricted softmax, the loader and one end-to-end run."""

from __future__ import annotations

import functools
import gzip
import json
import operator
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import metrics_rows, run_cli

from lnrepro.data import cloze, cloze_cnn
from lnrepro.data import cloze_text as ct
from lnrepro.errors import ConfigError, DataError
from lnrepro.models.reader import AttentiveReader, restrict
from lnrepro.nn.rnn import LSTM, SeqBatchNorm

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.one_thread)


NAMES = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Fyodor"]
TEMPLATES = [
    "Then {a} looked at {b} and smiled at the {w} .",
    "The {w} was old , said {a} to {b} .",
    "After the dinner {a} walked with {b} to the {w} .",
    "It was {a} who found the {w} near the river .",
    "Nobody but {a} knew where the {w} was hidden .",
    "On Monday the Law said that {a} must leave the {w} .",
    "But the law was harsh and the {w} was cold .",
]
WORDS = ["garden", "house", "letter", "horse", "window", "sword", "bridge", "candle"]


def synthetic_book(n: int = 300, seed: int = 0) -> str:
    """One sentence per line: six recurring characters, a capitalised noun ("Law") that is
    mostly lower-case, a month-like stop word ("Monday"), sentence-initial capitals."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.sample(NAMES, 2)
        lines.append(rng.choice(TEMPLATES).format(a=a, b=b, w=rng.choice(WORDS)))
    return "\n".join(lines) + "\n"


def sentences_of(text: str) -> list[list[str]]:
    return ct.book_sentences(text)


# ---- the construction of the stand-in -----------------------------------------------------------
def test_character_names_heuristic():
    sents = sentences_of(synthetic_book())
    names = ct.character_names(sents)
    assert set(NAMES) <= names
    assert "Law" not in names  # its lower-case form is frequent
    assert "Monday" not in names  # stop list
    assert not {"Then", "The", "After", "It", "Nobody", "But", "On"} & names  # sentence-initial


def test_drama_speaker_tags_and_stage_directions_are_removed():
    play = "\n\n".join(
        ["[Enter Hamlet and Horatio.]"]
        + [f"Ham. Horatio, look at the {w}.\n\nHor. It is the {w}, my lord Hamlet." for w in WORDS]
    )
    text = " ".join(" ".join(s) for s in ct.book_sentences(play, drama=True))
    assert "Ham ." not in text and "Hor ." not in text and "Enter" not in text
    assert "Horatio" in text and "Hamlet" in text
    lines = "\n".join(["Cask .", "Cask .", "Cask ."] + [f"I saw the {w} Cask ." for w in WORDS])
    text = " ".join(" ".join(s) for s in ct.book_sentences(lines, drama=True))
    assert "Cask" not in text and "I saw the garden ." in text


def test_placeholder_replaces_every_mention_of_the_answer():
    s = ct.Sentence(["Anna", "told", "Boris", "that", "Anna", "was", "tired"], [])
    s.spans = ct.mentions(s.tokens, {"Anna", "Boris"})
    assert s.replaced("Anna") == [
        "@placeholder",
        "told",
        "Boris",
        "that",
        "@placeholder",
        "was",
        "tired",
    ]
    two = ct.mentions(["Frank", "Churchill", "met", "Emma"], {"Frank", "Churchill", "Emma"})
    assert [e for *_, e in two] == ["Frank Churchill", "Emma"]  # a run is one mention


def test_top4_context_and_answer_in_context():
    query = ["@placeholder", "fed", "the", "horse", "near", "the", "bridge"]
    previous = [f"filler sentence number {k}".split() for k in range(20)]
    previous[3] = ["the", "horse", "was", "brown"]  # 1 shared word
    previous[7] = ["the", "bridge", "and", "the", "horse"]  # 2
    previous[12] = ["a", "horse", "fed", "near", "a", "bridge"]  # 4 (horse fed near bridge)
    previous[15] = ["the", "horse"]  # 1, nearer than 3
    previous[18] = ["bridge"]  # 1, nearest
    assert ct.top_k_context(query, previous, 4) == [7, 12, 15, 18]
    sents = sentences_of(synthetic_book())
    qs = ct.questions(sents, ct.character_names(sents))
    assert len(qs) > 100
    for q in qs:
        i = q["sentence"]
        assert len(q["context"]) == 4
        ctx_entities = {e for s in q["context"] for e in s.entities}
        assert q["answer"] in ctx_entities and len(ctx_entities) >= 2
        assert all(
            s in [ct.Sentence(x, ct.mentions(x, set(NAMES))) for x in sents[max(0, i - 20) : i]]
            for s in q["context"]
        )


def test_anonymisation_is_a_fresh_permutation_per_question_and_deterministic():
    sents = sentences_of(synthetic_book())
    qs = ct.questions(sents, ct.character_names(sents))[:50]
    rng = np.random.default_rng([0, 0])
    out = [ct.anonymise(q, 10, rng) for q in qs]
    again = [ct.anonymise(q, 10, np.random.default_rng([0, 0])) for q in qs[:1]]
    assert out[0] == again[0]
    for q, a in zip(qs, out):
        assert ct.PLACEHOLDER in a["query"] and a["answer"] in a["candidates"]
        assert not any(t[:1].isupper() for t in a["doc"] + a["query"])  # lower-cased
        assert not set(NAMES) & {t.capitalize() for t in a["doc"] + a["query"]}
        # the same entity has the same id in document and query, distinct entities distinct ids
        ids = {}
        spans = [e for s in q["context"] for *_, e in s.spans]
        for e, tok in zip(spans, [t for t in a["doc"] if t.startswith("@entity")], strict=True):
            assert ids.setdefault(e, tok) == tok
        assert len(set(ids.values())) == len(ids)
    first_answer_ids = {a["answer"] for a in out}
    assert len(first_answer_ids) > 3  # permutations differ from question to question
    assert ct.anonymise(qs[0], 1, rng) is None  # more entities than ids: left out


# ---- the CNN question files --------------------------------------------------------------------
def cnn_question(k: int) -> str:
    context = (
        f"@entity0 met @entity1 in @entity2 . the weather was fine . "
        f"@entity1 bought a car number {k} . @entity3 sold the car to @entity1 . "
        f"nothing happened . @entity0 went home ."
    )
    return "\n".join(
        [
            f"http://www.cnn.com/{k}",
            "",
            context,
            "",
            "@placeholder bought a car from @entity3",
            "",
            "@entity1",
            "",
            "@entity0:Alice",
            "@entity1:Bob",
            "@entity2:Paris",
            "@entity3:Carol",
            "",
        ]
    )


def write_cnn(root: Path, n: int = 3) -> Path:
    for split in ("training", "validation", "test"):
        d = root / "cnn" / "questions" / split
        d.mkdir(parents=True)
        for k in range(n):
            (d / f"{split}{k:03d}.question").write_text(cnn_question(k))
    return root


def test_cnn_question_parser_and_top4(tmp_path):
    q = cloze_cnn.parse_question(cnn_question(7))
    assert q["answer"] == "@entity1" and q["query"][0] == "@placeholder"
    assert q["candidates"] == ["@entity0", "@entity1", "@entity2", "@entity3"]
    assert q["names"]["@entity3"] == "Carol"
    top = cloze_cnn.top_k(q["doc"], q["query"], 2)
    assert top == [
        "@entity1",
        "bought",
        "a",
        "car",
        "number",
        "7",
        ".",
        "@entity3",
        "sold",
        "the",
        "car",
        "to",
        "@entity1",
        ".",
    ]
    with pytest.raises(DataError, match="not a CNN .question file"):
        cloze_cnn.parse_question("just one line")


def test_cnn_corpus_through_the_loader(tmp_path, monkeypatch):
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    root = write_cnn(tmp_path / "data")
    data = cloze.cloze(
        str(root),
        source="cnn",
        top_k=4,
        n_entities=10,
        vocab_size=40,
        batch_size=2,
        eval_batch_size=2,
    )
    assert len(data.train) == 3 and set(data.splits) == {"val", "test"}
    b = next(data.train_batches(0))
    assert b.candidates.sum(1).tolist() == [4, 4] and b.answer.tolist() == [1, 1]
    assert not (tmp_path / "data" / "cnn").joinpath("cache").exists()
    assert (tmp_path / "cache" / "huggingface").is_dir()  # Arrow cache in the cache root


def test_entities_named_by_the_query_can_be_left_out_of_the_candidates(tmp_path, monkeypatch):
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    root = write_cnn(tmp_path / "data")
    kw = {
        "source": "cnn",
        "top_k": 4,
        "n_entities": 10,
        "vocab_size": 40,
        "batch_size": 2,
        "eval_batch_size": 2,
    }
    entity3 = cloze.ENTITY0 + 3  # the query "@placeholder bought a car from @entity3"
    for exclude, want in ((False, [0, 1, 2, 3]), (True, [0, 1, 2])):
        data = cloze.cloze(str(root), **kw, exclude_query_entities=exclude)
        split = data.splits["val"]
        assert (split.query == entity3).any()
        for row in split.candidates:
            assert row.nonzero().flatten().tolist() == want
        assert split.candidates[torch.arange(len(split)), split.answer].all()
    with pytest.raises(ConfigError, match="^data.exclude_query_entities must be true or false"):
        cloze.cloze(str(root), **kw, exclude_query_entities="yes")


def test_missing_cnn_corpus_is_one_clear_line(tmp_path):
    with pytest.raises(DataError) as e:
        cloze.cloze(str(tmp_path), source="cnn")
    msg = str(e.value)
    assert "\n" not in msg and "cnn/questions/training/*.question" in msg
    assert "LNREPRO_DATA" in msg


def test_entity_windows_keep_every_mention_and_shorten_the_context():
    doc = [
        "a",
        "b",
        "c",
        "@entity1",
        "d",
        "e",
        "f",
        "g",
        "h",
        "i",
        "@entity2",
        "j",
        "@entity1",
        "k",
        "l",
        "m",
        "n",
    ]
    cut = cloze.entity_windows(doc, 1)
    assert cut == ["c", "@entity1", "d", "...", "i", "@entity2", "j", "@entity1", "k"]
    assert [t for t in cut if t.startswith("@")] == [t for t in doc if t.startswith("@")]
    query = ["x", "y", "z", "@placeholder", "w", "v", "u"]
    assert cloze.entity_windows(query, 2) == ["y", "z", "@placeholder", "w", "v"]
    assert cloze.entity_windows(doc, 100) == doc


# ---- batches --------------------------------------------------------------------------------
def toy_split(lengths, qlens, n_entities=6):
    g = torch.Generator().manual_seed(0)
    doc = torch.randint(3 + n_entities, 30, (sum(lengths),), generator=g)
    query = torch.randint(3 + n_entities, 30, (sum(qlens),), generator=g)
    off = torch.tensor([0] + lengths).cumsum(0)
    qoff = torch.tensor([0] + qlens).cumsum(0)
    answer = torch.arange(len(lengths)) % n_entities
    cands = torch.zeros(len(lengths), n_entities, dtype=torch.bool)
    cands[torch.arange(len(lengths)), answer] = True
    cands[torch.arange(len(lengths)), (answer + 1) % n_entities] = True
    return cloze.Split(doc, off, query, qoff, answer, cands)


def test_padding_and_length_buckets():
    lengths = [5, 9, 2, 7, 3, 8, 4, 6] * 4
    split = toy_split(lengths, [3] * len(lengths))
    b = split.batch(torch.tensor([1, 2]))
    assert b.doc.shape == (9, 2) and b.doc_mask.sum(0).tolist() == [9, 2]
    assert (b.doc[~b.doc_mask] == cloze.PAD_ID).all()
    assert b.doc[:, 1][:2].tolist() == split.doc[14:16].tolist()

    def make(bucket_batches):
        return cloze.ClozeData(
            {"train": split, "val": split},
            ["w"] * 40,
            6,
            batch_size=4,
            eval_batch_size=5,
            bucket_batches=bucket_batches,
            seed=3,
        )

    def spread(order):
        return sum(int(split.doc_len[b].max() - split.doc_len[b].min()) for b in order)

    data = make(8)
    order = data.train_order(0)
    assert sorted(torch.cat(order).tolist()) == list(range(32))  # each question once
    assert spread(order) < spread(make(1).train_order(0)) / 2  # similar lengths per batch
    assert [b.tolist() for b in order] == [b.tolist() for b in data.train_order(0)]
    assert [b.tolist() for b in order] != [b.tolist() for b in data.train_order(1)]
    resumed = list(data.train_batches(0, start=5))
    assert torch.equal(resumed[0].doc, split.batch(order[5]).doc)


def test_repermutation_relabels_tokens_candidates_and_answer_alike():
    split = toy_split([5, 9, 2, 7], [3, 4, 2, 5])
    split.doc[:6] = torch.tensor([3, 4, 20, 3, 8, 21])  # entities 0, 1, 0, 5 in question 0
    idx = torch.arange(4)
    perm = torch.stack(
        [torch.randperm(6, generator=torch.Generator().manual_seed(k)) for k in range(4)]
    )
    a, b = split.batch(idx), split.batch(idx, perm)
    ent = (a.doc >= cloze.ENTITY0) & (a.doc < cloze.ENTITY0 + 6)
    assert torch.equal(b.doc[~ent], a.doc[~ent])  # words untouched
    col = ent.nonzero()[:, 1]
    assert torch.equal(b.doc[ent] - 3, perm[col, a.doc[ent] - 3])
    assert torch.equal(b.answer, perm[idx, a.answer])
    for r in range(4):
        assert set(b.candidates[r].nonzero()[:, 0].tolist()) == {
            int(perm[r, k]) for k in a.candidates[r].nonzero()[:, 0]
        }
    data = cloze.ClozeData(
        {"train": split, "val": split},
        ["w"] * 40,
        6,
        batch_size=2,
        eval_batch_size=2,
        bucket_batches=1,
        seed=3,
        repermute=True,
    )
    e0, e1 = list(data.train_batches(0)), list(data.train_batches(1))
    assert torch.equal(e0[1].doc, next(iter(data.train_batches(0, start=1))).doc)  # resumable
    assert not all(torch.equal(x.answer, y.answer) for x, y in zip(e0, e1))
    assert torch.equal(
        next(data.eval_batches("val")).answer,
        split.batch(torch.argsort(split.doc_len, stable=True)[:2]).answer,
    )  # evaluation: corpus labels


# ---- masking in the LSTM and in per-step BN ----------------------------------------------------
def padded(x, lengths, fill):
    mask = torch.arange(x.shape[0])[:, None] < torch.tensor(lengths)[None]
    return torch.where(mask[..., None], x, fill), mask


@pytest.mark.parametrize("norm", ["ln", "bn", "none"])
def test_padding_does_not_change_the_outputs(norm):
    torch.manual_seed(0)
    T, B, H = 10, 24, 6
    lengths = [10] * 8 + [9] * 8 + [4] * 4 + [2] * 4
    rnn = LSTM(H, H, norm=norm)
    x = torch.randn(T, B, H)
    a, mask = padded(x, lengths, torch.zeros(()))
    b, _ = padded(x, lengths, torch.full((), 50.0))  # other padding
    c = torch.cat([a, torch.randn(3, B, H) * 9])  # more padding steps
    mask_c = torch.cat([mask, torch.zeros(3, B, dtype=torch.bool)])
    for mode in ("train", "eval"):
        rnn.train(mode == "train")
        out_a, (h_a, _) = rnn(a, mask=mask, min_live=4)
        out_b, (h_b, _) = rnn(b, mask=mask, min_live=4)
        out_c, (h_c, _) = rnn(c, mask=mask_c, min_live=4)
        live = mask[..., None].expand_as(out_a)
        assert torch.allclose(out_a[live], out_b[live], atol=1e-5)
        assert torch.allclose(out_a[live], out_c[:T][live], atol=1e-5)
        assert torch.allclose(h_a, h_b, atol=1e-5) and torch.allclose(h_a, h_c, atol=1e-5)
        last = torch.tensor(lengths) - 1
        assert torch.allclose(h_a[0], out_a[last, torch.arange(B)], atol=1e-6)  # carried state


def test_bn_statistics_ignore_padding_and_fall_back_below_min_live():
    torch.manual_seed(0)
    bn = SeqBatchNorm(3, t_max=10, momentum=1.0)
    x = torch.randn(4, 8, 3)
    lengths = [4, 4, 4, 4, 4, 3, 1, 1]
    mask = torch.arange(4)[:, None] < torch.tensor(lengths)[None]
    garbage = torch.where(mask[..., None], x, torch.full((), 1e3))
    y = bn(garbage, 0, mask, 4)
    for t in range(2):  # steps 0, 1 and 2 have >= 4 live cases: their own statistics
        live = x[t][mask[t]]
        ref = (live - live.mean(0)) / torch.sqrt(live.var(0, unbiased=False) + bn.eps)
        assert torch.allclose(y[t][mask[t]], ref * bn.weight, atol=1e-5)
        assert torch.allclose(bn.running_mean[t], live.mean(0), atol=1e-6)
    live2 = x[2][mask[2]]  # step 3 has 5 live cases ... >= 4
    assert torch.allclose(bn.running_mean[2], live2.mean(0), atol=1e-6)
    # a step with too few live cases uses the statistics of the last well-populated step
    mask2 = mask.clone()
    mask2[3, 2:] = False  # 2 live cases at step 3 < 4
    y2 = bn(garbage, 0, mask2, 4)
    ref3 = (x[3] - live2.mean(0)) / torch.sqrt(live2.var(0, unbiased=False) + bn.eps) * bn.weight
    assert torch.allclose(y2[3][mask2[3]], ref3[mask2[3]], atol=1e-5)
    assert torch.allclose(bn.running_mean[3], live2.mean(0), atol=1e-6)
    # the same held statistics reach a later single-step call of the recurrence
    step3 = bn(garbage[3], 3, mask2[3], 4)
    assert torch.allclose(step3[mask2[3]], ref3[mask2[3]], atol=1e-5)


def test_without_a_mask_nothing_changes():
    torch.manual_seed(0)
    rnn = LSTM(5, 7, norm="bn")
    x = torch.randn(6, 12, 5)
    torch.manual_seed(1)
    ref, _ = rnn(x)
    full = torch.ones(6, 12, dtype=torch.bool)
    out, _ = rnn(x, mask=full)
    assert torch.allclose(out, ref, atol=1e-5)


# ---- the model ---------------------------------------------------------------------------------
def tiny_reader(norm: str, n_entities: int = 6) -> AttentiveReader:
    torch.manual_seed(0)
    return AttentiveReader(
        vocab_size=40,
        n_entities=n_entities,
        entity_offset=3,
        emb_dim=8,
        hidden_size=8,
        norm=norm,
        dropout=0.0,
        bn_min_live=2,
    )


def test_softmax_is_restricted_to_the_candidates():
    logits = torch.randn(3, 5)
    cands = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    p = torch.softmax(restrict(logits, cands), 1)
    assert (p[~cands] == 0).all() and torch.allclose(p.sum(1), torch.ones(3))
    split = toy_split([5, 9, 2, 7], [3, 4, 2, 5])
    batch = split.batch(torch.arange(4))
    out = tiny_reader("ln")(batch)
    assert torch.isinf(out[~batch.candidates]).all() and torch.isfinite(out[batch.candidates]).all()
    assert (out.argmax(1)[:, None] == batch.candidates.nonzero()[:, 1].view(4, 2)).any(1).all()


@pytest.mark.parametrize("norm", ["ln", "bn", "none"])
def test_reader_trains_and_padding_does_not_change_its_answers(norm):
    from lnrepro.tasks.reader import Reader

    split = toy_split([6, 9, 2, 7, 3, 8, 4, 5], [3, 4, 2, 5, 6, 2, 3, 4])
    model, task = tiny_reader(norm), Reader()
    small = split.batch(torch.tensor([0, 2, 4, 6]))
    wide = split.batch(torch.tensor([0, 2, 4, 6, 1]))  # longer documents add padding to the rest
    model.eval()
    a, b = model(small), model(wide)[:4]
    assert torch.allclose(a[small.candidates], b[small.candidates], atol=1e-5)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = split.batch(torch.arange(8))
    first = None
    for _ in range(30):
        loss, _ = task.training_step(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < first
    ev = task.evaluate(model.eval(), [batch])
    assert set(ev) == {"nll", "err"} and 0 <= ev["err"] <= 1


# ---- end to end through the real entrypoint ----------------------------------------------------
def write_books(root: Path) -> dict:
    folder = root / "books" / "tiny"
    folder.mkdir(parents=True)
    names = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    for k, n in enumerate(functools.reduce(operator.iadd, names.values(), [])):
        with gzip.open(folder / f"{n}.txt.gz", "wt") as f:
            f.write(synthetic_book(160, seed=k))
    return {s: [f"tiny/{n}" for n in v] for s, v in names.items()}


def test_stand_in_is_deterministic_and_cached_outside_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    books = write_books(tmp_path / "data")
    kw = {
        "source": "books",
        "books": {**books, "drama": [], "excluded": {}},
        "build": {
            "window": 20,
            "min_context": 4,
            "min_candidates": 2,
            "min_name_count": 5,
            "max_lower_ratio": 0.1,
            "max_sentence_tokens": None,
            "build_seed": 0,
        },
        "n_entities": 10,
        "vocab_size": 60,
        "batch_size": 4,
    }
    a = cloze.cloze(str(tmp_path / "data"), **kw)
    b = cloze.cloze(str(tmp_path / "data"), **kw)  # from the Arrow cache
    assert len(a.train) > 50 and len(a.splits["val"]) > 10
    assert torch.equal(a.train.doc, b.train.doc) and torch.equal(a.train.answer, b.train.answer)
    assert list((tmp_path / "cache" / "cloze").glob("books_*.arrow"))
    assert sorted(p.name for p in (tmp_path / "data" / "books" / "tiny").iterdir()) == [
        "a.txt.gz",
        "b.txt.gz",
        "c.txt.gz",
        "d.txt.gz",
    ]
    other = cloze.cloze(str(tmp_path / "data"), **{**kw, "build": {**kw["build"], "build_seed": 1}})
    assert not torch.equal(a.train.answer, other.train.answer)  # another permutation draw
    with pytest.raises(Exception, match="in no split"):
        cloze.cloze(str(tmp_path / "data"), **{**kw, "books": {**kw["books"], "test": []}})


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["ln", "bn"])
def test_end_to_end_through_the_entrypoint(tmp_path, norm):
    data = tmp_path / "data"
    books = write_books(data)
    spec = ",".join(f"{s}:[{','.join(repr(n) for n in v)}]" for s, v in books.items())
    r = run_cli(
        [
            "experiment=reader_cpu",
            f"norm={norm}",
            (f"data.books={{{spec},drama:[],excluded:{{}}}}"),
            "data.n_entities=10",
            "data.vocab_size=60",
            "data.batch_size=8",
            "model.emb_dim=8",
            "model.hidden_size=8",
            "model.bn_min_live=4",
            "trainer.max_steps=6",
            "trainer.eval_every=3",
            "logger=none",
            "threads=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
        data,
        env={"LNREPRO_CACHE": str(tmp_path / "cache")},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 6
    rows = metrics_rows(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows if "val/err" in r] == [0, 3, 6]


def test_floors_count_only_the_candidates():
    """Three hand-made questions whose floors are known: the most frequent and the most recent
    floors pick among the candidates (an entity the query names may be left out of them)."""
    from lnrepro.data.cloze_stats import floors

    e = [cloze.ENTITY0 + k for k in range(4)]
    w = cloze.ENTITY0 + 4  # a word, not an entity (n_entities=4)
    docs = [
        [e[0], w, e[0], e[1], w],  # e0 twice, e1 last
        [e[2], e[1], w, e[3]],  # e3 last, but the query names it and it is no candidate
        [e[1], e[1], e[2]],  # e1 twice, e2 last
    ]
    queries = [[w, e[2]], [w, e[3]], [w]]
    cands = torch.tensor(
        [[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]], dtype=torch.bool
    )  # row 2: e3 (named by its query) left out
    answer = torch.tensor([0, 1, 2])

    def flat(rows):
        off = torch.tensor([0] + [len(r) for r in rows]).cumsum(0)
        return torch.tensor([t for r in rows for t in r]), off

    split = cloze.Split(*flat(docs), *flat(queries), answer, cands)
    f = floors(split, n_entities=4)
    assert f["random"] == pytest.approx(0.5)
    assert f["frequent"] == pytest.approx(1 / 3)  # row 0 only (row 1: tie -> e2, first seen)
    assert f["recent"] == pytest.approx(2 / 3)  # row 1: e1 (not e3, no candidate); row 2: e2
