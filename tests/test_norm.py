"""The norm switch: each fast path against its equation, and Table 1 of the paper."""

import contextlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from lnrepro.errors import ConfigError
from lnrepro.models.cnn import ConvNet
from lnrepro.models.mlp import MLP
from lnrepro.nn.norm import (
    BN,
    BUILTINS,
    LN,
    NORM_KINDS,
    RMS,
    WN,
    BatchNorm,
    LayerNorm,
    NoNorm,
    Norm,
    NormSpec,
    RMSNorm,
    build_norm,
    linear_bias,
    make_norm,
    weight_normed,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

torch.manual_seed(0)


def ln_reference(a, g, b, eps):
    """Eq. 3 written out: per case, over all hidden units (all non-batch dims)."""
    dims = tuple(range(1, a.dim()))
    H = 1
    for d in dims:
        H *= a.shape[d]
    mu = a.sum(dims, keepdim=True) / H
    sigma = torch.sqrt(((a - mu) ** 2).sum(dims, keepdim=True) / H + eps)
    shape = (1, -1) + (1,) * (a.dim() - 2)
    return g.view(shape) * (a - mu) / sigma + b.view(shape)


def bn_reference(a, g, b, eps, unbiased=False):
    """Eq. 2 written out: per unit (channel), over the batch (and spatial positions)."""
    dims = (0,) + tuple(range(2, a.dim()))
    n = a.numel() // a.shape[1]
    mu = a.sum(dims, keepdim=True) / n
    var = ((a - mu) ** 2).sum(dims, keepdim=True) / (n - 1 if unbiased else n)
    shape = (1, -1) + (1,) * (a.dim() - 2)
    return g.view(shape) * (a - mu) / torch.sqrt(var + eps) + b.view(shape)


def _randomize_affine(m):
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_()
    return m


@pytest.mark.parametrize("shape", [(8, 20), (5, 3, 4, 4)])
def test_layer_norm_matches_eq3(shape):
    a = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    ln = _randomize_affine(LayerNorm(shape[1], eps=1e-5).double())
    torch.testing.assert_close(ln(a), ln_reference(a, ln.weight, ln.bias, 1e-5))


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shape", [(6, 20), (4, 3, 5, 5)])
def test_batch_norm_matches_eq2(shape, unbiased):
    a = torch.randn(*shape, dtype=torch.float64) * 2 - 1
    bn = _randomize_affine(BatchNorm(shape[1], eps=1e-5, unbiased=unbiased).double())
    torch.testing.assert_close(bn(a), bn_reference(a, bn.weight, bn.bias, 1e-5, unbiased))
    # running averages take the unbiased variance either way (as torch does)
    dims = (0,) + tuple(range(2, a.dim()))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * a.var(dims, correction=1))
    torch.testing.assert_close(bn.running_mean, 0.1 * a.mean(dims))


def test_batch_norm_eval_uses_running_statistics():
    bn = BatchNorm(4).double()
    for _ in range(50):
        bn(torch.randn(32, 4, dtype=torch.float64) * 3 + 2)
    bn.eval()
    x = torch.randn(1, 4, dtype=torch.float64)
    expect = (x - bn.running_mean) / torch.sqrt(bn.running_var + 1e-5)
    torch.testing.assert_close(bn(x), expect)
    assert abs(bn.running_mean.mean().item() - 2) < 0.5  # it learned the data's statistics


def test_unbiased_variance_differs_at_batch_4():
    a = torch.randn(4, 10, dtype=torch.float64)
    biased, unbiased = BatchNorm(10).double(), BatchNorm(10, unbiased=True).double()
    ratio = biased(a) / unbiased(a)
    torch.testing.assert_close(ratio, torch.full_like(ratio, (4 / 3) ** 0.5), rtol=1e-4, atol=0)


def test_layer_norm_same_in_train_and_eval_and_per_case():
    ln = _randomize_affine(LayerNorm(16))
    x = torch.randn(10, 16)
    y_train = ln.train()(x)
    y_eval = ln.eval()(x)
    torch.testing.assert_close(y_train, y_eval)
    # a case's output does not depend on the other cases of its batch, batch size 1 included
    torch.testing.assert_close(ln(x[3:4]), y_train[3:4])
    other = torch.cat([x[3:4], torch.randn(5, 16) * 100])
    torch.testing.assert_close(ln(other)[0], y_train[3])


