"""Mixed precision (trainer.precision=32|bf16|16) and torch.compile (trainer.compile):
the paper trains in float32, so a lower precision must not change what a norm computes beyond
the rounding of its dtype.

Tolerances:
- every norm of a bfloat16 / float16 input (under CPU autocast) returns exactly the float32
  reference (the same norm of the input lifted to float32, outside autocast) rounded to the
  input's dtype: an error of at most half a unit in the last place (bf16: 2^-9 relative), and
  the BN running averages stay float32 and equal the reference's bit for bit;
- LSTM / GRU (2 layers, 7 steps) under bf16 autocast: outputs (in (-1, 1)) within 0.1 of
  float32 (measured up to 0.065, LN/RMS: their outputs are O(1) functions of bf16 products),
  all gradients together within 15 % (relative 2-norm; measured up to 8 %, BN-LSTM);
- a bf16 LN-LSTM language model (tiny PTB, 50 updates) tracks the float32 run's training loss
  within 0.1 nats at every update (measured 0.041) and 2 % in the mean of the last ten
  (measured 0.12 %), the final validation bpc within 0.05 (measured 0.015);
- compiled (inductor) LN-LSTM LM: loss within 1e-5 relative, gradients within 1e-4 of eager.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from test_lm import TINY_LM, write_ptb

from lnrepro.errors import ConfigError
from lnrepro.nn.norm import (
    BatchNorm,
    GroupLN,
    LayerNorm,
    NormSpec,
    RMSNorm,
    SeqBatchNorm,
    StepLayerNorm,
    StepRMSNorm,
)
from lnrepro.nn.rnn import GRU, LSTM
from lnrepro.train import run
from lnrepro.trainer import TrainerConfig

HALF = [torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def tiny_ptb(tmp_path_factory):
    return write_ptb(tmp_path_factory.mktemp("ptbdata"))


def lm(compose, data_dir, *extra):
    return compose(TINY_LM + [f"paths.data_dir={data_dir}"] + list(extra))


# ---- norms: statistics in float32 -------------------------------------------------------


def _seq_masked(m, x):
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    mask[3:, :5] = False  # fewer live cases than min_live at the late steps
    return m(x, 0, mask, min_live=12)


# name -> (module, input shape, call); training mode unless the name says eval
NORMS = {
    "ln": (lambda: LayerNorm(256), (32, 256), None),
    "ln_conv": (lambda: LayerNorm(8), (4, 8, 6, 6), None),
    "rms": (lambda: RMSNorm(256), (32, 256), None),
    "rms_conv": (lambda: RMSNorm(8), (4, 8, 6, 6), None),
    "bn": (lambda: BatchNorm(64), (32, 64), None),
    "bn_unbiased": (lambda: BatchNorm(64, unbiased=True), (4, 64), None),
    "bn_conv": (lambda: BatchNorm(8), (4, 8, 6, 6), None),
    "bn_eval": (lambda: BatchNorm(64).eval(), (32, 64), None),
    "seq_bn": (lambda: SeqBatchNorm(64, t_max=4), (6, 16, 64), None),  # steps beyond t_max too
    "seq_bn_step": (lambda: SeqBatchNorm(64), (16, 64), lambda m, x: m(x, 2)),
    "seq_bn_unbiased": (lambda: SeqBatchNorm(64, unbiased=True), (5, 4, 64), None),
    "seq_bn_masked": (lambda: SeqBatchNorm(64), (6, 16, 64), _seq_masked),
    "seq_bn_eval": (lambda: SeqBatchNorm(64, t_max=4).eval(), (6, 16, 64), None),
    "group_ln": (lambda: GroupLN(NormSpec("ln"), (128, 64)), (5, 8, 192), None),
    "group_rms": (lambda: GroupLN(NormSpec("rms"), (128, 64)), (5, 8, 192), None),
    "step_ln": (lambda: StepLayerNorm(256), (5, 8, 256), None),
    "step_rms": (lambda: StepRMSNorm(256), (8, 256), None),
}


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", list(NORMS))
def test_norm_statistics_are_float32(name, dtype):
    """Under autocast, a half-precision input is normalised exactly as its float32 copy (then
    rounded once), not with statistics in 8 (or 11) mantissa bits; BN running averages too."""
    make, shape, call = NORMS[name]
    call = call or (lambda m, x: m(x))
    torch.manual_seed(0)
    m = make()
    with torch.no_grad():  # gains and biases away from 1 and 0; BN: running stats not trivial
        for p in m.parameters():
            p.uniform_(0.5, 1.5)
        for b in m.buffers():
            b.uniform_(0.5, 1.5)
    ref_m = copy.deepcopy(m)
    # a large common offset: the variance of Eq. 2-3 is small against the mean square, where
    # half-precision statistics lose most digits
    x = (torch.randn(shape) * 0.5 + 20.0).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        got = call(m, x)
    ref = call(ref_m, x.float())
    assert got.dtype == dtype and ref.dtype == torch.float32
    assert torch.equal(got, ref.to(dtype)), (got.float() - ref).abs().max()
    for (k, b), b_ref in zip(m.named_buffers(), ref_m.buffers()):
        assert b.dtype == torch.float32 and torch.equal(b, b_ref), k


@pytest.mark.parametrize("norm", ["ln", "bn", "rms", "wn", "none"])
@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_recurrences_under_bf16_autocast(cls, norm):
    """Forward and backward run under CPU bf16 autocast (the GRU's lerp and the BN running
    averages once mixed dtypes), track float32, and leave float32 gradients."""
    torch.manual_seed(0)
    m = cls(8, 16, 2, norm=norm)
    x = torch.randn(7, 4, 8)
    ref = m(x)[0]
    ref.sum().backward()
    ref_grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)[0]
    out.float().sum().backward()
    assert (out.float() - ref).abs().max() < 0.1
    assert all(p.grad.dtype == torch.float32 for p in m.parameters())
    got = torch.cat([p.grad.flatten() for p in m.parameters()])
    want = torch.cat([g.flatten() for g in ref_grads])
    assert (got - want).norm() < 0.15 * want.norm()


# ---- the trainer -------------------------------------------------------------------------


def test_precision_and_compile_config():
    assert TrainerConfig().precision == "32"
    assert TrainerConfig(precision=16).precision == "16"
    assert TrainerConfig(precision="bf16").precision == "bf16"
    for bad in ("fp8", 64, True, "bfloat16"):
        with pytest.raises(ConfigError, match="trainer.precision must be 32|bf16|16"):
            TrainerConfig(precision=bad)
    with pytest.raises(ConfigError, match="trainer.compile must be true or false"):
        TrainerConfig(compile="yes")
    with pytest.raises(ConfigError, match="trainer.compile_mode must be null or one of"):
        TrainerConfig(compile=True, compile_mode="fast")


def batch_losses(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["batch/loss"] for r in rows if "batch/loss" in r]


@pytest.mark.slow  # a whole training run (> 1 s)
def test_bf16_run_tracks_float32(compose, tiny_ptb, tmp_path):
    """50 updates of the LN-LSTM char LM in bf16 (CPU autocast) and in float32: the training
    loss (logged every update) agrees within 0.1 nats per step and 2 % over the last ten, and
    the runs do differ (autocast was on). summary.json records the precision."""
    args = ["norm=ln", "trainer.max_steps=50", "trainer.log_every=1", "trainer.eval_at_start=false"]
    s32 = run(lm(compose, tiny_ptb, *args), tmp_path / "fp32")
    s16 = run(lm(compose, tiny_ptb, *args, "trainer.precision=bf16"), tmp_path / "bf16")
    a, b = batch_losses(tmp_path / "fp32"), batch_losses(tmp_path / "bf16")
    assert len(a) == len(b) == 50
    assert a != b  # bf16 did run
    assert max(abs(x - y) for x, y in zip(a, b)) < 0.1
    assert abs(sum(a[-10:]) - sum(b[-10:])) < 0.02 * sum(a[-10:])
    assert a[-1] < 0.8 * a[0] and b[-1] < 0.8 * b[0]  # both learn
    assert s32["precision"] == "32" and s16["precision"] == "bf16" and s16["compile"] is False
    saved = json.loads((tmp_path / "bf16" / "summary.json").read_text())
    assert saved["precision"] == "bf16"
    assert abs(s16["final"]["val/bpc"] - s32["final"]["val/bpc"]) < 0.05  # bf16 evaluation


@pytest.mark.slow  # a whole training run (> 1 s)
def test_fp16_grad_scaler_resumes_exactly(compose, tiny_ptb, tmp_path):
    """precision 16 (CPU autocast, loss scaling, gradient clipping after unscaling): the scaler's
    state is in the checkpoint, and a run stopped and resumed equals the uninterrupted one, the
    scaler's state included (its growth tracker counts every successful update)."""
    args = [
        "norm=bn",
        "trainer.precision=16",
        "trainer.ckpt_every=10",
        "trainer.log_every=1",
        "trainer.grad_clip=1.0",
    ]
    run(lm(compose, tiny_ptb, *args, "trainer.max_steps=40"), tmp_path / "a")
    stopped = tmp_path / "b"
    run(lm(compose, tiny_ptb, *args, "trainer.max_steps=20"), stopped)
    mid = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)["scaler"]
    assert mid["scale"] > 1 and mid["_growth_tracker"] > 0
    run(lm(compose, tiny_ptb, *args, "trainer.max_steps=40", "resume=true"), stopped)
    want = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    got = torch.load(stopped / "checkpoints" / "last.pt", weights_only=True)
    assert got["scaler"] == want["scaler"] and want["scaler"]["_growth_tracker"] > 20
    assert all(
        torch.equal(got["model"][k], want["model"][k])
        for k in want["model"]
        if isinstance(want["model"][k], torch.Tensor)
    )
    assert batch_losses(stopped) == batch_losses(tmp_path / "a")


