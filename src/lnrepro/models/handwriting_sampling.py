"""Writing a text with a trained `HandwritingSynthesis` network (Graves 2013 Sec. 5.3).

`sample` draws the pen offsets x_{t+1} ~ Pr(. | y_t) one step at a time from the mixture output
(Graves Eq. 17-22, with the sampling bias b of Eq. 61-62) until the attention window has passed
the last character; `to_pen_positions` turns the offsets into strokes of absolute pen positions
for plotting (scripts/sample_handwriting.py).
"""

from __future__ import annotations

import torch

from lnrepro.models.handwriting import HandwritingSynthesis


@torch.no_grad()
def sample(
    model: HandwritingSynthesis,
    chars: torch.Tensor,
    max_steps: int = 1000,
    bias: float = 0.0,
    generator: torch.Generator | None = None,
):
    """Write the text `chars` (U,) symbol ids: draw x_{t+1} ~ Pr(. | y_t) step by step
    (Graves Sec. 5.3; bias b of Eq. 61-62: larger b, neater and less varied writing).

    Stops after the step at which the window has passed the last character, Graves' criterion
    phi(t, U + 1) > phi(t, u) for all u <= U, or after max_steps. Returns (offsets (N, 3) in
    normalised units, finished: whether the criterion stopped it)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        onehot = model.onehot(chars.view(1, -1).to(device))
        x = torch.zeros(1, 3, device=device)
        state = model.zero_state(1, x)
        out, finished = [], False
        for t in range(max_steps):
            y, state, phi = model.step(x, onehot, state, t)
            e_logit, log_pi, mu, log_sigma, rho = model.mdn(y, bias)
            j = torch.multinomial(log_pi.exp(), 1, generator=generator)[0, 0]
            z = torch.randn(2, generator=generator, device=device)
            s1, s2 = log_sigma[0, j].exp()
            r = rho[0, j]
            dx = mu[0, j, 0] + s1 * z[0]
            dy = mu[0, j, 1] + s2 * (r * z[0] + torch.sqrt(1 - r * r) * z[1])
            eos = (
                torch.rand((), generator=generator, device=device) < torch.sigmoid(e_logit[0])
            ).float()
            x = torch.stack([dx, dy, eos]).view(1, 3)
            out.append(x[0])
            if bool((phi[0, -1] > phi[0, :-1]).all()):
                finished = True
                break
        return torch.stack(out).cpu(), finished
    finally:
        model.train(was_training)


def to_pen_positions(offsets: torch.Tensor, mean, std) -> list[torch.Tensor]:
    """Normalised offsets (N, 3) -> strokes: a list of (n, 2) absolute positions (y up), split
    after every end-of-stroke point."""
    xy = offsets[:, :2] * torch.tensor(std) + torch.tensor(mean)
    pos = torch.cumsum(xy, 0) * torch.tensor([1.0, -1.0])  # the sensor's y grows downwards
    ends = (offsets[:, 2] > 0.5).nonzero().flatten().tolist()
    strokes, start = [], 0
    for e in ends + [len(pos) - 1]:
        if e >= start:
            strokes.append(pos[start : e + 1])
        start = e + 1
    return [s for s in strokes if len(s)]
