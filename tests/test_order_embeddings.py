"""Order embeddings (Sec. 6.1; Vendrov et al. 2016): the order-violation penalty and the ranking
loss against from-scratch references, R@K and mean rank against brute force, the COCO loader in
Vendrov et al.'s file layout, and the whole pipeline through the entrypoint on generated files
whose features carry a planted order structure."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, metrics_rows, run_cli

from lnrepro.data.coco_features import Pairs, coco_features, expected_files
from lnrepro.data.text import EOS_ID, PAD_ID
from lnrepro.errors import DataError
from lnrepro.models.order_embeddings import OrderEmbeddings
from lnrepro.runs import find_runs
from lnrepro.tasks.order_embeddings import (
    OrderEmbeddingsTask,
    caption_ranks,
    contrastive_loss,
    image_ranks,
    order_violation,
    recall_metrics,
    retrieval_metrics,
)

# ---- generated COCO in Vendrov et al.'s layout, with a planted order --------------------------
CONCEPTS = [
    "dog",
    "cat",
    "car",
    "tree",
    "boat",
    "pizza",
    "horse",
    "clock",
    "train",
    "kite",
    "bench",
    "bird",
    "cake",
    "sheep",
    "truck",
    "plane",
    "bus",
    "zebra",
    "vase",
    "bear",
]
FILLER = ["a", "the", "photo", "of", "with", "and", "near", "some", "picture", "showing"]
DIM_IMAGE = 48


def write_coco(root: Path, sizes=(400, 100, 150), seed: int = 0) -> Path:
    """<root>/coco/{train,val,test}.txt and coco/images/10crop/{train,val,test}.npy. Each image
    holds 3 of 20 concepts; its features are the sum of its concepts' (non-negative, random)
    vectors plus noise, unit norm, as Vendrov et al.'s features; each of its 5 captions names 2
    of its 3 concepts among filler words: a caption is an abstraction of its image."""
    rng = random.Random(seed)
    g = np.random.default_rng(seed)
    vecs = np.abs(g.normal(size=(len(CONCEPTS), DIM_IMAGE)))
    feat_dir = root / "coco" / "images" / "10crop"
    feat_dir.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "val", "test"), sizes):
        concepts = [rng.sample(range(len(CONCEPTS)), 3) for _ in range(n)]
        x = np.stack([vecs[c].sum(0) for c in concepts]) + 0.3 * np.abs(
            g.normal(size=(n, DIM_IMAGE))
        )
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        np.save(feat_dir / f"{split}.npy", x.astype(np.float32))
        lines = []
        for c in concepts:
            for _ in range(5):
                words = [CONCEPTS[k] for k in rng.sample(c, 2)] + rng.sample(
                    FILLER, rng.randint(1, 4)
                )
                rng.shuffle(words)
                lines.append(" ".join(words))
        (root / "coco" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    return write_coco(tmp_path_factory.mktemp("coco"))


# ---- the penalty and the loss ------------------------------------------------------------------
def test_order_violation_matches_definition_and_direction():
    g = torch.Generator().manual_seed(0)
    s, im = torch.rand(7, 5, generator=g), torch.rand(4, 5, generator=g)
    ref = torch.tensor(
        [
            [sum(max(0.0, float(s[c, k] - im[m, k])) ** 2 for k in range(5)) for m in range(4)]
            for c in range(7)
        ]
    )
    assert torch.allclose(order_violation(s, im), ref, atol=1e-6)
    # an image lies below its caption (Vendrov et al.): a caption no larger than the image in
    # every coordinate costs nothing; the reverse order is penalised
    image = torch.tensor([[0.5, 0.4, 0.3]])
    general = torch.tensor([[0.2, 0.1, 0.3]])
    assert float(order_violation(general, image)) == 0.0
    assert float(order_violation(image, general)) == pytest.approx(0.3**2 + 0.3**2)


def test_order_violation_chunks_agree(monkeypatch):
    import lnrepro.tasks.order_embeddings as oe

    s, im = torch.rand(23, 6), torch.rand(9, 6)
    whole = order_violation(s, im)
    monkeypatch.setattr(oe, "CHUNK_ELEMENTS", {"cpu": 100, "cuda": 100})  # 1 row a chunk
    assert torch.allclose(oe.order_violation(s, im), whole, atol=1e-6)
    with torch.no_grad():  # the in-place evaluation path
        assert torch.allclose(oe.order_violation(s, im), whole, atol=1e-6)
    s.requires_grad_(True)
    oe.order_violation(s, im).sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def reference_loss(errors: torch.Tensor, margin: float) -> float:
    """Vendrov et al.'s ranking loss written out pair by pair."""
    b, total = errors.shape[0], 0.0
    for k in range(b):
        for c in range(b):  # contrastive captions for image k
            if c != k:
                total += max(0.0, margin - float(errors[c, k]) + float(errors[k, k]))
        for j in range(b):  # contrastive images for caption k
            if j != k:
                total += max(0.0, margin - float(errors[k, j]) + float(errors[k, k]))
    return total