def test_batch_norm_depends_on_the_batch():
    bn = BatchNorm(16)
    x = torch.randn(10, 16)
    other = torch.cat([x[:1], torch.randn(5, 16) * 100])
    assert not torch.allclose(bn(x)[0], bn(other)[0], atol=1e-3)


def test_batch_norm_batch_size_one_is_a_clear_error():
    with pytest.raises(ConfigError, match="batch size 1"):
        BatchNorm(8)(torch.randn(1, 8))
    BatchNorm(8).eval()(torch.randn(1, 8))  # evaluation of a single case is fine


def test_factory_and_bias_rule():
    assert isinstance(make_norm("ln", 5), LayerNorm)
    assert isinstance(make_norm("bn", 5), BatchNorm)
    assert isinstance(make_norm("none", 5), torch.nn.Identity)
    assert make_norm("bn", 5, gain_init=0.1).weight.eq(0.1).all()
    ln = make_norm("ln", 5)
    assert ln.weight.eq(1).all() and ln.bias.eq(0).all()  # Sec. 6: gains 1, biases 0
    assert linear_bias("none") and not linear_bias("ln") and not linear_bias("bn")
    with pytest.raises(ConfigError, match="unknown norm 'group'"):
        make_norm("group", 5)


def test_spec_from_config_resolves_unbiased_auto():
    cfg = {"kind": "bn", "eps": 1e-5, "momentum": 0.1, "unbiased": "auto", "gain_init": 1.0}
    assert NormSpec.from_cfg(cfg, batch_size=4).unbiased
    assert not NormSpec.from_cfg(cfg, batch_size=128).unbiased
    with pytest.raises(ConfigError, match="norm ln does not take epsilon"):
        NormSpec.from_cfg({"kind": "ln", "epsilon": 1e-5})
    with pytest.raises(ConfigError, match="momentum"):
        NormSpec(kind="bn", momentum=2.0)


def test_mlp_norm_placement():
    """Sec. 6.6: LN on hidden layers only (linear layers without their own bias), logits plain;
    BN on every layer including the logits; none keeps the biases."""
    ln, bn, none = MLP(norm="ln"), MLP(norm="bn"), MLP(norm="none")
    kinds = lambda m: [type(x).__name__ for x in m.net]
    assert kinds(ln) == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"]
    assert kinds(bn)[-2:] == ["Linear", "BatchNorm"]
    assert kinds(none) == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert ln.net[0].bias is None and ln.net[-1].bias is not None
    assert all(m.bias is not None for m in none.net if isinstance(m, torch.nn.Linear))
    assert sum(p.numel() for p in none.parameters()) == 784 * 1000 + 1000 * 1000 + 1000 * 10 + 2010


# ---- Table 1 (Sec. 5.1): invariance of the normalized summed inputs -------------------------
# For a layer with weights W (H x D) and a batch X (N x D), the summed inputs are A = X W^T; a
# model is invariant to a transformation when norm(A') == norm(A). eps ~ 0 so that the
# invariances are exact up to float64 rounding.

N, D, H = 16, 12, 10


def _normed(kind, W, X):
    if kind == "wn":  # the layer's output X w^T, w = g v / ||v|| with v = W and g held fixed
        layer = torch.nn.Linear(D, H, bias=False).double()
        with torch.no_grad():
            layer.weight.copy_(W)
        weight_normed("wn", layer)
        with torch.no_grad():
            layer.parametrizations.weight.original0.copy_(torch.linspace(0.5, 2.0, H)[:, None])
        return layer(X)
    m = make_norm(NormSpec(kind=kind, eps=1e-14), H).double().train()
    return m(X @ W.T)


