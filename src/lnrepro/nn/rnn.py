"""Recurrent core with the norm switch: LSTM and GRU (norm=ln|bn|none|wn|rms), plus their cells.

Shapes are TIME-FIRST everywhere: inputs x are (T, B, I), outputs (T, B, H), states
(num_layers, B, H) as in torch.nn.LSTM / torch.nn.GRU; single steps (the cells) take (B, I) and
(B, H).

Every norm comes from `lnrepro.nn.norm` (the one normalization module): a cell asks the norm
object (`lnrepro.nn.norm.Norm`) for the layer of each projection, `norm.step_layer(sizes, t_max,
shift)`, applies it with `apply_time_norm(layer, u, t, live, min_live)`, keeps its own biases
where `norm.keeps_bias`, and lets `norm.wrap_weight(cell, name)` reparametrize its weights; it
never looks at the norm's name. Any norm works here, a norm of your own too (docs/norms.md).

* norm "none": the plain recurrences, numerically equal to torch.nn.LSTM / torch.nn.GRU once
  their weights are copied in (`copy_from_torch`).
* norm "ln": the paper's LN-LSTM (supplementary Eq. 20-22) and LN-GRU (Eq. 23-28); the DRAW cell
  (Eq. 29-31) is `LSTMCell(..., norm="ln", ln_gates=False)`.
* norm "bn": recurrent batch norm after Cooijmans et al. 2017 ("Recurrent Batch
  Normalization"), with statistics per time step (`SeqBatchNorm`), gains
  `norm.recurrent_gain_init` (0.1).
* norm "rms": RMSNorm (Zhang & Sennrich 2019) wherever LN goes (LSTM: N_h, N_x over the 4H gate
  units, N_c over c_t; GRU: the [r; z] and candidate groups of both projections), gain 1, bias 0.
* norm "wn": weight normalization (Salimans & Kingma 2016) of W_ih and W_hh, per row (one g per
  gate unit), data-free init (g = ||v|| after the usual init: the cell computes what norm "none"
  does at init); no norm on the summed inputs or on c_t; the plain biases of norm "none". The
  normalised W_hh is computed once per `scan` and handed to `_scan`, whose `_DeferredWeightGrad`
  returns dL/dW to it, from where autograd carries it to g and v.

Variable-length batches (optional `mask`, (T, B) bool, True where a case is live; LSTM only):
padded steps keep the state unchanged (as the Attentive_reader code of Cooijmans et al.), so
the final (h, c) is each case's state after its last live step; per-step BN statistics are
taken over the live cases only, and a step with fewer than `min_live` live cases (of a
training batch) uses the statistics of the last step that had enough (`SeqBatchNorm`). LN and
"none" are per case, so padding never reaches a live case's output. Without a mask (the
default) nothing changes. RMSNorm and "wn" are per case too.

Time-step index of the BN statistics: step k of a `forward(x, ..., t0)` call uses the statistics
of step t0 + k; t0 defaults to 0, so the index restarts at every call (position within the
segment, as Cooijmans et al. did for truncated-BPTT language modelling). Pass t0 to continue a
longer sequence. LN and "none" ignore t0.

Initialization (`init=`): "torch" draws every weight from U(-1/sqrt(H), 1/sqrt(H)) as torch.nn.LSTM
does; "orthogonal" makes each H x H gate block of the recurrent matrix orthogonal (the authors'
LN code and Cooijmans et al.). Gate biases: torch's uniform draw where the gates are not
normalised, zeros next to a norm (the paper's b = 0, no forget-gate +1). LN gains 1 / biases 0
(Sec. 6), BN gains 0.1 / shifts 0 (Cooijmans et al.), RMSNorm as LN; weight norm after the init.

Speed: the input projection (and its norm) is computed for all T steps in one batched matmul;
Python loops only over the recurrence. Autograd would form the gradient of the recurrent weight
as T skinny (4H x B)(B x H) products added one by one; `_DeferredWeightGrad` instead forms it as
one (4H x TB)(TB x H) GEMM in the backward pass. The LN-LSTM (norm "ln" at the gates and on
c_t) and the plain LSTM (a norm that places no layer in the cell and declares `fused_lstm`, as
norm "none"), with no mask, float32/64 on the CPU, no autocast, go further: `LSTMCell.scan`
runs the whole sequence as one autograd Function whose time loops are C++
(`lnrepro.nn.fused_lstm`: the same Eq. 20-22, or the plain cell with the kernel's norms off, a
hand-written backward; `fused=False` or LNREPRO_FUSED=0 keeps the step loop).
Speeds: results/bench_rnn.md (scripts/bench_rnn.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils import parametrize

from lnrepro.errors import ConfigError
from lnrepro.nn import fused_lstm
from lnrepro.nn.norm import (  # noqa: F401  (SeqBatchNorm, GroupLN: re-exported)
    DEFAULT_T_MAX,
    MIN_LIVE,
    GroupLN,
    NoNorm,
    Norm,
    SeqBatchNorm,
    StepLayerNorm,
    StepRMSNorm,
    apply_time_norm,
    as_norm,
)

INITS = ("torch", "orthogonal")
_NORMS = ("norm_ih", "norm_hh", "norm_c")  # where a cell keeps its norm layers


class _DeferredWeightGrad(torch.autograd.Function):
    """Zeros (T, B, N) added to the recurrent products h_{t-1} W^T computed with a detached W.

    Their gradient, stacked over steps by autograd, is G = dL/d(h_{t-1} W^T); backward turns it
    into dL/dW = G^T [h_{-1}; h_0 .. h_{T-2}] in one GEMM. The hidden states are not known when
    this runs, so the loop leaves them on `tape` (h0 and the layer output, detached).
    First-order only (once_differentiable).
    """

    @staticmethod
    def forward(ctx, weight, steps: int, batch: int, tape: dict):
        ctx.tape = tape
        return weight.new_zeros(()).expand(steps, batch, weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        # the states in the gradient's dtype (the weight's): under autocast they may be lower
        h0, hs = ctx.tape["h0"].to(grad.dtype), ctx.tape["hs"].to(grad.dtype)
        dw = grad[0].t() @ h0
        dw.addmm_(grad[1:].flatten(0, 1).t(), hs[:-1].flatten(0, 1))
        return dw, None, None, None


def _scan(step, xin: torch.Tensor, weight_hh, state, t0: int):
    """Run `step(xin_t, a_t, state, t) -> state` over the input terms xin (T, B, N), where
    a_t = W_hh h_{t-1} and state[0] is h. Returns (out (T, B, H), final state)."""
    h0 = state[0]
    tape: dict = {}
    sink = _DeferredWeightGrad.apply(weight_hh, xin.shape[0], h0.shape[0], tape)
    w_t = weight_hh.detach().t()  # its gradient comes from the sink, in one GEMM
    outs = []
    for k, (x_t, zero) in enumerate(zip(xin.unbind(0), sink.unbind(0))):
        # unbind, not xin[t]: the backward of indexing allocates a (T, B, N) zero tensor per step
        state = step(x_t, torch.addmm(zero, state[0], w_t), state, t0 + k)
        outs.append(state[0])
    hs = torch.stack(outs)
    tape.update(h0=h0.detach(), hs=hs.detach())
    return hs, state


def scan_steps(step, xin: torch.Tensor, weight_hh, state, t0: int = 0):
    """Public `_scan` for recurrences that extend a cell's step (state[0] must be h; the
    recurrent weight's gradient is formed in one GEMM): `step(xin_t, a_t, state, t) -> state`
    with a_t = h_{t-1} W_hh^T. Returns (h of every step (T, B, H), final state)."""
    return _scan(step, xin, weight_hh, state, t0)


def _check_sizes(input_size: int, hidden_size: int, init: str):
    if input_size < 1 or hidden_size < 1:
        raise ConfigError(f"input and hidden sizes must be >= 1, got {input_size}, {hidden_size}")
    if init not in INITS:
        raise ConfigError(f"unknown rnn init {init!r}: choose one of {', '.join(INITS)}")


def _init_weights(cell: nn.Module, hidden_size: int, init: str, gate_bias_zero: bool):
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for name, p in cell.named_parameters(recurse=False):
            if name.startswith("weight") or not gate_bias_zero:
                p.uniform_(-bound, bound)
            else:
                p.zero_()
        if init == "orthogonal":
            for block in cell.weight_hh.split(hidden_size, 0):
                nn.init.orthogonal_(block)


class LSTMCell(nn.Module):
    """One LSTM layer: `forward` takes one step, `scan` a whole sequence (same cell math).

    Gates, in torch's row order [i; f; g; o] (supplementary Eq. 20-22 for norm "ln"):
        gates = N_h(W_hh h_{t-1}) + N_x(W_ih x_t) + b
        c_t = sig(f) * c_{t-1} + sig(i) * tanh(g)
        h_t = sig(o) * tanh(N_c(c_t))
    N_h and N_x are two separate norms, each over all 4H gate units jointly (LN: one mean and
    variance over 4H, own gain and bias); N_c over the H cell units. The carried c_t is the raw,
    un-normalised one. Without norm, b is torch's b_ih + b_hh.

    `ln_gates` / `ln_cell` switch the chosen norm off at the gates / at c_t. DRAW (Eq. 29-31):
    `LSTMCell(I, H, norm="ln", ln_gates=False)`, LN only on c_t.
    With norm "bn" (Cooijmans et al.): N_h, N_x are per-step BN without shift (b is the shift),
    N_c per-step BN with shift; no norm in the cell update; gains `norm.recurrent_gain_init` (0.1).
    Norm "rms": RMSNorm at N_h, N_x, N_c (where LN goes). Norm "wn": N_h = N_x = N_c = identity,
    W_ih and W_hh weight-normalised per row, b as norm "none"; it stays on the weights when
    `ln_gates` is off (DRAW), as WN has nothing to put on c_t.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        norm: Norm | str = "none",
        ln_gates: bool = True,
        ln_cell: bool = True,
        t_max: int = DEFAULT_T_MAX,
        init: str = "torch",
        fused: bool = True,
    ):
        super().__init__()
        _check_sizes(input_size, hidden_size, init)
        norm = as_norm(norm)
        self.input_size, self.hidden_size, self.kind = input_size, hidden_size, norm.kind
        gates = norm if ln_gates else NoNorm()
        cell = norm if ln_cell else NoNorm()
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size))
        self.norm_ih = gates.step_layer((4 * hidden_size,), t_max, shift=False)
        self.norm_hh = gates.step_layer((4 * hidden_size,), t_max, shift=False)
        self.norm_c = cell.step_layer((hidden_size,), t_max, shift=True)
        _init_weights(self, hidden_size, init, gate_bias_zero=not gates.keeps_bias)
        # weight norm on W_ih and W_hh (after the init: data-free, g = ||v||) wherever the
        # cell is normalised at all: it has no place on c_t, so DRAW's cells (ln_gates=False)
        # get it on their weights too
        weights = norm if ln_gates or ln_cell else cell
        weights.wrap_weight(self, "weight_ih")
        weights.wrap_weight(self, "weight_hh")
        # the whole sequence in one Function with C++ time loops (lnrepro.nn.fused_lstm), for
        # a norm that allows it: the same Eq. 20-22 where the three layers are LN's own, the
        # plain cell (the kernel with its norms off) where it placed none (`scan` takes it
        # where it applies)
        layers = (self.norm_ih, self.norm_hh, self.norm_c)
        self.fused = (
            fused
            and gates.fused_lstm
            and cell.fused_lstm
            and (
                all(type(m) is StepLayerNorm for m in layers)
                or all(type(m) is StepRMSNorm for m in layers)
                or all(m is None for m in layers)
            )
        )

    def input_term(self, x: torch.Tensor, t0: int = 0) -> torch.Tensor:
        """N_x(W_ih x) + b for (T, B, I) steps t0.. (one batched matmul) or one (B, I) step."""
        return self.finish_input(F.linear(x, self.weight_ih), t0)

    def finish_input(self, u: torch.Tensor, t0: int = 0) -> torch.Tensor:
        """N_x(u) + b for a product u = W_ih x computed by the caller, (T, B, 4H) or (B, 4H):
        for inputs assembled step by step (the handwriting net's attention window)."""
        return apply_time_norm(self.norm_ih, u, t0) + self.bias

    def step(self, xin_t, a_t, state, t: int = 0):
        """Eq. 20-22 from the input term `finish_input(..)` and a_t = W_hh h_{t-1}: the
        step function that `scan_steps` takes."""
        return self._step(xin_t, a_t, state, t)

    def _step(self, xin_t, a_t, state, t: int, live=None, min_live: int = MIN_LIVE):
        """Eq. 20-22 given the input term xin_t and the recurrent product a_t = W_hh h_{t-1};
        `live` (B,) bool: the cases whose BN statistics count at this step."""
        c = state[1]
        gates = xin_t + apply_time_norm(self.norm_hh, a_t, t, live, min_live)
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(apply_time_norm(self.norm_c, c, t, live, min_live))
        return h, c

    def zero_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = x.new_zeros(x.shape[-2], self.hidden_size)
        return z, z

    def forward(self, x_t: torch.Tensor, state=None, t: int = 0):
        """One step: x_t (B, I), state (h, c) each (B, H) (zeros if None) -> (h, c)."""
        state = self.zero_state(x_t) if state is None else state
        return self._step(self.input_term(x_t, t), F.linear(state[0], self.weight_hh), state, t)

    def scan(
        self,
        x: torch.Tensor,
        state=None,
        t0: int = 0,
        mask: torch.Tensor | None = None,
        min_live: int = MIN_LIVE,
    ):
        """All steps of x (T, B, I) -> (out (T, B, H), (h_T, c_T)); `mask` (T, B) bool marks
        the live steps of a padded batch (see the module docstring)."""
        state = self.zero_state(x) if state is None else state
        if mask is None and self.fused:
            n_h, n_c = self.norm_hh, self.norm_c
            gains = () if n_c is None else (n_h.weight, n_c.weight, n_c.bias)
            params = (self.weight_hh, *gains, *state)
            if fused_lstm.applies(x, self.weight_ih, *params):
                u = fused_lstm.Linear.apply(x, self.weight_ih)  # W_ih x_t, all steps (oneDNN)
                # N_x(u); the kernel adds b and LN_hh's bias (constant over time) in its row pass
                xin = apply_time_norm(self.norm_ih, u, t0)
                if n_c is None:  # no norm: the plain cell
                    return fused_lstm.lstm_scan(xin, *params, self.bias)
                center = type(n_c) is StepLayerNorm  # else RMSNorm's (no mean subtracted)
                return fused_lstm.ln_lstm_scan(xin, *params, n_c.eps, self.bias, n_h.bias, center)
        if mask is None:
            return _scan(self._step, self.input_term(x, t0), self.weight_hh, state, t0)
        xin = apply_time_norm(self.norm_ih, F.linear(x, self.weight_ih), t0, mask, min_live)
        xin = xin + self.bias

        full = mask.all(1).tolist()

        def step(x_t, a_t, st, t):  # padding keeps the state (not needed where all are live)
            live = mask[t - t0]
            h, c = self._step(x_t, a_t, st, t, live, min_live)
            if full[t - t0]:
                return h, c
            keep = live.unsqueeze(1)
            return torch.where(keep, h, st[0]), torch.where(keep, c, st[1])

        return _scan(step, xin, self.weight_hh, state, t0)


