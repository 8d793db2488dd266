"""Tests of lnrepro.nn.rnn against from-scratch equations and against torch.nn.LSTM / GRU.

Time-first shapes: x (T, B, I). The reference implementations below use plain tensor ops
(no F.layer_norm / F.batch_norm) and read the parameters of the module under test.
"""

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from lnrepro.errors import ConfigError
from lnrepro.models.lm import LSTMLM
from lnrepro.nn.norm import NORM_KINDS, NormSpec, RMSNorm, apply_time_norm, make_time_norm
from lnrepro.nn.rnn import GRU, LSTM, GRUCell, LSTMCell, SeqBatchNorm

T, B, I, H = 5, 4, 3, 4
KINDS = ["none", "ln", "bn", "wn", "rms"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- reference equations


def ref_norm(mod, u, t):
    """LN (Eq. 15-16, eps 1e-5 in the sqrt), RMSNorm or per-step BN of u (B, F) at step t;
    None: u."""
    if mod is None:
        return u
    if isinstance(mod, RMSNorm):  # Zhang & Sennrich Eq. 4
        return u / torch.sqrt((u**2).mean(-1, keepdim=True) + mod.eps) * mod.weight + mod.bias
    if isinstance(mod, SeqBatchNorm):
        if mod.training:
            mu = u.mean(0)
            var = ((u - mu) ** 2).sum(0) / (u.shape[0] - int(mod.unbiased))
        else:
            row = min(t, mod.t_max - 1)
            mu, var = mod.running_mean[row], mod.running_var[row]
        y = (u - mu) / torch.sqrt(var + mod.eps) * mod.weight
        return y if mod.bias is None else y + mod.bias
    mu = u.mean(-1, keepdim=True)
    var = ((u - mu) ** 2).mean(-1, keepdim=True)
    return (u - mu) / torch.sqrt(var + mod.eps) * mod.weight + mod.bias


def ref_lstm(cell, x, h, c, t0=0):
    """Supplementary Eq. 20-22, one step at a time."""
    outs = []
    for t in range(x.shape[0]):
        gates = (
            ref_norm(cell.norm_hh, h @ cell.weight_hh.T, t0 + t)
            + ref_norm(cell.norm_ih, x[t] @ cell.weight_ih.T, t0 + t)
            + cell.bias
        )
        i, f, g, o = gates.split(cell.hidden_size, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(ref_norm(cell.norm_c, c, t0 + t))
        outs.append(h)
    return torch.stack(outs), h, c


def ref_gru(cell, x, h, t0=0):
    """Supplementary Eq. 23-28 with the paper's z: h = (1 - sig(z)) h + sig(z) h~."""
    n = cell.hidden_size

    def norm(mod, v, t):  # LN separately over [r; z] and n; BN is per unit: over all 3H at once
        if mod is None or isinstance(mod, SeqBatchNorm):
            return ref_norm(mod, v, t)
        rz, new = mod.groups
        return torch.cat([ref_norm(rz, v[:, : 2 * n], t), ref_norm(new, v[:, 2 * n :], t)], 1)

    outs = []
    for t in range(x.shape[0]):
        u, a = x[t] @ cell.weight_ih.T, h @ cell.weight_hh.T
        if cell.bias is not None:
            u = u + cell.bias
        u, a = norm(cell.norm_ih, u, t0 + t), norm(cell.norm_hh, a, t0 + t)
        rz = a[:, : 2 * n] + u[:, : 2 * n]
        r, z = torch.sigmoid(rz[:, :n]), torch.sigmoid(rz[:, n:])
        uh = a[:, 2 * n :]  # LN(U h), applied before the product with sig(r)
        if cell.bias_hn is not None:
            uh = uh + cell.bias_hn
        h = (1 - z) * h + z * torch.tanh(u[:, 2 * n :] + r * uh)
        outs.append(h)
    return torch.stack(outs), h


def randomize(module):
    """Move every gain, bias and shift off its init (LN/BN gains and biases, the cells' own
    biases, which start at zero next to a norm), so that every parameter matters: a bias moved
    inside a norm, or a shift with the wrong sign, changes the output."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or "bias" in name or "original0" in name:  # original0: WN's g
                p.add_(0.3 * torch.randn_like(p))
    return module


# ---------------------------------------------------------------- cells vs equations


@pytest.mark.parametrize("kind", KINDS)
def test_lstm_matches_equations(kind):
    m = randomize(LSTM(I, H, norm=kind)).double()
    x = torch.randn(T, B, I).double()
    h0, c0 = torch.randn(B, H).double(), torch.randn(B, H).double()
    out, (h, c) = m(x, (h0[None], c0[None]))
    ref_out, ref_h, ref_c = ref_lstm(m.layers[0], x, h0, c0)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h[0], ref_h)
    torch.testing.assert_close(c[0], ref_c)  # raw c_t is carried, not LN(c_t)


@pytest.mark.parametrize("kind", KINDS)
def test_gru_matches_equations(kind):
    m = randomize(GRU(I, H, norm=kind)).double()
    x, h0 = torch.randn(T, B, I).double(), torch.randn(B, H).double()
    out, h = m(x, h0[None])
    ref_out, ref_h = ref_gru(m.layers[0], x, h0)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(h[0], ref_h)


def test_lstm_ln_parameters_follow_the_paper():
    cell = LSTM(I, H, norm="ln").layers[0]
    assert cell.norm_ih.weight.shape == cell.norm_hh.weight.shape == (4 * H,)  # joint over 4H
    assert cell.norm_c.weight.shape == (H,)
    for norm in (cell.norm_ih, cell.norm_hh, cell.norm_c):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    assert torch.all(cell.bias == 0)  # the extra bias b, kept, zeros
    gru = GRU(I, H, norm="ln").layers[0]
    assert gru.bias is None  # four LNs, no other b
    for side in (gru.norm_ih, gru.norm_hh):
        assert [ln.weight.shape[0] for ln in side.groups] == [2 * H, H]


def test_lstm_bn_parameters_follow_cooijmans():
    cell = LSTM(I, H, norm="bn").layers[0]
    for norm in (cell.norm_ih, cell.norm_hh, cell.norm_c):
        assert torch.allclose(norm.weight, torch.full_like(norm.weight, 0.1))
    assert cell.norm_ih.bias is None and cell.norm_hh.bias is None  # beta_x = beta_h = 0
    assert cell.norm_c.bias is not None


def test_lstm_without_cell_norm_and_draw_cell():
    m = randomize(LSTM(I, H, norm="ln", ln_cell=False)).double()
    assert m.layers[0].norm_c is None
    x = torch.randn(T, B, I).double()
    zero = torch.zeros(B, H).double()
    torch.testing.assert_close(m(x)[0], ref_lstm(m.layers[0], x, zero, zero)[0])

    draw = randomize(LSTMCell(I, H, norm="ln", ln_gates=False)).double()  # Eq. 29-31
    assert draw.norm_ih is None and draw.norm_hh is None and draw.norm_c is not None
    state = (torch.randn(B, H).double(), torch.randn(B, H).double())
    h, c = state
    for t in range(T):
        h, c = draw(x[t], (h, c), t)
    _, ref_h, ref_c = ref_lstm(draw, x, *state)
    torch.testing.assert_close((h, c), (ref_h, ref_c))


@pytest.mark.parametrize(
    "kind,training",
    [("none", True), ("ln", True), ("bn", True), ("bn", False), ("wn", True), ("rms", True)],
)
def test_step_api_equals_scan(kind, training):
    lstm, gru = LSTMCell(I, H, norm=kind).double(), GRUCell(I, H, norm=kind).double()
    x = torch.randn(T, B, I).double()
    if kind == "bn" and not training:
        for cell in (lstm, gru):
            cell.scan(x * 2 + 1)  # non-trivial per-step running statistics
            cell.eval()
    out, (_, c_scan) = lstm.scan(x, t0=2)
    gru_out, _ = gru.scan(x, t0=2)
    state, g = None, None
    for t in range(T):
        state = lstm(x[t], state, t=2 + t)
        g = gru(x[t], g, t=2 + t)
        torch.testing.assert_close(state[0], out[t])
        torch.testing.assert_close(g, gru_out[t])
    torch.testing.assert_close(state[1], c_scan)


# ---------------------------------------------------------------- gradients


def _gradcheck(module, x, state):
    names, params = zip(*module.named_parameters())
    flat_state = state if isinstance(state, tuple) else (state,)

    def f(x, *rest):
        st, ps = rest[: len(flat_state)], rest[len(flat_state) :]
        out, final = functional_call(
            module, dict(zip(names, ps)), (x, st if isinstance(state, tuple) else st[0])
        )
        return (out, *final) if isinstance(final, tuple) else (out, final)

    inputs = (x, *flat_state, *params)
    assert gradcheck(f, tuple(t.detach().requires_grad_() for t in inputs), eps=1e-6, atol=1e-5)


# ln: two layers, over 20 s of CPU on the 2-core machine: `make test` only
@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.slow) if k == "ln" else k for k in KINDS]
)
def test_lstm_gradcheck(kind):
    m = randomize(LSTM(2, 2, num_layers=2 if kind == "ln" else 1, norm=kind)).double()
    L = m.num_layers
    x = torch.randn(3, 3, 2).double()
    _gradcheck(m, x, (torch.randn(L, 3, 2).double(), torch.randn(L, 3, 2).double()))


@pytest.mark.parametrize("kind", KINDS)
def test_gru_gradcheck(kind):
    m = randomize(GRU(2, 2, norm=kind)).double()
    _gradcheck(m, torch.randn(3, 3, 2).double(), torch.randn(1, 3, 2).double())


# ---------------------------------------------------------------- norm "none" == torch


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_none_equals_torch(layers):
    ref = torch.nn.LSTM(I, H, layers)
    m = LSTM(I, H, layers).copy_from_torch(ref)
    x = torch.randn(T, B, I)
    state = (torch.randn(layers, B, H), torch.randn(layers, B, H))
    out, (h, c) = m(x, state)
    ref_out, (ref_h, ref_c) = ref(x, state)
    torch.testing.assert_close((out, h, c), (ref_out, ref_h, ref_c))
    (out.pow(2).sum() + c.sum()).backward()
    (ref_out.pow(2).sum() + ref_c.sum()).backward()
    for k, layer in enumerate(m.layers):
        torch.testing.assert_close(layer.weight_hh.grad, getattr(ref, f"weight_hh_l{k}").grad)
        torch.testing.assert_close(layer.weight_ih.grad, getattr(ref, f"weight_ih_l{k}").grad)
        torch.testing.assert_close(layer.bias.grad, getattr(ref, f"bias_hh_l{k}").grad)


@pytest.mark.parametrize("layers", [1, 2])
def test_gru_none_equals_torch(layers):
    ref = torch.nn.GRU(I, H, layers)
    m = GRU(I, H, layers).copy_from_torch(ref)
    x, h0 = torch.randn(T, B, I), torch.randn(layers, B, H)
    out, h = m(x, h0)
    ref_out, ref_h = ref(x, h0)
    torch.testing.assert_close((out, h), (ref_out, ref_h))
    out.pow(2).sum().backward()
    ref_out.pow(2).sum().backward()
    sign = torch.ones(3 * H, 1)
    sign[H : 2 * H] = -1  # the paper's z is torch's with negated pre-activation
    for k, layer in enumerate(m.layers):
        ref_grad = getattr(ref, f"weight_hh_l{k}").grad
        torch.testing.assert_close(layer.weight_hh.grad, ref_grad * sign)
        torch.testing.assert_close(layer.bias_hn.grad, getattr(ref, f"bias_hh_l{k}").grad[2 * H :])


def test_copy_from_torch_refuses_normalized_layers():
    with pytest.raises(ValueError):
        LSTM(I, H, norm="ln").copy_from_torch(torch.nn.LSTM(I, H))
    with pytest.raises(ValueError):
        GRU(I, H, 2).copy_from_torch(torch.nn.GRU(I, H, 1))


# ---------------------------------------------------------------- LN: per case


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_ln_sequence_alone_equals_inside_batch(cls):
    m = randomize(cls(I, H, 2, norm="ln")).double()
    x = torch.randn(T, B, I).double() * torch.arange(1, B + 1).double().view(1, B, 1)
    torch.testing.assert_close(m(x[:, 2:3])[0], m(x)[0][:, 2:3])


# ---------------------------------------------------------------- recurrent BN


def test_bn_uses_batch_statistics_of_each_step_in_training():
    spec = NormSpec("bn", eps=1e-12)
    m = LSTM(I, H, norm=spec).double()
    x = torch.randn(T, B, I).double()
    y = x.clone()
    y[2] = 5.0 * y[2] + 3.0  # same affine map for the whole batch at one step: W y = 5 W x + const
    # statistics of step 2 absorb it; pooled-over-time statistics would change every step
    torch.testing.assert_close(m(y)[0], m(x)[0])
    bn = SeqBatchNorm(H, eps=1e-12).double()
    u = torch.randn(T, B, H).double()
    v = u.clone()
    v[1] = 0.1 * v[1] - 2.0
    torch.testing.assert_close(bn(v), bn(u))
    torch.testing.assert_close(bn(v[1], 1), bn(u[1], 1))  # the single-step path


@pytest.mark.parametrize("unbiased", [False, True])
def test_seq_bn_running_statistics_per_step(unbiased):
    bn = SeqBatchNorm(H, t_max=8, momentum=1.0, unbiased=unbiased).double()
    steps = torch.arange(T).double().view(T, 1, 1)
    x = torch.randn(T, B, H).double() * (1 + steps) + 10 * steps  # step-dependent data
    y = bn(x, t0=1)
    var, mean = torch.var_mean(x, dim=1, correction=int(unbiased))
    torch.testing.assert_close(y, (x - mean[:, None]) / torch.sqrt(var[:, None] + bn.eps) * 0.1)
    torch.testing.assert_close(bn.running_mean[1 : T + 1], mean)  # momentum 1: last batch
    torch.testing.assert_close(bn.running_var[1 : T + 1], torch.var(x, dim=1))  # always unbiased
    assert torch.all(bn.running_mean[0] == 0) and torch.all(bn.running_mean[T + 1 :] == 0)
    # the per-step path records the same statistics
    bn2 = SeqBatchNorm(H, t_max=8, momentum=1.0, unbiased=unbiased).double()
    for t in range(T):
        torch.testing.assert_close(bn2(x[t], 1 + t), y[t])
    torch.testing.assert_close(
        (bn2.running_mean, bn2.running_var), (bn.running_mean, bn.running_var)
    )


def test_bn_eval_uses_per_step_population_statistics():
    m = LSTM(I, H, norm="bn", t_max=4).double()
    steps = torch.arange(T).double().view(T, 1, 1)
    for _ in range(3):
        m(torch.randn(T, B, I).double() * (1 + steps) + steps)
    cell = m.layers[0]
    for norm in (cell.norm_ih, cell.norm_hh, cell.norm_c):
        assert not torch.allclose(norm.running_mean[0], norm.running_mean[1])
        assert not torch.allclose(norm.running_var[1], norm.running_var[2])
    m.eval()
    x, zero = torch.randn(2 * T, 1, I).double(), torch.zeros(1, H).double()  # batch 1, T > t_max
    out, (h, c) = m(x)
    ref_out, ref_h, ref_c = ref_lstm(cell, x, zero, zero)  # rows min(t, t_max - 1)
    torch.testing.assert_close((out, h[0], c[0]), (ref_out, ref_h, ref_c))
    # beyond t_max the last row is reused, so a later offset changes nothing there
    torch.testing.assert_close(m(x, t0=7)[0], m(x, t0=3)[0])
    assert not torch.allclose(m(x, t0=1)[0], out)


def test_bn_train_longer_than_t_max_records_only_t_max_steps():
    bn = SeqBatchNorm(H, t_max=3, momentum=1.0)
    x = torch.randn(T, B, H) + 5.0
    bn(x)
    torch.testing.assert_close(bn.running_mean, x.mean(1)[:3])
    bn(x[0], 4)  # a single step beyond t_max: normalised, not recorded
    torch.testing.assert_close(bn.running_mean, x.mean(1)[:3])


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_bn_batch_size_one_in_training_raises(cls):
    m = cls(I, H, norm="bn")
    with pytest.raises(ConfigError, match="batch size"):
        m(torch.randn(T, 1, I))
    with pytest.raises(ConfigError, match="batch size"):
        LSTMCell(I, H, norm="bn")(torch.randn(1, I))
    m.eval()
    assert m(torch.randn(T, 1, I))[0].shape == (T, 1, H)


# ---------------------------------------------------------------- state across segments


@pytest.mark.parametrize("kind", ["none", "ln", "bn"])
@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_state_carried_across_segments(cls, kind):
    m = randomize(cls(I, H, 2, norm=kind)).double()
    x = torch.randn(2 * T, B, I).double()
    whole, final = m(x)
    first, state = m(x[:3])
    # training BN normalises each step with its own batch: the step index does not matter
    second, final2 = m(x[3:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    torch.testing.assert_close(final2, final)
    if kind == "bn":  # evaluation: per-step population statistics, the index matters
        m.eval()
        whole, _ = m(x)
        first, state = m(x[:3])
        torch.testing.assert_close(m(x[3:], state, t0=3)[0], whole[3:])
        assert not torch.allclose(m(x[3:], state)[0], whole[3:])  # t0=0 restarts the index


# ---------------------------------------------------------------- stacking, init, errors


def test_dropout_between_layers_only():
    one = LSTM(I, H, 1, norm="ln", dropout=0.9)
    x = torch.randn(T, B, I)
    out = one(x)[0]
    assert torch.all(out != 0)  # no dropout on the last layer's output
    two = LSTM(I, H, 2, norm="ln", dropout=0.5)
    assert not torch.allclose(two(x)[0], two(x)[0])
    two.eval()
    torch.testing.assert_close(two(x)[0], two(x)[0])


def test_init():
    m = LSTM(I, H, norm="none")
    bound = H**-0.5
    for p in m.parameters():
        assert p.abs().max() <= bound
    cell = LSTM(I, H, norm="ln", init="orthogonal").layers[0]
    for block in cell.weight_hh.split(H, 0):
        torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: LSTM(I, H, norm="group"),
        lambda: GRU(I, H, init="xavier"),
        lambda: LSTM(I, H, 2, dropout=1.0),
        lambda: LSTM(I, H, 0),
        lambda: SeqBatchNorm(H, t_max=0),
        lambda: LSTM(I, H, norm=NormSpec("bn", eps=0.0)),
    ],
)
def test_config_errors(build):
    with pytest.raises(ConfigError):
        build()


def test_wrong_input_shape():
    with pytest.raises(ValueError, match="time-first"):
        LSTM(I, H)(torch.randn(B, I))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_cpu(kind):
    for cls in (LSTM, GRU):
        m = randomize(cls(I, H, 2, norm=kind)).double()
        x = torch.randn(T, B, I).double()
        out = m(x)[0]
        out.pow(2).sum().backward()
        grads = [p.grad for p in m.parameters()]
        m.zero_grad(set_to_none=True)
        m.cuda()
        out_gpu = m(x.cuda())[0]
        out_gpu.pow(2).sum().backward()
        torch.testing.assert_close(out_gpu.cpu(), out)
        torch.testing.assert_close([p.grad.cpu() for p in m.parameters()], grads)


# ---------------------------------------------------------------- edges and defaults
# (each of these catches a mistake that passed the equation tests above: see tests/mutants/)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shift", [False, True])
def test_seq_bn_matches_per_step_equation_across_t_max(unbiased, shift):
    """Training on a segment that crosses t_max: every step normalised with its own batch
    statistics, gain and (non-zero) shift applied, output in time order."""
    bn = randomize(SeqBatchNorm(H, t_max=3, unbiased=unbiased, shift=shift)).double()
    steps = torch.arange(T).double().view(T, 1, 1)
    x = torch.randn(T, B, H).double() * (1 + steps) + 3 * steps
    ref = torch.stack([ref_norm(bn, x[t], 1 + t) for t in range(T)])
    torch.testing.assert_close(bn(x, t0=1), ref)


def test_gru_weights_are_initialised_as_torch():
    """Every GRU weight drawn from U(-1/sqrt(H), 1/sqrt(H)), reproducibly from the seed
    (no uninitialised memory), for every norm."""
    for kind in KINDS:
        torch.manual_seed(3)
        a = GRU(I, 64, 2, norm=kind)
        torch.manual_seed(3)
        b = GRU(I, 64, 2, norm=kind)
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
            if "norm" not in name and "original0" not in name:  # WN's g = ||v||
                assert p.abs().max() <= 64**-0.5, name
                assert p.std() > 0.5 * 64**-0.5 / 3**0.5, name  # spread as U(-b, b)


def test_ln_lstm_cell_normalises_its_gates_by_default():
    """`LSTMCell(.., norm="ln")` is the LN-LSTM of Eq. 20-22 (the handwriting model builds its
    cells this way): LN on W_x x makes the output invariant to rescaling W_x (Table 1)."""
    cell = randomize(LSTMCell(I, H, norm=NormSpec("ln", eps=1e-12))).double()
    x, state = torch.randn(B, I).double(), (torch.randn(B, H).double(), torch.randn(B, H).double())
    h, c = cell(x, state)
    with torch.no_grad():
        cell.weight_ih.mul_(7.0)
        cell.weight_hh.mul_(0.2)
    torch.testing.assert_close(cell(x, state), (h, c))


def test_bn_default_t_max_keeps_1000_steps_of_statistics():
    """Cooijmans et al.: population statistics per step up to T_max (1000 by default), so a
    step late in a long sequence uses its own statistics at evaluation, not an earlier step's."""
    m = LSTM(I, H, norm="bn").double()
    steps = torch.arange(150).double().view(150, 1, 1)
    m(torch.randn(150, B, I).double() + 0.05 * steps)
    bn = m.layers[0].norm_ih
    assert not torch.allclose(bn.running_mean[149], bn.running_mean[99])
    m.eval()
    x = torch.randn(1, 2, I).double()
    assert not torch.allclose(m(x, t0=149)[0], m(x, t0=99)[0])
    assert torch.equal(m(x, t0=999)[0], m(x, t0=5000)[0])  # beyond: the last row


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_size_edges(cls):
    """Batch 2 trains with BN (the smallest batch with a variance); hidden size 1 works; zero
    layers or zero units are one clear error."""
    out, _ = cls(I, 1, norm="bn")(torch.randn(T, 2, I))
    assert out.shape == (T, 2, 1)
    for bad in ({"num_layers": 0}, {"hidden_size": 0}, {"input_size": 0}):
        args = {"input_size": I, "hidden_size": H, "num_layers": 1} | bad
        with pytest.raises(ConfigError):
            cls(args["input_size"], args["hidden_size"], args["num_layers"])


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: SeqBatchNorm(H, t_max=0), r"bn t_max must be >= 1, got 0"),
        (lambda: SeqBatchNorm(H, eps=0.0), r"needs norm.eps > 0, got 0.0"),
        (lambda: SeqBatchNorm(H)(torch.randn(T, B, H), t0=-1), r"t0 must be >= 0, got -1"),
        (
            lambda: SeqBatchNorm(H)(torch.randn(T, 1, H)),
            (
                r"batch size >= 2 in training .* or a "
                r"larger data.batch_size"
            ),
        ),
        (lambda: LSTM(0, H), r"input and hidden sizes must be >= 1, got 0, 4"),
        (
            lambda: GRU(I, H, init="xavier"),
            (
                r"unknown rnn init 'xavier': choose one of torch, "
                r"orthogonal"
            ),
        ),
        (lambda: LSTM(I, H, 2, dropout=1.0), r"rnn dropout must be in \[0, 1\), got 1.0"),
        (lambda: LSTM(I, H, 0), r"num_layers must be >= 1, got 0"),
        (lambda: GRU(I, H, 0), r"num_layers must be >= 1, got 0"),
    ],
)
def test_errors_name_the_value_and_the_rule(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_smallest_sizes_and_t_max_work():
    assert LSTM(1, 1)(torch.randn(T, B, 1))[0].shape == (T, B, 1)
    bn = SeqBatchNorm(H, t_max=1)
    bn(torch.randn(T, B, H) + 3.0)
    assert bn.running_mean.shape == (1, H) and bn.running_mean.abs().sum() > 0


def test_seq_bn_defaults_match_the_norm_config():
    """A SeqBatchNorm built directly behaves as one built from `norm=bn`'s defaults (eps 1e-5,
    momentum 0.1, biased batch variance, a shift) and the cells' BN norms get the spec's
    unbiased setting and their documented shifts."""
    bn = SeqBatchNorm(H)
    ref = SeqBatchNorm.from_spec(NormSpec("bn"), H, 1000, shift=True)
    assert (bn.eps, bn.momentum, bn.unbiased, bn.bias is not None) == (
        ref.eps,
        ref.momentum,
        ref.unbiased,
        True,
    )
    assert "shift=True" in repr(bn) and "shift=False" in repr(SeqBatchNorm(H, shift=False))
    cell = LSTMCell(I, H, norm=NormSpec("bn", unbiased=True))
    assert cell.norm_ih.unbiased and cell.norm_ih.bias is None and cell.norm_c.bias is not None
    gru = GRUCell(I, H, norm="bn")
    assert gru.norm_ih.bias is not None and gru.norm_hh.bias is None  # Cooijmans: beta_h = 0


def test_cells_default_to_the_plain_recurrence_at_step_0():
    """Defaults: norm "none" (torch's cell), and t0 = 0 for the per-step BN statistics."""
    assert LSTMCell(I, H).norm_ih is None and GRUCell(I, H).norm_ih is None
    x = torch.randn(T, B, I)
    for cell in (LSTMCell(I, H, norm="bn"), GRUCell(I, H, norm="bn")):
        cell.scan(x * 3 + torch.arange(T).view(T, 1, 1))  # per-step statistics
        cell.eval()
        torch.testing.assert_close(cell.scan(x)[0], cell.scan(x, t0=0)[0])
        torch.testing.assert_close(
            cell(x[0])[0] if isinstance(cell, LSTMCell) else cell(x[0]),
            cell.scan(x[:1], t0=0)[0][0],
        )
        torch.testing.assert_close(cell.input_term(x), cell.input_term(x, 0))
    lstm = LSTMCell(I, H, norm="bn").eval()
    u = torch.randn(T, B, 4 * H)
    torch.testing.assert_close(lstm.finish_input(u), lstm.finish_input(u, 0))


@pytest.mark.parametrize(
    "norm,ref,message",
    [
        ("ln", torch.nn.LSTM(I, H), r"^copy_from_torch: only norm 'none' has torch's parameters$"),
        ("none", torch.nn.LSTM(I, H, bidirectional=True), r"^copy_from_torch needs a "),
        ("none", torch.nn.LSTM(I, H, bias=False), r"^copy_from_torch needs a "),
        ("none", torch.nn.LSTM(I, H, batch_first=True), r"^copy_from_torch needs a "),
        (
            "none",
            torch.nn.GRU(I, H),
            (
                r"^copy_from_torch needs a unidirectional, biased, time-first "
                r"LSTM$"
            ),
        ),
        (
            "none",
            torch.nn.LSTM(I, H, num_layers=2),
            r"^copy_from_torch: sizes or number of layers differ$",
        ),
        (
            "none",
            torch.nn.LSTM(I, H, proj_size=2),
            r"^copy_from_torch: proj_size is not supported$",
        ),
    ],
)
def test_copy_from_torch_refuses_what_it_cannot_copy(norm, ref, message):
    with pytest.raises(ValueError, match=message):
        LSTM(I, H, norm=norm).copy_from_torch(ref)


# ---------------------------------------------------------------- wn and rms in the cells


def test_wn_and_rms_sit_where_documented():
    """rms: RMSNorm at the LN places (LSTM N_h, N_x over 4H, N_c over H; GRU the [r; z] and n
    groups of both projections), gains 1, biases 0, the gate bias zero; wn: no norm on summed
    inputs or c_t, W_ih and W_hh weight-normalised per row, the plain biases (drawn)."""
    lstm = LSTMCell(I, H, norm="rms")
    for norm, n in ((lstm.norm_ih, 4 * H), (lstm.norm_hh, 4 * H), (lstm.norm_c, H)):
        assert isinstance(norm, RMSNorm) and norm.weight.shape == (n,)
        assert norm.weight.eq(1).all() and norm.bias.eq(0).all()
    assert lstm.bias.eq(0).all()
    gru = GRUCell(I, H, norm="rms")
    for norm in (gru.norm_ih, gru.norm_hh):
        assert [type(g).__name__ for g in norm.groups] == ["RMSNorm", "RMSNorm"]
        assert [g.num_features for g in norm.groups] == [2 * H, H]
    assert gru.bias is None and gru.bias_hn is None
    for cell in (
        LSTMCell(I, H, norm="wn"),
        GRUCell(I, H, norm="wn"),
        LSTMCell(I, H, norm="wn", ln_gates=False),
    ):  # DRAW's cell: still on W
        assert cell.norm_ih is None and cell.norm_hh is None
        assert getattr(cell, "norm_c", None) is None
        g = cell.parametrizations.weight_hh.original0
        assert g.shape == (cell.weight_hh.shape[0], 1)  # one g per gate unit
        assert hasattr(cell.parametrizations, "weight_ih")
        assert cell.bias.abs().max() > 0  # drawn as without norm
    assert GRUCell(I, H, norm="wn").bias_hn is not None


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_wn_cells_compute_the_plain_recurrence_at_init(cls):
    """Data-free init: the same random numbers as norm "none" (none drawn after), g = ||v||."""
    torch.manual_seed(5)
    none = cls(I, H, 2, norm="none")
    after = torch.rand(3)
    torch.manual_seed(5)
    wn = cls(I, H, 2, norm="wn")
    assert torch.equal(torch.rand(3), after)
    x = torch.randn(T, B, I)
    torch.testing.assert_close(wn(x)[0], none(x)[0])


def _ref_lstm_from(w_ih, w_hh, bias, x):
    h = c = x.new_zeros(x.shape[1], w_hh.shape[1])
    outs = []
    for t in range(x.shape[0]):
        i, f, g, o = (x[t] @ w_ih.T + h @ w_hh.T + bias).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize("masked", [False, True])
def test_wn_gradient_reaches_g_and_v_through_the_deferred_weight_gradient(masked):
    """The scan computes h W_hh^T with a detached W_hh and forms dL/dW_hh in one GEMM
    (`_DeferredWeightGrad`); with weight norm that gradient must still reach g and v. Against
    plain autograd through w = g v / ||v|| written out by hand."""
    cell = randomize(LSTMCell(I, H, norm="wn")).double()
    x = torch.randn(T, B, I).double()
    target = torch.randn(T, B, H).double()
    mask = torch.ones(T, B, dtype=torch.bool) if masked else None
    out, _ = cell.scan(x, mask=mask)
    ((out - target) ** 2).sum().backward()
    pw = cell.parametrizations
    leaves = {
        name: getattr(pw, name).original0.detach().clone().requires_grad_()
        for name in ("weight_ih", "weight_hh")
    }
    vs = {
        name: getattr(pw, name).original1.detach().clone().requires_grad_()
        for name in ("weight_ih", "weight_hh")
    }
    w = {n: leaves[n] * vs[n] / torch.sqrt((vs[n] ** 2).sum(1, keepdim=True)) for n in vs}
    ref = _ref_lstm_from(w["weight_ih"], w["weight_hh"], cell.bias.detach(), x)
    torch.testing.assert_close(out, ref)
    ((ref - target) ** 2).sum().backward()
    for name in ("weight_ih", "weight_hh"):
        torch.testing.assert_close(getattr(pw, name).original0.grad, leaves[name].grad)
        torch.testing.assert_close(getattr(pw, name).original1.grad, vs[name].grad)
        assert leaves[name].grad.abs().max() > 1e-3


def test_recurrent_bn_gain_is_the_specs():
    """norm.recurrent_gain_init (default 0.1, Cooijmans et al.) sets every per-step BN gain of
    the cells; norm.gain_init does not."""
    for spec, want in (
        (NormSpec("bn"), 0.1),
        (NormSpec("bn", recurrent_gain_init=0.3), 0.3),
        (NormSpec("bn", gain_init=0.7), 0.1),
    ):
        lstm, gru = LSTMCell(I, H, norm=spec), GRUCell(I, H, norm=spec)
        for norm in (lstm.norm_ih, lstm.norm_hh, lstm.norm_c, gru.norm_ih, gru.norm_hh):
            assert norm.weight.eq(want).all()


@pytest.mark.parametrize("kind", NORM_KINDS)
def test_time_norms_share_one_call(kind):
    """make_time_norm(spec, sizes, t_max, shift) -> a norm called the same way for (T, B, F)
    steps t.. and the (B, F) step t, with or without a live mask; per case, a step's output
    equals the sequence's at that step. None (nothing to apply) for none and wn."""
    norm = make_time_norm(kind, (6, 3), t_max=10, shift=True)
    assert (norm is None) == (kind in ("none", "wn"))
    u = torch.randn(T, B, 9).double()
    if norm is not None:
        norm.double()
    seq = apply_time_norm(norm, u, 2)
    live = torch.ones(T, B, dtype=torch.bool)
    torch.testing.assert_close(apply_time_norm(norm, u, 2, live, 2), seq)
    for t in range(T):
        torch.testing.assert_close(apply_time_norm(norm, u[t], 2 + t), seq[t])
    if kind in ("none", "wn"):
        assert seq is u
    else:
        assert (seq - u).abs().max() > 1e-2


@pytest.mark.parametrize("kind", NORM_KINDS)
def test_every_norm_trains_in_a_recurrent_model(kind):
    """Forward and backward of the LSTM language model: every parameter a finite, non-zero
    gradient (the recurrent weights' through the deferred GEMM)."""
    torch.manual_seed(0)
    m = LSTMLM(11, 6, 5, num_layers=2, norm=kind)
    tokens = torch.randint(0, 11, (7, 4))
    out = m(tokens)
    logits = out[0] if isinstance(out, tuple) else out
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), tokens.flatten())
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


