"""Penn Treebank language modelling: loader, batching, truncated BPTT, end to end, resume."""

from __future__ import annotations

import gzip
import json
import math
import os
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import rows_without_time, run_cli

from lnrepro.data.ptb import EOS, char_symbols, char_symbols_from_words, ptb
from lnrepro.errors import ConfigError, DataError
from lnrepro.models.lm import LSTMLM
from lnrepro.runs import find_runs, load_run
from lnrepro.tasks.lm import LanguageModel
from lnrepro.train import run

# Overrides that shrink lm_ptb_char_cpu to a few seconds on the tiny text below.
TINY_LM = [
    "experiment=lm_ptb_char_cpu",
    "data.batch_size=4",
    "data.bptt=10",
    "data.eval_batch_size=2",
    "data.eval_tokens=null",
    "model.emb_dim=8",
    "model.hidden_size=16",
    "optim.lr=0.01",
    "trainer.max_steps=60",
    "trainer.evals_per_epoch=4",
    "trainer.log_every=5",
    "logger=none",
    "threads=1",
    "data.verify=false",  # synthetic text, not Mikolov's files (lnrepro.data.verify)
]


def sentences(n: int, seed: int) -> list[str]:
    """Mikolov-style lines (leading and trailing space) from a tiny grammar, so a small LSTM
    learns them in a few dozen steps."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        subj = rng.choice(["the cat", "a dog", "the big dog", "a red cat", "<unk>"])
        verb = rng.choice(["sat on", "ran on"])
        obj = rng.choice(["the mat", "a log", "N mat"])
        out.append(f" {subj} {verb} {obj} ")
    return out


def write_ptb(
    root: Path, n_train: int = 120, n_eval: int = 30, char_files: bool = False, seed: int = 0
) -> Path:
    """<root>/ptb/ptb.{train,valid,test}.txt; with `char_files` also ptb.char.*, written by
    the rule of the offline copy (valid gzipped, as there)."""
    d = root / "ptb"
    d.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate((("train", n_train), ("valid", n_eval), ("test", n_eval))):
        lines = sentences(n, seed * 10 + i)
        (d / f"ptb.{name}.txt").write_text("\n".join(lines) + "\n")
        if char_files:
            t = "\n".join("_".join(line.split()) for line in lines) + "\n"
            text = " ".join(t) + " "
            if name == "valid":
                with gzip.open(d / f"ptb.char.{name}.txt.gz", "wt") as f:
                    f.write(text)
            else:
                (d / f"ptb.char.{name}.txt").write_text(text)
    return root


@pytest.fixture(scope="module")
def tiny_ptb(tmp_path_factory) -> Path:
    return write_ptb(tmp_path_factory.mktemp("ptbdata"))


def lm_cfg(compose, data_dir, *extra):
    return compose(TINY_LM + [f"paths.data_dir={data_dir}"] + list(extra))


def train_tokens(d) -> list[str]:
    """The training symbols the streams hold, in text order."""
    return [d.vocab[i] for i in d.train.t().reshape(-1).tolist()]


# ---- loader -----------------------------------------------------------------------------


def test_word_level_vocabulary_unk_and_eos(tiny_ptb):
    d = ptb(tiny_ptb, "word", batch_size=2, bptt=5, eval_batch_size=2, verify=False)
    lines = (tiny_ptb / "ptb" / "ptb.train.txt").read_text().splitlines()
    assert d.vocab == sorted({w for line in lines for w in line.split()} | {EOS})
    assert {"<unk>", EOS, "cat"} <= set(d.vocab)
    assert d.vocab_size == len(d.vocab) == d.model_kwargs["vocab_size"]
    expected = [w for line in lines for w in line.split() + [EOS]]
    got = train_tokens(d)
    assert got == expected[: len(got)] and len(expected) - len(got) < 2  # remainder of B streams
    # the same files give the same vocabulary hash; other text another
    assert ptb(tiny_ptb, "word", 2, 5, 2, verify=False).vocab_hash == d.vocab_hash
    assert ptb(tiny_ptb, "char", 2, 5, 2, verify=False).vocab_hash != d.vocab_hash


def test_char_level_derived_from_words_equals_char_files(tmp_path):
    derived = ptb(write_ptb(tmp_path / "a"), "char", 3, 7, 2, verify=False)
    files = ptb(write_ptb(tmp_path / "b", char_files=True), "char", 3, 7, 2, verify=False)
    (tmp_path / "b" / "ptb" / "ptb.train.txt").unlink()  # the char files alone suffice
    alone = ptb(tmp_path / "b", "char", 3, 7, 2, verify=False)
    assert derived.vocab == files.vocab == alone.vocab
    assert (
        EOS in derived.vocab
        and "_" in derived.vocab
        and all(len(s) == 1 for s in derived.vocab if s != EOS)
    )
    for a, b in ((derived, files), (derived, alone)):
        assert torch.equal(a.train, b.train)
        assert all(torch.equal(a.splits[s], b.splits[s]) for s in ("val", "test"))
    line = (tmp_path / "a" / "ptb" / "ptb.train.txt").read_text().splitlines()[0]
    first = "".join(train_tokens(derived)[: len("_".join(line.split())) + 1])
    assert first == "_".join(line.split()) + EOS


def test_segments_are_contiguous_streams_and_resume_mid_epoch(tiny_ptb):
    B, T = 3, 7
    d = ptb(tiny_ptb, "char", B, T, eval_batch_size=2, verify=False)
    segs = list(d.train_batches(0))
    assert len(segs) == d.steps_per_epoch == (len(d.train) - 1) // T
    assert [s.first for s in segs] == [True] + [False] * (len(segs) - 1)
    for i, s in enumerate(segs):
        assert s.x.shape == s.y.shape == (T, B) and s.x.dtype == torch.long
        assert torch.equal(s.y[:-1], s.x[1:])  # targets: the next symbol
        if i + 1 < len(segs):  # segment i+1 continues segment i in every stream
            assert torch.equal(s.y[-1], segs[i + 1].x[0])
    streams = torch.cat([s.x for s in segs])  # (steps * T, B)
    tokens = train_tokens(d)
    L = len(d.train)
    for b in range(B):  # stream b is the b-th contiguous block of the text
        assert [d.vocab[i] for i in streams[:, b].tolist()] == tokens[b * L : b * L + len(streams)]
    again = list(d.train_batches(1, 4))  # every epoch alike; `start` skips segments
    assert len(again) == len(segs) - 4
    assert all(torch.equal(a.x, b.x) and a.first == b.first for a, b in zip(again, segs[4:]))


def test_eval_batches_cover_every_token_and_cap(tiny_ptb):
    d = ptb(tiny_ptb, "char", 3, 7, eval_batch_size=2, verify=False)
    val = d.splits["val"]  # (L, 2)
    segs = list(d.eval_batches("val"))
    assert [s.first for s in segs] == [True] + [False] * (len(segs) - 1)
    assert torch.equal(torch.cat([s.x for s in segs]), val[:-1])
    assert torch.equal(torch.cat([s.y for s in segs]), val[1:])  # the last segment may be short
    capped = ptb(
        tiny_ptb,
        "char",
        3,
        7,
        eval_batch_size=2,
        eval_tokens={"val": 41, "test": None},
        verify=False,
    )
    assert capped.splits["val"].numel() == 40  # 41 tokens in 2 streams of 20
    assert torch.equal(capped.splits["val"][:, 0], val[:20, 0])  # the first tokens of the text
    assert torch.equal(capped.splits["test"], d.splits["test"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"bptt": 0}, ConfigError, "data.bptt must be a positive integer"),
        ({"batch_size": 0}, ConfigError, "data.batch_size must be a positive integer"),
        ({"eval_batch_size": -1}, ConfigError, "data.eval_batch_size"),
        ({"level": "byte"}, ConfigError, "data.level"),
        ({"bptt": 100000}, ConfigError, "too short"),
        ({"eval_tokens": 1}, ConfigError, "too short"),
        ({"eval_tokens": {"train": 10}}, ConfigError, "eval_tokens"),
    ],
)
def test_bad_data_config(tiny_ptb, kwargs, error, match):
    args = {"level": "char", "batch_size": 2, "bptt": 5, "eval_batch_size": 2, **kwargs}
    with pytest.raises(error, match=match):
        ptb(tiny_ptb, **args, verify=False)


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(DataError, match=r"ptb.train.txt.*simple-examples.tgz.*LNREPRO_DATA"):
        ptb(tmp_path / "none", "word", 2, 5)
    with pytest.raises(DataError, match=r"ptb.char.train.txt\[.gz\].*LNREPRO_DATA"):
        ptb(tmp_path / "none", "char", 2, 5)
    root = write_ptb(tmp_path / "d", char_files=True)
    d = root / "ptb"
    (d / "ptb.char.valid.txt.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="ptb.char.valid.txt.gz cannot be read"):
        ptb(root, "char", 2, 5, verify=False)
    (d / "ptb.char.valid.txt.gz").unlink()
    (d / "ptb.char.test.txt").write_text("")
    with pytest.raises(DataError, match="ptb.char.test.txt is empty"):
        ptb(root, "char", 2, 5, verify=False)
    (d / "ptb.char.test.txt").write_text((d / "ptb.test.txt").read_text())  # words, not chars
    with pytest.raises(DataError, match="not one character"):
        ptb(root, "char", 2, 5, verify=False)
    (d / "ptb.valid.txt").write_text(" the zebra sat \n")  # valid derived: 'z' is unseen
    (d / "ptb.char.test.txt").unlink()
    with pytest.raises(DataError, match=r"valid split.*not in the training vocabulary \('z'\)"):
        ptb(root, "char", 2, 5, verify=False)


# ---- data.source=hub: datasets.load_dataset (mocked: no network here) -------------------


def mock_hub(monkeypatch, root: Path, strip: bool = False) -> list:
    """datasets.load_dataset answering with the local PTB lines (one row each, Mikolov's
    leading and trailing spaces kept or `strip`ped) under the Hub's split names."""
    import datasets

    calls = []

    def fake_load(hub_id, config=None, cache_dir=None):
        calls.append((hub_id, config, cache_dir))
        rows = {}
        for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
            lines = (root / "ptb" / f"ptb.{name}.txt").read_text().split("\n")[:-1]
            rows[split] = datasets.Dataset.from_dict(
                {"sentence": [x.strip() if strip else x for x in lines]}
            )
        return datasets.DatasetDict(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    return calls


def assert_same_streams(a, b):
    assert a.vocab == b.vocab and a.vocab_hash == b.vocab_hash
    assert torch.equal(a.train, b.train) and a.steps_per_epoch == b.steps_per_epoch
    assert a.splits.keys() == b.splits.keys()
    for k in a.splits:
        assert torch.equal(a.splits[k], b.splits[k]), k


@pytest.mark.parametrize("strip", [False, True])
@pytest.mark.parametrize("level", ["word", "char"])
def test_hub_source_gives_the_local_token_streams(tiny_ptb, monkeypatch, level, strip):
    local = ptb(tiny_ptb, level, 4, 5, 2, verify=False)
    calls = mock_hub(monkeypatch, tiny_ptb, strip)
    hub = ptb("/nowhere", level, 4, 5, 2, source="hub", hub_id="ptb_text_only")
    assert_same_streams(hub, local)
    assert calls == [
        ("ptb_text_only", None, str(Path(os.environ["LNREPRO_CACHE"]) / "huggingface"))
    ]


def test_hub_source_errors_are_one_line(tiny_ptb, monkeypatch):
    import datasets

    def offline(hub_id, *a, **k):
        raise ConnectionError(
            f"Couldn't reach '{hub_id}' on the Hub (OfflineModeIsEnabled)\n"
            "a long traceback-like second line"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as e:
        ptb(tiny_ptb, "word", 2, 5, 2, source="hub", hub_id="some/ptb_copy")
    msg = str(e.value)
    assert "'some/ptb_copy'" in msg and "data.source=local" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="data.source must be one of local, hub"):
        ptb(tiny_ptb, "word", 2, 5, 2, source="web")
    with pytest.raises(ConfigError, match="data.hub_id"):
        ptb(tiny_ptb, "word", 2, 5, 2, source="hub", hub_id=None)
    mock_hub(monkeypatch, tiny_ptb)
    with pytest.raises(DataError, match="no column 'text'.*sentence.*data.hub_column"):
        ptb(tiny_ptb, "word", 2, 5, 2, source="hub", hub_id="x", hub_column="text")


@pytest.mark.realdata("ptb/ptb.train.txt")
@pytest.mark.parametrize("level", ["word", "char"])
def test_hub_source_gives_the_real_token_streams(monkeypatch, level, real_data):
    data = real_data
    local = ptb(data, level, 20, 35, 10)  # the char files themselves, where present
    mock_hub(monkeypatch, data, strip=True)
    assert_same_streams(ptb(data, level, 20, 35, 10, source="hub", hub_id="ptb_text_only"), local)


# ---- task: truncated BPTT ----------------------------------------------------------------


def tiny_model(d, norm="ln", seed=0):
    torch.manual_seed(seed)
    return LSTMLM(d.vocab_size, 8, 16, norm=norm, vocab_hash=d.vocab_hash)


@pytest.mark.parametrize("norm", ["ln", "none"])
def test_state_is_carried_detached_and_reset(tiny_ptb, norm):
    d = ptb(tiny_ptb, "char", 3, 6, 2, verify=False)
    model, task = tiny_model(d, norm), LanguageModel("bpc")
    s1, s2 = list(d.train_batches(0, 0))[:2]
    emb_out = []

    def keep(module, inputs, out):
        out.retain_grad()
        emb_out.append(out)

    hook = model.embedding.register_forward_hook(keep)
    loss1, m1 = task.training_step(model, s1)
    assert not any(s.requires_grad for s in task.state)
    loss2, _ = task.training_step(model, s2)
    loss2.backward()
    assert emb_out[1].grad is not None and emb_out[0].grad is None  # no gradient into segment 1
    hook.remove()
    assert m1["bpc"] == pytest.approx(loss1.item() / math.log(2))
    # the carried state continues the text: the same as one forward over both segments
    with torch.no_grad():
        full, _ = model(torch.cat([s1.x, s2.x]))
        ref = F.cross_entropy(full[len(s1.x) :].flatten(0, 1), s2.y.flatten())
        fresh, _ = model(s2.x)
        ref_reset = F.cross_entropy(fresh.flatten(0, 1), s2.y.flatten())
    assert loss2.item() == pytest.approx(ref.item(), abs=1e-5)
    assert abs(float(ref) - float(ref_reset)) > 1e-4  # the test can tell the two apart
    reset, _ = task.training_step(model, s2._replace(first=True))  # an epoch's first segment
    assert reset.item() == pytest.approx(ref_reset.item(), abs=1e-5)


def test_time_reduction_sum_is_zarembas_loss(tiny_ptb):
    """ "sum": the segment's cross-entropy summed over its T steps and averaged over the B streams
    (Zaremba et al. 2014), so its gradient is T times the per-symbol loss's; metrics stay per
    symbol."""
    d = ptb(tiny_ptb, "word", 2, 5, 2, verify=False)
    seg = next(d.train_batches(0))
    model = tiny_model(d)
    mean_loss, m_mean = LanguageModel("ppl").training_step(model, seg)
    sum_loss, m_sum = LanguageModel("ppl", time_reduction="sum").training_step(model, seg)
    with torch.no_grad():
        logits, _ = model(seg.x)
        per_token = F.cross_entropy(logits.flatten(0, 1), seg.y.flatten(), reduction="none")
    T, B = seg.y.shape
    assert (T, B) == (5, 2)
    assert sum_loss.item() == pytest.approx(per_token.sum().item() / B, rel=1e-6)
    assert mean_loss.item() == pytest.approx(per_token.mean().item(), rel=1e-6)
    assert m_sum["loss"].item() == pytest.approx(m_mean["loss"].item())
    assert m_sum["ppl"].item() == pytest.approx(m_mean["ppl"].item())
    with pytest.raises(ConfigError, match="task.time_reduction"):
        LanguageModel("ppl", time_reduction="total")


def test_word_ptb_configs_take_zarembas_loss_where_they_say_so(compose):
    """The Zaremba-setup configs sum over the steps; the first CPU protocol (its committed
    exploratory seeds) and its Adam variant keep the loss per word."""
    want = {
        "lm_ptb_word": "sum",
        "lm_ptb_word_cpu": "sum",
        "lm_ptb_word_cpu_compressed": "mean",
        "lm_ptb_word_cpu_adam": "mean",
    }
    got = {e: compose([f"experiment={e}"]).task.time_reduction for e in want}
    assert got == want


@pytest.mark.slow  # > 1 s: thousands of characters step by step, three times
def test_evaluate_is_exact_and_leaves_training_state(tiny_ptb):
    d = ptb(tiny_ptb, "char", 3, 6, eval_batch_size=2, verify=False)
    model, task = tiny_model(d), LanguageModel("bpc")
    for s in list(d.train_batches(0))[:3]:
        task.training_step(model, s)
    before = [t.clone() for t in task.state]
    model.eval()
    out = task.evaluate(model, d.eval_batches("val"))
    assert all(torch.equal(a, b) for a, b in zip(before, task.state))
    # segments read in order with carried state = one forward over each whole stream
    val = d.splits["val"]
    with torch.no_grad():
        logits, _ = model(val[:-1])
    nll = F.cross_entropy(logits.flatten(0, 1), val[1:].flatten()).item()
    assert out["nll"] == pytest.approx(nll, rel=1e-5)
    assert out["bpc"] == pytest.approx(nll / math.log(2))
    assert LanguageModel("ppl").evaluate(model, d.eval_batches("val"))["ppl"] == pytest.approx(
        math.exp(nll), rel=1e-5
    )
    with pytest.raises(ConfigError, match="task.unit"):
        LanguageModel("bits")


def test_model_checks_its_vocabulary_on_load(tiny_ptb):
    d = ptb(tiny_ptb, "char", 3, 6, 2, verify=False)
    state = tiny_model(d).state_dict()
    LSTMLM(d.vocab_size, 8, 16, vocab_hash=d.vocab_hash).load_state_dict(state)
    for size, h in ((d.vocab_size + 1, d.vocab_hash), (d.vocab_size, "0" * 16)):
        with pytest.raises(ConfigError, match="vocabulary mismatch"):
            LSTMLM(size, 8, 16, vocab_hash=h).load_state_dict(state)
    with pytest.raises(ConfigError, match="tie_weights"):
        LSTMLM(10, 8, 16, tie_weights=True)
    tied = LSTMLM(10, 16, 16, tie_weights=True)
    assert tied.decoder.weight is tied.embedding.weight


# ---- end to end ------------------------------------------------------------------------


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_every_norm_through_the_real_entrypoint(tmp_path, tiny_ptb):
    """One Hydra multirun over norm=ln,bn,none on char text derived from the word files."""
    sweep = tmp_path / "sweep"
    p = run_cli(
        [*TINY_LM, "norm=ln,bn,none", f"hydra.sweep.dir={sweep}"], tmp_path, tiny_ptb, multirun=True
    )
    assert p.returncode == 0, p.stderr[-3000:]
    runs = find_runs(sweep)
    assert sorted(r.get("norm.kind") for r in runs) == ["bn", "ln", "none"]
    for r in runs:
        assert r.status == "completed" and r.summary["step"] == 60
        first = next(x for x in r.rows if "val/bpc" in x)
        assert first["step"] == 0 and not any("test/bpc" in x for x in r.rows[:-1])
        final = r.summary["final"]
        assert final["val/bpc"] < first["val/bpc"] * 0.8, (r.path, first, final)
        assert final["test/bpc"] == pytest.approx(final["test/nll"] / math.log(2))
        assert any("batch/bpc" in x for x in r.rows)


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_word_level_run_reports_perplexity(compose, tiny_ptb, tmp_path):
    cfg = compose(
        [
            "experiment=lm_ptb_word_cpu",
            f"paths.data_dir={tiny_ptb}",
            "logger=none",
            "threads=1",
            "data.batch_size=4",
            "data.eval_tokens=null",
            "model.emb_dim=8",
            "model.hidden_size=8",
            "trainer.max_steps=5",
            "trainer.log_every=5",
            "data.verify=false",
        ]
    )
    s = run(cfg, tmp_path)
    final = s["final"]
    assert final["val/ppl"] == pytest.approx(math.exp(final["val/nll"]))
    assert 1 < final["test/ppl"] < 30  # 21 words: chance is ~21 after 5 steps of Adam
    assert any("batch/ppl" in r for r in load_run(tmp_path).rows)


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_resume_equals_uninterrupted_run(compose, tiny_ptb, tmp_path):
    d = ptb(tiny_ptb, "char", 4, 10, 2, verify=False)
    k = d.steps_per_epoch // 4  # the evaluation interval
    total = d.steps_per_epoch + k  # crosses an epoch boundary (the carried state resets there)
    common = [
        f"trainer.log_every={k}",
        f"trainer.ckpt_every={k}",
        "trainer.eval_splits=[val,test]",
        "trainer.final_eval_splits=[]",
        "norm=bn",
    ]
    full = run(lm_cfg(compose, tiny_ptb, *common, f"trainer.max_steps={total}"), tmp_path / "a")
    stopped = tmp_path / "b"  # stopped mid-epoch, with a carried state that matters
    run(lm_cfg(compose, tiny_ptb, *common, f"trainer.max_steps={2 * k}"), stopped)
    with open(stopped / "metrics.jsonl", "a") as f:  # what a killed run logged after its checkpoint
        f.write(f'{{"step": {2 * k + 1}, "time": 0, "batch/loss": 99}}\n{{"step": 3')
    resumed = run(
        lm_cfg(compose, tiny_ptb, *common, f"trainer.max_steps={total}", "resume=true"), stopped
    )
    assert rows_without_time(tmp_path / "a" / "metrics.jsonl") == rows_without_time(
        stopped / "metrics.jsonl"
    )
    assert resumed["final"] == full["final"] and resumed["best"] == full["best"]
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][n], b["model"][n]) for n in a["model"] if n != "_extra_state")
    assert all(torch.equal(x, y) for x, y in zip(a["task"]["state"], b["task"]["state"]))


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_vocabulary_mismatch_on_resume(compose, tmp_path):
    """The data files changed under a run (same config): resuming stops with one clear error."""
    data = write_ptb(tmp_path / "data")
    run(lm_cfg(compose, data, "trainer.max_steps=2"), tmp_path / "r")
    write_ptb(data, seed=1)  # other text, the same symbols: resumes
    run(lm_cfg(compose, data, "trainer.max_steps=3", "resume=true"), tmp_path / "r")
    files = sorted((data / "ptb").glob("ptb.*.txt"))
    for f in files:  # as many symbols, not the same ones
        f.write_text(f.read_text().replace("g", "q"))
    with pytest.raises(ConfigError, match="vocabulary mismatch on resume"):
        run(lm_cfg(compose, data, "trainer.max_steps=4", "resume=true"), tmp_path / "r")
    write_ptb(data, seed=1)
    with open(data / "ptb" / "ptb.train.txt", "a") as f:  # one more symbol
        f.write(" zebra \n")
    with pytest.raises(ConfigError, match="vocabulary mismatch on resume"):
        run(lm_cfg(compose, data, "trainer.max_steps=4", "resume=true"), tmp_path / "r")
    assert load_run(tmp_path / "r").summary["step"] == 3