def _transforms():
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    gamma, c = r(D), r(D) * 3
    delta_rows = torch.rand(H, 1, generator=g, dtype=torch.float64) * 3 + 0.2
    delta_cases = torch.rand(N, 1, generator=g, dtype=torch.float64) * 3 + 0.2
    return {  # name -> (W, X) -> (W', X')
        "weight matrix re-scaling": lambda W, X: (W * 2.7, X),
        "weight matrix re-centering": lambda W, X: (W + gamma[None, :], X),  # W + 1 gamma^T
        "weight vector re-scaling": lambda W, X: (W * delta_rows, X),
        "dataset re-scaling": lambda W, X: (W, X * 2.7),
        "dataset re-centering": lambda W, X: (W, X + c[None, :]),
        "single training case re-scaling": lambda W, X: (W, X * delta_cases),
    }


TABLE1 = {  # the paper's Table 1; True = invariant
    "bn": {
        "weight matrix re-scaling": True,
        "weight matrix re-centering": False,
        "weight vector re-scaling": True,
        "dataset re-scaling": True,
        "dataset re-centering": True,
        "single training case re-scaling": False,
    },
    "ln": {
        "weight matrix re-scaling": True,
        "weight matrix re-centering": True,
        "weight vector re-scaling": False,
        "dataset re-scaling": True,
        "dataset re-centering": False,
        "single training case re-scaling": True,
    },
    "wn": {
        "weight matrix re-scaling": True,
        "weight matrix re-centering": False,
        "weight vector re-scaling": True,
        "dataset re-scaling": False,
        "dataset re-centering": False,
        "single training case re-scaling": False,
    },
    # RMSNorm (derived, not in the paper): see test_table1_invariances
    "rms": {
        "weight matrix re-scaling": True,
        "weight matrix re-centering": False,
        "weight vector re-scaling": False,
        "dataset re-scaling": True,
        "dataset re-centering": False,
        "single training case re-scaling": True,
    },
}


@pytest.mark.parametrize("kind", ["ln", "bn", "wn", "rms"])
@pytest.mark.parametrize("name", list(TABLE1["ln"]))
@pytest.mark.parametrize("trial", range(5))
def test_table1_invariances(kind, name, trial):
    """Table 1, rows LN, BN, WN (weight norm: w_i = g_i v_i / ||v_i||, the parameters being v
    and g: scaling all of v, or one row v_i, leaves w unchanged; the output X w^T is linear in
    the data, so no change of the data is undone), and the RMSNorm row derived here:

    RMSNorm of a case's summed inputs a = W x (H units) is g a / rms(a) + b, rms(a) =
    sqrt(1/H sum_i a_i^2) (eps -> 0), and rms(delta a) = |delta| rms(a). So:
    W -> delta W and x -> delta x (the whole dataset, or one case) scale a by delta > 0:
    invariant. W -> W + 1 gamma^T adds gamma^T x to every a_i: the mean of a moves and, with
    no re-centering, the output changes: NOT invariant (LN subtracts it: invariant). One row
    W_i -> delta_i W_i changes a_i alone, so the ratios between units change: NOT invariant.
    x -> x + c adds W c, different per unit: NOT invariant. Its row is LN's without
    weight-matrix re-centering."""
    g = torch.Generator().manual_seed(100 + trial)
    W = torch.randn(H, D, generator=g, dtype=torch.float64)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    W2, X2 = _transforms()[name](W, X)
    before, after = _normed(kind, W, X), _normed(kind, W2, X2)
    gap = (before - after).abs().max().item()
    if TABLE1[kind][name]:
        assert gap < 1e-8, f"{kind} should be invariant to {name} (gap {gap})"
    else:
        assert gap > 1e-2, f"{kind} should NOT be invariant to {name} (gap {gap})"