# ---------------------------------------------------------------- masked and synced per-step BN
# (the paths of the attentive reader's padded batches and of norm.sync=true under DDP: checked
# against the equations with a non-zero shift and with the running statistics, across t_max)


def _live_reference(bn, x, mask, t0):
    """Per-step BN over the live cases of each step (Cooijmans et al.; their Attentive_reader
    code), written out: the output of the live cases, and the running rows expected after one
    training call from the initial zeros / ones (the unbiased variance, rows below t_max).
    Every step here has a live case: `_borrowing_reference` with min_live 1 borrows nothing."""
    return _borrowing_reference(bn, x, mask, t0, 1)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("t0", [0, 2])
def test_masked_seq_bn_matches_its_equation_with_shift_and_running_rows(unbiased, t0):
    """A padded training batch (the reader's documents): each step over its live cases only,
    gain and non-zero shift applied, rows t0.. of the running averages moved by momentum
    towards the step's mean and unbiased variance up to t_max (t0 = 2: the segment crosses it),
    the rows before t0 untouched."""
    steps, batch, feats = 7, 6, 3
    bn = randomize(SeqBatchNorm(feats, t_max=5, momentum=0.3, unbiased=unbiased)).double()
    lengths = torch.tensor([7, 7, 6, 5, 4, 3])
    mask = torch.arange(steps)[:, None] < lengths[None]
    x = torch.randn(steps, batch, feats).double() * 2 + torch.arange(steps).double()[:, None, None]
    x = torch.where(mask[..., None], x, torch.full((), 1e3).double())  # padding: garbage
    out, mean, var = _live_reference(bn, x, mask, t0)
    y = bn(x, t0, mask, 2)
    torch.testing.assert_close(y[mask], out[mask])
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.running_mean[4].abs().sum() > 0  # the last row, t_max - 1, moved too
    if t0:
        assert bn.running_mean[:t0].eq(0).all() and bn.running_var[:t0].eq(1).all()