@pytest.mark.parametrize(
    "overrides, error, match",
    [
        (["data.bptt=0"], ConfigError, "data.bptt must be a positive integer"),
        (["data.batch_size=0"], ConfigError, "data.batch_size must be a positive integer"),
        (["task.unit=nats"], ConfigError, "task.unit"),
        (["model.dropout=1.5"], ConfigError, "dropout"),
    ],
)
@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_bad_config_values(compose, tiny_ptb, tmp_path, overrides, error, match):
    with pytest.raises(error, match=match):
        run(lm_cfg(compose, tiny_ptb, *overrides), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_missing_ptb_through_the_entrypoint(compose, tmp_path):
    with pytest.raises(DataError, match=r"ptb.char.train.txt.*LNREPRO_DATA"):
        run(lm_cfg(compose, tmp_path / "nothing"), tmp_path / "r")


@pytest.mark.realdata("ptb/ptb.train.txt")
def test_real_ptb_smoke(compose, tmp_path, real_data):
    data = real_data
    words = ptb(data, "word", 20, 35, 10)
    assert words.vocab_size == 10000 and {"<unk>", EOS} <= set(words.vocab)
    char_file = data / "ptb" / "ptb.char.valid.txt.gz"
    if char_file.exists():  # the SOURCES.md derivation reproduces Mikolov's char file
        with gzip.open(char_file, "rt") as f:
            chars = char_symbols(f.read(), char_file)
        assert chars == char_symbols_from_words((data / "ptb" / "ptb.valid.txt").read_text())
    cfg = compose(
        [
            "experiment=lm_ptb_char_cpu",
            "norm=ln",
            "trainer.max_steps=4",
            "logger=none",
            "data.eval_tokens=3000",
            "trainer.evals_per_epoch=1",
            "threads=1",
        ]
    )
    s = run(cfg, tmp_path)
    assert s["status"] == "completed"
    assert json.loads((tmp_path / "summary.json").read_text())["n_params"] > 0
    assert s["final"]["test/bpc"] < math.log2(50) + 0.1  # 50 symbols, chance level ~5.6
