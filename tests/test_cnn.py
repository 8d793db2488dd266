"""Sec. 6.7 convnet: conv LN/BN against their definitions, the entrypoint, bad input."""

import pytest
import torch
from helpers import TINY

from lnrepro.errors import ConfigError, DataError
from lnrepro.models.cnn import ConvNet
from lnrepro.nn.norm import BatchNorm, LayerNorm
from lnrepro.runs import find_runs
from lnrepro.train import run

CNN_TINY = [o for o in TINY if not o.startswith(("experiment=", "model."))] + [
    "experiment=cnn_mnist_cpu",
    "model.channels=[4,8]",
    "model.hidden=16",
]


def test_conv_layer_norm_is_eq3_over_all_units_of_the_layer():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64) * 2 + 1
    ln = LayerNorm(4).double()
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0]))
        ln.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
    flat = x.reshape(3, -1)  # the layer's C*H*W = 100 hidden units of each case
    mu = flat.mean(1).view(3, 1, 1, 1)
    sigma = ((flat - flat.mean(1, keepdim=True)) ** 2).mean(1).add(1e-5).sqrt().view(3, 1, 1, 1)
    expect = (x - mu) / sigma * ln.weight.view(1, 4, 1, 1) + ln.bias.view(1, 4, 1, 1)
    torch.testing.assert_close(ln(x), expect)


def test_conv_batch_norm_equals_torch_batchnorm2d():
    x = torch.randn(6, 4, 5, 5)
    ours, ref = BatchNorm(4), torch.nn.BatchNorm2d(4)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x[:1]), ref(x[:1]))


def test_convnet_norm_placement():
    kinds = lambda m: [type(x).__name__ for x in m.net]
    ln = ConvNet(1, 28, norm="ln")
    assert kinds(ln).count("LayerNorm") == 5 and kinds(ln)[-1] == "Linear"
    assert all(m.bias is None for m in ln.net if isinstance(m, torch.nn.Conv2d))
    none = ConvNet(1, 28, norm="none")
    assert all(m.bias is not None for m in none.net if isinstance(m, torch.nn.Conv2d))
    assert ln(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_every_norm_through_the_real_entrypoint(cli, tmp_path):
    sweep = tmp_path / "sweep"
    p = cli(*CNN_TINY, "norm=ln,bn,none", f"hydra.sweep.dir={sweep}", multirun=True)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = find_runs(sweep)
    assert sorted(r.get("norm.kind") for r in runs) == ["bn", "ln", "none"]
    for r in runs:
        first = next(x for x in r.rows if "train/nll" in x)
        assert r.status == "completed"
        assert r.summary["final"]["train/nll"] < first["train/nll"], r.path


@pytest.mark.slow  # end to end: a subprocess or a whole training run
def test_wrong_image_size_and_missing_cifar(compose, tiny_mnist, tmp_path):
    cfg = compose(CNN_TINY + [f"paths.data_dir={tiny_mnist}", "model.image_size=32"])
    with pytest.raises(ConfigError, match="image_size=32 does not match the data"):
        run(cfg, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"expects images of shape \(1, 32, 32\)"):
        ConvNet(1, 32)(torch.randn(2, 1, 28, 28))
    cfg = compose(
        [
            "experiment=cnn_cifar10_cpu",
            f"paths.data_dir={tmp_path}/none",
            "data.download=false",
            "logger=none",
        ]
    )
    with pytest.raises(DataError, match="CIFAR-10 not found.*cifar-10-batches-py"):
        run(cfg, tmp_path / "b")
