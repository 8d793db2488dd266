"""Every normalization of the project behind one interface, `Norm`, chosen by `norm._target_`.

A norm is an object built from the `norm` config node (`build_norm`): `configs/norm/<name>.yaml`
names its class with `_target_`, its short name with `kind` (run folders, W&B names, figures and
compare_runs group runs by it) and every constant of it as a key. Models never build a
normalization themselves and never look at its name; they ask the norm object:

* `norm.layer(F)`: the norm of the summed inputs a = W x of a fully connected layer, (N, F);
* `norm.conv_layer(C)`: the same for a conv layer's (N, C, *spatial) map;
* `norm.step_layer(sizes, t_max, shift)`: the norm of one recurrent projection of sum(sizes)
  units, called as `apply_time_norm(layer, u, t, live, min_live)` on (T, B, F) steps t.. or
  the (B, F) step t (with its per-step state where it has one: BN's per-step statistics);
  None where the norm puts nothing there;
* `norm.keeps_bias`: whether the layer before it keeps its own bias (no norm's shift replaces it);
* `norm.wrap_weight(layer)`: the layer with its weight reparametrized (weight norm), or as it is;
* `norm.fused_lstm`: whether the LSTM may run the fused C++ kernel (`lnrepro.nn.fused_lstm`):
  the LN-LSTM where its step layers are LN's, the plain cell where it places none.

The run asks `norm.check_batch(batch_size, processes)` (BN's batch-size guard) before it builds
anything and `norm.check_model(model)` after the model is built: a norm whose parts the model did
not ask for (a weight norm whose `wrap_weight` was never called, a norm never asked for a layer)
stops the run with one line instead of training as another norm. The options a norm takes are
the keyword arguments of its class's `__init__`; any other key under `norm` is refused.

A new norm is a subclass with `layer` (docs/norms.md): the base class derives `conv_layer` (the
feature layer over the C channels of each position) and `step_layer` (over each case and step,
one layer per group of units). The built-ins, each behind `configs/norm/<kind>.yaml`:

* `LN`, "ln", layer normalization (Ba, Kiros & Hinton 2016, Eq. 3): per case, the mean and
  (biased) variance over the H summed inputs of the layer, a_hat = g (a - mu) / sigma + b (Eq. 5),
  gains 1 and biases 0 (Sec. 6). In a conv layer the statistics are over all C*H*W units of the
  case, gain and bias per channel. In the LSTM: supplementary Eq. 20-22 (one LN over all 4H gate
  units of W_h h, one over those of W_x x, one over c_t); in the GRU Eq. 23-28 (separate LNs over
  the [r; z] and the candidate groups: `GroupLN`).
* `BN`, "bn", batch normalization (Eq. 2): per unit (channel), the mean and variance over the
  mini-batch in training, running averages at evaluation. Under DDP (torchrun) the mini-batch
  is each process's share of it (`data.batch_size / world size` cases), unless `sync` (the
  `norm.sync=true` switch) sums the statistics over all processes (`_synced_stats`), which
  gives the global batch's mean and variance, as in one process. In recurrent cells: per time step
  statistics after Cooijmans et al. 2017 ("Recurrent Batch Normalization", `SeqBatchNorm`),
  gains `recurrent_gain_init` = 0.1 (their gamma 0.1), optionally over the live cases of a padded
  batch only (`min_live`).
* `NoNorm`, "none": the plain layers with their own biases (the paper's baseline).
* `WN`, "wn", weight normalization (Salimans & Kingma 2016): each output unit's weight vector is
  w = g v / ||v|| (`torch.nn.utils.parametrizations.weight_norm`, dim 0: one g per row of a
  linear weight, per output channel of a conv weight). Data-free init: the weights are drawn
  first by the usual init, then g = ||v|| per row, so the function at init is exactly that of
  norm "none" (same random numbers too); no data-dependent init (Salimans & Kingma's Sec. 3 is
  not used). Nothing is normalised at the activations (`layer` is the identity) and every
  layer keeps its own bias. Where: on the same layers as BN (MLP: every layer, the logits
  included, Sec. 6.6 "applied to all layers"; convnet: every conv and the hidden fc layer;
  LSTM / GRU cells: W_ih and W_hh of every layer, with the plain biases).
* `RMS`, "rms", RMSNorm (Zhang & Sennrich 2019): LN without re-centering,
  a_hat = g a / sqrt(mean(a^2) + eps) + b, gain 1, bias 0 (their Eq. 4 keeps the bias b
  after the normalization; with b = 0 it is `torch.nn.RMSNorm`), eps 1e-5 as LN; conv: the mean
  over all C*H*W units of the case, gain and bias per channel as LN. In recurrent cells it goes
  wherever LN goes (the LN-LSTM's three norms, the LN-GRU's four, over the same groups).

Before `_target_`, a norm was named by its kind alone (`NormSpec(kind="bn", ...)`, `make_norm`,
`make_time_norm`, `linear_bias`, `weight_normed`): those still work and give the built-ins, and
a config without `_target_` (the runs saved before) builds the built-in of its `kind`.

Mixed precision (`trainer.precision=bf16|16`, torch.autocast): every built-in computes its
statistics (and the normalised output) in float32 from a bfloat16 / float16 input and returns the
input's dtype; running averages (BN) stay float32. A float32 or float64 input takes the unchanged
path.

Shapes: (N, H) for fully connected layers, (N, C, *spatial) for convolutions, (T, B, F) or
(B, F) for the recurrent norms.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections import Counter
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from lnrepro.errors import ConfigError

EPS = 1e-5  # inside the sqrt, as the authors' code and torch
MOMENTUM = 0.1  # BN running-average momentum (eval-time population statistics)
GAIN_INIT = 1.0  # g at init; Sec. 6: LN gains 1, biases 0
# Sec. 6.6: "for the small batch BN variance uses the unbiased estimator". With
# `unbiased: auto`, batches smaller than this use it; larger ones use the usual biased one.
UNBIASED_BELOW = 32

DEFAULT_T_MAX = 1000  # BN: steps with their own population statistics (longer reuse the last)
MIN_LIVE = 16  # masked BN: fewest live cases whose statistics a training step may use
BN_GAIN_INIT = 0.1  # Cooijmans et al.: gamma 0.1; ~1 saturates tanh, <= 0.01 is unstable
# inputs a norm lifts to float32 (mixed precision): the mean and variance of Eq. 2-3 over H
# summed inputs lose digits in an 8-bit (bf16) or 11-bit (fp16) mantissa
HALF = (torch.bfloat16, torch.float16)

# what a model asks of a norm; each call is recorded, so that `check_model` can tell a model
# that never asked for a part of its norm
_ASKED = ("layer", "conv_layer", "step_layer", "wrap_weight")
_LAYERS = ("layer", "conv_layer", "step_layer")


def _recorded(name: str, method):
    @functools.wraps(method)
    def asked(self, *args, **kwargs):
        self.__dict__.setdefault("_asked", Counter())[name] += 1
        return method(self, *args, **kwargs)

    return asked


class Norm:
    """A normalization as the models ask for it (module docstring); subclass it for a new one.

    A subclass defines `layer` and, where the defaults do not fit, `conv_layer`, `step_layer`,
    `wrap_weight` and the class attributes below. Its options are the keyword arguments of its
    `__init__` (a config key under `norm` that is not one of them is refused); calling
    `super().__init__()` is not needed.
    """

    # the short name runs are grouped by; a class that does not set it: its name in lower case
    kind: str = "norm"
    keeps_bias: bool = True  # False: its own shift replaces the bias of the layer before it
    wraps_weights: bool = False  # True: it lives on the weights, the model must call wrap_weight
    places_layers: bool = True  # True: the model must ask it for a layer (layer, conv, step)
    # True: LSTMCell may run the fused C++ LSTM kernel: LN's Eq. 20-22 where its step layers
    # are LN's own, the plain cell (the kernel with its norms off) where it places none
    fused_lstm: bool = False
    batch_statistics: bool = False  # True: statistics over the batch (BN: batch-size guards)
    label: str | None = None  # figures and claims tables: its name there (None: `kind`)
    color: str | None = None  # figures: its colour (None: matplotlib's next)
    order: int = 9  # samplers: which norm's run comes first (lower first)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            cls.kind = cls.__name__.lower()
        for name in _ASKED:
            if name in cls.__dict__:
                setattr(cls, name, _recorded(name, cls.__dict__[name]))

    # ---- what a model asks ------------------------------------------------------------------
    def layer(self, num_features: int) -> nn.Module:
        """The norm of the summed inputs of a fully connected layer of `num_features` units:
        a module taking (N, num_features)."""
        raise NotImplementedError(f"{type(self).__name__} defines no layer(num_features)")

    def conv_layer(self, channels: int) -> nn.Module:
        """The norm of a conv layer's (N, C, *spatial) map. Default: `layer(C)` over the C
        channels of each case and position (as timm's LayerNorm2d)."""
        return PerPosition(self.layer(channels))

    def step_layer(
        self, sizes: tuple[int, ...], t_max: int = DEFAULT_T_MAX, shift: bool = True
    ) -> nn.Module | None:
        """The norm of one recurrent projection of sum(sizes) units (a gate group per size),
        called as `apply_time_norm(layer, u, t, live, min_live)`; None: nothing there.
        Default: one `layer(size)` per group, over each case and step (t, live, min_live
        unused); `t_max` (steps with their own statistics) and `shift` (a shift of its own,
        where no other bias follows) concern norms with per-step state, as BN."""
        return GroupLN(self, tuple(sizes))

    def wrap_weight(self, module: nn.Module, name: str = "weight") -> nn.Module:
        """`module` with its weight `name` reparametrized (weight norm); as it is by default.
        Call it after the weight is initialised."""
        return module

    # ---- what the run asks ------------------------------------------------------------------
    def for_batch(self, batch_size: int | None) -> Norm:
        """Options that depend on the batch size resolved (BN's `unbiased: auto`)."""
        return self

    def check_batch(self, batch_size: int | None, processes: int = 1) -> None:
        """One ConfigError where this norm cannot train with `batch_size` cases split over
        `processes` (DDP); nothing by default."""

    def check_model(self, model: nn.Module) -> None:
        """One ConfigError where `model` did not ask for a part of this norm since the last
        check (it would train as another norm): a weight norm never given a layer to
        `wrap_weight`, a norm never asked for a layer."""
        asked = self.__dict__.pop("_asked", Counter())
        what = type(model).__name__
        if self.wraps_weights and not asked["wrap_weight"]:
            raise ConfigError(
                f"norm {self.kind} reparametrizes the weights of the layers, but the model "
                f"{what} never passes a layer to norm.wrap_weight: it would train as norm=none "
                "(docs/norms.md: what a model asks of a norm)"
            )
        if self.places_layers and not any(asked[k] for k in _LAYERS):
            raise ConfigError(
                f"norm {self.kind} normalises summed inputs, but the model {what} never asks it "
                "for a layer (norm.layer, conv_layer or step_layer): it would train without a "
                "norm (docs/norms.md: what a model asks of a norm)"
            )

    # ---- options ----------------------------------------------------------------------------
    @classmethod
    def takes(cls) -> tuple[str, ...]:
        """The options of this norm: the keyword arguments of its `__init__`."""
        if cls.__init__ is Norm.__init__:
            return ()
        return tuple(
            p.name
            for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )

    def option_values(self) -> dict:
        return {k: getattr(self, k, None) for k in self.takes()}

    def replace(self, **changes) -> Norm:
        """The same norm with some options changed."""
        new = type(self)(**{**self.option_values(), **changes})
        new.kind = self.kind
        return new

    def with_(self, **changes) -> Norm:  # the name of `replace` before `_target_`
        return self.replace(**changes)

    def is_one_of(self, kinds: Iterable[str]) -> bool:
        """Whether this norm's short name is among `kinds`: for a model option that lists norms
        by name (the MLP's `norm_logits`)."""
        return self.kind in tuple(kinds)

    def __eq__(self, other) -> bool:
        return (
            type(other) is type(self)
            and other.kind == self.kind
            and other.option_values() == self.option_values()
        )

    def __hash__(self) -> int:
        return hash((type(self), self.kind))

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.option_values().items())
        return f"{type(self).__name__}({options})" + (
            f" as {self.kind!r}" if self.kind != type(self).kind else ""
        )