class GRUCell(nn.Module):
    """One GRU layer: `forward` takes one step, `scan` a whole sequence (same cell math).

    Supplementary Eq. 23-28, reset gate applied after the recurrent matmul:
        [r; z] = N_h(W_h h_{t-1}) + N_x(W_x x_t)                (LN over the 2H gate units)
        h~_t  = tanh(N_x'(W x_t) + sig(r) * N_h'(U h_{t-1}))     (LN on U h BEFORE * sig(r))
        h_t   = (1 - sig(z)) * h_{t-1} + sig(z) * h~_t           (the paper's z)
    Weights are laid out as torch.nn.GRU: rows [r; z; n] of weight_ih = [W_r; W_z; W], of
    weight_hh = [W_hr; W_hz; U]; `norm_ih` normalises the input projection (3H), `norm_hh` the
    recurrent one, LN separately over the [r; z] and n groups (four LNs, gains 1, biases 0, no
    other bias: Eq. 23-28). torch's update gate is the complement: z_torch = 1 - sig(z), i.e. z's
    pre-activation is torch's negated; `GRU.copy_from_torch` negates the z rows.
    Norm "none": plain biases (`bias` for [r; z; n] on the input side, torch's b_hn inside
    sig(r) * (U h + b_hn)). Norm "bn": per-step BN at the same four places, gains 0.1, the
    input-side ones with a shift (the role of b), the recurrent-side ones without (as Cooijmans'
    beta_h = 0); BN is per unit, so one BN over each 3H projection is the same thing. Norm "rms":
    RMSNorm at the four places of LN, over the same groups. Norm "wn": W_ih and W_hh
    weight-normalised per row, the biases of norm "none", no other norm.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        norm: Norm | str = "none",
        t_max: int = DEFAULT_T_MAX,
        init: str = "torch",
    ):
        super().__init__()
        _check_sizes(input_size, hidden_size, init)
        norm = as_norm(norm)
        self.input_size, self.hidden_size, self.kind = input_size, hidden_size, norm.kind
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H))
        if norm.keeps_bias:  # no norm's shift replaces them
            self.bias = nn.Parameter(torch.empty(3 * H))
            self.bias_hn = nn.Parameter(torch.empty(H))
        else:
            self.bias = self.bias_hn = None
        self.norm_ih = norm.step_layer((2 * H, H), t_max, shift=True)
        self.norm_hh = norm.step_layer((2 * H, H), t_max, shift=False)
        _init_weights(self, H, init, gate_bias_zero=False)
        norm.wrap_weight(self, "weight_ih")  # after the init: data-free, g = ||v||
        norm.wrap_weight(self, "weight_hh")

    def input_term(self, x: torch.Tensor, t0: int = 0) -> torch.Tensor:
        """N_x(W_ih x) [+ b] for (T, B, I) steps t0.. (one batched matmul) or one (B, I) step."""
        return apply_time_norm(self.norm_ih, F.linear(x, self.weight_ih, self.bias), t0)

    def _step(self, xin_t, a_t, state, t: int):
        """Eq. 23-28 given the input term and the recurrent product a_t = [W_h; U] h_{t-1}."""
        h, H = state[0], self.hidden_size
        x_rz, x_n = xin_t.split([2 * H, H], 1)
        a_rz, a_n = apply_time_norm(self.norm_hh, a_t, t).split([2 * H, H], 1)
        r, z = torch.sigmoid(x_rz + a_rz).chunk(2, 1)
        if self.bias_hn is not None:
            a_n = a_n + self.bias_hn
        n = torch.tanh(x_n + r * a_n)
        # h + sig(z) (h~ - h) = (1 - sig(z)) h + sig(z) h~; lerp needs one dtype (under autocast
        # n and z are bfloat16 / float16, the carried h float32: it stays float32)
        return (torch.lerp(h, n.to(h.dtype), z.to(h.dtype)),)

    def forward(self, x_t: torch.Tensor, h: torch.Tensor | None = None, t: int = 0) -> torch.Tensor:
        """One step: x_t (B, I), h (B, H) (zeros if None) -> h."""
        h = x_t.new_zeros(x_t.shape[0], self.hidden_size) if h is None else h
        return self._step(self.input_term(x_t, t), F.linear(h, self.weight_hh), (h,), t)[0]

    def scan(self, x: torch.Tensor, h: torch.Tensor | None = None, t0: int = 0):
        """All steps of x (T, B, I) -> (out (T, B, H), h_T)."""
        h = x.new_zeros(x.shape[1], self.hidden_size) if h is None else h
        out, (h,) = _scan(self._step, self.input_term(x, t0), self.weight_hh, (h,), t0)
        return out, h


class _Stack(nn.Module):
    """Stacked recurrent layers, dropout between layers (not on the last layer's output)."""

    def __init__(self, layers: list[nn.Module], dropout: float):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"rnn dropout must be in [0, 1), got {dropout}")
        self.layers = nn.ModuleList(layers)
        self.dropout = dropout
        first = layers[0]
        self.input_size, self.hidden_size = first.input_size, first.hidden_size
        self.num_layers, self.kind = len(layers), first.kind

    def _run(self, x, states, t0, **masking):
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected time-first input (T, B, {self.input_size}), got {tuple(x.shape)}"
            )
        finals = []
        for k, (layer, state) in enumerate(zip(self.layers, states)):
            if k:
                x = F.dropout(x, self.dropout, self.training)
            x, final = layer.scan(x, state, t0, **masking)
            finals.append(final)
        return x, finals

    def _check_torch(self, ref: nn.Module, kind: type):
        plain = all(
            getattr(layer, name, None) is None for layer in self.layers for name in _NORMS
        ) and not any(parametrize.is_parametrized(layer) for layer in self.layers)
        if not plain or any(layer.bias is None for layer in self.layers):
            raise ValueError("copy_from_torch: only norm 'none' has torch's parameters")
        if not isinstance(ref, kind) or ref.bidirectional or not ref.bias or ref.batch_first:
            raise ValueError(
                f"copy_from_torch needs a unidirectional, biased, time-first {kind.__name__}"
            )
        if (ref.input_size, ref.hidden_size, ref.num_layers) != (
            self.input_size,
            self.hidden_size,
            self.num_layers,
        ):
            raise ValueError("copy_from_torch: sizes or number of layers differ")
        if getattr(ref, "proj_size", 0):
            raise ValueError("copy_from_torch: proj_size is not supported")


