"""Dynamic Tanh (Zhu et al. 2025, "Transformers without Normalization"), a norm from outside
the package: y = g * tanh(a x) + b, with one learnable scalar a (initialised to 0.5) and a
per-feature gain g (1) and bias b (0). No statistics of the batch or the layer: DyT replaces
LN's normalisation by a squashing of learned slope where LN goes (docs/norms.md).

Used only through the open norm axis, with this folder on PYTHONPATH (`make scorecard` puts it
there):

    make scorecard NORM=dyt.DyT
    PYTHONPATH=examples/norms python -m lnrepro.train experiment=pi_mnist_cpu norm=own +norm._target_=dyt.DyT
"""

import torch
from torch import nn

from lnrepro.nn.norm import Norm


class DyTLayer(nn.Module):
    """g * tanh(a x) + b over the last dimension of x (N, F)."""

    def __init__(self, num_features: int, alpha_init: float):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        return self.weight * torch.tanh(self.alpha * x) + self.bias


class DyT(Norm):
    """Dynamic Tanh where LN goes (kind `dyt`); its one option: the slope's initial value."""

    def __init__(self, alpha_init: float = 0.5):
        self.alpha_init = alpha_init

    def layer(self, num_features):
        return DyTLayer(num_features, self.alpha_init)
