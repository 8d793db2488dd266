"""The LN-LSTM recurrence (supplementary Eq. 20-22) over a whole sequence as ONE autograd
Function with a hand-written backward: the CPU fast path of `LSTMCell.scan` for norm "ln".

Forward, per step t, from the input terms xin_t = N_x(W_ih x_t) + b (computed by the caller for
all steps in one batched matmul, outside this Function):
    a_t   = h_{t-1} W_hh^T                        (one GEMM)
    gates = LN(a_t; g_h, b_h) + xin_t              (one fused LayerNorm kernel, Eq. 20)
    i, f, o = sigmoid(.), g = tanh(.)              (two kernels over the 4H gate units)
    c_t   = f * c_{t-1} + i * g                    (Eq. 21)
    h_t   = o * tanh(LN(c_t; g_c, b_c))            (Eq. 22)
Backward walks the steps in reverse with torch's own derivative kernels (layer-norm backward,
sigmoid/tanh backward) and no autograd graph: about 25 kernel launches per step against about
40 for the autograd loop. The gradients of the parameters that every step shares are formed
once, after the loop: dW_hh as one (4H x TB)(TB x H) GEMM, the LN gains and biases as sums over
(T, B) of the normalised values, which are recomputed from the stored statistics.

The statistics of both norms are those of `torch.nn.functional.layer_norm` (biased variance,
eps inside the square root), as in `lnrepro.nn.norm.LayerNorm`. First-order only, float32 or
float64 and no autocast (`fusable`); everything else takes the autograd loop of `LSTMCell`,
which computes the same function (tests/test_fused_ln_lstm.py checks values and gradients).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

_aten = torch.ops.aten


def fusable(x: torch.Tensor) -> bool:
    """Whether the fused path computes what the autograd loop would for input x."""
    return x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(
        x.device.type
    )


class LNLSTMScan(torch.autograd.Function):
    """(xin (T, B, 4H), h0, c0 (B, H), W_hh (4H, H), g_h, b_h (4H), g_c, b_c (H), eps) ->
    (h of every step (T, B, H), c_T (B, H))."""

    @staticmethod
    def forward(ctx, xin, h0, c0, w_hh, g_h, b_h, g_c, b_c, eps: float):
        steps, batch, gates = xin.shape
        hid = gates // 4
        w_t = w_hh.t()
        a_all = xin.new_empty(steps, batch, gates)  # a_t before N_h
        act = xin.new_empty(steps, batch, gates)  # [sig(i), sig(f), tanh(g), sig(o)]
        cs = xin.new_empty(steps, batch, hid)  # c_t (carried, un-normalised)
        tcs = xin.new_empty(steps, batch, hid)  # tanh(N_c(c_t))
        hs = xin.new_empty(steps, batch, hid)
        stats_h, stats_c = [], []
        h, c = h0, c0
        g_sl = slice(2 * hid, 3 * hid)
        for t in range(steps):
            a = torch.mm(h, w_t, out=a_all[t])
            pre, mu, rs = torch.native_layer_norm(a, (gates,), g_h, b_h, eps)
            pre += xin[t]
            act_t = torch.sigmoid(pre, out=act[t])
            torch.tanh(pre[:, g_sl], out=act_t[:, g_sl])
            c = torch.addcmul(
                act_t[:, hid : 2 * hid] * c, act_t[:, :hid], act_t[:, g_sl], out=cs[t]
            )
            nc, mu_c, rs_c = torch.native_layer_norm(c, (hid,), g_c, b_c, eps)
            h = torch.mul(act_t[:, 3 * hid :], torch.tanh(nc, out=tcs[t]), out=hs[t])
            stats_h += (mu, rs)
            stats_c += (mu_c, rs_c)
        mus = torch.stack(stats_h[0::2]), torch.stack(stats_h[1::2])
        mus_c = torch.stack(stats_c[0::2]), torch.stack(stats_c[1::2])
        ctx.save_for_backward(
            h0, c0, w_hh, g_h, b_h, g_c, b_c, a_all, act, cs, tcs, hs, *mus, *mus_c
        )
        ctx.eps = eps
        return hs, c.clone()  # c_T: its own tensor, not a view of the saved buffer

    @staticmethod
    @once_differentiable
    def backward(ctx, d_hs, d_c_last):
        h0, c0, w_hh, g_h, b_h, g_c, b_c, a_all, act, cs, tcs, hs, mu, rs, mu_c, rs_c = (
            ctx.saved_tensors
        )
        steps, batch, gates = a_all.shape
        hid = gates // 4
        g_sl = slice(2 * hid, 3 * hid)
        d_hs = torch.zeros_like(hs) if d_hs is None else d_hs
        dh = torch.zeros_like(h0)
        dc = torch.zeros_like(c0) if d_c_last is None else d_c_last.clone()
        d_gates = torch.empty_like(a_all)  # dL/d(gates) = dL/d xin
        d_a = torch.empty_like(a_all)  # dL/d a_t
        d_nc = torch.empty_like(cs)  # dL/d N_c(c_t)
        d_act = torch.empty(batch, gates, dtype=hs.dtype, device=hs.device)
        mask_x = [True, False, False]  # the input gradient only; gains/biases after the loop
        for t in reversed(range(steps)):
            act_t, tc = act[t], tcs[t]
            dh = dh + d_hs[t]
            torch.mul(dh, tc, out=d_act[:, 3 * hid :])  # d o
            _aten.tanh_backward.grad_input(dh * act_t[:, 3 * hid :], tc, grad_input=d_nc[t])
            dc += _aten.native_layer_norm_backward(
                d_nc[t], cs[t], (hid,), mu_c[t], rs_c[t], g_c, b_c, mask_x
            )[0]
            c_prev = cs[t - 1] if t else c0
            torch.mul(dc, act_t[:, g_sl], out=d_act[:, :hid])  # d i
            torch.mul(dc, c_prev, out=d_act[:, hid : 2 * hid])  # d f
            torch.mul(dc, act_t[:, :hid], out=d_act[:, g_sl])  # d g
            d_pre = _aten.sigmoid_backward.grad_input(d_act, act_t, grad_input=d_gates[t])
            _aten.tanh_backward.grad_input(
                d_act[:, g_sl], act_t[:, g_sl], grad_input=d_pre[:, g_sl]
            )
            dc = dc * act_t[:, hid : 2 * hid]  # to c_{t-1}
            da = _aten.native_layer_norm_backward(
                d_pre, a_all[t], (gates,), mu[t], rs[t], g_h, b_h, mask_x
            )[0]
            d_a[t] = da
            dh = torch.mm(da, w_hh)
        # the shared parameters, once: W_hh from all steps in one GEMM, gains from x_hat
        h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]]).flatten(0, 1)
        d_w = d_a.flatten(0, 1).t() @ h_prev
        a_hat = (a_all - mu) * rs
        c_hat = (cs - mu_c) * rs_c
        d_gh = (d_gates * a_hat).sum((0, 1))
        d_bh = d_gates.sum((0, 1))
        d_gc = (d_nc * c_hat).sum((0, 1))
        d_bc = d_nc.sum((0, 1))
        return d_gates, dh, dc, d_w, d_gh, d_bh, d_gc, d_bc, None


def ln_lstm_scan(xin, h0, c0, w_hh, norm_hh, norm_c):
    """Eq. 20-22 over all steps of xin (T, B, 4H) from (h0, c0); norm_hh / norm_c are the
    cell's LayerNorms of W_hh h and c_t. Returns (out (T, B, H), (h_T, c_T))."""
    hs, c = LNLSTMScan.apply(
        xin, h0, c0, w_hh, norm_hh.weight, norm_hh.bias, norm_c.weight, norm_c.bias, norm_hh.eps
    )
    return hs, (hs[-1], c)
