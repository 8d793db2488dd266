"""DRAW on binarized MNIST (Sec. 6.4): attention, KL, LN on c_t only (Eq. 29-31), the whole
forward pass against a from-scratch loop, the binarized data, the entrypoint, bad input."""

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, write_idx_mnist

from lnrepro.data import binarized_mnist as bm
from lnrepro.errors import ConfigError, DataError
from lnrepro.models.draw import DRAW, Attention, filterbank
from lnrepro.nn.norm import LayerNorm
from lnrepro.nn.rnn import SeqBatchNorm
from lnrepro.runs import find_runs
from lnrepro.tasks.draw import VariationalBound, gaussian_kl
from lnrepro.train import run

DRAW_TINY = [
    "experiment=draw_cpu",
    "data.val_size=40",
    "data.eval_sizes={}",
    "data.eval_batch_size=64",
    "data.batch_size=16",
    "model.glimpses=3",
    "model.enc_size=16",
    "model.dec_size=16",
    "model.z_size=4",
    "trainer.epochs=4",
    "trainer.evals_per_epoch=1",
    "trainer.eval_at_start=true",
    "trainer.log_every=5",
    "optim.lr=3e-3",
    "logger=none",
    "threads=1",
    "data.verify=false",  # synthetic MNIST, not the recorded files (lnrepro.data.verify)
]


@pytest.fixture(autouse=True)
def _seed_and_one_thread(one_thread):
    """Tiny tensors: a second thread only adds synchronisation (15x slower on a busy 2-core box)."""
    torch.manual_seed(0)


# ---------------------------------------------------------------- from-scratch references


def ref_filterbank(g, delta, var, n, size):
    """Gregor et al. Eq. 19 and 25, one entry at a time (1-based i and a), rows normalised."""
    out = torch.zeros(len(g), n, size, dtype=torch.float64)
    for b in range(len(g)):
        for i in range(1, n + 1):
            mu = g[b] + (i - n / 2 - 0.5) * delta[b]
            row = [math.exp(-((a - mu) ** 2) / (2 * var[b])) for a in range(1, size + 1)]
            z = sum(row)
            for a in range(size):
                out[b, i - 1, a] = row[a] / (z + 1e-8)
    return out


def ref_params(p, A, n):
    """Eq. 21-24: (g~_X, g~_Y, log sigma^2, log delta~, log gamma) -> g_X, g_Y, delta, var, gamma."""
    gx = (A + 1) / 2 * (p[:, 0] + 1)
    gy = (A + 1) / 2 * (p[:, 1] + 1)
    delta = (A - 1) / (n - 1) * p[:, 3].exp()
    return gx, gy, delta, p[:, 2].exp(), p[:, 4].exp()


def ref_read(img, p, n):
    """Eq. 27 element by element: r[i, j] = gamma sum_{y, x} F_Y[i, y] img[y, x] F_X[j, x]."""
    B, A, _ = img.shape
    gx, gy, delta, var, gamma = ref_params(p, A, n)
    fx, fy = ref_filterbank(gx, delta, var, n, A), ref_filterbank(gy, delta, var, n, A)
    out = torch.zeros(B, n, n, dtype=torch.float64)
    for b in range(B):
        for i in range(n):
            for j in range(n):
                out[b, i, j] = gamma[b] * sum(
                    fy[b, i, y] * img[b, y, x] * fx[b, j, x] for y in range(A) for x in range(A)
                )
    return out


def ref_write(w, p, n, A):
    """Eq. 29 element by element: img[y, x] = 1/gamma sum_{i, j} F_Y[i, y] w[i, j] F_X[j, x]."""
    gx, gy, delta, var, gamma = ref_params(p, A, n)
    fx, fy = ref_filterbank(gx, delta, var, n, A), ref_filterbank(gy, delta, var, n, A)
    out = torch.zeros(len(w), A, A, dtype=torch.float64)
    for b in range(len(w)):
        for y in range(A):
            for x in range(A):
                out[b, y, x] = (
                    sum(fy[b, i, y] * w[b, i, j] * fx[b, j, x] for i in range(n) for j in range(n))
                    / gamma[b]
                )
    return out