def _borrowing_reference(bn, x, mask, t0, min_live):
    """The same with too few live cases: a step with fewer than min(min_live, B) live cases
    (other than a sequence's first, t0 = 0) is normalised with the statistics of the last step
    that had enough, and its running row moves towards those borrowed statistics."""
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    need, out, used = min(min_live, x.shape[1]), torch.zeros_like(x), None
    for k in range(x.shape[0]):
        live = x[k][mask[k]]
        if live.shape[0] >= need or (t0 == 0 and k == 0):
            n = live.shape[0]
            mu = live.sum(0) / n
            used = (mu, ((live - mu) ** 2).sum(0) / n, n)
        mu, var, n = used
        scale = torch.rsqrt((var * n / (n - 1) if bn.unbiased else var) + bn.eps) * bn.weight
        out[k] = torch.where(mask[k][:, None], (x[k] - mu) * scale + bn.bias, out[k])
        if t0 + k < bn.t_max:
            m = bn.momentum
            mean0[t0 + k] = (1 - m) * mean0[t0 + k] + m * mu
            var0[t0 + k] = (1 - m) * var0[t0 + k] + m * var * n / (n - 1)
    return out, mean0, var0


@pytest.mark.parametrize("unbiased", [False, True])
def test_masked_seq_bn_borrows_the_last_step_with_enough_live_cases(unbiased):
    """The reader's longest documents leave few live cases at the last steps: those steps use
    the statistics of the last step with at least min_live (here 4) live cases, in one call over
    the segment and step by step as a recurrence calls it (a step that is fully live takes the
    fused path and is held for the next call); a step with exactly 2 live cases (min_live 2) is
    normalised with its own unbiased variance."""
    steps, batch, feats = 7, 6, 3
    lengths = torch.tensor([7, 7, 5, 4, 3, 2])  # live cases per step: 6 6 5 4 3 2 2
    mask = torch.arange(steps)[:, None] < lengths[None]
    x = torch.randn(steps, batch, feats).double() * 2 + torch.arange(steps).double()[:, None, None]
    x = torch.where(mask[..., None], x, torch.full((), 1e3).double())

    def make():
        return SeqBatchNorm(feats, t_max=6, momentum=0.3, unbiased=unbiased).double()

    whole = randomize(make())
    single = make()
    single.load_state_dict(whole.state_dict())
    out, mean, var = _borrowing_reference(whole, x, mask, 0, 4)
    y = whole(x, 0, mask, 4)
    torch.testing.assert_close(y[mask], out[mask])
    torch.testing.assert_close(whole.running_mean, mean)
    torch.testing.assert_close(whole.running_var, var)
    ys = torch.stack([single(x[t], t, mask[t], 4) for t in range(steps)])
    torch.testing.assert_close(ys[mask], out[mask])
    torch.testing.assert_close(single.running_mean, mean)
    torch.testing.assert_close(single.running_var, var)
    # a later segment (t0 > 0) whose first step is short borrows from the one held before
    whole(x[:3], 0, mask[:3], 4)
    short = mask[3:].clone()
    short[0, 3:] = False  # 3 live cases at step 3
    out, _, _ = _borrowing_reference(
        whole, torch.cat([x[2:3], x[3:]]), torch.cat([mask[2:3], short]), 2, 4
    )
    torch.testing.assert_close(whole(x[3:], 3, short, 4)[short], out[1:][short])
    # a fully live single step (the fused path) is held and lends its statistics to a short one
    lend = randomize(make())
    few = torch.stack([mask[0], mask[4]])  # 6, then 3 live cases
    out, mean, var = _borrowing_reference(lend, x[:2], few, 0, 4)
    ys = torch.stack([lend(x[t], t, few[t], 4) for t in range(2)])
    torch.testing.assert_close(ys[few], out[few])
    torch.testing.assert_close(lend.running_mean, mean)
    torch.testing.assert_close(lend.running_var, var)
    # min_live 2: every step uses its own statistics, the last two over exactly 2 live cases
    own = randomize(make())
    out, mean, var = _live_reference(own, x, mask, 0)
    torch.testing.assert_close(own(x, 0, mask, 2)[mask], out[mask])
    torch.testing.assert_close(own.running_var, var)


