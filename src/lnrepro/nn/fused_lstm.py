"""The LN-LSTM, and the plain LSTM, over a whole sequence as one autograd Function, its time
loops in C++.

Supplementary Eq. 20-22 of Ba, Kiros & Hinton 2016, in torch's gate order [i; f; g; o]:

    gates_t = xin_t + LN_hh(h_{t-1} W_hh^T)          xin_t = LN_ih(W_ih x_t) + b
    c_t     = sig(f_t) * c_{t-1} + sig(i_t) * tanh(g_t)
    h_t     = sig(o_t) * tanh(LN_c(c_t))

LN_hh: one LN over the 4H gate units of the recurrent product, gain `gain_hh` (its bias is
constant over time: added to xin with b); LN_c over the H cell units, gain `gain_c`, bias
`bias_c`; both as `lnrepro.nn.norm.LayerNorm` (Eq. 3-5: per case, biased variance, eps inside
the square root). The carried c_t is the raw one. With `center=False` both are RMSNorm
(Zhang & Sennrich 2019; `lnrepro.nn.norm.RMSNorm`: no mean subtracted), so `norm=rms` runs the
same kernel. With its norms off (`lstm_scan`, norm "none")
the same kernel runs the plain LSTM: gates_t = xin_t + h_{t-1} W_hh^T, h_t = sig(o_t) tanh(c_t),
xin_t = W_ih x_t + b. The biases (b, LN_hh's) are added in the kernel's row pass, rounded as
the separate tensor adds would. `LSTMCell.scan`'s autograd loop computes the same numbers up to
float rounding (tests/test_fused_lstm.py; the plain mode also against torch.nn.LSTM); this is
its fast path on the CPU.

Why C++ (csrc/ln_lstm.cpp): per step, the recurrent product is one GEMM and the rest of the
step (two LNs, four nonlinearities, the cell update; in the backward the same by hand) is one
pass over each case's row, instead of ~15 tensor ops through the dispatcher and autograd (a
Python autograd Function with the same hand-written backward ran no faster than the autograd
loop). After the loops, in single batched calls: dW_hh = sum_t dA_t^T h_{t-1} as one GEMM, the
LN gains' gradients as sums over (T, B).

Why oneDNN: the per-step products (with W_hh packed once per call) and the input projection
`Linear` and its dL/dx go through oneDNN's linear, the library behind torch.nn.LSTM's CPU
kernel; on the AMD EPYC of this project torch.mm's BLAS ran the per-step float32 shapes 2.3x
slower (100 products (32 x 512)(512 x 2048): 86 ms vs 36 ms at 1 thread). The two weight
gradients, (4H x TB)(TB x H) and (4H x TB)(TB x I), are torch.mm on transposed views: BLAS reads
them in place, where oneDNN's linear needed transposed copies of the (TB, 4H) gradient (4% of
the LN-LSTM's time at 1 thread). Where oneDNN is absent (or for float64) the loops use
torch.mm. Profile of one LN-LSTM forward+backward (seq 100, batch 32, 512 units, 1 thread):
the GEMMs ~84%, the C++ row passes ~9%, the gains' reductions and LN_ih ~5%. Speeds against
torch.nn.LSTM: results/bench_rnn.md.

The extension is compiled on first use with torch.utils.cpp_extension (a C++ compiler and ninja,
about 20 s, cached under $TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions, keyed by the
CPU's flags (it is built with -march=native) and the torch version). Where it cannot be built,
or LNREPRO_FUSED=0, or the inputs are not float32/float64 CPU tensors, `available()` is False
and the cell keeps the autograd loop: the same equations, the same results up to rounding.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "ln_lstm.cpp"
_state: dict = {}


def _cpu_key() -> str:
    """A short hash of what the built library depends on beyond its source and flags: the
    machine and the CPU's flags (-march=native) and the torch build (its C++ ABI)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    key = f"{platform.machine()} {flags} {torch.__version__}"
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def _source_key() -> str:
    """A short hash of the kernel's source: two checkouts with different sources (a worktree
    of another commit) build into different folders instead of rebuilding each other's."""
    return hashlib.sha1(SOURCE.read_bytes()).hexdigest()[:8]