def test_ln_gradient_scales_inversely_with_weight_norm():
    """Sec. 5.2: scaling W by delta leaves LN's output unchanged and divides dL/dW by delta
    (an implicit learning-rate reduction)."""
    X = torch.randn(N, D, dtype=torch.float64)
    target = torch.randn(N, H, dtype=torch.float64)
    grads = []
    for delta in (1.0, 4.0):
        W = (
            torch.randn(H, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            * delta
        ).requires_grad_()
        loss = ((_normed("ln", W, X) - target) ** 2).sum()
        loss.backward()
        grads.append(W.grad)
    torch.testing.assert_close(grads[1] * 4.0, grads[0])


# ---------------------------------------------------------------- defaults and edges
# (each of these catches a mistake that passed the equation tests above: see tests/mutants/)


def test_spec_defaults_are_the_papers():
    """The defaults configs/norm/*.yaml rely on: eps 1e-5 inside the sqrt, BN momentum 0.1,
    the usual biased batch variance unless asked (Sec. 6.6), gains 1 (Sec. 6), recurrent BN
    gains 0.1 (Cooijmans et al.), LN by default."""
    s = NormSpec()
    assert (type(s), s.kind, s.eps, s.gain_init) == (LN, "ln", 1e-5, 1.0)
    assert NormSpec.from_cfg({}) == s == LN()
    b = BN()
    assert (b.eps, b.momentum, b.unbiased, b.gain_init, b.recurrent_gain_init, b.sync) == (
        1e-5,
        0.1,
        False,
        1.0,
        0.1,
        False,
    )
    assert (RMS().eps, RMS().gain_init) == (1e-5, 1.0)


def test_spec_from_config_keeps_every_field():
    cfg = {"kind": "bn", "eps": 1e-3, "momentum": 0.3, "unbiased": True, "gain_init": 0.5}
    assert NormSpec.from_cfg(cfg) == NormSpec("bn", 1e-3, 0.3, True, 0.5)


@pytest.mark.parametrize("batch,unbiased", [(2, True), (31, True), (32, False), (None, False)])
def test_unbiased_auto_switches_below_batch_32(batch, unbiased):
    cfg = {"kind": "bn", "unbiased": "auto"}
    assert NormSpec.from_cfg(cfg, batch_size=batch).unbiased is unbiased


@pytest.mark.parametrize("shape", [(2, 6), (1, 3, 1, 2)])
@pytest.mark.parametrize("unbiased", [False, True])
def test_batch_norm_trains_at_the_smallest_batch(shape, unbiased):
    """Two values per unit are enough: batch 2, or one image with two positions per channel."""
    a = torch.randn(*shape, dtype=torch.float64)
    bn = _randomize_affine(BatchNorm(shape[1], unbiased=unbiased).double())
    torch.testing.assert_close(bn(a), bn_reference(a, bn.weight, bn.bias, 1e-5, unbiased))


@pytest.mark.parametrize("shape", [(3, 5), (2, 5, 3, 3)])
def test_batch_norm_eval_applies_gain_shift_and_eps(shape):
    """Evaluation: running statistics, the learned gain and shift, and the configured eps."""
    bn = _randomize_affine(BatchNorm(5, eps=1e-1).double())
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.01, 0.5)  # small variances: eps 0.1 matters
    bn.eval()
    a = torch.randn(*shape, dtype=torch.float64)
    view = (1, -1) + (1,) * (a.dim() - 2)
    expect = (a - bn.running_mean.view(view)) / torch.sqrt(bn.running_var.view(view) + 1e-1)
    torch.testing.assert_close(bn(a), expect * bn.weight.view(view) + bn.bias.view(view))


def test_spec_accepts_the_edges_and_names_the_choices():
    NormSpec("ln", eps=0.0)  # LN without eps is allowed (a constant input is the user's problem)
    NormSpec("bn", momentum=0.0)
    NormSpec("bn", momentum=1.0)
    with pytest.raises(ConfigError, match=r"choose one of ln, bn, none"):
        NormSpec("gn")
    with pytest.raises(ConfigError, match=r"norm.eps must be >= 0, got -1"):
        NormSpec("ln", eps=-1.0)


def test_factory_passes_every_field_of_the_spec():
    """gain_init (the reader's 1.0 vs 0.1 ablation) and unbiased (Sec. 6.6) reach the layer."""
    assert make_norm(NormSpec("ln", gain_init=0.1), 5).weight.eq(0.1).all()
    a = torch.randn(4, 5, dtype=torch.float64)
    bn = make_norm(NormSpec("bn", unbiased=True), 5).double()
    torch.testing.assert_close(bn(a), bn_reference(a, bn.weight, bn.bias, 1e-5, unbiased=True))


