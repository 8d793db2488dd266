"""Every normalization of the project behind one switch, `norm=ln|bn|none|wn|rms`.

One `NormSpec` (built from the `norm` config node) selects the kind and carries every constant
of it; models never build a norm themselves, they ask this module:

* feed-forward layers (MLP, convnet): `make_norm(spec, num_features)` is the norm applied to the
  summed inputs a = W x of a layer, `linear_bias(spec)` says whether that layer keeps its own
  bias, and `weight_normed(spec, layer)` reparametrizes its weight (weight norm only);
* recurrent cells (nn/rnn.py): `make_time_norm(spec, sizes, t_max, shift)` is "the norm of this
  projection" over time, called as `apply_time_norm(norm, u, t, live, min_live)` for (T, B, F)
  steps t.. or the (B, F) step t; the cells never look at the kind.

The kinds:

* "ln", layer normalization (Ba, Kiros & Hinton 2016, Eq. 3): per case, the mean and
  (biased) variance over the H summed inputs of the layer, a_hat = g (a - mu) / sigma + b (Eq. 5),
  gains 1 and biases 0 (Sec. 6). In a conv layer the statistics are over all C*H*W units of the
  case, gain and bias per channel. In the LSTM: supplementary Eq. 20-22 (one LN over all 4H gate
  units of W_h h, one over those of W_x x, one over c_t); in the GRU Eq. 23-28 (separate LNs over
  the [r; z] and the candidate groups: `GroupLN`).
* "bn", batch normalization (Eq. 2): per unit (channel), the mean and variance over the
  mini-batch in training, running averages at evaluation. Under DDP (torchrun) the mini-batch
  is each process's share of it (`data.batch_size / world size` cases), unless `sync` (the
  `norm.sync=true` switch) sums the statistics over all processes (`_synced_stats`), which
  gives the global batch's mean and variance, as in one process. In recurrent cells: per time step
  statistics after Cooijmans et al. 2017 ("Recurrent Batch Normalization", `SeqBatchNorm`),
  gains `recurrent_gain_init` = 0.1 (their gamma 0.1), optionally over the live cases of a padded
  batch only (`min_live`).
* "none": the plain layers with their own biases (the paper's baseline).
* "wn", weight normalization (Salimans & Kingma 2016): each output unit's weight vector is
  w = g v / ||v|| (`torch.nn.utils.parametrizations.weight_norm`, dim 0: one g per row of a
  linear weight, per output channel of a conv weight). Data-free init: the weights are drawn
  first by the usual init, then g = ||v|| per row, so the function at init is exactly that of
  norm "none" (same random numbers too); no data-dependent init (Salimans & Kingma's Sec. 3 is
  not used). Nothing is normalised at the activations (`make_norm` is the identity) and every
  layer keeps its own bias. Where: on the same layers as BN (MLP: every layer, the logits
  included, Sec. 6.6 "applied to all layers"; convnet: every conv and the hidden fc layer;
  LSTM / GRU cells: W_ih and W_hh of every layer, with the plain biases).
* "rms", RMSNorm (Zhang & Sennrich 2019): LN without re-centering,
  a_hat = g a / sqrt(mean(a^2) + eps) + b, gain 1, bias 0 (their Eq. 4 keeps the bias b
  after the normalization; with b = 0 it is `torch.nn.RMSNorm`), eps 1e-5 as LN; conv: the mean
  over all C*H*W units of the case, gain and bias per channel as LN. In recurrent cells it goes
  wherever LN goes (the LN-LSTM's three norms, the LN-GRU's four, over the same groups).

Mixed precision (`trainer.precision=bf16|16`, torch.autocast): every norm computes its statistics
(and the normalised output) in float32 from a bfloat16 / float16 input and returns the input's
dtype; running averages (BN) stay float32. A float32 or float64 input takes the unchanged path.

Shapes: (N, H) for fully connected layers, (N, C, *spatial) for convolutions, (T, B, F) or
(B, F) for the recurrent norms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from lnrepro.errors import ConfigError

NORM_KINDS = ("ln", "bn", "none", "wn", "rms")

# Sec. 6.6: "for the small batch BN variance uses the unbiased estimator". With
# `unbiased: auto`, batches smaller than this use it; larger ones use the usual biased one.
UNBIASED_BELOW = 32

DEFAULT_T_MAX = 1000  # BN: steps with their own population statistics (longer reuse the last)
MIN_LIVE = 16  # masked BN: fewest live cases whose statistics a training step may use
BN_GAIN_INIT = 0.1  # Cooijmans et al.: gamma 0.1; ~1 saturates tanh, <= 0.01 is unstable
# inputs a norm lifts to float32 (mixed precision): the mean and variance of Eq. 2-3 over H
# summed inputs lose digits in an 8-bit (bf16) or 11-bit (fp16) mantissa
HALF = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class NormSpec:
    """What `norm=ln|bn|none|wn|rms` selects; built from `cfg.norm` by `NormSpec.from_cfg`."""

    kind: str = "ln"
    eps: float = 1e-5  # inside the sqrt, as the authors' code and torch
    momentum: float = 0.1  # BN running-average momentum (eval-time population statistics)
    unbiased: bool = False  # BN: unbiased batch variance in training (Sec. 6.6, batch size 4)
    gain_init: float = 1.0  # g at init; Sec. 6: LN gains 1, biases 0
    recurrent_gain_init: float = BN_GAIN_INIT  # g of recurrent BN (Cooijmans et al.)
    sync: bool = False  # BN under DDP: statistics over every process's cases (the global batch)

    def __post_init__(self):
        if self.kind not in NORM_KINDS:
            raise ConfigError(
                f"unknown norm {self.kind!r}: choose one of {', '.join(NORM_KINDS)} "
                f"(norm={'|'.join(NORM_KINDS)})"
            )
        if not self.eps >= 0:
            raise ConfigError(f"norm.eps must be >= 0, got {self.eps}")
        if not 0.0 <= self.momentum <= 1.0:
            raise ConfigError(f"norm.momentum must be in [0, 1], got {self.momentum}")

    @classmethod
    def from_cfg(cls, cfg, batch_size: int | None = None) -> NormSpec:
        """Build from a `norm` config node; resolves `unbiased: auto` against the batch size."""
        cfg = dict(cfg)
        kind = str(cfg.pop("kind", "ln"))
        unbiased = cfg.pop("unbiased", False)
        if unbiased == "auto":
            unbiased = batch_size is not None and batch_size < UNBIASED_BELOW
        sync = cfg.pop("sync", False)
        if not isinstance(sync, bool):
            raise ConfigError(f"norm.sync must be true or false, got {sync!r}")
        known = {"eps", "momentum", "gain_init", "recurrent_gain_init"}
        extra = set(cfg) - known
        if extra:
            raise ConfigError(f"unknown key(s) in norm config: {sorted(extra)}")
        return cls(
            kind=kind, unbiased=bool(unbiased), sync=sync, **{k: float(v) for k, v in cfg.items()}
        )

    def with_(self, **changes) -> NormSpec:
        return replace(self, **changes)


def as_spec(spec: NormSpec | str | Mapping) -> NormSpec:
    """A NormSpec from a spec, a kind name, or a mapping of its fields (Hydra passes dicts)."""
    if isinstance(spec, NormSpec):
        return spec
    if isinstance(spec, Mapping):
        return NormSpec(**spec)
    return NormSpec(kind=str(spec))


def linear_bias(spec: NormSpec | str) -> bool:
    """Whether the layer before the norm keeps its own bias: where no norm's bias replaces it
    (no normalization, or weight norm, which normalises the weights, not the summed inputs)."""
    return as_spec(spec).kind in ("none", "wn")


def weight_normed(spec: NormSpec | str, module: nn.Module, name: str = "weight") -> nn.Module:
    """`module` with its weight `name` reparametrized as w = g v / ||v|| for norm "wn"
    (Salimans & Kingma 2016; one g per output unit, dim 0), unchanged otherwise. Call it after
    the weight is initialised: data-free init, g = ||v||, so the function is unchanged at init.
    Draws no random numbers."""
    if as_spec(spec).kind == "wn":
        weight_norm(module, name, dim=0)
    return module


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


def make_norm(spec: NormSpec | str, num_features: int, **overrides) -> nn.Module:
    """The one factory: the normalization layer for `num_features` units (or channels) of a
    feed-forward layer (identity for "none" and "wn": see `weight_normed` for the latter).

    `overrides` change single fields of the spec for this layer (e.g. `gain_init=0.1`).
    """
    spec = as_spec(spec).with_(**overrides) if overrides else as_spec(spec)
    if spec.kind == "ln":
        return LayerNorm(num_features, spec.eps, spec.gain_init)
    if spec.kind == "rms":
        return RMSNorm(num_features, spec.eps, spec.gain_init)
    if spec.kind == "bn":
        return BatchNorm(
            num_features, spec.eps, spec.momentum, spec.unbiased, spec.gain_init, spec.sync
        )
    return nn.Identity()


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
    def from_spec(cls, spec: NormSpec, num_features: int, t_max: int, shift: bool):
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
    """Separate per-case norms (LN, or RMSNorm) over consecutive groups of units, e.g. the GRU's
    [r; z] (2H) and n (H) (supplementary Eq. 23-28); the recurrent call of `make_time_norm`."""

    def __init__(self, spec: NormSpec, sizes: tuple[int, ...]):
        super().__init__()
        self.sizes = sizes
        self.groups = nn.ModuleList(make_norm(spec, n) for n in sizes)

    def forward(
        self,
        u: torch.Tensor,
        t: int = 0,
        live: torch.Tensor | None = None,
        min_live: int = MIN_LIVE,
    ) -> torch.Tensor:
        flat = u.reshape(-1, u.shape[-1])
        parts = zip(self.groups, flat.split(self.sizes, -1))
        return torch.cat([norm(part) for norm, part in parts], -1).view(u.shape)


def make_time_norm(
    spec: NormSpec | str, sizes: tuple[int, ...], t_max: int = DEFAULT_T_MAX, shift: bool = True
) -> nn.Module | None:
    """The norm of one recurrent projection of sum(sizes) units, or None where the kind puts
    nothing there ("none"; "wn", which sits on the weights: `weight_normed`).

    LN / RMSNorm: per case, with separate statistics, gain and bias per group of `sizes` units;
    BN: per-step statistics (`SeqBatchNorm`, per unit, so the groups do not matter), gain
    `spec.recurrent_gain_init`, a shift only with `shift` (where no other bias follows).
    Call the result through `apply_time_norm`.
    """
    spec = as_spec(spec)
    if spec.kind == "bn":
        return SeqBatchNorm.from_spec(spec, sum(sizes), t_max, shift)
    if spec.kind in ("ln", "rms"):
        if len(sizes) > 1:
            return GroupLN(spec, sizes)
        step = StepLayerNorm if spec.kind == "ln" else StepRMSNorm
        return step(sizes[0], spec.eps, spec.gain_init)
    return None


def apply_time_norm(
    norm: nn.Module | None,
    u: torch.Tensor,
    t: int = 0,
    live: torch.Tensor | None = None,
    min_live: int = MIN_LIVE,
) -> torch.Tensor:
    """A `make_time_norm` norm applied to (T, B, F) steps t.. or the (B, F) step t (`live`: the
    mask of those steps, for BN statistics over live cases only); None is the identity."""
    return u if norm is None else norm(u, t, live, min_live)
