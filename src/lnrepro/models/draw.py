"""DRAW with selective attention (Gregor et al. 2015) for binarized MNIST (Sec. 6.4, Figure 4).

One glimpse t = 1..T (Gregor et al. Eq. 3-8), canvas c_0 = 0, h^dec_0 = h^enc_0 = 0:
    x^_t     = x - sigmoid(c_{t-1})                               error image
    r_t      = read(x, x^_t, h^dec_{t-1})                         N x N read attention (Eq. 27)
    h^enc_t  = LSTM_enc(h^enc_{t-1}, [r_t, h^dec_{t-1}])
    z_t      = mu_t + sigma_t * eps,  [mu_t; log sigma_t] = W h^enc_t + b      (Q(Z_t | h^enc_t))
    h^dec_t  = LSTM_dec(h^dec_{t-1}, z_t)
    c_t      = c_{t-1} + write(h^dec_t)                           N x N write attention (Eq. 29)
The reconstruction is Bernoulli with means sigmoid(c_T) (Eq. 9). The model computes outputs
only: c_T and the posterior parameters (mu_t, log sigma_t) of every glimpse; the loss
(`lnrepro.tasks.draw`) is the variational bound
    -log D(x | c_T) + sum_t KL(Q(Z_t | h^enc_t) || N(0, I))                  (Eq. 10-12).

Normalization (the `norm` switch) sits only on the LSTM cell state before its tanh, in both the
encoder and the decoder (the LN paper's supplementary Eq. 29-31):
    [f; i; o; g] = W_h h_{t-1} + W_x x_t + b                      (29)  plain, no norm
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)              (30)
    h_t = sigmoid(o) * tanh(N(c_t))                                (31)
N = LN (Eq. 15-16: per case, over the H cell units, gain 1, bias 0) for norm "ln"; recurrent BN
with statistics per glimpse (`nn.rnn.SeqBatchNorm`, gain 0.1, Cooijmans et al.) for "bn"; the
identity for "none" (the baseline). The carried c_t is the raw one. This is
`nn.rnn.LSTMCell(..., ln_gates=False)`, whose "ln" mode otherwise also normalises W_h h and W_x x
(Eq. 20-22), which the DRAW experiment does not.

Attention (Gregor et al. Sec. 3.2), from a linear map of h^dec:
    (g~_X, g~_Y, log sigma^2, log delta~, log gamma) = W h^dec + b                  (Eq. 21)
    g_X = (A + 1)/2 (g~_X + 1),  g_Y = (B + 1)/2 (g~_Y + 1),                          (Eq. 22-23)
    delta = (max(A, B) - 1)/(N - 1) delta~                                          (Eq. 24)
    mu_X^i = g_X + (i - N/2 - 0.5) delta,  mu_Y^j = g_Y + (j - N/2 - 0.5) delta     (Eq. 19-20)
    F_X[i, a] = exp(-(a - mu_X^i)^2 / (2 sigma^2)) / Z_X,  sum_a F_X[i, a] = 1      (Eq. 25-26)
    read(x, x^, h) = gamma [F_Y x F_X^T, F_Y x^ F_X^T]                               (Eq. 27)
    write(h) = 1/gamma^ F^_Y^T w F^_X,  w = W' h^dec (an N x N patch)                (Eq. 28-29)
with 1-based filter indices i, j = 1..N and pixel coordinates a = 1..A, b = 1..B, so that
g~ = 0 is the centre of the image. The read parameters of glimpse t come from h^dec_{t-1}, the
write parameters and patch from h^dec_t: one linear layer maps h^dec_t to all three (the read
part is used at t + 1; at t = 1, h^dec_0 = 0 gives its bias).

Shapes: images (B, A, A) (square, `image_size` A; B is the batch) with values in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from lnrepro.errors import ConfigError
from lnrepro.nn.norm import Norm, as_norm
from lnrepro.nn.rnn import LSTMCell

N_ATT = 5  # attention parameters per read/write head (Eq. 21)
FILTER_EPS = 1e-8  # added to the filterbank normaliser Z (an all-zero row stays zero)


def filterbank(
    g: torch.Tensor, delta: torch.Tensor, var: torch.Tensor, n: int, size: int
) -> torch.Tensor:
    """Gaussian filterbank of Eq. 19 and 25: centres g, strides delta and variances var of any
    (broadcastable) batch shape S -> F (*S, n, size).

    Row i holds the normalised Gaussian centred at mu^i = g + (i - n/2 - 0.5) delta (i = 1..n)
    over the pixel coordinates a = 1..size, with variance var = sigma^2.
    """
    i = torch.arange(1, n + 1, device=g.device, dtype=g.dtype)
    a = torch.arange(1, size + 1, device=g.device, dtype=g.dtype)
    mu = g[..., None] + (i - n / 2 - 0.5) * delta[..., None]  # (*S, n)
    f = torch.exp((a - mu[..., None]).square() * (-0.5 / var)[..., None, None])  # (*S, n, size)
    return f / (f.sum(-1, keepdim=True) + FILTER_EPS)


class Attention(nn.Module):
    """The N x N attention window of one head on A x A images (no parameters: the linear map
    from h^dec lives in `DRAW`). `params` turns its 5 outputs into (F_X, F_Y, gamma)."""

    def __init__(self, image_size: int, n: int):
        super().__init__()
        self.image_size, self.n = image_size, n
        self.stride_scale = (image_size - 1) / max(n - 1, 1)  # Eq. 24; n = 1 needs no stride

    def params(self, p: torch.Tensor):
        """p (B, 5) = (g~_X, g~_Y, log sigma^2, log delta~, log gamma) -> F_X, F_Y (B, n, A),
        gamma (B,): Eq. 21-26 (both axes in one filterbank call)."""
        g_, log_var, log_delta, log_gamma = p.split([2, 1, 1, 1], 1)
        g = (self.image_size + 1) / 2 * (g_ + 1)  # (B, 2): g_X, g_Y
        f = filterbank(
            g, self.stride_scale * log_delta.exp(), log_var.exp(), self.n, self.image_size
        )  # (B, 2, n, A)
        return f[:, 0], f[:, 1], log_gamma.exp()[:, 0]

    def read(self, x: torch.Tensor, x_err: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """gamma [F_Y x F_X^T, F_Y x^ F_X^T] for images x, x^ (B, A, A), flattened to
        (B, 2 n^2) (Eq. 27)."""
        fx, fy, gamma = self.params(p)
        batch, n = x.shape[0], self.n
        rows = fy @ torch.cat([x, x_err], 2)  # (B, n, 2A): both images in one bmm
        glimpse = rows.view(batch, 2 * n, -1) @ fx.transpose(1, 2)  # (B, 2n, n), rows (i, k)
        glimpse = glimpse.view(batch, n, 2, n).transpose(1, 2)  # (B, 2, n, n): x first
        return glimpse.flatten(1) * gamma[:, None]

    def write(self, patch: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """patch (B, n, n) -> 1/gamma F_Y^T patch F_X, (B, A, A) (Eq. 29)."""
        fx, fy, gamma = self.params(p)
        return (fy.transpose(1, 2) @ patch @ fx) / gamma[:, None, None]


class DRAW(nn.Module):
    """DRAW with read and write attention; `norm` on the LSTM cell states only (Eq. 29-31).

    `forward(x, generator=None) -> (logits (B, A, A), mu (T, B, Z), log_sigma (T, B, Z))`:
    canvas c_T (the Bernoulli logits of the reconstruction) and the parameters of the posterior
    Q(Z_t | h^enc_t) = N(mu_t, sigma_t^2) of every glimpse (the task turns them into the KL
    term). The posterior noise comes from `generator` (the global RNG when None).
    `sample(n)` draws images from the generative model (z_t ~ N(0, I)).

    Args:
        image_size: A, for A x A images (28 for MNIST; from the data).
        norm: the norm object (`lnrepro.nn.norm.Norm`) or a built-in's short name.
        glimpses: T (Sec. 6.4: 64).
        read_size, write_size: N of the read and write windows (Gregor et al.'s MNIST: 2 and 5).
        enc_size, dec_size: LSTM units of the encoder and decoder (Sec. 6.4: 256).
        z_size: latent units per glimpse (Gregor et al.'s MNIST: 100).
        init: LSTM weight init, "torch" | "orthogonal" (see nn.rnn).
    """

    def __init__(
        self,
        image_size: int,
        norm: Norm | str = "none",
        glimpses: int = 64,
        read_size: int = 2,
        write_size: int = 5,
        enc_size: int = 256,
        dec_size: int = 256,
        z_size: int = 100,
        init: str = "torch",
    ):
        super().__init__()
        for name, v in (
            ("image_size", image_size),
            ("glimpses", glimpses),
            ("read_size", read_size),
            ("write_size", write_size),
            ("enc_size", enc_size),
            ("dec_size", dec_size),
            ("z_size", z_size),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {v!r}")
        if max(read_size, write_size) > image_size:
            raise ConfigError(
                f"attention windows (read {read_size}, write {write_size}) larger than the "
                f"{image_size}x{image_size} image"
            )
        spec = as_norm(norm)
        self.image_size, self.glimpses, self.z_size = image_size, glimpses, z_size
        self.kind = spec.kind
        self.read_att = Attention(image_size, read_size)
        self.write_att = Attention(image_size, write_size)
        read_dim = 2 * read_size**2
        # Eq. 29-31: the norm on c_t only (per-glimpse statistics for BN: t_max = T)
        self.enc = LSTMCell(
            read_dim + dec_size, enc_size, spec, ln_gates=False, t_max=glimpses, init=init
        )
        self.dec = LSTMCell(z_size, dec_size, spec, ln_gates=False, t_max=glimpses, init=init)
        self.q = nn.Linear(enc_size, 2 * z_size)  # [mu; log sigma] of Q(Z_t | h^enc_t)
        # h^dec_t -> read params of glimpse t+1 (5), write params (5), write patch (N^2)
        self.dec_out = nn.Linear(dec_size, 2 * N_ATT + write_size**2)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, glimpses={self.glimpses}, norm={self.kind}"

    # the data-derived size travels with the weights (the saved config holds image_size: ???),
    # so scripts/sample_draw.py can rebuild the model from a checkpoint alone
    def get_extra_state(self) -> dict:
        return {"image_size": self.image_size}

    def set_extra_state(self, state: dict) -> None:
        if state and state.get("image_size") != self.image_size:
            raise ConfigError(
                f"checkpoint is for {state.get('image_size')}-pixel images, the "
                f"model for {self.image_size}"
            )

    def check_input(self, x: torch.Tensor) -> None:
        A = self.image_size
        if x.dim() != 3 or tuple(x.shape[1:]) != (A, A):
            got = "x".join(map(str, x.shape[1:])) if x.dim() == 3 else str(tuple(x.shape))
            raise ConfigError(
                f"DRAW is configured for {A}x{A} images (model.image_size={A}), got images of "
                f"size {got}"
            )

    def _decode(self, z, state, canvas, t):
        """h^dec_t, c_t from z_t; returns (state, canvas, read params of glimpse t+1)."""
        state = self.dec(z, state, t)
        out = self.dec_out(state[0])
        read_p, write_p, patch = out.split([N_ATT, N_ATT, out.shape[1] - 2 * N_ATT], 1)
        n = self.write_att.n
        canvas = canvas + self.write_att.write(patch.view(-1, n, n), write_p)
        return state, canvas, read_p

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """x (B, A, A) in [0, 1] -> (canvas logits c_T (B, A, A), mu_t and log sigma_t of
        every glimpse, each (T, B, Z))."""
        self.check_input(x)
        batch = x.shape[0]
        canvas = x.new_zeros(x.shape)
        h_dec = x.new_zeros(batch, self.dec.hidden_size)
        enc_state, dec_state = None, (h_dec, h_dec)
        read_p = self.dec_out.bias[:N_ATT].expand(batch, N_ATT)  # W h^dec_0 + b with h^dec_0 = 0
        mus, log_sigmas = [], []
        for t in range(self.glimpses):
            x_err = x - torch.sigmoid(canvas)
            r = self.read_att.read(x, x_err, read_p)
            enc_state = self.enc(torch.cat([r, dec_state[0]], 1), enc_state, t)
            mu, log_sigma = self.q(enc_state[0]).chunk(2, 1)
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + log_sigma.exp() * eps
            mus.append(mu)
            log_sigmas.append(log_sigma)
            dec_state, canvas, read_p = self._decode(z, dec_state, canvas, t)
        return canvas, torch.stack(mus), torch.stack(log_sigmas)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, steps: bool = False
    ) -> torch.Tensor:
        """n images from the generative model: z_t ~ N(0, I), h^dec_t = LSTM_dec(h^dec_{t-1},
        z_t), c_t = c_{t-1} + write(h^dec_t). Returns the Bernoulli means sigmoid(c_T) (n, A, A),
        or sigmoid(c_t) for every glimpse (T, n, A, A) with `steps`."""
        p = self.dec_out.weight
        A = self.image_size
        canvas = p.new_zeros(n, A, A)
        h = p.new_zeros(n, self.dec.hidden_size)
        state, out = (h, h), []
        for t in range(self.glimpses):
            z = torch.randn(n, self.z_size, generator=generator, device=p.device, dtype=p.dtype)
            state, canvas, _ = self._decode(z, state, canvas, t)
            if steps:
                out.append(torch.sigmoid(canvas))
        return torch.stack(out) if steps else torch.sigmoid(canvas)
