"""The C++ LSTM kernel (lnrepro.nn.fused_lstm) against the autograd step loop it replaces.

With its norms on it computes supplementary Eq. 20-22 (the LN-LSTM; without centering, RMSNorm in
LN's places), with them off the plain LSTM (norm none); the loop is checked against the equations in test_rnn.py, so equality here
carries those checks over to the fused path; the plain mode is checked against torch.nn.LSTM
too. Skipped where the extension cannot be built (no C++ compiler): the cells then use the loop.
"""

import pytest
import torch

from lnrepro.nn import fused_lstm
from lnrepro.nn.rnn import LSTM, LSTMCell

pytestmark = pytest.mark.skipif(not fused_lstm.available(), reason="C++ LN-LSTM not built")


def _pair(dtype, layers=2, I=7, H=6, seed=0, norm="ln"):
    """Two equal LSTMs, fused and step loop, with non-trivial LN gains and biases."""
    torch.manual_seed(seed)
    fused = LSTM(I, H, layers, norm=norm).to(dtype)
    with torch.no_grad():
        for p in fused.parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    loop = LSTM(I, H, layers, norm=norm).to(dtype)
    loop.load_state_dict(fused.state_dict())
    for cell in loop.layers:
        cell.fused = False
    assert all(cell.fused for cell in fused.layers)
    return fused, loop


def _run(model, x, h0, c0, weights):
    x, h0, c0 = (v.clone().requires_grad_() for v in (x, h0, c0))
    out, (h, c) = model(x, (h0, c0))
    loss = (out * weights).sum() + (h**2).sum() + (c * 0.7).sum()
    grads = torch.autograd.grad(loss, [x, h0, c0, *model.parameters()])
    return [out, h, c, *grads]


@pytest.mark.parametrize("norm", ["ln", "rms", "none"])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_fused_equals_step_loop(dtype, tol, norm):
    fused, loop = _pair(dtype, norm=norm)
    T, B, I, H = 9, 5, 7, 6
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    h0, c0 = (torch.randn(2, B, H, generator=g, dtype=dtype) for _ in range(2))
    w = torch.randn(T, B, H, generator=g, dtype=dtype)
    names = ["out", "h", "c", "x", "h0", "c0"] + [n for n, _ in fused.named_parameters()]
    for name, a, b in zip(names, _run(fused, x, h0, c0, w), _run(loop, x, h0, c0, w)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_plain_mode_equals_torch_lstm(dtype):
    """norm none through the kernel with its norms off against torch.nn.LSTM (oneDNN's kernel
    in float32) with the same weights: every output and gradient."""
    torch.manual_seed(3)
    T, B, I, H, layers = 11, 4, 5, 7, 2
    ref = torch.nn.LSTM(I, H, layers).to(dtype)
    ours = LSTM(I, H, layers, norm="none").to(dtype).copy_from_torch(ref)
    assert all(cell.fused for cell in ours.layers)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    h0, c0 = (torch.randn(layers, B, H, generator=g, dtype=dtype) for _ in range(2))
    w = torch.randn(T, B, H, generator=g, dtype=dtype)
    a, b = _run(ours, x, h0, c0, w), _run(ref, x, h0, c0, w)
    tol = 1e-11 if dtype == torch.float64 else 2e-5
    for name, u, v in zip(["out", "h", "c", "x", "h0", "c0"], a, b):
        torch.testing.assert_close(u, v, rtol=tol, atol=tol, msg=name)
    grads = dict(zip([n for n, _ in ours.named_parameters()], a[6:]))
    refs = dict(zip([n for n, _ in ref.named_parameters()], b[6:]))
    for k in range(layers):
        for ours_name, ref_name in (("weight_ih", "weight_ih"), ("weight_hh", "weight_hh")):
            got, want = grads[f"layers.{k}.{ours_name}"], refs[f"{ref_name}_l{k}"]
            torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=f"{ours_name} {k}")
        for bias in ("bias_ih", "bias_hh"):  # b = b_ih + b_hh: the same gradient
            got, want = grads[f"layers.{k}.bias"], refs[f"{bias}_l{k}"]
            torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=f"{bias} {k}")