class LSTM(_Stack):
    """Stacked LSTM over time-first x (T, B, I); see `LSTMCell` for the equations.

    `forward(x, state=None, t0=0, mask=None, min_live=MIN_LIVE) -> (out (T, B, H), (h, c))`,
    h and c (num_layers, B, H) as torch.nn.LSTM. The caller carries the state across
    truncated-BPTT segments (and detaches it); t0 is the step index of x[0] for the per-step BN
    statistics; `mask` (T, B) bool marks the live steps of a padded batch (module docstring).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        norm: Norm | str = "none",
        ln_cell: bool = True,
        dropout: float = 0.0,
        t_max: int = DEFAULT_T_MAX,
        init: str = "torch",
    ):
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        super().__init__(
            [LSTMCell(i, hidden_size, norm, True, ln_cell, t_max, init) for i in sizes], dropout
        )

    def forward(
        self,
        x: torch.Tensor,
        state=None,
        t0: int = 0,
        mask: torch.Tensor | None = None,
        min_live: int = MIN_LIVE,
    ):
        states = [None] * self.num_layers if state is None else zip(state[0], state[1])
        masking = {} if mask is None else {"mask": mask, "min_live": min_live}
        out, finals = self._run(x, states, t0, **masking)
        h, c = zip(*finals)
        return out, (torch.stack(h), torch.stack(c))

    @torch.no_grad()
    def copy_from_torch(self, ref: nn.LSTM) -> LSTM:
        """Take the weights of a torch.nn.LSTM (norm 'none'): b = b_ih + b_hh. Returns self."""
        self._check_torch(ref, nn.LSTM)
        for k, layer in enumerate(self.layers):
            layer.weight_ih.copy_(getattr(ref, f"weight_ih_l{k}"))
            layer.weight_hh.copy_(getattr(ref, f"weight_hh_l{k}"))
            layer.bias.copy_(getattr(ref, f"bias_ih_l{k}") + getattr(ref, f"bias_hh_l{k}"))
        return self


class GRU(_Stack):
    """Stacked GRU over time-first x (T, B, I); see `GRUCell` for the equations.

    `forward(x, h0=None, t0=0) -> (out (T, B, H), h (num_layers, B, H))` as torch.nn.GRU.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        norm: Norm | str = "none",
        dropout: float = 0.0,
        t_max: int = DEFAULT_T_MAX,
        init: str = "torch",
    ):
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        super().__init__([GRUCell(i, hidden_size, norm, t_max, init) for i in sizes], dropout)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None, t0: int = 0):
        states = [None] * self.num_layers if h0 is None else h0.unbind(0)
        out, finals = self._run(x, states, t0)
        return out, torch.stack(finals)

    @torch.no_grad()
    def copy_from_torch(self, ref: nn.GRU) -> GRU:
        """Take the weights of a torch.nn.GRU (norm 'none'), negating the update-gate rows
        (torch's z is the complement of the paper's, see `GRUCell`). Returns self."""
        self._check_torch(ref, nn.GRU)
        H = self.hidden_size
        for k, layer in enumerate(self.layers):
            sign = layer.weight_ih.new_ones(3 * H, 1)
            sign[H : 2 * H] = -1.0
            b_ih, b_hh = getattr(ref, f"bias_ih_l{k}"), getattr(ref, f"bias_hh_l{k}")
            layer.weight_ih.copy_(getattr(ref, f"weight_ih_l{k}") * sign)
            layer.weight_hh.copy_(getattr(ref, f"weight_hh_l{k}") * sign)
            layer.bias.copy_((b_ih + torch.cat([b_hh[: 2 * H], b_hh.new_zeros(H)])) * sign[:, 0])
            layer.bias_hn.copy_(b_hh[2 * H :])
        return self