def test_masked_seq_bn_without_shift_equals_a_zero_shift():
    """shift=False (no bias: the recurrent term of a cell whose input term has one) on the masked
    path, as on the unmasked one."""
    x = torch.randn(4, 5, 3).double()
    mask = torch.arange(4)[:, None] < torch.tensor([4, 4, 3, 2, 2])[None]
    plain = SeqBatchNorm(3, t_max=5, shift=False).double()
    zero = SeqBatchNorm(3, t_max=5).double()
    torch.testing.assert_close(plain(x, 0, mask, 2)[mask], zero(x, 0, mask, 2)[mask])


def test_masked_seq_bn_refuses_what_it_cannot_normalise():
    bn = SeqBatchNorm(3, t_max=5).double()
    x = torch.randn(4, 3).double()
    with pytest.raises(ConfigError, match=">= 2 live cases at the first step"):
        bn(x.unsqueeze(0), 0, torch.tensor([[True, False, False, False]]), 2)
    with pytest.raises(ConfigError, match="no earlier step"):
        SeqBatchNorm(3, t_max=5).double()(x, 3, torch.tensor([True, False, False, False]), 2)


@pytest.fixture
def one_process_sync(monkeypatch):
    """norm.sync's code path in one process: the all-reduce of the statistics is the identity,
    so synced BN must equal plain BN exactly as one process of a DDP run equals the global
    batch (tests/test_ddp.py checks the real thing with two processes)."""
    import lnrepro.distributed
    from lnrepro.nn import norm as norm_module

    monkeypatch.setattr(norm_module, "_distributed", lambda: True)
    monkeypatch.setattr(lnrepro.distributed, "all_reduce_sum", lambda t: t)