@pytest.mark.parametrize("margin", [0.05, 0.5])
def test_contrastive_loss_matches_reference(margin):
    errors = torch.rand(6, 6, generator=torch.Generator().manual_seed(1)) * 0.3
    assert float(contrastive_loss(errors, margin)) == pytest.approx(
        reference_loss(errors, margin), rel=1e-5
    )
    # a perfect batch (every pair ordered, every other pair violated by > margin) costs nothing
    perfect = torch.full((4, 4), 1.0).fill_diagonal_(0.0)
    assert float(contrastive_loss(perfect, margin)) == 0.0


# ---- retrieval metrics -------------------------------------------------------------------------
def brute_force(errors: torch.Tensor):
    """Vendrov et al.'s evaluation.py: sort and find the first correct item (1-based)."""
    e = errors.tolist()
    n = len(e[0])
    img = [1 + sorted(range(n), key=lambda m: row[m]).index(c // 5) for c, row in enumerate(e)]
    cap = []
    for m in range(n):
        order = sorted(range(len(e)), key=lambda c: e[c][m])
        cap.append(1 + min(order.index(c) for c in range(5 * m, 5 * m + 5)))
    return torch.tensor(cap), torch.tensor(img)


def test_ranks_and_recall_match_brute_force():
    errors = torch.rand(5 * 12, 12, generator=torch.Generator().manual_seed(2))
    cap, img = brute_force(errors)
    assert torch.equal(caption_ranks(errors), cap) and torch.equal(image_ranks(errors), img)
    m = retrieval_metrics(errors)
    for prefix, ranks in (("cap", cap), ("img", img)):
        for k in (1, 5, 10):
            recall = 100.0 * sum(int(r <= k) for r in ranks.tolist()) / len(ranks)
            assert m[f"{prefix}_r{k}"] == pytest.approx(recall)
        assert m[f"{prefix}_mean_r"] == pytest.approx(sum(ranks.tolist()) / len(ranks))
    assert m["rsum"] == pytest.approx(sum(m[f"img_r{k}"] for k in (1, 5, 10)))


def test_perfect_and_tied_rankings():
    n = 4
    perfect = torch.ones(5 * n, n)
    perfect[torch.arange(5 * n), torch.arange(5 * n) // 5] = 0.0
    m = retrieval_metrics(perfect)
    assert m["cap_r1"] == m["img_r1"] == 100.0 and m["rsum"] == 300.0
    assert m["cap_mean_r"] == m["img_mean_r"] == 1.0
    # all equal: ties count against the model (worst rank), never in its favour
    flat = torch.zeros(5 * n, n)
    assert image_ranks(flat).tolist() == [n] * (5 * n)
    assert caption_ranks(flat).tolist() == [5 * n - 4] * n
    assert recall_metrics(torch.tensor([1, 2, 6, 11]), "x") == {
        "x_r1": 25.0,
        "x_r5": 50.0,
        "x_r10": 75.0,
        "x_mean_r": 5.0,
    }


# ---- model -------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["ln", "none"])
def test_embeddings_are_nonnegative_unit_and_ignore_padding(norm):
    torch.manual_seed(0)
    model = OrderEmbeddings(vocab_size=12, dim_word=6, dim=8, dim_image=5, norm=norm).eval()
    ids = torch.tensor([[4, 5, 6, EOS_ID], [7, EOS_ID, PAD_ID, PAD_ID]])
    s, im = model(ids, torch.randn(3, 5))
    assert (s >= 0).all() and (im >= 0).all()
    assert torch.allclose(s.norm(dim=1), torch.ones(2)) and torch.allclose(
        im.norm(dim=1), torch.ones(3)
    )
    alone = model.encode_captions(torch.tensor([[7, EOS_ID]]))
    assert torch.allclose(alone[0], s[1], atol=1e-6)


# ---- data --------------------------------------------------------------------------------------
def test_loader_reads_the_layout(coco):
    d = coco_features(str(coco), batch_size=32, fold_images=20, val_folds=2, test_folds=5, seed=3)
    assert d.steps_per_epoch == 400 // 32 and d.model_kwargs["dim_image"] == DIM_IMAGE
    assert len(d.splits["val"]) == 2 and len(d.splits["test"]) == 5
    fold = d.splits["test"][1]
    assert fold.ids.shape[0] == 100 and fold.images.shape == (20, DIM_IMAGE)
    feats = torch.from_numpy(np.load(expected_files(coco)["test"][1]))
    assert torch.equal(fold.images, feats[20:40])
    words = (coco / "coco" / "test.txt").read_text().splitlines()[100].split()
    row = fold.ids[0].tolist()
    assert [d.vocab[i] for i in row[: len(words)]] == words and row[len(words)] == EOS_ID
    # an epoch visits each image once; a resumed epoch replays the same batches
    full = list(d.train_batches(epoch=1))
    assert len(full) == d.steps_per_epoch
    for a, b in zip(full[4:], d.train_batches(epoch=1, start=4)):
        assert torch.equal(a.ids, b.ids) and torch.equal(a.images, b.images)
    seen = torch.cat([b.images for b in full])
    assert len(torch.unique(seen, dim=0)) == len(seen)


def test_captions_must_be_five_per_image(tmp_path):
    write_coco(tmp_path, sizes=(40, 20, 20))
    path = tmp_path / "coco" / "val.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match="99 captions for the 20 images"):
        coco_features(str(tmp_path), batch_size=8, fold_images=10, val_folds=1, test_folds=1)


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_missing_data_is_one_line_through_the_entrypoint(tmp_path):
    (tmp_path / "data" / "coco").mkdir(parents=True)
    (tmp_path / "data" / "coco" / "train.txt").write_text("a dog\n")
    r = run_cli(
        ["experiment=order_embeddings_cpu", "norm=ln", "logger=none"],
        tmp_path,
        tmp_path / "data",
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out, out[-2000:]
    (line,) = [x for x in out.splitlines() if "COCO features not found" in x]
    for name in (
        "images/10crop/train.npy",
        "val.txt",
        "images/10crop/val.npy",
        "test.txt",
        "images/10crop/test.npy",
        "LNREPRO_DATA",
        str(tmp_path / "data" / "coco"),
    ):
        assert name in line
    assert "train.txt," not in line  # the file that is there is not reported


# ---- end to end --------------------------------------------------------------------------------
TINY_OE = [
    "experiment=order_embeddings_cpu",
    "data.batch_size=40",
    "data.fold_images=50",
    "data.val_folds=2",
    "data.test_folds=3",
    f"model.dim_image={DIM_IMAGE}",
    "model.dim_word=16",
    "model.dim=32",
    "optim.lr=3e-3",
    "trainer.max_steps=100",
    "trainer.eval_every=50",
    "trainer.log_every=25",
    "logger=none",
    "threads=1",
]


@pytest.mark.slow
def test_end_to_end_learns_the_planted_order_and_table2(tmp_path, coco):
    """Both norms as `make table2` runs them (one multirun of `python -m lnrepro.train` into the
    figure folder), then scripts/table2.py on those runs."""
    sweep = tmp_path / "outputs" / "figures" / "table2_order_embeddings" / "cpu"
    r = run_cli(
        TINY_OE
        + [
            "norm=ln,none",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
        ],
        tmp_path,
        coco,
        timeout=300,
        multirun=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = {run.get("norm.kind"): run for run in find_runs(sweep)}
    assert set(runs) == {"ln", "none"}
    for run in runs.values():
        assert run.status == "completed" and run.steps == 100
        rows = metrics_rows(run.path / "metrics.jsonl")
        evals = [x for x in rows if "test/img_r1" in x]
        assert [x["step"] for x in evals] == [0, 50, 100]
        start, end = evals[0], run.summary["final"]
        # chance on folds of 50 images: R@1 2 %, R@10 20 %
        assert start["test/img_r10"] < 40 and start["test/cap_r10"] < 50
        assert end["test/img_r10"] > 75 and end["test/cap_r10"] > 75
        assert end["test/img_r1"] > start["test/img_r1"] + 20
        assert end["test/img_mean_r"] < start["test/img_mean_r"] / 2
        # recalls are maximised: "best" is the highest rsum of any evaluation
        assert run.summary["best"]["val/rsum"] == max(x["val/rsum"] for x in evals)
        assert any("batch/loss" in x for x in rows)
    out = subprocess.run(
        [sys.executable, "scripts/table2.py", "--out", str(tmp_path / "res")],
        cwd=ROOT,
        env={**os.environ, "LNREPRO_OUTPUTS": str(tmp_path / "outputs")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "res" / "figure1_order_embeddings.png").stat().st_size > 0
    md = (tmp_path / "res" / "table2_order_embeddings.md").read_text()
    best = min(
        (x for x in runs["ln"].rows if "val/rsum" in x), key=lambda x: (-x["val/rsum"], x["step"])
    )
    (row,) = [x for x in md.splitlines() if x.startswith("| OE + LN (LN-GRU), ours")]
    cells = [c.strip() for c in row.split("|")[2:-1]]
    assert cells[0] == f"{best['test/cap_r1']:.1f}"
    assert cells[7] == f"{best['test/img_mean_r']:.1f}" and cells[8] == str(best["step"])
    assert "| OE (GRU), ours" in md and "| OE + LN (paper's run) | 48.5 |" in md


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_table2_says_when_the_data_is_missing(tmp_path):
    out = subprocess.run(
        [sys.executable, "scripts/table2.py", "--check-data"],
        cwd=ROOT,
        env={**os.environ, "LNREPRO_DATA": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "COCO features not found" in out.stderr


def test_fold_errors_do_not_depend_on_the_encoding_batches():
    torch.manual_seed(0)
    model = OrderEmbeddings(vocab_size=12, dim_word=6, dim=8, dim_image=5, norm="ln").eval()
    ids = torch.randint(3, 12, (10, 7))
    for row, n in enumerate([2, 7, 3, 1, 5, 6, 2, 4, 7, 3]):
        ids[row, n - 1], ids[row, n:] = EOS_ID, PAD_ID
    fold = Pairs(ids, torch.randn(2, 5))
    whole = OrderEmbeddingsTask(encode_batch_size=100).fold_errors(model, fold)
    small = OrderEmbeddingsTask(encode_batch_size=3).fold_errors(model, fold)
    with torch.no_grad():
        s, im = model(ids, fold.images)
    assert torch.allclose(whole, small, atol=1e-6)
    assert torch.allclose(whole, order_violation(s, im), atol=1e-6)
