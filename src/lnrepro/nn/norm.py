"""The normalization switch: layer norm (Eq. 3), batch norm (Eq. 2) or none, behind one factory.

Every model asks `make_norm(spec, num_features)` for its normalization layer and
`linear_bias(spec)` for whether the preceding linear/conv layer keeps its own bias (with a norm,
the norm's bias b replaces it: Eq. 5, `h = f(g/sigma (a - mu) + b)`).

Shapes: (N, H) for fully connected layers, (N, C, *spatial) for convolutions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from lnrepro.errors import ConfigError

NORM_KINDS = ("ln", "bn", "none")

# Sec. 6.6: "for the small batch BN variance uses the unbiased estimator". With
# `unbiased: auto`, batches smaller than this use it; larger ones use the usual biased one.
UNBIASED_BELOW = 32


@dataclass(frozen=True)
class NormSpec:
    """What `norm=ln|bn|none` selects; built from `cfg.norm` by `NormSpec.from_cfg`."""

    kind: str = "ln"
    eps: float = 1e-5  # inside the sqrt, as the authors' code and torch
    momentum: float = 0.1  # BN running-average momentum (eval-time population statistics)
    unbiased: bool = False  # BN: unbiased batch variance in training (Sec. 6.6, batch size 4)
    gain_init: float = 1.0  # g at init; Sec. 6: LN gains 1, biases 0

    def __post_init__(self):
        if self.kind not in NORM_KINDS:
            raise ConfigError(
                f"unknown norm {self.kind!r}: choose one of {', '.join(NORM_KINDS)} (norm=ln|bn|none)"
            )
        if not self.eps >= 0:
            raise ConfigError(f"norm.eps must be >= 0, got {self.eps}")
        if not 0.0 <= self.momentum <= 1.0:
            raise ConfigError(f"norm.momentum must be in [0, 1], got {self.momentum}")

    @classmethod
    def from_cfg(cls, cfg, batch_size: int | None = None) -> "NormSpec":
        """Build from a `norm` config node; resolves `unbiased: auto` against the batch size."""
        cfg = dict(cfg)
        kind = str(cfg.pop("kind", "ln"))
        unbiased = cfg.pop("unbiased", False)
        if unbiased == "auto":
            unbiased = batch_size is not None and batch_size < UNBIASED_BELOW
        known = {"eps", "momentum", "gain_init"}
        extra = set(cfg) - known
        if extra:
            raise ConfigError(f"unknown key(s) in norm config: {sorted(extra)}")
        return cls(kind=kind, unbiased=bool(unbiased), **{k: float(v) for k, v in cfg.items()})

    def with_(self, **changes) -> "NormSpec":
        return replace(self, **changes)


def as_spec(spec: NormSpec | str | Mapping) -> NormSpec:
    """A NormSpec from a spec, a kind name, or a mapping of its fields (Hydra passes dicts)."""
    if isinstance(spec, NormSpec):
        return spec
    if isinstance(spec, Mapping):
        return NormSpec(**spec)
    return NormSpec(kind=str(spec))


def linear_bias(spec: NormSpec | str) -> bool:
    """Whether the layer before the norm keeps its own bias: only without normalization."""
    return as_spec(spec).kind == "none"


def _affine_shape(x: torch.Tensor) -> tuple[int, ...]:
    # gain/bias broadcast over the channel dim: (C,) for (N, C), (C, 1, 1) for (N, C, H, W)
    return (-1,) + (1,) * (x.dim() - 2)


class LayerNorm(nn.Module):
    """Layer normalization, Eq. 3 (Sec. 3).

    Per training case, mu and sigma over all the summed inputs of the layer:
    mu = 1/H sum_i a_i,  sigma = sqrt(1/H sum_i (a_i - mu)^2 + eps)  (biased variance),
    then a_hat = g * (a - mu) / sigma + b with a per-unit gain g (init 1) and bias b (init 0).
    For a conv layer's (N, C, H, W) input the statistics are over all C*H*W hidden units of the
    case (Eq. 3 applied to the whole layer) and g, b are per channel. Identical in train and eval.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, gain_init: float = 1.0):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.full((num_features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if a.dim() == 2:  # fused kernel for the fully connected case
            return F.layer_norm(a, (self.num_features,), self.weight, self.bias, self.eps)
        a_hat = F.layer_norm(a, a.shape[1:], None, None, self.eps)
        shape = _affine_shape(a)
        return a_hat * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class BatchNorm(nn.Module):
    """Batch normalization, Eq. 2 (Sec. 2).

    Per hidden unit (channel), mu and sigma over the mini-batch (and spatial positions) in
    training; running averages of them at evaluation. `unbiased=True` normalizes with the
    unbiased batch variance, which the paper used at batch size 4 (Sec. 6.6).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        unbiased: bool = False,
        gain_init: float = 1.0,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum, self.unbiased = (
            num_features,
            eps,
            momentum,
            unbiased,
        )
        self.weight = nn.Parameter(torch.full((num_features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(
                a, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        if a.numel() // a.shape[1] < 2:
            raise ConfigError(
                "batch norm needs more than one value per unit in training, got batch size "
                f"{a.shape[0]}: use norm=ln (made for this case) or a larger data.batch_size"
            )
        if not self.unbiased:  # fused kernel; updates the running averages itself
            return F.batch_norm(
                a, self.running_mean, self.running_var, self.weight, self.bias,
                True, self.momentum, self.eps,
            )
        dims = [0] + list(range(2, a.dim()))
        var, mean = torch.var_mean(a, dim=dims, correction=1)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
        shape = _affine_shape(a)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (a - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"unbiased={self.unbiased}"
        )


def make_norm(spec: NormSpec | str, num_features: int, **overrides) -> nn.Module:
    """The one factory: the normalization layer for `num_features` units (or channels).

    `overrides` change single fields of the spec for this layer (e.g. `gain_init=0.1`).
    """
    spec = as_spec(spec).with_(**overrides) if overrides else as_spec(spec)
    if spec.kind == "ln":
        return LayerNorm(num_features, spec.eps, spec.gain_init)
    if spec.kind == "bn":
        return BatchNorm(num_features, spec.eps, spec.momentum, spec.unbiased, spec.gain_init)
    return nn.Identity()
