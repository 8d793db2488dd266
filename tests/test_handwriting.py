"""Handwriting synthesis (Sec. 6.5, Graves 2013): mixture loss, attention window, IAM-OnDB
loader and cache, end to end through the entrypoint, sampling, bad input, real-data smoke."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, run_cli
from torch import distributions as D

from lnrepro.data.iam_ondb import (
    DEFAULT_ALPHABET,
    RawLines,
    encode_text,
    iam_ondb,
    load_raw,
    load_raw_lines,
    parse_strokes,
    parse_transcription,
    save_raw,
    to_offsets,
)
from lnrepro.errors import ConfigError, DataError
from lnrepro.models.handwriting import HandwritingSynthesis, mdn_params
from lnrepro.models.handwriting_sampling import sample, to_pen_positions
from lnrepro.runs import find_runs
from lnrepro.tasks.handwriting import HandwritingTask, mdn_nll, sequences

TINY_HW = [
    "experiment=handwriting_cpu",
    "data.batch_size=4",
    "data.max_len=40",
    "data.val_fraction=0.3",
    "data.train_eval_lines=8",
    "data.val_eval_lines=null",
    "data.eval_batch_size=8",
    "model.hidden_size=12",
    "model.mixture_components=3",
    "model.window_components=2",
    "optim.lr=0.01",
    "trainer.max_steps=24",
    "trainer.evals_per_epoch=1",
    "trainer.log_every=4",
    "logger=none",
    "threads=1",
    "data.verify=false",  # synthetic files, not the recorded IAM-OnDB (lnrepro.data.verify)
]

WORDS = ["the", "cat", "sat", "on", "a", "mat", "Mr", "Foot", "has", "put", "down", "log."]


# ---- synthetic IAM-OnDB in the official format -----------------------------------------------
def line_strokes(text: str) -> list[list[tuple[int, int]]]:
    """Pen-down strokes for a text: one stroke per word, 4 points per character whose shape
    depends on the character, a pen-up jump between words (y grows downwards as in the data)."""
    x, y, strokes = 1000, 3000, []
    for word in text.split():
        pts = []
        for ch in word:
            k = ord(ch)
            for j in range(4):
                x += 4 + (k + j) % 5
                y += ((k * (j + 1)) % 7 - 3) * 3
                pts.append((x, y))
        strokes.append(pts)
        x += 40
    return strokes


def stroke_xml(strokes) -> str:
    """A lineStrokes file as FORMAT.md shows it (CRLF after the Point lines)."""
    head = (
        '<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession>\n'
        '  <WhiteboardDescription>\n    <SensorLocation corner="top_left"/>\n'
        '    <DiagonallyOppositeCoords x="6512" y="1376"/>\n'
        '    <VerticallyOppositeCoords x="966" y="1376"/>\n'
        '    <HorizontallyOppositeCoords x="6512" y="787"/>\n'
        "  </WhiteboardDescription>\n  <StrokeSet>\n"
    )
    body, t = "", 100.0
    for pts in strokes:
        body += f'    <Stroke colour="black" start_time="{t:.2f}" end_time="{t + 1:.2f}">\n'
        for px, py in pts:
            body += f'      <Point x="{px}" y="{py}" time="{t:.2f}"/>\r\n'
            t += 0.01
        body += "    </Stroke>\n"
    return head + body + "  </StrokeSet>\n</WhiteboardCaptureSession>\n"


def write_iam(
    root: Path,
    n_forms: int = 10,
    lines_per_form: int = 3,
    seed: int = 0,
    malformed: tuple = (),
    no_ascii: tuple = (),
    extra_file: tuple = (),
) -> Path:
    """<root>/iam_ondb/{lineStrokes,ascii}/aNN/aNN-NNN/... like the official archives.

    malformed: (form index, line) pairs whose XML is cut off; no_ascii: form indices without a
    transcription file; extra_file: form indices with one stroke file more than CSR lines."""
    rng = np.random.default_rng(seed)
    base = root / "iam_ondb"
    for f in range(n_forms):
        form = f"a{f // 4 + 1:02d}-{f:03d}u"
        folder = f"{form[:3]}/{form[:7]}"
        texts = [
            " ".join(rng.choice(WORDS, size=int(rng.integers(2, 4)))) for _ in range(lines_per_form)
        ]
        sdir = base / "lineStrokes" / folder
        sdir.mkdir(parents=True, exist_ok=True)
        n_files = lines_per_form + (f in extra_file)
        for k in range(n_files):
            xml = stroke_xml(line_strokes(texts[k % lines_per_form]))
            if (f, k + 1) in malformed:
                xml = xml[: len(xml) // 2]
            (sdir / f"{form}-{k + 1:02d}.xml").write_text(xml, encoding="latin-1")
        if f not in no_ascii:
            adir = base / "ascii" / folder
            adir.mkdir(parents=True, exist_ok=True)
            body = "OCR:\r\n\r\nprompt text\r\n\r\nCSR:\r\n\r\n" + "\r\n".join(texts) + "\r\n"
            (adir / f"{form}.txt").write_text(body)
    return root


# The step-by-step recurrence is hundreds of tiny ops: a second thread only adds contention
# (a forward of the tiny net takes 1 s instead of 4 ms on the loaded 2-core machine).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_iam(tmp_path_factory) -> Path:
    return write_iam(tmp_path_factory.mktemp("iamdata"))


# ---- mixture density output (Graves Eq. 17-26) ---------------------------------------------
def test_mdn_nll_matches_torch_distributions():
    torch.manual_seed(0)
    M = 4
    y = torch.randn(5, 3, 1 + 6 * M, dtype=torch.float64) * 1.5
    target = torch.randn(5, 3, 3, dtype=torch.float64)
    target[..., 2] = (torch.rand(5, 3) < 0.3).double()
    params = mdn_params(y, M)
    e_logit, log_pi, mu, log_sigma, rho = params
    s = log_sigma.exp()
    cov = torch.stack(
        [
            torch.stack([s[..., 0] ** 2, rho * s[..., 0] * s[..., 1]], -1),
            torch.stack([rho * s[..., 0] * s[..., 1], s[..., 1] ** 2], -1),
        ],
        -2,
    )
    mvn = D.MultivariateNormal(mu, covariance_matrix=cov)
    log_mix = torch.logsumexp(log_pi + mvn.log_prob(target[..., None, :2]), -1)
    ref = -log_mix - D.Bernoulli(logits=e_logit).log_prob(target[..., 2])
    torch.testing.assert_close(mdn_nll(params, target), ref)
    # Graves' parametrisation (Eq. 17-22): pi = softmax, mu, sigma = exp(sigma^) (far above the
    # floor), rho = tanh (up to RHO_MAX)
    _, pi_hat, mu_hat, s_hat, r_hat = y.split([1, M, 2 * M, 2 * M, M], -1)
    _, log_pi, mu, log_sigma, rho = mdn_params(y, M, min_log_sigma=-40.0)
    torch.testing.assert_close(log_pi, torch.log_softmax(pi_hat, -1))
    torch.testing.assert_close(mu.flatten(-2), mu_hat)
    torch.testing.assert_close(log_sigma.flatten(-2), s_hat)
    torch.testing.assert_close(rho, torch.tanh(r_hat), atol=1e-5, rtol=0)


def test_mdn_sampling_bias_eq_61_62():
    M, b = 3, 0.7
    y = torch.randn(2, 1 + 6 * M)
    _, log_pi, _, log_sigma, _ = mdn_params(y, M, min_log_sigma=-30.0, bias=b)
    pi_hat, s_hat = y[:, 1 : 1 + M], y[:, 1 + 3 * M : 1 + 5 * M]
    torch.testing.assert_close(log_pi, torch.log_softmax(pi_hat * (1 + b), -1))
    torch.testing.assert_close(log_sigma.flatten(-2), s_hat - b)


@pytest.mark.parametrize("s_hat", [-1e4, -60.0, -20.0])
def test_mdn_is_finite_for_tiny_sigmas_and_extreme_outputs(s_hat):
    M = 5
    y = torch.randn(7, 2, 1 + 6 * M)
    y[..., 1 + 3 * M : 1 + 5 * M] = s_hat  # sigma -> 0
    y[..., 1 + 5 * M :] = 50.0  # rho -> 1
    y[..., 0] = -80.0  # certain "no end of stroke"
    y.requires_grad_(True)
    target = torch.randn(7, 2, 3) * 30
    target[..., 2] = 1.0  # ... but every point ends a stroke
    nll = mdn_nll(mdn_params(y, M), target)
    assert torch.isfinite(nll).all() and (nll > 0).all()
    nll.sum().backward()
    assert torch.isfinite(y.grad).all()
    # exact hit with tiny sigma: a large density, still finite
    hit = mdn_nll(mdn_params(y.detach(), M), torch.zeros(7, 2, 3))
    assert torch.isfinite(hit).all()


# ---- attention window (Graves Eq. 46-51) ---------------------------------------------------
def small_model(norm="ln", **kw) -> HandwritingSynthesis:
    torch.manual_seed(0)
    args = {
        "vocab_size": 6,
        "hidden_size": 8,
        "num_layers": 3,
        "window_components": 3,
        "mixture_components": 2,
        "norm": norm,
        "t_max": 30,
        "init": "orthogonal",
    }
    return HandwritingSynthesis(**{**args, **kw})


def test_window_matches_a_direct_loop_and_kappa_only_moves_forward():
    m = small_model()
    B, U = 3, 5
    h = torch.randn(B, 8)
    kappa0 = torch.rand(B, 3) * 2
    chars = torch.tensor([[1, 2, 3, 4, 5], [0, 5, 5, -1, -1], [3, -1, -1, -1, -1]])
    onehot = m.onehot(chars)
    kappa, w, phi = m.attend(h, kappa0, onehot)
    p = m.window(h)
    for b in range(B):
        a, be, k = p[b, :3].exp(), p[b, 3:6].exp(), p[b, 6:].exp()
        k_new = kappa0[b] + k
        torch.testing.assert_close(kappa[b], k_new)
        for u in range(1, U + 2):
            ref = sum(a[j] * torch.exp(-be[j] * (k_new[j] - u) ** 2) for j in range(3))
            torch.testing.assert_close(phi[b, u - 1], ref)
        ref_w = torch.zeros(6)
        for u in range(U):
            if chars[b, u] >= 0:
                ref_w[chars[b, u]] += phi[b, u]
        torch.testing.assert_close(w[b], ref_w)
    # over a whole sequence, kappa never decreases, whatever the network outputs
    with torch.no_grad():
        m.window.weight.normal_(0, 3.0)
    x = torch.randn(20, B, 3)
    state = m.zero_state(B, x)
    kappas = [state[2]]
    for t in range(20):
        _, state, _ = m.step(x[t], onehot, state, t)
        kappas.append(state[2])
    assert (torch.diff(torch.stack(kappas), dim=0) > 0).all()


@pytest.mark.parametrize("norm", ["ln", "bn", "none"])
def test_fast_forward_equals_step_by_step(norm):
    """The fast path (layer 1 loop, then whole-sequence scans) is the network of Eq. 52-54."""
    m = small_model(norm)
    x = torch.randn(12, 4, 3)
    chars = torch.tensor([[1, 2, 3], [4, 5, -1], [0, -1, -1], [5, 4, 3]])
    for training in (False, True):
        m.train(training)
        y, (h, c, kappa, w) = m(x, chars)
        onehot, state, ys = m.onehot(chars), m.zero_state(4, x), []
        for t in range(12):
            yt, state, _ = m.step(x[t], onehot, state, t)
            ys.append(yt)
        torch.testing.assert_close(y, torch.stack(ys), atol=1e-5, rtol=1e-4)
        for a, b in zip((h, c, kappa, w), state):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_skip_connections_and_parameter_count():
    """Graves' 3 x 400 net with K = 10, M = 20, 57 symbols: ~3.7M weights (LN paper Sec. 6.5)."""
    m = HandwritingSynthesis(57, norm="none")
    assert [c.input_size for c in m.cells] == [3 + 57, 3 + 57 + 400, 3 + 57 + 400]
    assert m.out.in_features == 3 * 400 and m.out.out_features == 121
    n = sum(p.numel() for p in m.parameters())
    assert 3.6e6 < n < 3.75e6, n