@pytest.mark.slow  # a whole training run (> 1 s)
def test_checkpoint_from_before_precision_resumes(compose, tiny_ptb, tmp_path):
    """A checkpoint without the scaler state and a config without trainer.precision / compile
    (written before them) resumes at precision 32, exactly as the uninterrupted run."""
    args = ["norm=ln", "trainer.ckpt_every=10"]
    run(lm(compose, tiny_ptb, *args, "trainer.max_steps=30"), tmp_path / "a")
    stopped = tmp_path / "b"
    run(lm(compose, tiny_ptb, *args, "trainer.max_steps=20"), stopped)
    path = stopped / "checkpoints" / "last.pt"
    ckpt = torch.load(path, weights_only=False)
    assert ckpt.pop("scaler") == {}  # a disabled scaler's state
    for k in ("precision", "compile", "compile_mode"):
        del ckpt["config"]["trainer"][k]
    torch.save(ckpt, path)
    run(lm(compose, tiny_ptb, *args, "trainer.max_steps=30", "resume=true"), stopped)
    assert batch_losses(stopped) == batch_losses(tmp_path / "a")


class FakeCompiled(torch.nn.Module):
    """What torch.compile returns, without the minutes of compiling: a module holding the model
    as `_orig_mod` (so its state_dict has that prefix), counting its calls."""

    def __init__(self, model, mode=None):
        super().__init__()
        self._orig_mod, self.mode, self.calls = model, mode, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self._orig_mod(*args, **kwargs)