@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 3, 4, 5)])
def test_layer_norm_over_every_non_batch_dim_with_its_eps(shape):
    """Sequence-shaped (N, C, L) and image-shaped inputs: one mean and variance per case over
    all its units (Eq. 3), with the layer's eps; the default eps is 1e-5."""
    a = torch.randn(*shape, dtype=torch.float64) * 0.05
    ln = _randomize_affine(LayerNorm(shape[1], eps=0.5).double())
    torch.testing.assert_close(ln(a), ln_reference(a, ln.weight, ln.bias, 0.5))
    plain = LayerNorm(shape[1]).double()
    torch.testing.assert_close(plain(a), ln_reference(a, plain.weight, plain.bias, 1e-5))


def test_spec_from_config_keeps_every_field_including_recurrent_gain():
    cfg = {
        "kind": "bn",
        "eps": 1e-3,
        "momentum": 0.3,
        "unbiased": True,
        "gain_init": 0.5,
        "recurrent_gain_init": 0.2,
    }
    assert NormSpec.from_cfg(cfg) == NormSpec("bn", 1e-3, 0.3, True, 0.5, 0.2)
    assert BN().recurrent_gain_init == 0.1  # Cooijmans et al.'s gamma 0.1


@pytest.mark.parametrize("kind", NORM_KINDS)
def test_every_norm_config_builds_its_spec(kind):
    """configs/norm/<kind>.yaml names its class with `_target_` and selects <kind> with the
    paper's defaults (a yaml whose constant differs from the code's default would silently
    change runs); the same config without `_target_` (a run saved before it) builds the same."""
    node = OmegaConf.to_container(OmegaConf.load(CONFIGS / "norm" / f"{kind}.yaml"))
    norm = NormSpec.from_cfg(node, batch_size=128)
    assert norm == NormSpec(kind) == BUILTINS[kind]() and norm.kind == kind
    assert node["_target_"] == f"lnrepro.nn.norm.{BUILTINS[kind].__name__}"
    assert NormSpec.from_cfg({k: v for k, v in node.items() if k != "_target_"}, 128) == norm
    stems = {p.stem for p in (CONFIGS / "norm").glob("*.yaml")}
    assert stems == set(NORM_KINDS) | {"own"}


# ---------------------------------------------------------------- RMSNorm and weight norm


def rms_reference(a, g, b, eps):
    """Zhang & Sennrich 2019, Eq. 4: a / sqrt(mean(a^2) + eps) * g + b, per case over every
    non-batch dim; g, b per channel (dim 1)."""
    dims = tuple(range(1, a.dim()))
    shape = (-1,) + (1,) * (a.dim() - 2)
    ms = (a**2).mean(dims, keepdim=True)
    return a / torch.sqrt(ms + eps) * g.view(shape) + b.view(shape)


def test_rms_norm_matches_torch_rmsnorm():
    """Gains random, bias 0: torch.nn.RMSNorm's maths; eps 1e-5 by default (as LN)."""
    a = torch.randn(7, 12, dtype=torch.float64) * 0.01  # eps matters at this scale
    rms = make_norm("rms", 12).double()
    assert isinstance(rms, RMSNorm) and rms.eps == 1e-5
    assert rms.weight.eq(1).all() and rms.bias.eq(0).all()
    with torch.no_grad():
        rms.weight.copy_(torch.rand(12) + 0.5)
    ref = torch.nn.RMSNorm(12, eps=1e-5).double()
    with torch.no_grad():
        ref.weight.copy_(rms.weight)
    torch.testing.assert_close(rms(a), ref(a))
    assert (rms(a) - F.layer_norm(a, (12,), rms.weight, None, 1e-5)).abs().max() > 1e-3


@pytest.mark.parametrize("shape", [(6, 10), (3, 4, 5, 5)])
def test_rms_norm_matches_its_equation_with_bias_and_conv(shape):
    """(N, H) and conv (N, C, H, W): statistics over all units of a case, per-channel g, b."""
    a = torch.randn(*shape, dtype=torch.float64) + 0.7  # a mean, which RMSNorm keeps
    rms = _randomize_affine(RMSNorm(shape[1], eps=0.3).double())
    torch.testing.assert_close(rms(a), rms_reference(a, rms.weight, rms.bias, 0.3))
    assert (rms(a).mean(tuple(range(1, a.dim()))) - rms.bias.mean()).abs().max() > 1e-2