def test_graves_clipping_hooks_bound_the_derivatives():
    m = small_model("none", output_grad_clip=100.0)
    x, chars = torch.randn(6, 2, 3), torch.tensor([[1, 2], [3, -1]])
    y, _ = m(x, chars)
    (1e6 * y.sum()).backward()  # dL/dy = 1e6 everywhere, clipped to 100
    torch.testing.assert_close(m.out.bias.grad, torch.full_like(m.out.bias, 100.0 * 6 * 2))
    m.zero_grad()
    m.output_grad_clip = m.lstm_grad_clip = None
    y, _ = m(x, chars)
    (1e6 * y.sum()).backward()
    assert m.out.bias.grad[0] == pytest.approx(1e6 * 12)
    free = m.cells[2].weight_ih.grad.abs().max()
    # the derivatives reaching the top layer's outputs are clamped to [-1e-6, 1e-6]
    m.zero_grad()
    m.lstm_grad_clip = 1e-6
    y, _ = m(x, chars)
    (1e6 * y.sum()).backward()
    assert free > 1e3 and m.cells[2].weight_ih.grad.abs().max() < 1e-3


# ---- IAM-OnDB loader ----------------------------------------------------------------------
def test_xml_parser_offsets_and_transcription(tmp_path):
    strokes = [[(10, 20), (13, 25), (20, 22)], [(60, 30)], [(70, 28), (75, 35)]]
    pts = parse_strokes(stroke_xml(strokes).encode("latin-1"))
    assert pts.tolist() == [
        [10, 20, 0],
        [13, 25, 0],
        [20, 22, 1],
        [60, 30, 1],
        [70, 28, 0],
        [75, 35, 1],
    ]
    assert to_offsets(pts).tolist() == [[3, 5, 0], [7, -3, 1], [40, 8, 1], [10, -2, 0], [5, 7, 1]]
    text = (
        "OCR:\r\n\r\nA MOVE to stop\r\nMr . Gaitskell\r\n\r\nCSR:\r\n\r\nA MOVE\r\nto stop\r\n\r\n"
    )
    assert parse_transcription(text) == ["A MOVE", "to stop"]
    assert parse_transcription("no sections here") == []
    assert encode_text("Az 9.", DEFAULT_ALPHABET) == [
        DEFAULT_ALPHABET.index("A") + 1,
        DEFAULT_ALPHABET.index("z") + 1,
        1,
        0,
        DEFAULT_ALPHABET.index(".") + 1,
    ]
    assert len(DEFAULT_ALPHABET) + 1 == 57  # Graves Sec. 5.2


