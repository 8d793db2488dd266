"""The fused LN-LSTM (lnrepro.nn.fused_ln_lstm): the same function as the autograd loop of
LSTMCell, values and every gradient, and taken exactly where it applies."""

import copy

import pytest
import torch

from lnrepro.nn.fused_ln_lstm import LNLSTMScan
from lnrepro.nn.rnn import LSTM, LSTMCell

T, B, I, H = 6, 3, 5, 4


def _randomized(m):
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _loop_twin(m):
    twin = copy.deepcopy(m)
    for layer in twin.layers:
        layer.fused = False
    return twin


def _values_and_grads(m, x, state):
    x, state = x.clone().requires_grad_(), tuple(s.clone().requires_grad_() for s in state)
    out, (h, c) = m(x, state)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * w).sum() + (h**2).sum() + 3 * c.sum()  # every output reaches the loss
    grads = torch.autograd.grad(loss, [x, *state, *m.parameters()])
    return [out, h, c, *grads]


@pytest.mark.parametrize(
    "dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)], ids=["float64", "float32"]
)
def test_fused_equals_the_autograd_loop(dtype, tol):
    torch.manual_seed(0)
    m = _randomized(LSTM(I, H, num_layers=2, norm="ln")).to(dtype)
    x = torch.randn(T, B, I, dtype=dtype)
    state = (torch.randn(2, B, H, dtype=dtype), torch.randn(2, B, H, dtype=dtype))
    fused, loop = _values_and_grads(m, x, state), _values_and_grads(_loop_twin(m), x, state)
    assert len(fused) == 3 + 3 + len(list(m.parameters()))
    for a, b in zip(fused, loop):
        scale = b.abs().max().clamp(min=1.0)
        assert (a - b).abs().max() <= tol * scale


def test_fused_gradcheck():
    torch.manual_seed(0)
    cell = _randomized(LSTMCell(2, 2, norm="ln")).double()
    xin = torch.randn(3, 2, 8, dtype=torch.float64)
    h0, c0 = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    params = (cell.weight_hh, cell.norm_hh.weight, cell.norm_hh.bias)
    params += (cell.norm_c.weight, cell.norm_c.bias)
    inputs = tuple(t.detach().requires_grad_() for t in (xin, h0, c0, *params))
    assert torch.autograd.gradcheck(lambda *a: LNLSTMScan.apply(*a, 1e-5), inputs)


def _took_fused(m, x, **kw) -> bool:
    out, _ = m(x, **kw)
    return type(out.grad_fn).__name__ == "LNLSTMScanBackward"


def test_fused_path_is_taken_exactly_where_it_computes_the_same_function():
    x = torch.randn(T, B, I, requires_grad=True)
    assert _took_fused(LSTM(I, H, norm="ln"), x)
    assert not _took_fused(_loop_twin(LSTM(I, H, norm="ln")), x)
    for kind in ("none", "bn", "rms", "wn"):
        assert not _took_fused(LSTM(I, H, norm=kind), x), kind
    assert not _took_fused(LSTM(I, H, norm="ln", ln_cell=False), x)
    mask = torch.ones(T, B, dtype=torch.bool)
    assert not _took_fused(LSTM(I, H, norm="ln"), x, mask=mask)  # padded batches: the loop
    draw = LSTMCell(I, H, norm="ln", ln_gates=False)  # DRAW's cell: LN on c_t only
    assert not draw.fused
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision: the loop
        assert not _took_fused(LSTM(I, H, norm="ln"), x)
