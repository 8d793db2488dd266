"""The permutation-invariant MNIST network of Sec. 6.6: 784-1000-1000-10 with a norm switch."""

from __future__ import annotations

from torch import nn

from lnrepro.errors import ConfigError
from lnrepro.nn.norm import Norm, as_norm

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class MLP(nn.Module):
    """Fully connected net, `h = f(norm(W x))` per hidden layer (Eq. 1 with Eq. 2/3 on the
    summed inputs), then linear logits.

    Sec. 6.6: LN normalizes the hidden layers only, never the logits ("prediction confidence
    is determined by the scale of the logits"); BN is "applied to all layers", so with
    `norm=bn` the logits are batch-normalized too (`norm_logits` lists the norms, by short
    name, that do). The linear layer drops its own bias wherever the norm's shift replaces it
    (`norm.keeps_bias`). `norm=wn` (weight norm) reparametrizes the weights of the layers BN
    normalises: every layer, the logits too (as it is in `norm_logits`); `norm=rms` and a norm
    of your own go where LN goes, unless `norm_logits` names them.
    """

    def __init__(
        self,
        in_dim: int = 784,
        hidden: tuple[int, ...] = (1000, 1000),
        out_dim: int = 10,
        norm: Norm | str = "ln",
        activation: str = "relu",
        norm_logits: tuple[str, ...] = ("bn", "wn"),
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation must be one of {sorted(ACTIVATIONS)}")
        norm = as_norm(norm)
        layers: list[nn.Module] = []
        prev = in_dim
        for width in hidden:
            layers += [
                norm.wrap_weight(nn.Linear(prev, width, bias=norm.keeps_bias)),
                norm.layer(width),
                ACTIVATIONS[activation](),
            ]
            prev = width
        with_norm = norm.is_one_of(norm_logits)
        logits = nn.Linear(prev, out_dim, bias=not with_norm or norm.keeps_bias)
        layers += [norm.wrap_weight(logits) if with_norm else logits]
        if with_norm:
            layers.append(norm.layer(out_dim))
        self.net = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))

    def forward(self, x):  # (B, in_dim) -> (B, out_dim) logits
        return self.net(x)