def test_loader_reads_the_official_layout_and_normalises(tiny_iam, tmp_path):
    d = iam_ondb(
        str(tiny_iam),
        batch_size=2,
        max_len=None,
        val_fraction=0.3,
        cache_dir=str(tmp_path / "c"),
        verify=False,
    )
    strokes, lengths, chars = d.splits["train"]
    n_train, n_val = len(lengths), len(d.splits["val"][1])
    assert n_train + n_val == 30 and n_val > 0 and n_val % 3 == 0  # whole forms
    assert d.model_kwargs["vocab_size"] == 57 and d.vocab_size == len(d.alphabet) + 1
    # normalised to mean 0, std 1 over the training set (Graves Sec. 4.2)
    mask = torch.arange(strokes.shape[1]) < lengths[:, None]
    xy = strokes[mask][:, :2].double()
    torch.testing.assert_close(xy.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        xy.std(0, correction=0), torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0
    )
    assert set(strokes[mask][:, 2].unique().tolist()) == {0.0, 1.0}
    assert (strokes[~mask] == 0).all() and ((chars >= -1) & (chars < 57)).all()
    # one word = one stroke: the number of end-of-stroke marks is the number of words - the
    # first point of a line only anchors it, so a one-point first stroke would lose its mark
    raw, cached = load_raw_lines(tiny_iam, cache_dir=tmp_path / "c", verify=False)
    assert cached and all(
        raw.line(i)[:, 2].sum() == len(t.split()) for i, t in enumerate(raw.texts)
    )
    # max_len cuts lines (keeps the text), std-only normalisation keeps the mean
    cut = iam_ondb(
        str(tiny_iam),
        batch_size=2,
        max_len=7,
        val_fraction=0.3,
        subtract_mean=False,
        cache_dir=str(tmp_path / "c"),
        verify=False,
    )
    assert cut.splits["train"][0].shape[1] == 7 and cut.splits["train"][1].max() == 7
    assert cut.mean == [0.0, 0.0] and cut.splits["train"][2].shape == chars.shape