@pytest.mark.parametrize("unbiased", [False, True])
def test_synced_seq_bn_equals_plain_with_shift_and_running_rows(one_process_sync, unbiased):
    """norm.sync=true's per-step path (sums of x and x^2 over the processes, then `_normalise`):
    the output, gain and shift, and the running rows across t_max equal those of the unsynced
    per-step BN and its equation, for a segment and for single steps."""
    steps, batch, feats = 6, 5, 3
    synced = randomize(SeqBatchNorm(feats, t_max=4, momentum=0.3, unbiased=unbiased, sync=True))
    synced.double()
    plain = SeqBatchNorm(feats, t_max=4, momentum=0.3, unbiased=unbiased).double()
    plain.load_state_dict(synced.state_dict())
    x = torch.randn(steps, batch, feats).double() * 3 + torch.arange(steps).double()[:, None, None]
    live = torch.ones(steps, batch, dtype=torch.bool)
    out, mean, var = _live_reference(synced, x, live, 1)
    y = synced(x, 1)
    torch.testing.assert_close(y, plain(x, 1))
    torch.testing.assert_close(y, out)
    torch.testing.assert_close(synced.running_mean, mean)
    torch.testing.assert_close(synced.running_var, var)
    for name in ("running_mean", "running_var"):
        torch.testing.assert_close(getattr(synced, name), getattr(plain, name))
    for t in range(steps):  # single steps, as a recurrence calls it
        torch.testing.assert_close(synced(x[t], t), plain(x[t], t))
    torch.testing.assert_close(synced.running_var, plain.running_var)