def ref_lstm_step(cell, x, h, c):
    """Supplementary Eq. 29-31: plain gates, the norm only on c_t before the tanh (LN with
    eps 1e-5 inside the sqrt, biased variance; BN in training: batch statistics of the step)."""
    gates = x @ cell.weight_ih.T + h @ cell.weight_hh.T + cell.bias
    i, f, g, o = gates.split(cell.hidden_size, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    norm = cell.norm_c
    if norm is None:
        c_hat = c
    else:
        dim = 0 if isinstance(norm, SeqBatchNorm) else 1
        mu = c.mean(dim, keepdim=True)
        var = ((c - mu) ** 2).mean(dim, keepdim=True)
        c_hat = (c - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
    return torch.sigmoid(o) * torch.tanh(c_hat), c


def ref_draw(m, x, generator):
    """Gregor et al. Eq. 3-8 and 1-2 written out with the references above (no batching tricks)."""
    B, A, _ = x.shape
    H = m.dec.hidden_size
    canvas = torch.zeros_like(x)
    h_enc = c_enc = torch.zeros(B, m.enc.hidden_size, dtype=x.dtype)
    h_dec = c_dec = torch.zeros(B, H, dtype=x.dtype)
    nr, nw = m.read_att.n, m.write_att.n
    kls = []
    for _ in range(m.glimpses):
        out = h_dec @ m.dec_out.weight.T + m.dec_out.bias  # read params from h^dec_{t-1}
        x_err = x - torch.sigmoid(canvas)
        r = torch.cat(
            [ref_read(x, out[:, :5], nr).flatten(1), ref_read(x_err, out[:, :5], nr).flatten(1)], 1
        )
        h_enc, c_enc = ref_lstm_step(m.enc, torch.cat([r, h_dec], 1), h_enc, c_enc)
        q = h_enc @ m.q.weight.T + m.q.bias
        mu, log_sigma = q[:, : m.z_size], q[:, m.z_size :]
        eps = torch.randn(B, m.z_size, generator=generator, dtype=x.dtype)
        z = mu + log_sigma.exp() * eps
        kls.append(0.5 * (mu**2 + log_sigma.exp() ** 2 - 2 * log_sigma - 1).sum(1))
        h_dec, c_dec = ref_lstm_step(m.dec, z, h_dec, c_dec)
        out = h_dec @ m.dec_out.weight.T + m.dec_out.bias
        canvas = canvas + ref_write(out[:, 10:].view(B, nw, nw), out[:, 5:10], nw, A)
    return canvas, torch.stack(kls)


def randomize(m):
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return m


# ---------------------------------------------------------------- attention, KL, cell


def test_filterbank_equals_the_loop_over_eq_19_and_25():
    g = torch.tensor([3.5, 1.0, 7.2], dtype=torch.float64)
    delta = torch.tensor([1.5, 0.3, 4.0], dtype=torch.float64)
    var = torch.tensor([0.7, 2.0, 0.2], dtype=torch.float64)
    for n in (1, 2, 3):
        torch.testing.assert_close(
            filterbank(g, delta, var, n, 8), ref_filterbank(g, delta, var, n, 8)
        )
    f = filterbank(g, delta, var, 3, 8)
    # rows sum to 1 (Z of Eq. 25), except a filter far outside the image (case 2's third, at
    # 11.2 with sigma^2 0.2), which the eps in Z keeps near 0 instead of dividing 0 by 0
    torch.testing.assert_close(f[:2].sum(-1), torch.ones(2, 3, dtype=torch.float64))
    assert f[2, 2].sum() < 1e-2
    # the centre filter of an odd grid sits at g; a 2-filter grid is symmetric about it
    assert torch.allclose((f[0, 1] * torch.arange(1, 9)).sum(), g[0], atol=0.3)


def test_read_and_write_equal_the_elementwise_sums():
    A, B = 6, 2
    p = torch.randn(B, 5, dtype=torch.float64) * 0.5
    img = torch.rand(B, A, A, dtype=torch.float64)
    read = Attention(A, 2).read(img, 1 - img, p).view(B, 2, 2, 2)
    torch.testing.assert_close(read[:, 0], ref_read(img, p, 2))
    torch.testing.assert_close(read[:, 1], ref_read(1 - img, p, 2))
    w = torch.randn(B, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(Attention(A, 3).write(w, p), ref_write(w, p, 3, A))


def test_kl_equals_torch_distributions():
    mu, log_sigma = torch.randn(4, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    q = torch.distributions.Normal(mu, log_sigma.exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expect = torch.distributions.kl_divergence(q, prior).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, log_sigma), expect)


@pytest.mark.parametrize("kind", ["ln", "bn", "none"])
def test_norm_only_on_the_cell_state(kind):
    """Eq. 29-31: no norm on W_h h or W_x x; LN / per-glimpse BN / nothing on c_t."""
    m = randomize(
        DRAW(8, kind, glimpses=3, read_size=2, write_size=3, enc_size=5, dec_size=6, z_size=2)
    ).double()
    want = {"ln": LayerNorm, "bn": SeqBatchNorm, "none": type(None)}[kind]
    for cell in (m.enc, m.dec):
        assert cell.norm_ih is None and cell.norm_hh is None
        assert isinstance(cell.norm_c, want)
    if kind == "bn":
        assert m.dec.norm_c.t_max == 3 and torch.all(m.dec.norm_c.running_mean == 0)
    x = torch.randn(4, m.dec.input_size, dtype=torch.float64)
    h, c = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(m.dec(x, (h, c), 1), ref_lstm_step(m.dec, x, h, c))


@pytest.mark.parametrize("kind", ["ln", "bn", "none"])
def test_forward_equals_the_from_scratch_draw(kind):
    m = randomize(
        DRAW(6, kind, glimpses=3, read_size=2, write_size=3, enc_size=5, dec_size=4, z_size=2)
    ).double()
    x = (torch.rand(3, 6, 6) < 0.4).double()
    with torch.no_grad():
        logits, mu, log_sigma = m(x, generator=torch.Generator().manual_seed(5))
        kl = gaussian_kl(mu, log_sigma)
        ref_logits, ref_kl = ref_draw(m, x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(kl, ref_kl)


def test_sample_and_evaluation_noise():
    m = DRAW(8, "ln", glimpses=4, enc_size=8, dec_size=8, z_size=3)
    s = m.sample(5, generator=torch.Generator().manual_seed(0), steps=True)
    assert s.shape == (4, 5, 8, 8) and 0 <= s.min() and s.max() <= 1
    x = (torch.rand(10, 8, 8) < 0.3).to(torch.uint8)
    task, state = VariationalBound(eval_seed=3), torch.get_rng_state()
    a = task.evaluate(m, [(x[:6],), (x[6:],)])
    b = task.evaluate(m, [(x,)])
    assert torch.equal(torch.get_rng_state(), state)  # evaluation leaves the training RNG alone
    assert set(a) == {"bound", "recon", "kl"} and a["bound"] == pytest.approx(a["recon"] + a["kl"])
    assert a == task.evaluate(m, [(x[:6],), (x[6:],)])  # the same noise at every evaluation
    assert b["bound"] == pytest.approx(a["bound"], rel=0.2)


@pytest.mark.slow  # > 1 s: 30 training steps of DRAW
def test_bound_decreases_on_a_few_images():
    """A direct training loop on 8 images (4 patterns), each norm: the bound must fall far below
    the untrained model's (about 100 ln 2 = 69 nats for 10 x 10 pixels)."""
    x = torch.zeros(8, 10, 10, dtype=torch.uint8)
    for k in range(8):
        r, c = divmod(k % 4, 2)
        x[k, 1 + 4 * r : 5 + 4 * r, 1 + 5 * c : 4 + 5 * c] = 1
    for kind in ("ln", "bn", "none"):
        torch.manual_seed(0)
        m = DRAW(
            10, kind, glimpses=4, read_size=2, write_size=3, enc_size=24, dec_size=24, z_size=4
        )
        task = VariationalBound()
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        first = None
        for _ in range(30):
            loss, _ = task.training_step(m, (x,))
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = first if first is not None else float(loss.detach())
        m.eval()
        final = task.evaluate(m, [(x,)])["bound"]
        assert final < 0.5 * first, (kind, first, final)


# ---------------------------------------------------------------- data


def test_binarization_is_fixed_by_its_seed():
    img = torch.randint(0, 256, (50, 7, 7), dtype=torch.uint8)
    a, b, c = bm.binarize(img, 3), bm.binarize(img, 3), bm.binarize(img, 4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0, 1} and a.dtype == torch.uint8
    assert torch.all(a[img == 0] == 0) and torch.all(a[img == 255] == 1)
    p = img.double() / 255
    assert abs(a.double().mean() - p.mean()) < 0.03  # P(1) = grey / 255


def test_binarization_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    img = torch.randint(0, 256, (30, 28, 28), dtype=torch.uint8)
    rw = tmp_path / "rw"
    x = bm.cached_binarization(img, 7, rw)
    files = list(rw.glob("stochastic_seed7_*.npz"))
    assert len(files) == 1
    assert torch.equal(x, bm.binarize(img, 7))
    monkeypatch.setattr(bm, "binarize", lambda *a: pytest.fail("cache not reused"))
    assert torch.equal(bm.cached_binarization(img, 7, rw), x)
    other = img.clone()
    other[0, 0, 0] ^= 1  # other source pixels: another file, not the stale cache
    with pytest.raises(pytest.fail.Exception, match="cache not reused"):
        bm.cached_binarization(other, 7, rw)


def test_data_module_split_fixed_files_and_missing_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LNREPRO_CACHE", str(tmp_path / "cache"))
    root = write_idx_mnist(tmp_path / "d", n_train=50, n_test=20)
    d = bm.binarized_mnist(str(root), 8, val_size=10, eval_sizes={"val": 4}, verify=False)
    assert {k: len(v[0]) for k, v in d.splits.items()} == {"train": 40, "val": 10, "test": 20}
    assert d.model_kwargs == {"image_size": 28} and d.splits["train"][0].dtype == torch.uint8
    assert len(list((tmp_path / "cache" / "binarized_mnist").glob("*.npz"))) == 1  # the cache root
    assert not (root / "binarized_mnist").exists()  # nothing written into the data folder
    assert sum(len(b[0]) for b in d.eval_batches("val")) == 4
    # the fixed (Larochelle-Murray) files win under source=auto
    folder = root / "binarized_mnist"
    folder.mkdir()
    fixed = {}
    for split, name in bm.AMAT.items():
        fixed[split] = (torch.rand(3, 28, 28) < 0.5).to(torch.uint8)
        lines = [" ".join(map(str, v.flatten().tolist())) for v in fixed[split]]
        (folder / name).write_text("\n".join(lines) + "\n")
    d = bm.binarized_mnist(str(root), 2, verify=False)
    for split, image in fixed.items():
        assert torch.equal(d.splits[split][0], image)
    (folder / bm.AMAT["test"]).write_text("0 1 0\n")
    with pytest.raises(DataError, match="not a binarized-MNIST .amat"):
        bm.binarized_mnist(str(root), 2, verify=False)
    with pytest.raises(DataError, match="MNIST not found.*LNREPRO_DATA.*amat"):
        bm.binarized_mnist(str(tmp_path / "none"), 2, download=False)
    with pytest.raises(DataError, match="fixed binarized MNIST.*not found"):
        bm.binarized_mnist(str(tmp_path / "none"), 2, source="fixed")


# ---------------------------------------------------------------- entrypoint, bad input


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_every_norm_through_the_real_entrypoint(cli, tmp_path):
    sweep = tmp_path / "sweep"
    p = cli(
        *DRAW_TINY,
        "norm=ln,bn,none",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}_${norm.kind}",
        multirun=True,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    runs = find_runs(sweep)
    assert sorted(r.get("norm.kind") for r in runs) == ["bn", "ln", "none"]
    for r in runs:
        assert r.status == "completed", r.path
        evals = [x for x in r.rows if "test/bound" in x]
        assert len(evals) == 5 and evals[0]["step"] == 0  # at start + after each of 4 epochs
        assert {"val/bound", "test/recon", "test/kl", "train/bound"} <= set(evals[-1])
        assert any("batch/bound" in x for x in r.rows)
        # 40 steps: most of the ~540 nats are the noisy pixels of the tiny MNIST and go slowly;
        # the fixed evaluation noise makes every fall real, so ask for one at every evaluation
        bounds = [e["test/bound"] for e in evals]
        assert all(b < a for a, b in itertools.pairwise(bounds)), (r.path, bounds)
        assert bounds[-1] < bounds[0] - 10, (r.path, bounds)
        assert r.summary["final"]["test/bound"] == evals[-1]["test/bound"]
    out = tmp_path / "samples.png"
    s = subprocess.run(
        [
            sys.executable,
            "scripts/sample_draw.py",
            *[str(r.path) for r in runs],
            "--n",
            "4",
            "--steps",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert s.returncode == 0, s.stderr[-2000:]
    assert out.stat().st_size > 1000


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_resume_continues_exactly(compose, tiny_mnist, tmp_path):
    """The posterior noise comes from the checkpointed RNG, evaluation from its own seed."""
    base = DRAW_TINY + [f"paths.data_dir={tiny_mnist}", "norm=bn", "trainer.eval_at_start=false"]
    whole = run(compose(base + ["trainer.epochs=2"]), tmp_path / "whole")
    run(compose(base + ["trainer.epochs=1"]), tmp_path / "split")
    resumed = run(compose(base + ["trainer.epochs=2", "resume=true"]), tmp_path / "split")
    assert resumed["step"] == whole["step"] == 20
    assert resumed["final"] == whole["final"]


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_wrong_image_size_is_one_clear_error(compose, tiny_mnist, tmp_path):
    cfg = compose(DRAW_TINY + [f"paths.data_dir={tiny_mnist}", "model.image_size=32"])
    with pytest.raises(
        ConfigError,
        match=r"model.image_size=32 does not match the data "
        r"\(image_size=28\)",
    ):
        run(cfg, tmp_path / "a")
    m = DRAW(32, "ln", glimpses=2, enc_size=4, dec_size=4, z_size=2)
    with pytest.raises(ConfigError, match="configured for 32x32 images .* size 28x28"):
        m(torch.zeros(2, 28, 28))
    with pytest.raises(ConfigError, match="model.glimpses must be a positive integer"):
        DRAW(28, glimpses=0)


def test_paper_setup_of_draw(compose):
    """Sec. 6.4: 64 glimpses, 256 LSTM units, Adam 1e-3, batch 128, 200 epochs, 50k/10k/10k."""
    cfg = compose(["experiment=draw"])
    m = cfg.model
    assert (m.glimpses, m.enc_size, m.dec_size, m.z_size, m.read_size, m.write_size) == (
        64,
        256,
        256,
        100,
        2,
        5,
    )
    assert cfg.optim._target_ == "torch.optim.Adam" and cfg.optim.lr == 1e-3
    assert cfg.data.batch_size == 128 and cfg.data.val_size == 10000
    assert cfg.trainer.epochs == 200


def test_amat_reader_accepts_general_text(tmp_path):
    v = np.random.default_rng(0).integers(0, 2, (2, 784))
    path = tmp_path / "x.amat"
    path.write_text("\r\n".join("  ".join(f"{a}.0" for a in row) for row in v))
    assert torch.equal(bm.read_amat(path), torch.from_numpy(v.astype(np.uint8)).view(2, 28, 28))