def test_weight_norm_is_g_v_over_norm_v_and_unchanged_at_init():
    """Salimans & Kingma: w = g v / ||v|| per output unit (row); data-free init g = ||v||, so
    the layer computes what it did before; g and v both get gradients."""
    torch.manual_seed(3)
    plain = torch.nn.Linear(6, 4).double()
    layer = weight_normed("wn", torch.nn.Linear(6, 4).double())
    with torch.no_grad():
        layer.parametrizations.weight.original1.copy_(plain.weight)
        layer.parametrizations.weight.original0.copy_(plain.weight.norm(dim=1, keepdim=True))
        layer.bias.copy_(plain.bias)
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x), plain(x))
    g = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)[:, None]
    with torch.no_grad():
        layer.parametrizations.weight.original0.copy_(g)
    v = plain.weight
    torch.testing.assert_close(layer.weight, g * v / torch.sqrt((v**2).sum(1, keepdim=True)))
    torch.testing.assert_close(layer(x), x @ (g * v / v.norm(dim=1, keepdim=True)).T + plain.bias)
    layer(x).sum().backward()
    pw = layer.parametrizations.weight
    assert pw.original0.grad.abs().min() > 0 and pw.original1.grad.abs().max() > 0
    assert not hasattr(weight_normed("ln", torch.nn.Linear(6, 4)), "parametrizations")
    conv = weight_normed("wn", torch.nn.Conv2d(3, 5, 3))
    g_conv = conv.parametrizations.weight.original0
    assert g_conv.shape == (5, 1, 1, 1)  # one g per output channel
    torch.testing.assert_close(g_conv.flatten(), conv.weight.flatten(1).norm(dim=1))


def test_factory_for_wn_and_rms():
    """wn normalises weights, not activations: no norm layer, the layer keeps its bias; rms
    replaces the bias as LN does."""
    assert isinstance(make_norm("wn", 5), torch.nn.Identity)
    assert isinstance(make_norm("rms", 5), RMSNorm)
    assert make_norm(NormSpec("rms", gain_init=0.3, eps=0.2), 5).weight.eq(0.3).all()
    assert make_norm(NormSpec("rms", eps=0.2), 5).eps == 0.2
    assert linear_bias("wn") and not linear_bias("rms")
    plain = torch.nn.Linear(3, 2)
    assert weight_normed("none", plain) is plain and "weight" in dict(plain.named_parameters())


def _same_init_models(build):
    """build(kind) twice from the same seed: (none, wn)."""
    torch.manual_seed(11)
    none = build("none")
    after_none = torch.rand(3)
    torch.manual_seed(11)
    wn = build("wn")
    assert torch.equal(torch.rand(3), after_none), "weight norm drew random numbers"
    return none, wn


@pytest.mark.parametrize(
    "build,shape",
    [
        (lambda k: MLP(20, (16, 8), 5, norm=k), (4, 20)),
        (lambda k: ConvNet(2, 8, (4, 6), 16, norm=k), (3, 2, 8, 8)),
    ],
)
def test_weight_norm_models_compute_the_plain_function_at_init(build, shape):
    """Data-free init: the same random numbers as norm=none, then g = ||v||: the same outputs."""
    none, wn = _same_init_models(build)
    x = torch.randn(*shape)
    torch.testing.assert_close(wn(x), none(x), atol=1e-6, rtol=1e-5)
    n_wn = sum(1 for n, _ in wn.named_parameters() if n.endswith("original0"))
    assert n_wn == sum(
        1 for m in none.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
    ) - (1 if isinstance(none, ConvNet) else 0)  # the convnet's logits are not normalised