def test_the_fused_path_is_taken_and_only_where_it_applies(monkeypatch):
    calls, plain = [], []
    real, real_plain = fused_lstm.ln_lstm_scan, fused_lstm.lstm_scan
    monkeypatch.setattr(fused_lstm, "ln_lstm_scan", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(fused_lstm, "lstm_scan", lambda *a: plain.append(1) or real_plain(*a))
    x = torch.randn(4, 3, 5)
    LSTMCell(5, 4, norm="ln").scan(x)
    assert len(calls) == 1
    LSTMCell(5, 4, norm="ln", ln_cell=False).scan(x)  # no LN on c_t: the loop
    LSTMCell(5, 4, norm="ln", ln_gates=False).scan(x)  # LN on c_t only (DRAW): the loop
    LSTMCell(5, 4, norm="bn").scan(x)
    LSTMCell(5, 4, norm="ln").scan(x, mask=torch.ones(4, 3, dtype=torch.bool))  # padded: loop
    with torch.autocast("cpu", dtype=torch.bfloat16):
        LSTMCell(5, 4, norm="ln").scan(x)
    assert len(calls) == 1 and not plain
    LSTMCell(5, 4, norm="rms").scan(x)  # RMSNorm in LN's places: the kernel without centering
    LSTMCell(5, 4, norm="rms", ln_cell=False).scan(x)  # mixed: the loop
    assert len(calls) == 2
    LSTMCell(5, 4, norm="none").scan(x)  # the plain cell: the kernel with its norms off
    LSTMCell(5, 4, norm="ln", ln_gates=False, ln_cell=False).scan(x)  # no norm left: plain
    assert len(plain) == 2
    LSTMCell(5, 4, norm="none").scan(x, mask=torch.ones(4, 3, dtype=torch.bool))  # padded: loop
    LSTMCell(5, 4, norm="none", fused=False).scan(x)
    assert len(plain) == 2 and len(calls) == 2


def test_gradcheck():
    torch.manual_seed(0)
    T, B, H = 3, 2, 3
    xin = torch.randn(T, B, 4 * H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4 * H, H, dtype=torch.float64, requires_grad=True)
    g_hh, g_c, b_c = (
        torch.randn(n, dtype=torch.float64, requires_grad=True) for n in (4 * H, H, H)
    )
    h0, c0 = (torch.randn(B, H, dtype=torch.float64, requires_grad=True) for _ in range(2))

    def f(*args):
        hs, (_, c) = fused_lstm.ln_lstm_scan(*args, 1e-5)
        return hs, c

    assert torch.autograd.gradcheck(f, (xin, w, g_hh, g_c, b_c, h0, c0))

    b, b_hh = (torch.randn(4 * H, dtype=torch.float64, requires_grad=True) for _ in range(2))

    def with_biases(*args):
        hs, (_, c) = fused_lstm.ln_lstm_scan(*args[:7], 1e-5, *args[7:])
        return hs, c

    assert torch.autograd.gradcheck(with_biases, (xin, w, g_hh, g_c, b_c, h0, c0, b, b_hh))

    def rms(*args):  # center=False: RMSNorm's backward (no mean term)
        hs, (_, c) = fused_lstm.ln_lstm_scan(*args[:7], 1e-5, *args[7:], center=False)
        return hs, c

    assert torch.autograd.gradcheck(rms, (xin, w, g_hh, g_c, b_c, h0, c0, b, b_hh))

    def plain(*args):
        hs, (_, c) = fused_lstm.lstm_scan(*args)
        return hs, c

    assert torch.autograd.gradcheck(plain, (xin, w, h0, c0))
    assert torch.autograd.gradcheck(plain, (xin, w, h0, c0, b))


def test_biases_in_the_kernel_round_as_the_separate_adds():
    """bias and bias_hh added in the row pass give the numbers of ((xin + b) + b_hh) passed
    as xin, bit for bit, outputs and gradients (the golden runs rely on it)."""
    torch.manual_seed(5)
    T, B, H = 6, 4, 16
    base = [torch.randn(T, B, 4 * H), 0.3 * torch.randn(4 * H, H), torch.rand(4 * H) + 0.5]
    base += [torch.rand(H) + 0.5, torch.randn(H), torch.randn(B, H), torch.randn(B, H)]
    base += [torch.randn(4 * H), torch.randn(4 * H)]
    w = torch.randn(T, B, H)

    def run(inside: bool, plain: bool):
        xin, W, g_hh, g_c, b_c, h0, c0, b, b_hh = (v.clone().requires_grad_() for v in base)
        if plain:
            args = (xin, W, h0, c0, b) if inside else (xin + b, W, h0, c0)
            hs, (_, c) = fused_lstm.lstm_scan(*args)
            wrt = [xin, W, h0, c0, b]
        else:
            ln = (W, g_hh, g_c, b_c, h0, c0, 1e-5)
            args = (xin, *ln, b, b_hh) if inside else ((xin + b) + b_hh, *ln)
            hs, (_, c) = fused_lstm.ln_lstm_scan(*args)
            wrt = [xin, W, g_hh, g_c, b_c, h0, c0, b, b_hh]
        return [hs, c, *torch.autograd.grad((hs * w).sum() + c.sum(), wrt)]

    for plain in (False, True):
        for a, b in zip(run(True, plain), run(False, plain)):
            assert torch.equal(a, b)


def test_float_nonlinearities_against_torch():
    """The C++ float exp / tanh polynomials (Cephes), through the forward of one step with
    h0 = 0 and unit gains: h = sig(o) tanh(LN(sig(i) tanh(g))) over a wide range of gates."""
    H = 4096
    g = torch.linspace(-100, 100, 4 * H).reshape(4, H)
    g[:, :8] = torch.tensor([0.0, 1e-6, -1e-6, 0.3, -0.6249, 0.6251, 9.0, -88.0])
    xin = g.reshape(1, 1, 4 * H).contiguous()
    z = torch.zeros(1, H)
    ones, zeros = torch.ones(4 * H), torch.zeros(H)
    hs, (_, c) = fused_lstm.ln_lstm_scan(xin, torch.zeros(4 * H, H), ones, ones[:H], zeros, z, z)
    i, _f, gg, o = xin.reshape(4, H)  # c0 = 0: f does not enter
    c_ref = torch.sigmoid(i) * torch.tanh(gg)
    h_ref = torch.sigmoid(o) * torch.tanh(torch.nn.functional.layer_norm(c_ref, (H,)))
    torch.testing.assert_close(c[0], c_ref, rtol=2e-6, atol=1e-7)
    torch.testing.assert_close(hs[0, 0], h_ref, rtol=2e-6, atol=1e-6)


def test_nan_propagates():
    xin = torch.zeros(2, 1, 8)
    xin[0, 0, 5] = float("nan")
    hs, _ = fused_lstm.ln_lstm_scan(
        xin, torch.zeros(8, 2), torch.ones(8), torch.ones(2), torch.zeros(2),
        torch.zeros(1, 2), torch.zeros(1, 2),
    )  # fmt: skip
    assert torch.isnan(hs).all()
    hs, (_, c) = fused_lstm.lstm_scan(xin, torch.ones(8, 2), torch.zeros(1, 2), torch.zeros(1, 2))
    assert hs[0, 0].isnan().tolist() == [False, True]  # unit 1's g; no LN mixes the units
    assert torch.isnan(hs[1]).all() and torch.isnan(c).all()  # through W_hh and the cell


def test_lnrepro_fused_0_keeps_the_step_loop(monkeypatch):
    monkeypatch.setenv("LNREPRO_FUSED", "0")
    monkeypatch.setattr(fused_lstm, "_state", {})
    assert not fused_lstm.available()
    assert not fused_lstm.applies(torch.randn(2, 3, 4))
    monkeypatch.setattr(fused_lstm, "ln_lstm_scan", lambda *a: pytest.fail("fused path taken"))
    out, _ = LSTMCell(4, 3, norm="ln").scan(torch.randn(2, 3, 4))
    assert out.shape == (2, 3, 3)