def test_tar_archives_give_the_same_lines(tiny_iam, tmp_path):
    root = tmp_path / "arch" / "iam_ondb"
    root.mkdir(parents=True)
    for kind, ext in (("lineStrokes", "xz"), ("ascii", "gz")):
        with tarfile.open(root / f"{kind}-all.tar.{ext}", f"w:{ext}") as tar:
            tar.add(tiny_iam / "iam_ondb" / kind, arcname=kind)
    a, _ = load_raw_lines(tiny_iam, cache_dir=tmp_path / "c1", verify=False)
    b, _ = load_raw_lines(tmp_path / "arch", cache_dir=tmp_path / "c2", verify=False)
    assert a.texts == b.texts and a.forms == b.forms and np.array_equal(a.offsets, b.offsets)
    part, _ = load_raw_lines(
        tmp_path / "arch", limit_forms=2, cache_dir=tmp_path / "c2", verify=False
    )
    assert len(set(part.forms)) == 2 and part.texts == a.texts[: len(part.texts)]


def test_cache_roundtrip_and_second_load_skips_the_xml(tiny_iam, tmp_path, monkeypatch):
    raw = RawLines(
        np.array([[1, -2, 0], [300, 4, 1], [-5, 6, 1]], np.int32),
        np.array([0, 2, 3]),
        ["ab c", "Ä ."],
        ["a01-000u", "a01-001x"],
        {"malformed XML": 1, "fewer than 2 points": 0, "no transcription": 2, "empty text": 0},
    )
    save_raw(tmp_path / "x.npz", raw)
    back = load_raw(tmp_path / "x.npz")
    assert np.array_equal(back.offsets, raw.offsets) and back.offsets.dtype == np.int32
    assert back.texts == raw.texts and back.forms == raw.forms and back.dropped == raw.dropped
    assert back.line(1).tolist() == [[-5, 6, 1]]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file
    first, cached = load_raw_lines(tiny_iam, cache_dir=tmp_path / "c", verify=False)
    assert not cached and len(list((tmp_path / "c").glob("lines_*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("parsed again")

    monkeypatch.setattr("lnrepro.data.iam_ondb.cache.parse_iam_ondb", boom)
    again, cached = load_raw_lines(tiny_iam, cache_dir=tmp_path / "c", verify=False)
    assert cached and again.texts == first.texts and np.array_equal(again.offsets, first.offsets)
    # a corrupt cache file is ignored (and rewritten), not fatal
    monkeypatch.undo()
    next((tmp_path / "c").glob("lines_*.npz")).write_bytes(b"not a zip")
    third, cached = load_raw_lines(tiny_iam, cache_dir=tmp_path / "c", verify=False)
    assert not cached and third.texts == first.texts


def test_bad_files_are_counted_and_skipped_with_a_warning(tmp_path, caplog):
    data = write_iam(tmp_path / "d", n_forms=8, malformed=((0, 2),), no_ascii=(1,), extra_file=(2,))
    with caplog.at_level(logging.WARNING, logger="lnrepro"):
        d = iam_ondb(
            str(data), batch_size=2, val_fraction=0.3, cache_dir=str(tmp_path / "c"), verify=False
        )
    raw, _ = load_raw_lines(data, cache_dir=tmp_path / "c", verify=False)
    assert raw.dropped == {
        "malformed XML": 1,
        "fewer than 2 points": 0,
        "no transcription": 3 + 4,
        "empty text": 0,
    }
    assert len(raw) == 8 * 3 + 1 - 1 - 3 - 4 and "a01-001u" not in raw.forms
    assert sum(len(s[1]) for s in d.splits.values()) == len(raw)
    msg = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "dropped 8 of 25 lines" in msg and "1 malformed XML" in msg
    assert "7 no transcription" in msg


def test_empty_dataset_and_missing_files_are_one_clear_error(tmp_path):
    data = write_iam(tmp_path / "d", n_forms=2, no_ascii=(0,), extra_file=(1,))
    with pytest.raises(DataError, match="no usable line"):
        iam_ondb(str(data), cache_dir=str(tmp_path / "c"), verify=False)
    with pytest.raises(DataError, match=r"IAM-OnDB not found.*LNREPRO_DATA"):
        iam_ondb(str(tmp_path / "nothing"), cache_dir=str(tmp_path / "c"))
    (tmp_path / "half" / "iam_ondb" / "lineStrokes").mkdir(parents=True)
    with pytest.raises(DataError, match=r"ascii/ \(or ascii-all.tar.xz"):
        iam_ondb(str(tmp_path / "half"), cache_dir=str(tmp_path / "c"))
    one = write_iam(tmp_path / "one", n_forms=1)
    with pytest.raises(DataError, match="split of IAM-OnDB is empty"):
        iam_ondb(str(one), cache_dir=str(tmp_path / "c"), verify=False)
    for kwargs, match in (
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"max_len": 0}, "max_len"),
        ({"alphabet": "aa"}, "alphabet"),
        ({"batch_size": 0}, "batch_size"),
    ):
        with pytest.raises(ConfigError, match=match):
            iam_ondb(str(one), cache_dir=str(tmp_path / "c"), **kwargs)


# ---- task, sampling ------------------------------------------------------------------------
def test_task_shifts_inputs_masks_padding_and_sums_per_sequence():
    strokes = torch.randn(2, 5, 3)
    strokes[1, 3:] = 0
    lengths, chars = torch.tensor([5, 3]), torch.tensor([[1, 2, -1, -1], [3, -1, -1, -1]])
    x, target, mask, c = sequences(strokes, lengths, chars)
    assert torch.equal(target[:, 0], strokes[0]) and (x[0] == 0).all()
    assert torch.equal(x[1:], target[:-1]) and mask.sum(0).tolist() == [5, 3]
    assert c.shape == (2, 2)
    m = small_model("ln")
    loss, metrics = HandwritingTask().training_step(m, (strokes, lengths, chars))
    y, _ = m(x, c)
    per_point = mdn_nll(m.mdn(y), target)
    torch.testing.assert_close(loss, per_point[:, 0].sum() + per_point[:3, 1].sum())
    torch.testing.assert_close(metrics["nll_seq"], loss.detach() / 2)
    torch.testing.assert_close(metrics["nll_point"], loss.detach() / 8)
    ev = HandwritingTask().evaluate(
        m, [(strokes[:1], lengths[:1], chars[:1]), (strokes[1:], lengths[1:], chars[1:])]
    )
    assert ev["nll_seq"] == pytest.approx(loss.item() / 2, rel=1e-5)
    assert ev["nll_point"] == pytest.approx(loss.item() / 8, rel=1e-5)


def test_sampling_shape_and_termination():
    m = small_model("ln")
    text = torch.tensor([1, 2, 3])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        m.window.weight.zero_()
        m.window.bias[6:] = -20.0  # the window never moves: stops at max_steps
    out, finished = sample(m, text, max_steps=25, generator=g)
    assert out.shape == (25, 3) and not finished and set(out[:, 2].tolist()) <= {0.0, 1.0}
    assert m.training  # restored
    with torch.no_grad():
        m.window.bias[6:] = math.log(0.45)  # kappa = 0.45 t, all K windows alike
    out, finished = sample(m, text, max_steps=100, bias=2.0, generator=g)
    # phi(t, 4) > phi(t, u) for all u <= 3 first when kappa > 3.5: t = 8 (kappa 3.6)
    assert finished and len(out) == 8, len(out)
    strokes = to_pen_positions(out, [1.0, 0.0], [2.0, 3.0])
    assert sum(len(s) for s in strokes) == len(out)


# ---- end to end -----------------------------------------------------------------------------
@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_every_norm_through_the_real_entrypoint_and_samples(tmp_path, tiny_iam):
    """One Hydra multirun over norm=ln,bn,none on the synthetic IAM files, then the sampling
    script on two of the run directories."""
    sweep = tmp_path / "sweep"
    p = run_cli(
        [
            *TINY_HW,
            "norm=ln,bn,none",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=${hydra.job.num}_${norm.kind}",
        ],
        tmp_path,
        tiny_iam,
        multirun=True,
        env={"LNREPRO_CACHE": str(tmp_path / "cache")},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    runs = find_runs(sweep)
    assert sorted(r.get("norm.kind") for r in runs) == ["bn", "ln", "none"]
    for r in runs:
        assert r.status == "completed" and r.summary["step"] == 24
        first = next(x for x in r.rows if "val/nll_seq" in x)
        assert first["step"] == 0 and "train/nll_seq" in first and "val/nll_point" in first
        final = r.summary["final"]
        assert set(final) == {"train/nll_seq", "train/nll_point", "val/nll_seq", "val/nll_point"}
        assert all(math.isfinite(v) for v in final.values())
        assert final["train/nll_seq"] < first["train/nll_seq"] - 10, (r.path, first, final)
        assert any("batch/nll_seq" in x for x in r.rows)
    png = tmp_path / "samples.png"
    dirs = [str(r.path) for r in runs if r.get("norm.kind") in ("ln", "none")]
    s = subprocess.run(
        [
            sys.executable,
            "scripts/sample_handwriting.py",
            *dirs,
            "--text",
            "the cat",
            "--max-steps",
            "30",
            "--out",
            str(png),
            "--bias",
            "1.0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert s.returncode == 0, s.stderr[-3000:]
    assert png.stat().st_size > 1000 and "LN" in s.stdout


@pytest.mark.realdata("iam_ondb")
def test_real_iam_ondb_smoke(tmp_path, real_data):
    d = iam_ondb(
        str(real_data),
        batch_size=4,
        max_len=300,
        limit_forms=12,
        val_fraction=0.2,
        cache_dir=str(tmp_path / "c"),
    )
    strokes, lengths, _ = d.splits["train"]
    assert len(lengths) > 20 and strokes.shape[1] == 300 and d.vocab_size == 57
    assert 0.01 < strokes[..., 2].sum() / lengths.sum() < 0.1  # ~4% of points end a stroke
    m = HandwritingSynthesis(57, hidden_size=16, norm="ln", t_max=300)
    loss, metrics = HandwritingTask().training_step(m, next(d.train_batches(0)))
    assert torch.isfinite(loss) and 0 < metrics["nll_point"] < 10