def test_mlp_and_convnet_place_wn_and_rms_where_they_belong():
    """MLP: wn on every layer (logits included, as BN), rms where LN goes (not the logits)."""
    kinds = lambda m: [type(x).__name__ for x in m.net]
    wn, rms = MLP(norm="wn"), MLP(norm="rms")
    assert kinds(rms) == ["Linear", "RMSNorm", "ReLU", "Linear", "RMSNorm", "ReLU", "Linear"]
    assert rms.net[0].bias is None and rms.net[-1].bias is not None
    linears = [m for m in wn.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and all(hasattr(m, "parametrizations") for m in linears)
    assert all(m.bias is not None for m in linears)
    cnn = ConvNet(1, 8, norm="rms")
    assert sum(isinstance(m, RMSNorm) for m in cnn.net) == 5


@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_every_norm_trains_in_the_feedforward_models(kind, model):
    """A forward and backward pass; every parameter gets a finite, non-zero gradient."""
    torch.manual_seed(0)
    if model == "mlp":
        m, x = MLP(12, (10, 8), 4, norm=kind), torch.randn(6, 12)
    else:
        m, x = ConvNet(2, 8, (4, 6), 10, norm=kind), torch.randn(6, 2, 8, 8)
    loss = F.cross_entropy(m(x), torch.arange(6) % 4)
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


# ---------------------------------------------------------------- the norm object (Norm)


@pytest.mark.parametrize(
    "node,message",
    [
        ({"kind": "wn", "momentum": 0.5}, r"norm wn does not take momentum \(taken by bn\); its"),
        ({"kind": "ln", "unbiased": True}, r"unbiased \(taken by bn\); its options: eps, gain_i"),
        ({"kind": "none", "eps": 1e-5}, r"norm none does not take eps \(taken by ln, bn, rms\)"),
        ({"kind": "rms", "sync": True, "eps": 1e-5}, r"take sync \(taken by bn\)"),
        ({"kind": "bn", "alpha": 1.0}, r"norm bn does not take alpha \(no norm takes it\)"),
    ],
)
def test_options_a_norm_does_not_take_are_refused(node, message):
    """An option of another norm used to be accepted and ignored (norm=wn +norm.momentum=0.5
    trained plain WN): now one line names it and the norms that take it."""
    with pytest.raises(ConfigError, match=message):
        build_norm(node)


def test_options_are_refused_through_the_entrypoints_config(compose):
    from lnrepro import distributed
    from lnrepro.build import build_norm as build_run_norm

    one = distributed.World(0, 1)
    cfg = compose(["experiment=pi_mnist_cpu", "norm=wn", "+norm.momentum=0.5"])
    with pytest.raises(ConfigError, match=r"norm wn does not take momentum \(taken by bn\)"):
        build_run_norm(cfg, 128, one)
    cfg = compose(["experiment=pi_mnist_cpu", "norm=ln", "+norm.unbiased=true"])
    with pytest.raises(ConfigError, match=r"norm ln does not take unbiased \(taken by bn\)"):
        build_run_norm(cfg, 128, one)
    cfg = compose(["experiment=pi_mnist_cpu", "norm=bn"])
    assert build_run_norm(cfg, 4, one) == BN(unbiased=True)  # unbiased: auto at batch 4
    with pytest.raises(ConfigError, match="norm=bn cannot train with data.batch_size=1"):
        build_run_norm(cfg, 1, one)


def test_a_norm_is_chosen_by_its_class_never_by_its_name():
    """norm.kind only names a norm: it cannot turn LN into BN (that used to switch the norm),
    nor name a class as another built-in; an unknown class is one line."""
    with pytest.raises(ConfigError, match="norm.kind=bn does not name lnrepro.nn.norm.LN"):
        build_norm({"_target_": "lnrepro.nn.norm.LN", "kind": "bn"})
    with pytest.raises(ConfigError, match="norm.kind=pkg.Class does not name"):
        build_norm({"_target_": "lnrepro.nn.norm.LN", "kind": "pkg.Class"})
    with pytest.raises(ConfigError, match="norm._target_=no_such_pkg.Norm: cannot import it"):
        build_norm({"_target_": "no_such_pkg.Norm"})
    with pytest.raises(ConfigError, match="norm._target_=torch.nn.LayerNorm is not a norm"):
        build_norm({"_target_": "torch.nn.LayerNorm"})
    with pytest.raises(ConfigError, match="norm=own needs your norm class"):
        build_norm({"kind": "own"})
    assert type(build_norm({"_target_": "lnrepro.nn.norm.RMS"})) is RMS  # kind from the class


def test_what_each_builtin_declares():
    """The decisions that models, cells and the run used to make by name."""
    declared = {
        k: (c.keeps_bias, c.wraps_weights, c.places_layers, c.fused_lstm, c.batch_statistics)
        for k, c in BUILTINS.items()
    }
    assert declared == {
        "ln": (False, False, True, True, False),
        "bn": (False, False, True, False, True),
        "none": (True, False, False, True, False),  # the plain cell through the fused kernel
        "wn": (True, True, False, True, False),  # no norm layer in the cell: the plain kernel
        "rms": (False, False, True, True, False),  # the kernel without centering
    }
    assert [BUILTINS[k]().layer(3).__class__.__name__ for k in NORM_KINDS] == [
        "LayerNorm",
        "BatchNorm",
        "Identity",
        "Identity",
        "RMSNorm",
    ]


class _Plain(torch.nn.Module):
    """A model that asks its norm for a layer but never wraps a weight (the toy model of
    tests/test_new_experiment.py before): under norm=wn it trained as norm=none."""

    def __init__(self, norm, ask=True):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)
        self.norm = norm.layer(4) if ask else torch.nn.Identity()