@pytest.mark.slow  # a whole training run (> 1 s)
def test_compiled_run_saves_the_uncompiled_state_dict(compose, tiny_ptb, tmp_path, monkeypatch):
    """trainer.compile=true trains and evaluates through torch.compile's module (here a stand-in:
    `test_compiled_lstm_lm_matches_eager` compiles for real) with trainer.compile_mode; the
    checkpoint holds the uncompiled model (no `_orig_mod.` prefix); resume may switch compile
    off; summary.json records it."""
    made = []
    monkeypatch.setattr(
        torch, "compile", lambda m, mode=None: made.append(FakeCompiled(m, mode)) or made[-1]
    )
    args = ["norm=ln", "trainer.max_steps=10", "trainer.ckpt_every=5"]
    run(lm(compose, tiny_ptb, *args), tmp_path / "eager")
    s = run(
        lm(compose, tiny_ptb, *args, "trainer.compile=true", "trainer.compile_mode=max-autotune"),
        tmp_path / "c",
    )
    assert len(made) == 1 and made[0].mode == "max-autotune" and s["compile"] is True
    assert made[0].calls >= 10 + 3  # 10 updates, evaluation batches
    keys = torch.load(tmp_path / "c" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert keys and not any(k.startswith("_orig_mod") for k in keys)
    assert batch_losses(tmp_path / "c") == batch_losses(tmp_path / "eager")
    run(lm(compose, tiny_ptb, *args, "trainer.max_steps=12", "resume=true"), tmp_path / "c")
    assert (
        len(made) == 1 and json.loads((tmp_path / "c" / "summary.json").read_text())["step"] == 12
    )


@pytest.mark.slow
def test_compiled_lstm_lm_matches_eager():
    """torch.compile (inductor, CPU) of the LN-LSTM language model: forward loss and every
    gradient allclose to eager (loss rtol 1e-5; gradients rtol 1e-4, atol 1e-5). Minutes on 2
    cores (code generation; dynamo unrolls the time loop, so it grows with the steps: 15 s for
    this model on a quiet machine, 14 min for 2 layers x 6 steps on a loaded one)."""
    from lnrepro.models.lm import LSTMLM

    torch.manual_seed(0)
    model = LSTMLM(20, 8, 16, norm="ln")
    x = torch.randint(0, 20, (4, 3))
    y = torch.randint(0, 20, (4, 3))

    def loss_and_grads(net):
        model.zero_grad(set_to_none=True)
        logits, _ = net(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss, grads = loss_and_grads(model)
    torch._dynamo.reset()
    closs, cgrads = loss_and_grads(torch.compile(model))
    torch._dynamo.reset()
    torch.testing.assert_close(closs, loss, rtol=1e-5, atol=0)
    for g, cg in zip(grads, cgrads):
        torch.testing.assert_close(cg, g, rtol=1e-4, atol=1e-5)