def available() -> bool:
    """Whether the C++ LSTM kernel is built and loaded (builds it on the first call)."""
    if "ok" not in _state:
        _state["ok"] = False
        if os.environ.get("LNREPRO_FUSED", "1") == "0":
            return False
        # its import warns that no CUDA runtime is found, which does not concern a CPU build
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        try:
            from torch.utils import cpp_extension

            cpp_extension.load(
                name=f"lnrepro_ln_lstm_{_cpu_key()}_{_source_key()}",
                sources=[str(SOURCE)],
                extra_cflags=["-O3", "-march=native", "-fno-trapping-math", "-fopenmp-simd"],
                is_python_module=False,
                verbose=False,
            )
            _state["ok"] = True
        except Exception as err:  # noqa: BLE001  (no compiler, no ninja, a build error: any)
            log.warning(
                "LN-LSTM: the C++ fast path did not build (%s); using the step loop",
                str(err).strip().splitlines()[-1] if str(err).strip() else type(err),
            )
    return _state["ok"]


def onednn() -> bool:
    """oneDNN's linear is there (x86 and aarch64 builds of torch): torch.nn.LSTM's CPU kernel
    runs on it, and on AMD CPUs its fp32 GEMMs measured 2.3x faster than the BLAS behind
    torch.mm (results/bench_rnn.md)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x W^T (x 2-d): oneDNN where it is there, else torch.mm."""
    if onednn() and x.dtype == torch.float32:
        return torch.ops.mkldnn._linear_pointwise(
            x.contiguous(), w.contiguous(), None, "none", [], ""
        )
    return x.mm(w.t())


def _pack(w: torch.Tensor, batch: int):
    """oneDNN's blocked copy of a weight W for repeated products x W^T, or None."""
    if onednn() and w.dtype == torch.float32:
        return torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), batch)
    return None


class Linear(torch.autograd.Function):
    """x (.., I) W^T with its GEMMs (forward, dL/dx, dL/dW) in oneDNN where it is there: the
    input projection of the fused LN-LSTM. First-order only."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return _linear(x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
        dx = _linear(g2, w.t()).view(x.shape) if ctx.needs_input_grad[0] else None
        dw = g2.t().mm(x2) if ctx.needs_input_grad[1] else None  # no transposed copies
        return dx, dw


class _LSTMScan(torch.autograd.Function):
    """(xin (T, B, 4H), W_hh (4H, H), g_hh (4H,), g_c (H,), b_c (H,), h0, c0 (B, H), eps,
    bias, bias_hh (4H,) or None) -> (hs (T, B, H), c_T (B, H)); see the module docstring.
    g_hh, g_c, b_c all None: the plain LSTM (the kernel with its norms off). The gates' input
    term is (xin + bias) + bias_hh, added in the kernel's row pass."""

    @staticmethod
    def forward(ctx, xin, weight_hh, gain_hh, gain_c, bias_c, h0, c0, eps, bias, bias_hh, center):
        B, norm = xin.shape[1], gain_hh is not None
        if not norm:
            gain_hh = gain_c = bias_c = xin.new_empty(0)
        hs, NH, S, C, NC, TC, RH, RC = torch.ops.lnrepro.ln_lstm_forward(
            xin, weight_hh, _pack(weight_hh, B), gain_hh, gain_c, bias_c, h0, c0, eps, norm,
            bias, bias_hh, center,
        )  # fmt: skip
        # intermediates too (allowed for first-order Functions): freed after the backward
        ctx.save_for_backward(weight_hh, gain_hh, gain_c, h0, hs, NH, S, C, NC, TC, RH, RC)
        ctx.norm, ctx.center = norm, center
        return hs, C[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_hs, g_cT):
        weight_hh, gain_hh, gain_c, h0, hs, NH, S, C, NC, TC, RH, RC = ctx.saved_tensors
        B, norm = S.shape[1], ctx.norm
        dX, dA, dYc, dc = torch.ops.lnrepro.ln_lstm_backward(
            g_hs.contiguous(), g_cT.contiguous(), weight_hh, _pack(weight_hh.t(), B),
            gain_hh, gain_c, NH, S, C, NC, TC, RH, RC, norm, ctx.center,
        )  # fmt: skip
        need = ctx.needs_input_grad
        d_w = d_gh = d_gc = d_bc = d_h0 = d_c0 = None
        if need[1]:  # sum_t dA_t^T h_{t-1}: one GEMM over all steps
            h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]]).flatten(0, 1)
            d_w = dA.flatten(0, 1).t().mm(h_prev)  # the GEMM reads the transposes in place
        if norm and need[2]:  # (not einsum: it measured 20x slower for this contraction)
            d_gh = (dX * NH).sum((0, 1))
        if norm and need[3]:
            d_gc = (dYc * NC).sum((0, 1))
        if norm and need[4]:
            d_bc = dYc.sum((0, 1))
        if need[5]:
            d_h0 = dA[0].mm(weight_hh)
        if need[6]:
            H = TC.shape[-1]
            d_c0 = dc * S[0, :, H : 2 * H]
        d_b = dX.sum((0, 1)) if need[8] or need[9] else None  # both biases: the same sum
        d_bh = (d_b.clone() if need[8] else d_b) if need[9] else None
        return dX, d_w, d_gh, d_gc, d_bc, d_h0, d_c0, None, d_b if need[8] else None, d_bh, None