def test_a_model_that_ignores_part_of_its_norm_stops_at_build():
    with pytest.raises(ConfigError, match="never passes a layer to norm.wrap_weight: it would"):
        wn = WN()
        wn.check_model(_Plain(wn))
    with pytest.raises(ConfigError, match="norm ln normalises summed inputs, but the model "):
        ln = LN()
        ln.check_model(_Plain(ln, ask=False))
    none = NoNorm()
    none.check_model(_Plain(none, ask=False))
    for kind in NORM_KINDS:  # the models of the repository ask for every part
        for build in (lambda n: MLP(784, (8,), norm=n), lambda n: ConvNet(1, 8, (2, 2), 4, norm=n)):
            norm = NormSpec(kind)
            norm.check_model(build(norm))
            with pytest.raises(ConfigError) if kind != "none" else contextlib.nullcontext():
                norm.check_model(_Plain(norm, ask=False))  # counted anew for each model


def test_batch_guards_are_the_norms():
    with pytest.raises(ConfigError, match="norm=bn cannot train with data.batch_size=1"):
        BN().check_batch(1)
    with pytest.raises(ConfigError, match=r"norm=bn with 1 case per process .*norm.sync=true"):
        BN().check_batch(4, processes=4)
    BN(sync=True).check_batch(4, processes=4)
    BN().check_batch(2)
    for kind in ("ln", "none", "wn", "rms"):
        NormSpec(kind).check_batch(1, processes=1)


class _Gain(Norm):
    """A norm of one's own: y = g x, g per feature (3 lines; conv and steps derived)."""

    def layer(self, num_features):
        return _GainLayer(num_features)


class _GainLayer(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 2.0, n))

    def forward(self, x):
        assert x.dim() == 2  # (N, F): the derived layers hand it rows
        return x * self.weight


def test_the_base_class_derives_conv_and_step_layers_from_the_feature_layer():
    norm = _Gain()
    assert norm.kind == "_gain" and norm.keeps_bias and norm.takes() == ()
    a = torch.randn(2, 3, 4, 5)
    conv = norm.conv_layer(3)
    torch.testing.assert_close(conv(a), a * conv.layer.weight.view(1, 3, 1, 1))
    step = norm.step_layer((2, 3), t_max=7, shift=False)  # two groups, each its own layer
    u = torch.randn(4, 2, 5)
    g = torch.cat([step.groups[0].weight, step.groups[1].weight])
    torch.testing.assert_close(step(u, 0), u * g)
    torch.testing.assert_close(step(u[1], 1), u[1] * g)
    one = norm.step_layer((5,))
    torch.testing.assert_close(one(u), u * one.groups[0].weight)


def test_figures_and_claims_show_the_norms_as_before():
    from lnrepro import claims, runs

    assert [claims.label(k) for k in ("ln", "bn", "none", "wn", "dyt")] == [
        "LN",
        "BN",
        "baseline",
        "wn",
        "dyt",
    ]
    assert [runs.COLORS.get(k) for k in (*NORM_KINDS, "dyt")] == [
        "tab:red",
        "tab:blue",
        "tab:gray",
        "tab:green",
        "tab:orange",
        None,
    ]
    assert sorted(["bn", "dyt", "none", "ln"], key=lambda k: runs.NORM_ORDER.get(k, 9)) == [
        "ln",
        "none",
        "bn",
        "dyt",
    ]
