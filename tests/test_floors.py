"""The trivial floors the claims table gates on (lnrepro.eval.floors, scripts/floors.py)."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from test_eval_schedule import write_ptb

from lnrepro.data.ptb import ptb
from lnrepro.eval import floors

ROOT = Path(__file__).resolve().parents[1]


def test_unigram_floor_is_the_training_frequencies_on_the_scored_targets(tmp_path):
    d = ptb(write_ptb(tmp_path), "word", 2, 4, eval_batch_size=2, verify=False)
    counts = Counter(d.train.flatten().tolist())
    total = sum(counts.values())
    got = floors.unigram(d)
    for split, streams in d.splits.items():
        targets = streams[1:].flatten().tolist()  # every token of a stream after its first
        want = -sum(math.log(counts[t] / total) for t in targets) / len(targets)
        assert got[split] == pytest.approx(want, rel=1e-12)
    lm = floors.lm_floors(d)  # a 10-word vocabulary reads as characters: bits per symbol
    assert lm["val/bpc"] == pytest.approx(got["val"] / math.log(2))


def test_linear_classifier_floor_learns_a_linear_rule_and_not_a_xor():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g)
    linear = {s: (x, (x[:, 0] > 0).long()) for s in ("train", "test")}
    assert floors.linear_classifier(linear)["test/err"] < 0.02
    xor = {s: (x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()) for s in ("train", "test")}
    assert floors.linear_classifier(xor)["test/err"] > 0.3  # no linear model fits a xor


def test_committed_floors_cover_the_figures_that_gate_on_them():
    with (ROOT / "results" / "floors.csv").open() as f:
        rows = list(csv.DictReader(f))
    have = {(r["figure"], r["metric"]) for r in rows if r["scale"] == "cpu"}
    for need in [
        ("lm_ptb_word", "val/ppl"),
        ("lm_ptb_word", "test/ppl"),
        ("lm_ptb_char", "val/bpc"),
        ("figure6_pi_mnist", "test/err"),
        ("cnn_mnist", "test/err"),
        ("figure2_reader", "val/err"),
    ]:
        assert need in have, need
    word = {r["metric"]: float(r["floor"]) for r in rows if r["figure"] == "lm_ptb_word"}
    assert 600 < word["val/ppl"] < 800  # a unigram model of PTB's words: about 700
