"""Graves (2013) Sec. 5.2 handwriting synthesis network with the norm switch (LN paper Sec. 6.5).

Three stacked LSTM layers (norm=ln: the LN-LSTM of supplementary Eq. 20-22 in every layer;
bn: recurrent BN, Cooijmans et al.; none: plain), skip connections from the input to all layers
and from all layers to the output, a soft attention window over the one-hot characters
(Graves Eq. 46-51) and a mixture density output of bivariate Gaussians plus an end-of-stroke
Bernoulli (Graves Eq. 17-26):

    h1_t = LSTM1([x_t; w_{t-1}], h1_{t-1})                                  (Graves Eq. 52)
    (a^, b^, k^) = W h1_t + b;  alpha = exp(a^), beta = exp(b^),            (Eq. 48-50)
    kappa_t = kappa_{t-1} + exp(k^)            (the window only moves forward, Eq. 51)
    phi(t, u) = sum_k alpha_k exp(-beta_k (kappa_k - u)^2),  u = 1..U       (Eq. 46)
    w_t = sum_u phi(t, u) c_u                                               (Eq. 47)
    hn_t = LSTMn([x_t; w_t; h(n-1)_t], hn_{t-1})                            (Eq. 53)
    y_t = b_y + sum_n W_n hn_t = Linear([h1_t; h2_t; h3_t])                 (Eq. 54)

Speed: only layer 1 and the window need a step-by-step loop (w_{t-1} feeds layer 1). Layers
2..N see x_t, w_t and the layer below at the same step only, so once layer 1 has run over all
T steps their whole input is known: each is one `LSTMCell.scan` with its input term computed
for all steps in one matmul. Layer 1's W_x x_t is also precomputed for all steps; per step it
adds W_w w_{t-1} and normalises the sum (LN over the whole input term, supplementary Eq. 20).

Deviations from Graves: no peephole connections (the LN paper's LN-LSTM has none either);
e = sigmoid(e^) instead of 1 / (1 + exp(e^)) (the same family, the sign of a learned output);
a smooth floor on log sigma (`min_log_sigma`) and |rho| <= RHO_MAX for numerical safety (see
`mdn_params`); the kappa offset is initialised to move slowly (`kappa_bias_init`; Graves gives
no initialisation). Gradient clipping (Graves: derivatives w.r.t. the network outputs clipped
to [-100, 100], w.r.t. the LSTM layers to [-10, 10]): `output_grad_clip` clamps dL/dy_t
elementwise as he did; `lstm_grad_clip` clamps the derivatives that reach each layer's outputs
from the output layer and the layer above (not those inside the recurrence: that needs a hook
per step). Both assume the task's loss is the NLL SUMMED over the sequences of the batch, so
that they act on per-sequence derivatives.

This module computes outputs only: y_t and its mixture parameters (`mdn_params`, Graves Eq.
17-22). The loss, -log Pr(x | c) of Graves Eq. 23-26, is in `lnrepro.tasks.handwriting`;
writing a text point by point (Graves Sec. 5.3) is in `lnrepro.models.handwriting_sampling`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lnrepro.errors import ConfigError
from lnrepro.nn.norm import Norm
from lnrepro.nn.rnn import DEFAULT_T_MAX, LSTMCell, scan_steps

RHO_MAX = 1.0 - 1e-5  # |rho| cap: keeps 1 - rho^2 >= 2e-5 in float32 (tanh rounds to 1 at ~9)


def mdn_params(y: torch.Tensor, mixtures: int, min_log_sigma: float = -6.0, bias: float = 0.0):
    """Split the network output y (..., 1 + 6M) into the mixture parameters (Graves Eq. 17-22,
    with the sampling bias b of Eq. 61-62; b = 0 for training).

    Returns e_logit (...,), log_pi (..., M), mu (..., M, 2), log_sigma (..., M, 2), rho (..., M):
        Pr(end of stroke) = sigmoid(e_logit); pi = softmax(pi^ (1 + b));
        log sigma = f + softplus(sigma^ - b - f) with f = min_log_sigma: equal to sigma^ - b
        wherever sigma^ - b >> f, never below f, so 1/sigma stays finite and the gradient never
        dies (a clamp would stop it); rho = RHO_MAX tanh(rho^).
    """
    M = mixtures
    e_logit, pi_hat, mu, s_hat, r_hat = y.split([1, M, 2 * M, 2 * M, M], -1)
    log_pi = F.log_softmax(pi_hat * (1.0 + bias), -1)
    log_sigma = min_log_sigma + F.softplus(s_hat - bias - min_log_sigma)
    shape = mu.shape[:-1] + (M, 2)
    return (
        e_logit.squeeze(-1),
        log_pi,
        mu.reshape(shape),
        log_sigma.reshape(shape),
        RHO_MAX * torch.tanh(r_hat),
    )


def _clamp_grad(t: torch.Tensor, limit: float | None) -> torch.Tensor:
    if limit and t.requires_grad:
        t.register_hook(lambda g: g.clamp(-limit, limit))
    return t


class HandwritingSynthesis(nn.Module):
    """The synthesis network (see the module docstring for the equations).

    forward(x, chars, state=None) -> (y (T, B, 1 + 6M), state): x (T, B, 3) the previous
    offsets (time-first), chars (B, U) symbol ids padded with -1; state (h, c, kappa, w) with
    h, c (num_layers, B, H), kappa (B, K), w (B, V), or None (zeros).
    step(x_t, onehot, state, t) -> (y_t, state, phi): one step of all layers, for sampling;
    phi (B, U + 1) is the window over the characters and one position past the end.

    Args:
        vocab_size: symbols (non-letter class + alphabet); the data supplies it.
        hidden_size, num_layers: LSTM width and depth (Graves: 400, 3).
        window_components: K Gaussians of the attention window (Graves: 10).
        mixture_components: M bivariate Gaussians of the output (Graves: 20).
        norm: norm=ln|bn|none, in every LSTM layer (gates and cell, Eq. 20-22).
        t_max: BN steps with their own statistics (null: the default); set to the sequence length.
        init: recurrent init, see `lnrepro.nn.rnn`.
        kappa_bias_init: initial bias of k^; exp(-3) = 0.05 characters per point at the
            start, about the real pace (IAM-OnDB: ~20 points per character).
        min_log_sigma, output_grad_clip, lstm_grad_clip: see the module docstring.
        alphabet, offset_mean, offset_std: recorded from the data (checkpoint extra state), so
            that a checkpoint alone can write text in pen coordinates.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 400,
        num_layers: int = 3,
        window_components: int = 10,
        mixture_components: int = 20,
        norm: Norm | str = "ln",
        t_max: int | None = None,
        init: str = "orthogonal",
        kappa_bias_init: float = -3.0,
        min_log_sigma: float = -6.0,
        output_grad_clip: float | None = 100.0,
        lstm_grad_clip: float | None = 10.0,
        alphabet: str | None = None,
        offset_mean: list[float] | None = None,
        offset_std: list[float] | None = None,
    ):
        super().__init__()
        for name, v in (
            ("vocab_size", vocab_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
            ("window_components", window_components),
            ("mixture_components", mixture_components),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {v!r}")
        if alphabet is not None and len(alphabet) + 1 != vocab_size:
            raise ConfigError(
                f"model.vocab_size={vocab_size} but the alphabet has "
                f"{len(alphabet)} characters + the non-letter class"
            )
        V, H, K, M = vocab_size, hidden_size, window_components, mixture_components
        self.vocab_size, self.hidden_size, self.num_layers = V, H, num_layers
        self.K, self.M = K, M
        self.min_log_sigma = float(min_log_sigma)
        self.output_grad_clip, self.lstm_grad_clip = output_grad_clip, lstm_grad_clip
        self.alphabet = alphabet
        self.offset_mean = list(offset_mean) if offset_mean is not None else [0.0, 0.0]
        self.offset_std = list(offset_std) if offset_std is not None else [1.0, 1.0]
        t_max = t_max or DEFAULT_T_MAX
        self.cells = nn.ModuleList(
            LSTMCell(3 + V + (H if n else 0), H, norm, t_max=t_max, init=init)
            for n in range(num_layers)
        )
        self.window = nn.Linear(H, 3 * K)
        with torch.no_grad():
            self.window.bias[2 * K :].fill_(kappa_bias_init)
        self.out = nn.Linear(num_layers * H, 1 + 6 * M)

    # ---- pieces -------------------------------------------------------------------------
    def onehot(self, chars: torch.Tensor) -> torch.Tensor:
        """(B, U) ids, -1 = padding -> (B, U + 1, V) one-hot; padding and the extra position
        U + 1 (Graves' end test) are zero vectors, so they add nothing to w_t."""
        valid = (chars >= 0).unsqueeze(-1)
        c = F.one_hot(chars.clamp(min=0), self.vocab_size).to(torch.float32) * valid
        return F.pad(c, (0, 0, 0, 1))

    def attend(
        self,
        h1: torch.Tensor,
        kappa: torch.Tensor,
        onehot: torch.Tensor,
        u: torch.Tensor | None = None,
    ):
        """Graves Eq. 46-51: h1 (B, H), kappa_{t-1} (B, K), onehot (B, U + 1, V), u the
        positions 1 .. U + 1 (computed when None) -> kappa_t (B, K), w_t (B, V), phi (B, U + 1)."""
        a_hat, b_hat, k_hat = self.window(h1).chunk(3, -1)
        kappa = kappa + torch.exp(k_hat)  # only forward
        if u is None:
            u = torch.arange(1, onehot.shape[1] + 1, device=h1.device, dtype=h1.dtype)
        # alpha exp(-beta (kappa - u)^2) as one exp: exp(a^ - beta (kappa - u)^2)
        phi = torch.exp(
            a_hat.unsqueeze(-1) - torch.exp(b_hat).unsqueeze(-1) * (kappa.unsqueeze(-1) - u) ** 2
        ).sum(1)
        w = torch.bmm(phi.unsqueeze(1), onehot).squeeze(1)
        return kappa, w, phi

    def zero_state(self, batch: int, like: torch.Tensor):
        z = like.new_zeros(self.num_layers, batch, self.hidden_size)
        return z, z, like.new_zeros(batch, self.K), like.new_zeros(batch, self.vocab_size)

    def mdn(self, y: torch.Tensor, bias: float = 0.0):
        return mdn_params(y, self.M, self.min_log_sigma, bias)

    # ---- the whole sequence (training, evaluation) --------------------------------------
    def forward(self, x: torch.Tensor, chars: torch.Tensor, state=None, t0: int = 0):
        B = x.shape[1]
        h0, c0, kappa, w = self.zero_state(B, x) if state is None else state
        onehot = self.onehot(chars)
        first = self.cells[0]
        w_x, w_w = first.weight_ih.split([3, self.vocab_size], 1)
        windows = []
        u = torch.arange(1, onehot.shape[1] + 1, device=x.device, dtype=x.dtype)

        def step(pre_t, a_t, st, t):  # layer 1 and the window, one step
            h, c, kappa, w = st
            h, c = first.step(first.finish_input(torch.addmm(pre_t, w, w_w.t()), t), a_t, (h, c), t)
            kappa, w, _ = self.attend(h, kappa, onehot, u)
            windows.append(w)
            return h, c, kappa, w

        h1, (h, c, kappa, w) = scan_steps(
            step, F.linear(x, w_x), first.weight_hh, (h0[0], c0[0], kappa, w), t0
        )
        ws = torch.stack(windows)  # (T, B, V): w_1 .. w_T
        outs, hs, cs = [_clamp_grad(h1, self.lstm_grad_clip)], [h], [c]
        for n, cell in enumerate(self.cells[1:], 1):
            out, (h, c) = cell.scan(torch.cat([x, ws, outs[-1]], -1), (h0[n], c0[n]), t0)
            outs.append(_clamp_grad(out, self.lstm_grad_clip))
            hs.append(h)
            cs.append(c)
        y = _clamp_grad(self.out(torch.cat(outs, -1)), self.output_grad_clip)
        return y, (torch.stack(hs), torch.stack(cs), kappa, w)

    # ---- one step (sampling) ------------------------------------------------------------
    def step(self, x_t: torch.Tensor, onehot: torch.Tensor, state, t: int):
        """x_t (B, 3), onehot from `onehot(chars)` -> (y_t (B, 1 + 6M), state, phi (B, U + 1))."""
        hs, cs, kappa, w = state
        first = self.cells[0]
        h, c = first(torch.cat([x_t, w], -1), (hs[0], cs[0]), t)
        kappa, w, phi = self.attend(h, kappa, onehot)
        new_h, new_c = [h], [c]
        for n, cell in enumerate(self.cells[1:], 1):
            h, c = cell(torch.cat([x_t, w, h], -1), (hs[n], cs[n]), t)
            new_h.append(h)
            new_c.append(c)
        y = self.out(torch.cat(new_h, -1))
        return y, (torch.stack(new_h), torch.stack(new_c), kappa, w), phi

    # ---- what the checkpoint must know of the data --------------------------------------
    def get_extra_state(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "alphabet": self.alphabet,
            "offset_mean": self.offset_mean,
            "offset_std": self.offset_std,
        }

    def set_extra_state(self, state: dict) -> None:
        if state.get("vocab_size") != self.vocab_size or (
            state.get("alphabet") and self.alphabet and state["alphabet"] != self.alphabet
        ):
            raise ConfigError(
                f"alphabet mismatch on load: the checkpoint has {state.get('vocab_size')} symbols "
                f"({state.get('alphabet')!r}), the model {self.vocab_size} ({self.alphabet!r})"
            )
        self.alphabet = state.get("alphabet") or self.alphabet
        self.offset_mean = list(state.get("offset_mean") or self.offset_mean)
        self.offset_std = list(state.get("offset_std") or self.offset_std)