def test_synced_seq_bn_refuses_a_padded_batch(one_process_sync):
    bn = SeqBatchNorm(3, t_max=4, sync=True)
    with pytest.raises(ConfigError, match=r"^norm.sync=true does not support padded batches"):
        bn(torch.randn(2, 4, 3), 0, torch.ones(2, 4, dtype=torch.bool), 2)


def test_synced_seq_bn_sums_in_float64_and_keeps_a_small_variance(one_process_sync):
    """float32 steps whose variance (1e-4) is tiny next to their squared mean (900): the synced
    path sums x and x^2 in float64 (in float32 the difference ss/n - mean^2 would lose the
    variance) and returns float32, equal to the unsynced kernel; a variance below 1 is kept."""
    synced = randomize(SeqBatchNorm(3, t_max=4, momentum=0.3, sync=True))
    plain = SeqBatchNorm(3, t_max=4, momentum=0.3)
    plain.load_state_dict(synced.state_dict())
    x = torch.randn(5, 6, 3) * 0.01 + 30
    y = synced(x, 0)
    assert y.dtype == torch.float32 and synced.running_var.dtype == torch.float32
    # x's own float32 rounding (ulp 2e-6 at 30, std 0.01) bounds the agreement to ~1e-3
    torch.testing.assert_close(y, plain(x, 0), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(synced.running_var, plain.running_var, rtol=1e-3, atol=1e-9)
    torch.testing.assert_close(synced.running_mean, plain.running_mean)


def test_synced_feedforward_bn_equals_plain_with_shift_and_running_averages(one_process_sync):
    from lnrepro.nn.norm import BatchNorm

    for unbiased in (False, True):
        synced = randomize(BatchNorm(4, momentum=0.3, unbiased=unbiased, sync=True)).double()
        plain = BatchNorm(4, momentum=0.3, unbiased=unbiased).double()
        plain.load_state_dict(synced.state_dict())
        a = torch.randn(6, 4, 3, 2).double() * 2 + 1
        torch.testing.assert_close(synced(a), plain(a))
        torch.testing.assert_close(synced.running_var, plain.running_var)
        torch.testing.assert_close(synced.running_mean, plain.running_mean)