for _name in _ASKED:
    setattr(Norm, _name, _recorded(_name, Norm.__dict__[_name]))


class PerPosition(nn.Module):
    """A feature layer (N, C) applied to the C channels of each case and position of an
    (N, C, *spatial) map: `Norm.conv_layer`'s default."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        x = a.movedim(1, -1)
        return self.layer(x.reshape(-1, x.shape[-1])).view(x.shape).movedim(-1, 1)


def _number(name: str, value, low: float | None = None) -> float:
    """A config value as a float, or one ConfigError line naming `norm.<name>`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"norm.{name} must be a number, got {value!r}")
    if low is not None and not value >= low:
        raise ConfigError(f"norm.{name} must be >= {low:g}, got {value}")
    return float(value)


def _switch(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"norm.{name} must be true or false, got {value!r}")
    return value


def _affine_shape(x: torch.Tensor) -> tuple[int, ...]:
    # gain/bias broadcast over the channel dim: (C,) for (N, C), (C, 1, 1) for (N, C, H, W)
    return (-1,) + (1,) * (x.dim() - 2)


class _PerCaseNorm(nn.Module):
    """What LayerNorm and RMSNorm share: statistics per training case over the whole layer, a
    gain g (init `gain_init`) and a bias b (init 0) per unit or channel."""

    def __init__(self, num_features: int, eps: float = 1e-5, gain_init: float = 1.0):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.full((num_features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class LayerNorm(_PerCaseNorm):
    """Layer normalization, Eq. 3 (Sec. 3).

    Per training case, mu and sigma over all the summed inputs of the layer:
    mu = 1/H sum_i a_i,  sigma = sqrt(1/H sum_i (a_i - mu)^2 + eps)  (biased variance),
    then a_hat = g * (a - mu) / sigma + b with a per-unit gain g (init 1) and bias b (init 0).
    For a conv layer's (N, C, H, W) input the statistics are over all C*H*W hidden units of the
    case (Eq. 3 applied to the whole layer) and g, b are per channel. Identical in train and eval.
    """

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if a.dtype in HALF:  # statistics in float32, the result in a's dtype (mixed precision)
            return self.forward(a.float()).to(a.dtype)
        if a.dim() == 2:  # fused kernel for the fully connected case
            return F.layer_norm(a, (self.num_features,), self.weight, self.bias, self.eps)
        a_hat = F.layer_norm(a, a.shape[1:], None, None, self.eps)
        shape = _affine_shape(a)
        return a_hat * self.weight.view(shape) + self.bias.view(shape)


class RMSNorm(_PerCaseNorm):
    """RMSNorm (Zhang & Sennrich 2019, Eq. 4): LN without re-centering.

    Per training case, rms = sqrt(1/H sum_i a_i^2 + eps) over all the summed inputs of the layer,
    then a_hat = g * a / rms + b, gain g (init 1) and bias b (init 0) per unit; with b = 0 the
    maths of `torch.nn.RMSNorm(H, eps)`. Conv (N, C, H, W): the mean over all C*H*W units of the
    case (as our LayerNorm), g and b per channel. Identical in train and eval.
    """

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if a.dtype in HALF:  # statistics in float32, the result in a's dtype (mixed precision)
            return self.forward(a.float()).to(a.dtype)
        if a.dim() == 2:
            return F.rms_norm(a, (self.num_features,), self.weight, self.eps) + self.bias
        a_hat = F.rms_norm(a, a.shape[1:], None, self.eps)
        shape = _affine_shape(a)
        return a_hat * self.weight.view(shape) + self.bias.view(shape)


class BatchNorm(nn.Module):
    """Batch normalization, Eq. 2 (Sec. 2).

    Per hidden unit (channel), mu and sigma over the mini-batch (and spatial positions) in
    training; running averages of them at evaluation. `unbiased=True` normalizes with the
    unbiased batch variance, which the paper used at batch size 4 (Sec. 6.6).

    `sync=True` under DDP with more than one process: the statistics of the global mini-batch
    (every process's cases, `_synced_stats`), differentiably, so that N processes with B/N
    cases each train exactly as one process with B (Ioffe & Szegedy 2015, Alg. 1, over the
    whole mini-batch). Without it, or in one process, each process normalises over its own.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        unbiased: bool = False,
        gain_init: float = 1.0,
        sync: bool = False,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum, self.unbiased = (
            num_features,
            eps,
            momentum,
            unbiased,
        )
        self.sync = sync
        self.weight = nn.Parameter(torch.full((num_features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if a.dtype in HALF:  # statistics and running averages in float32, the result in a's dtype
            return self.forward(a.float()).to(a.dtype)
        if not self.training:
            return F.batch_norm(
                a, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        if a.numel() // a.shape[1] < 2:
            raise ConfigError(
                "batch norm needs more than one value per unit in training, got batch size "
                f"{a.shape[0]}: use norm=ln (made for this case) or a larger data.batch_size"
            )
        dims = [0] + list(range(2, a.dim()))
        if self.sync and _distributed():
            # the global batch's (C,) statistics, over every process's cases
            return self._normalise_with(a, *_mean_var(*_synced_stats(a, dims), a.dtype))
        if not self.unbiased:  # fused kernel; updates the running averages itself
            return F.batch_norm(
                a,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                True,
                self.momentum,
                self.eps,
            )
        var, mean = torch.var_mean(a, dim=dims, correction=1)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
        shape = _affine_shape(a)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (a - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)

    def _normalise_with(self, a, mean, var, n) -> torch.Tensor:
        """Normalise with the given (biased) batch statistics over n cases; the running
        averages move towards them (the unbiased variance, as F.batch_norm's kernel)."""
        unbiased = var * n / (n - 1)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(unbiased, self.momentum)
        shape = _affine_shape(a)
        scale = self.weight * torch.rsqrt((unbiased if self.unbiased else var) + self.eps)
        return (a - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"unbiased={self.unbiased}" + (", sync=True" if self.sync else "")
        )


def _distributed() -> bool:
    """Whether a process group of more than one process is running (torchrun)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _synced_stats(x: torch.Tensor, dims: list[int]):
    """The sum, the sum of squares and the count of x over `dims` (the batch, and the
    positions of a conv map), summed over every process with one differentiable all-reduce
    (`lnrepro.distributed.all_reduce_sum`: its backward all-reduces the gradients, so each
    process's cases get the gradient through the other processes' losses, as in one process).
    Accumulated in float64 for float32 / half inputs, since E[x^2] - E[x]^2 cancels.
    Returns (sum, sum of squares, count), each of the reduced shape, in float64 or x's dtype."""
    from lnrepro.distributed import all_reduce_sum

    acc = x.double() if x.dtype in (torch.float32, torch.float16, torch.bfloat16) else x
    n = acc.new_full(
        (1,), float(x.numel() // math.prod(x.shape[d] for d in range(x.dim()) if d not in dims))
    )
    s, ss = acc.sum(dims), acc.square().sum(dims)
    k = s.numel()
    total = all_reduce_sum(torch.cat([s.reshape(-1), ss.reshape(-1), n]))
    return total[:k].view_as(s), total[k : 2 * k].view_as(s), total[2 * k :]


def _mean_var(s, ss, n, dtype):
    """Mean, biased variance and count from the sums of `_synced_stats`, in `dtype`."""
    mean = s / n
    var = (ss / n - mean.square()).clamp(min=0)
    return mean.to(dtype), var.to(dtype), n.to(dtype)


# ---------------------------------------------------------------- recurrent norms
# Every recurrent norm is called as norm(u, t, live=None, min_live=MIN_LIVE): u is (T, B, F) for
# steps t.. or (B, F) for step t; `live` ((T, B) or (B,) bool) marks the live cases of a padded
# batch; per-case norms ignore t, live and min_live.


class SeqBatchNorm(nn.Module):
    """Batch norm with statistics per time step (Cooijmans et al. 2017, Sec. 3-4).

    Training: each step t is normalised with the mean and variance over the batch of that step
    only (averaging over time "severely degrades performance"); the running averages of step t
    go to row t of `running_mean` / `running_var` (t_max, F). Evaluation: step t uses row
    min(t, t_max - 1), i.e. the last row's statistics are reused beyond t_max. Training steps
    t >= t_max are normalised with their batch statistics but not recorded. The gain (and the
    optional shift) are shared over time.

    `forward(x, t0)`: x is (T, B, F) for steps t0 .. t0+T-1, or (B, F) for the single step t0.
    Normalises with the unbiased batch variance when `unbiased` (Sec. 6.6); the running variance
    is always the unbiased estimate, as in torch.

    `mask` (optional, (T, B) or (B,) bool, True = live case): training statistics over the live
    cases only (`_masked`); evaluation is per case and ignores it. None: the code path above.

    `sync=True` under DDP with more than one process: each step's statistics over every
    process's cases (one differentiable all-reduce per call, i.e. per time step of a recurrence:
    `_synced_stats`); `torch.nn.SyncBatchNorm` has no per-step statistics. Not with `mask`.
    """

    def __init__(
        self,
        num_features: int,
        t_max: int = DEFAULT_T_MAX,
        eps: float = 1e-5,
        momentum: float = 0.1,
        unbiased: bool = False,
        gain_init: float = BN_GAIN_INIT,
        shift: bool = True,
        sync: bool = False,
    ):
        super().__init__()
        if t_max < 1:
            raise ConfigError(f"bn t_max must be >= 1, got {t_max}")
        if not eps > 0:  # a step's batch variance can be 0 (e.g. a zero initial state)
            raise ConfigError(f"recurrent batch norm needs norm.eps > 0, got {eps}")
        self.num_features, self.t_max = num_features, t_max
        self.eps, self.momentum, self.unbiased = eps, momentum, unbiased
        self.sync = sync
        self.weight = nn.Parameter(torch.full((num_features,), float(gain_init)))
        self.bias = nn.Parameter(torch.zeros(num_features)) if shift else None
        self.register_buffer("running_mean", torch.zeros(t_max, num_features))
        self.register_buffer("running_var", torch.ones(t_max, num_features))

    @classmethod
    def from_spec(cls, spec: BN, num_features: int, t_max: int, shift: bool):
        return cls(
            num_features,
            t_max,
            spec.eps,
            spec.momentum,
            spec.unbiased,
            spec.recurrent_gain_init,
            shift,
            spec.sync,
        )

    def forward(
        self,
        x: torch.Tensor,
        t0: int = 0,
        mask: torch.Tensor | None = None,
        min_live: int = MIN_LIVE,
    ) -> torch.Tensor:
        if t0 < 0:
            raise ConfigError(f"time-step offset t0 must be >= 0, got {t0}")
        if x.dtype in HALF:  # per-step statistics and running rows in float32, result in x's dtype
            return self.forward(x.float(), t0, mask, min_live).to(x.dtype)
        if mask is not None and self.training:
            return self._masked(x, t0, mask, min_live)
        batch = x.shape[-2]
        if self.training and batch < 2:
            raise ConfigError(
                "recurrent batch norm needs batch size >= 2 in training (statistics over the "
                f"batch of each time step), got {batch}: use norm=ln (made for this case) "
                "or a larger data.batch_size"
            )
        step = x.dim() == 2
        steps = 1 if step else x.shape[0]
        if self.training and t0 < self.t_max < t0 + steps:  # record the steps up to t_max only
            n = self.t_max - t0
            return torch.cat([self(x[:n], t0), self(x[n:], self.t_max)])
        if self.training and self.sync and _distributed():  # step t's statistics over the
            xs = x.unsqueeze(0) if step else x  # cases of every process: (T, F), count (1,)
            mean, var, n = _mean_var(*_synced_stats(xs, [1]), x.dtype)
            y = self._normalise(xs, mean, var, n.view(1, 1).expand(len(mean), 1), t0)
            return y[0] if step else y
        if self.training and self.unbiased:  # F.batch_norm normalises with the biased variance
            y = self._unbiased(x.unsqueeze(0) if step else x, t0)
            return y[0] if step else y
        # one BN channel per (step, unit): (B, T*F), so the fused kernel does all steps at once
        flat = x if step else x.transpose(0, 1).reshape(batch, -1)
        if self.training and t0 >= self.t_max:
            mean = var = None
        else:
            mean, var = self._rows(t0, steps)
        y = F.batch_norm(
            flat,
            mean,
            var,
            self._tile(self.weight, steps),
            self._tile(self.bias, steps),
            self.training,
            self.momentum,
            self.eps,
        )
        return y if step else y.view(batch, steps, -1).transpose(0, 1)

    def _masked(self, x: torch.Tensor, t0: int, mask: torch.Tensor, min_live: int):
        """Training on a padded batch: step t's mean and (biased, or unbiased with `unbiased`)
        variance over its live cases. A step with fewer than min(min_live, B) live cases uses
        the statistics of the last step that had enough: within this call, or from an earlier
        call of the same sequence (single steps of a recurrence: `_held`); the first step of a
        sequence (t0 = 0) always uses its own. Running row t averages the statistics that step t
        used, so evaluation sees what training did. A single step with every case live takes
        the unmasked path (the same statistics, fused kernel)."""
        if self.sync and _distributed():
            raise ConfigError(
                "norm.sync=true does not support padded batches (masked "
                "recurrent batch norm) yet: use norm.sync=false"
            )
        xs, ms = (x.unsqueeze(0), mask.unsqueeze(0)) if x.dim() == 2 else (x, mask)
        counts = ms.sum(1).tolist()
        if t0 == 0 and counts[0] < 2:
            raise ConfigError(
                "recurrent batch norm needs >= 2 live cases at the first step of "
                "a training batch: use norm=ln or a larger data.batch_size"
            )
        need = min(min_live, xs.shape[1])
        ok = [c >= need or (t0 == 0 and k == 0) for k, c in enumerate(counts)]
        if x.dim() == 2 and ok[0]:
            self._held = (x, None if counts[0] == x.shape[0] else mask)
            if self._held[1] is None:
                return self(x, t0)
        mean, var, n = _live_stats(xs, ms)
        if not all(ok):
            src, last = [], -1
            for k, good in enumerate(ok):
                last = k if good else last
                src.append(last)
            if src[0] < 0:  # no step of this call had enough: the one held from earlier
                if getattr(self, "_held", None) is None:
                    raise ConfigError(
                        "masked recurrent batch norm: no earlier step of this "
                        "sequence had enough live cases (start it at t0 = 0)"
                    )
                hx, hm = self._held
                held = _live_stats(hx.unsqueeze(0), None if hm is None else hm.unsqueeze(0))
                mean, var, n = (torch.cat([h, v]) for h, v in zip(held, (mean, var, n)))
                src = [k + 1 for k in src]
            idx = torch.tensor(src, device=x.device)
            mean, var, n = mean[idx], var[idx], n[idx]
        if any(ok) and x.dim() == 3:
            j = max(k for k, good in enumerate(ok) if good)
            self._held = (xs[j], ms[j])
        return self._normalise(xs, mean, var, n, t0).view_as(x)

    def _normalise(self, xs, mean, var, n, t0: int) -> torch.Tensor:
        """(T, B, F) steps t0.. with the given per-step statistics (T, F), (T, F), (T, 1);
        rows below t_max of the running averages move towards them."""
        rows = min(len(mean), max(0, self.t_max - t0))
        if rows:  # through .data, as F.batch_norm's kernel: its backward saved these buffers,
            # and an in-place op on them would bump their version counter
            with torch.no_grad():
                unbiased = var[:rows] * n[:rows] / (n[:rows] - 1).clamp(min=1)
                self.running_mean.data[t0 : t0 + rows].lerp_(mean[:rows], self.momentum)
                self.running_var.data[t0 : t0 + rows].lerp_(unbiased, self.momentum)
        if self.unbiased:
            var = var * n / (n - 1).clamp(min=1)
        scale = (torch.rsqrt(var + self.eps) * self.weight).unsqueeze(1)
        y = (xs - mean.unsqueeze(1)) * scale
        return y if self.bias is None else y + self.bias

    def _rows(self, t0: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Running statistics of steps t0.., flattened; views (updated in place) within t_max."""
        if t0 + steps <= self.t_max:
            return (
                self.running_mean[t0 : t0 + steps].view(-1),
                self.running_var[t0 : t0 + steps].view(-1),
            )
        rows = torch.arange(t0, t0 + steps, device=self.running_mean.device)
        rows = rows.clamp_(max=self.t_max - 1)  # evaluation only: reuse the last step's statistics
        return self.running_mean[rows].view(-1), self.running_var[rows].view(-1)

    @staticmethod
    def _tile(p: torch.Tensor | None, steps: int) -> torch.Tensor | None:
        return p if p is None or steps == 1 else p.expand(steps, -1).reshape(-1)

    def _unbiased(self, x: torch.Tensor, t0: int) -> torch.Tensor:
        """Training with the unbiased batch variance (Sec. 6.6), x (T, B, F)."""
        var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=1)
        if t0 < self.t_max:
            with torch.no_grad():
                self.running_mean[t0 : t0 + x.shape[0]].lerp_(mean[:, 0], self.momentum)
                self.running_var[t0 : t0 + x.shape[0]].lerp_(var[:, 0], self.momentum)
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, t_max={self.t_max}, eps={self.eps}, "
            f"momentum={self.momentum}, unbiased={self.unbiased}, shift={self.bias is not None}"
            + (", sync=True" if self.sync else "")
        )


def _live_stats(xs: torch.Tensor, ms: torch.Tensor | None):
    """Per-step mean and biased variance over the live cases of xs (T, B, F), mask ms (T, B)
    (None: all live), and the live counts (T, 1)."""
    if ms is None:
        var, mean = torch.var_mean(xs, dim=1, correction=0)
        return mean, var, xs.new_full((xs.shape[0], 1), xs.shape[1])
    m = ms.to(xs.dtype).unsqueeze(-1)
    n = m.sum(1)
    mean = (xs * m).sum(1) / n.clamp(min=1)
    var = ((xs - mean.unsqueeze(1)).square() * m).sum(1) / n.clamp(min=1)
    return mean, var, n


class _PerCase:
    """The recurrent call of a per-case norm (LN, RMSNorm): time flattened into the batch (our
    LayerNorm would read 3-d input as (N, C, L)); the statistics never cross cases or steps."""

    def forward(
        self,
        u: torch.Tensor,
        t: int = 0,
        live: torch.Tensor | None = None,
        min_live: int = MIN_LIVE,
    ) -> torch.Tensor:
        return super().forward(u.reshape(-1, u.shape[-1])).view(u.shape)


class StepLayerNorm(_PerCase, LayerNorm):
    """LN (Eq. 3) of each case and step of a recurrent projection (supplementary Eq. 20-22)."""


class StepRMSNorm(_PerCase, RMSNorm):
    """RMSNorm of each case and step of a recurrent projection (where LN goes)."""


class GroupLN(nn.Module):
    """Separate per-case norm layers (`norm.layer`: LN, RMSNorm, a norm of your own) over
    consecutive groups of units, e.g. the GRU's [r; z] (2H) and n (H) (supplementary Eq. 23-28),
    each case and step apart (time flattened into the batch): `Norm.step_layer`'s default."""

    def __init__(self, spec: Norm | str, sizes: tuple[int, ...]):
        super().__init__()
        self.sizes = tuple(sizes)
        norm = as_norm(spec)
        self.groups = nn.ModuleList(norm.layer(n) for n in self.sizes)

    def forward(
        self,
        u: torch.Tensor,
        t: int = 0,
        live: torch.Tensor | None = None,
        min_live: int = MIN_LIVE,
    ) -> torch.Tensor:
        flat = u.reshape(-1, u.shape[-1])
        if len(self.groups) == 1:
            return self.groups[0](flat).view(u.shape)
        parts = zip(self.groups, flat.split(self.sizes, -1))
        return torch.cat([norm(part) for norm, part in parts], -1).view(u.shape)


# ---------------------------------------------------------------- the built-in norms
class LN(Norm):
    """Layer normalization (Eq. 3): `LayerNorm` over each layer's summed inputs, the whole
    C*H*W layer of a conv map; in the LSTM and GRU at the places of supplementary Eq. 20-28
    (`StepLayerNorm`, `GroupLN`), which the fused C++ LN-LSTM may compute."""

    kind = "ln"
    keeps_bias = False
    fused_lstm = True
    label, color, order = "LN", "tab:red", 0

    def __init__(self, eps: float = EPS, gain_init: float = GAIN_INIT):
        self.eps = _number("eps", eps, 0.0)
        self.gain_init = _number("gain_init", gain_init)

    def layer(self, num_features: int) -> nn.Module:
        return LayerNorm(num_features, self.eps, self.gain_init)

    def conv_layer(self, channels: int) -> nn.Module:
        return self.layer(channels)  # statistics over all C*H*W units of the case (Eq. 3)

    def step_layer(self, sizes, t_max: int = DEFAULT_T_MAX, shift: bool = True):
        if len(sizes) > 1:
            return GroupLN(self, tuple(sizes))
        return StepLayerNorm(sizes[0], self.eps, self.gain_init)


class RMS(LN):
    """RMSNorm (Zhang & Sennrich 2019) wherever LN goes (`RMSNorm`, `StepRMSNorm`)."""

    kind = "rms"
    fused_lstm = True  # the C++ LSTM kernel with its norms' centering off
    label, color, order = None, "tab:orange", 9

    def layer(self, num_features: int) -> nn.Module:
        return RMSNorm(num_features, self.eps, self.gain_init)

    def step_layer(self, sizes, t_max: int = DEFAULT_T_MAX, shift: bool = True):
        if len(sizes) > 1:
            return GroupLN(self, tuple(sizes))
        return StepRMSNorm(sizes[0], self.eps, self.gain_init)


class BN(Norm):
    """Batch normalization (Eq. 2): `BatchNorm` per unit or channel; in recurrent cells per-step
    statistics (`SeqBatchNorm`, Cooijmans et al. 2017) with gains `recurrent_gain_init`."""

    kind = "bn"
    keeps_bias = False
    batch_statistics = True
    label, color, order = "BN", "tab:blue", 2

    def __init__(
        self,
        eps: float = EPS,
        momentum: float = MOMENTUM,
        unbiased: bool | str = False,
        gain_init: float = GAIN_INIT,
        recurrent_gain_init: float = BN_GAIN_INIT,
        sync: bool = False,
    ):
        self.eps = _number("eps", eps, 0.0)
        self.momentum = _number("momentum", momentum, 0.0)
        if self.momentum > 1.0:
            raise ConfigError(f"norm.momentum must be in [0, 1], got {momentum}")
        self.auto = unbiased == "auto"  # resolved against the batch size by `for_batch`
        self.unbiased = False if self.auto else _switch("unbiased", unbiased)
        self.gain_init = _number("gain_init", gain_init)
        self.recurrent_gain_init = _number("recurrent_gain_init", recurrent_gain_init)
        self.sync = _switch("sync", sync)

    def for_batch(self, batch_size: int | None) -> BN:
        if self.auto:  # Sec. 6.6: the unbiased variance for the small batch
            self.unbiased = batch_size is not None and batch_size < UNBIASED_BELOW
        return self

    def check_batch(self, batch_size: int | None, processes: int = 1) -> None:
        if batch_size == 1:
            raise ConfigError(
                "norm=bn cannot train with data.batch_size=1 (the batch variance of one case is "
                "0): use norm=ln, which the paper proposes for exactly this case, or a larger "
                "batch"
            )
        per = batch_size // processes if batch_size is not None else None
        if processes > 1 and not self.sync and per is not None and per < 2:
            raise ConfigError(
                f"norm=bn with {per} case per process (data.batch_size={batch_size} "
                f"over {processes}): set norm.sync=true or a larger batch"
            )

    def layer(self, num_features: int) -> nn.Module:
        return BatchNorm(
            num_features, self.eps, self.momentum, self.unbiased, self.gain_init, self.sync
        )

    def conv_layer(self, channels: int) -> nn.Module:
        return self.layer(channels)  # per channel, over the batch and all positions

    def step_layer(self, sizes, t_max: int = DEFAULT_T_MAX, shift: bool = True):
        # per unit, so the groups do not matter
        return SeqBatchNorm.from_spec(self, sum(sizes), t_max, shift)


class NoNorm(Norm):
    """No normalization: the plain layers with their own biases (the paper's baseline)."""

    kind = "none"
    places_layers = False
    fused_lstm = True  # the plain LSTM cell: the fused kernel with its norms off
    label, color, order = "baseline", "tab:gray", 1

    def layer(self, num_features: int) -> nn.Module:
        return nn.Identity()

    def conv_layer(self, channels: int) -> nn.Module:
        return nn.Identity()

    def step_layer(self, sizes, t_max: int = DEFAULT_T_MAX, shift: bool = True):
        return None


class WN(NoNorm):
    """Weight normalization (Salimans & Kingma 2016): w = g v / ||v|| per output unit (dim 0)
    on the layers the model passes to `wrap_weight`; nothing at the activations, every layer
    keeps its bias."""

    kind = "wn"
    wraps_weights = True
    label, color, order = None, "tab:green", 9

    def wrap_weight(self, module: nn.Module, name: str = "weight") -> nn.Module:
        """Data-free init: call it after the weight is initialised, g = ||v||, so the function
        is unchanged at init. Draws no random numbers."""
        weight_norm(module, name, dim=0)
        return module


BUILTINS: dict[str, type[Norm]] = {c.kind: c for c in (LN, BN, NoNorm, WN, RMS)}
NORM_KINDS = tuple(BUILTINS)  # ("ln", "bn", "none", "wn", "rms")


def display(kind) -> tuple[str, str | None, int]:
    """How figures and tables show the runs of norm `kind`: (label, colour, order); a norm that
    is not built in: its kind, no colour of its own, after the built-ins."""
    cls = BUILTINS.get(str(kind))
    if cls is None:
        return str(kind), None, Norm.order
    return cls.label or cls.kind, cls.color, cls.order


# ---------------------------------------------------------------- from a config
def norm_class(target: str) -> type[Norm]:
    """The Norm subclass that `norm._target_` names (module.Class), or one ConfigError line."""
    module, _, name = str(target).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name) if module else None
    except Exception as e:  # noqa: BLE001  (a user's module: any import error, one line)
        raise ConfigError(
            f"norm._target_={target}: cannot import it ({type(e).__name__}: {e}); put its "
            "folder on PYTHONPATH"
        ) from None
    if cls is None:
        raise ConfigError(f"norm._target_={target}: no such class (module.Class)")
    if not (isinstance(cls, type) and issubclass(cls, Norm)):
        raise ConfigError(
            f"norm._target_={target} is not a norm: subclass lnrepro.nn.norm.Norm (docs/norms.md)"
        )
    return cls


def _takers(key: str, cls: type[Norm]) -> list[str]:
    return [c.kind for c in (*BUILTINS.values(), cls) if key in c.takes() and c is not cls]


def build_norm(node, batch_size: int | None = None) -> Norm:
    """The norm of a `norm` config node (a dict or DictConfig): its class from `_target_` (a
    node without one, as the runs saved before `_target_`, names a built-in by `kind`), its
    options the other keys, `unbiased: auto` resolved against `batch_size`. A key the class does
    not take, an unknown class or kind, a bad value: one ConfigError line."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
    except ImportError:  # pragma: no cover  (a bare torch + numpy machine)
        pass
    node = dict(node or {})
    target = node.pop("_target_", None)
    kind = node.pop("kind", None)
    kind = None if kind is None else str(kind)
    if target is None:
        kind = kind or LN.kind
        if kind == kind_of(None):  # configs/norm/own.yaml without its class
            raise ConfigError(
                "norm=own needs your norm class: +norm._target_=<module>.<Class> "
                "(a subclass of lnrepro.nn.norm.Norm on PYTHONPATH; docs/norms.md)"
            )
        if kind not in BUILTINS:
            raise ConfigError(
                f"unknown norm {kind!r}: choose one of {', '.join(NORM_KINDS)} "
                f"(norm={'|'.join(NORM_KINDS)}), or your own class: norm=own "
                "+norm._target_=<module>.<Class> (docs/norms.md)"
            )
        cls = BUILTINS[kind]
    else:
        cls = norm_class(target)
        builtin = BUILTINS.get(kind) if kind is not None else None
        if kind is not None and kind != cls.kind and (cls in BUILTINS.values() or builtin):
            raise ConfigError(
                f"norm.kind={kind} does not name {target} (kind {cls.kind}): a norm is chosen "
                f"by norm=<name> ({'|'.join(NORM_KINDS)}) or norm._target_; norm.kind only "
                "names it, and not as another built-in norm"
            )
    extra = sorted(set(node) - set(cls.takes()))
    if extra:
        takers = {k: ", ".join(_takers(k, cls)) for k in extra}
        named = ", ".join(
            f"{k} ({'taken by ' + takers[k] if takers[k] else 'no norm takes it'})" for k in extra
        )
        raise ConfigError(
            f"norm {kind or cls.kind} does not take {named}; its options: "
            f"{', '.join(cls.takes()) or 'none'}"
        )
    from lnrepro.checks import check_numbers

    check_numbers(node, cls, "norm")
    try:
        norm = cls(**node)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"norm {kind or cls.kind}: {e}") from None
    if kind is not None:
        norm.kind = kind
    return norm.for_batch(batch_size)


class NormSpec:
    """A built-in norm by its short name, as before `_target_`: `NormSpec("bn", sync=True)` is
    `BN(sync=True)`, `NormSpec()` is `LN()`; `NormSpec.from_cfg(node, batch_size)` is
    `build_norm`. An option the kind does not take is refused unless it has its old default
    (every kind used to carry every field)."""

    def __new__(
        cls,
        kind: str = "ln",
        eps: float = EPS,
        momentum: float = MOMENTUM,
        unbiased: bool = False,
        gain_init: float = GAIN_INIT,
        recurrent_gain_init: float = BN_GAIN_INIT,
        sync: bool = False,
    ) -> Norm:
        given = {
            "eps": (eps, EPS),
            "momentum": (momentum, MOMENTUM),
            "unbiased": (unbiased, False),
            "gain_init": (gain_init, GAIN_INIT),
            "recurrent_gain_init": (recurrent_gain_init, BN_GAIN_INIT),
            "sync": (sync, False),
        }
        target = BUILTINS.get(str(kind))
        takes = target.takes() if target else ()
        options = {k: v for k, (v, old) in given.items() if k in takes or v != old}
        return build_norm({"kind": kind, **options})

    from_cfg = staticmethod(build_norm)


def as_norm(norm: Norm | str | Mapping) -> Norm:
    """A Norm from a Norm, a built-in's short name, or a config mapping."""
    if isinstance(norm, Norm):
        return norm
    if isinstance(norm, Mapping):
        return build_norm(norm)
    return NormSpec(kind=str(norm))


as_spec = as_norm  # its name before `_target_`


# ---------------------------------------------------------------- by name (before `_target_`)
def make_norm(spec: Norm | str, num_features: int, **overrides) -> nn.Module:
    """`norm.layer(num_features)`, with `overrides` of single options for this layer (e.g.
    `gain_init=0.1`)."""
    norm = as_norm(spec)
    return (norm.replace(**overrides) if overrides else norm).layer(num_features)


def linear_bias(spec: Norm | str) -> bool:
    """`norm.keeps_bias`: whether the layer before the norm keeps its own bias."""
    return as_norm(spec).keeps_bias


def weight_normed(spec: Norm | str, module: nn.Module, name: str = "weight") -> nn.Module:
    """`norm.wrap_weight(module, name)`."""
    return as_norm(spec).wrap_weight(module, name)


def make_time_norm(
    spec: Norm | str, sizes: tuple[int, ...], t_max: int = DEFAULT_T_MAX, shift: bool = True
) -> nn.Module | None:
    """`norm.step_layer(sizes, t_max, shift)`."""
    return as_norm(spec).step_layer(tuple(sizes), t_max, shift)


def apply_time_norm(
    norm: nn.Module | None,
    u: torch.Tensor,
    t: int = 0,
    live: torch.Tensor | None = None,
    min_live: int = MIN_LIVE,
) -> torch.Tensor:
    """A `step_layer` norm applied to (T, B, F) steps t.. or the (B, F) step t (`live`: the
    mask of those steps, for BN statistics over live cases only); None is the identity."""
    return u if norm is None else norm(u, t, live, min_live)


# ---------------------------------------------------------------- norm=own
def kind_of(target) -> str:
    """The short name of the class `target` (module.Class) names, for `configs/norm/own.yaml`
    (the resolver `${lnrepro_norm_kind:...}`, registered by `lnrepro`, resolves it before the
    run folder is named): its `kind`, or the class name in lower case where it cannot be
    imported (the run then stops on that in one line); "own" without a target."""
    if not target:
        return "own"
    try:
        return norm_class(str(target)).kind
    except ConfigError:
        return str(target).rpartition(".")[2].lower()