def applies(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """The fused path can take x and the cell's parameters: CPU, float32/64, one dtype, no
    autocast, not under torch.compile (which traces the step loop), and the extension built."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and all(p.dtype == x.dtype and p.device.type == "cpu" for p in params if p is not None)
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and available()
    )


def _scan(xin, weight_hh, gains, h0, c0, eps, bias, bias_hh, center=True):
    if xin.dim() != 3 or xin.shape[0] < 1 or xin.shape[-1] % 4:
        raise ValueError(f"xin must be (T >= 1, B, 4H), got {tuple(xin.shape)}")
    if bias is None and bias_hh is not None:
        bias, bias_hh = bias_hh, None
    args = (xin, weight_hh, *gains, h0, c0, float(eps), bias, bias_hh, bool(center))
    hs, c_T = _LSTMScan.apply(*(a.contiguous() if torch.is_tensor(a) else a for a in args))
    return hs, (hs[-1], c_T)


def ln_lstm_scan(
    xin,
    weight_hh,
    gain_hh,
    gain_c,
    bias_c,
    h0,
    c0,
    eps: float = 1e-5,
    bias=None,
    bias_hh=None,
    center: bool = True,
):
    """The LN-LSTM (supplementary Eq. 20-22) over a whole sequence in one autograd Function.

    xin (T, B, 4H): the input terms LN_ih(W_ih x_t) of all steps; bias (4H,): b, bias_hh (4H,):
    LN_hh's bias (constant over time), added to xin in the kernel as (xin + b) + bias_hh, or
    (None) already in xin; weight_hh (4H, H); gain_hh (4H,): LN_hh's gain; gain_c, bias_c (H,):
    LN_c's; h0, c0 (B, H); eps: both norms' eps. Returns (hs (T, B, H), (h_T, c_T)) as
    `LSTMCell.scan`. Gradients flow to every tensor argument; first-order only. Call only where
    `applies(...)`. center=False: RMSNorm (Zhang & Sennrich 2019) in LN's places, as
    `lnrepro.nn.norm.RMSNorm` (a / sqrt(mean a^2 + eps), no mean subtracted).
    """
    gains = (gain_hh, gain_c, bias_c)
    return _scan(xin, weight_hh, gains, h0, c0, eps, bias, bias_hh, center)


def lstm_scan(xin, weight_hh, h0, c0, bias=None):
    """The plain LSTM over a whole sequence through the same kernel with its norms off:
    gates_t = (xin_t + b) + h_{t-1} W_hh^T, c_t = sig(f) c_{t-1} + sig(i) tanh(g), h_t = sig(o)
    tanh(c_t). xin (T, B, 4H): W_ih x_t of all steps; bias (4H,): b, or (None) already in
    xin; the rest as `ln_lstm_scan`."""
    return _scan(xin, weight_hh, (None, None, None), h0, c0, 0.0, bias, None)
