"""A norm from outside the repository: Dynamic Tanh (Zhu et al. 2025, "Transformers without
Normalization"), y = g * tanh(a x) + b with one learnable scalar a (init 0.5) and per-feature g,
b: examples/norms/dyt.py (one small class) copied to a temporary folder and run with no edit
of the repository.

In-process: in an MLP, the convnet, an LSTM language model and a GRU, forward hooks record the
norm's calls and their input shapes for one batch: the same as norm=ln's in the same model;
the parameter count is none's plus DyT's own. End to end: `python -m lnrepro.train` with the
class, once from a config file on `hydra.searchpath` (norm=dyt), once from the command line
alone (norm=own +norm._target_=...), on tiny data the tests write.
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
import textwrap

import pytest
import torch
import yaml
from helpers import ROOT, TINY, run_cli, write_idx_mnist
from torch import nn

from lnrepro.models.cnn import ConvNet
from lnrepro.models.lm import LSTMLM
from lnrepro.models.mlp import MLP
from lnrepro.nn import fused_lstm
from lnrepro.nn.norm import LN, NoNorm, build_norm
from lnrepro.nn.rnn import GRU
from lnrepro.runs import find_runs, seed_groups

# the plug-in users are shown (docs/norms.md), run from a temporary folder outside the package
DYT = (ROOT / "examples" / "norms" / "dyt.py").read_text()

DYT_YAML = """\
# Dynamic Tanh (Zhu et al. 2025), a norm class from outside the repository
_target_: dyt_ext.DyT
kind: dyt
alpha_init: 0.5
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """dyt_ext.py and cfg/norm/dyt.yaml in a folder outside the repository, importable."""
    (tmp_path / "dyt_ext.py").write_text(DYT)
    (tmp_path / "cfg" / "norm").mkdir(parents=True)
    (tmp_path / "cfg" / "norm" / "dyt.yaml").write_text(DYT_YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("dyt_ext", None)
    importlib.invalidate_caches()
    yield tmp_path
    sys.modules.pop("dyt_ext", None)


def test_dynamic_tanh_is_one_short_file():
    """Its code, after the module's docstring: one class of a layer and one of the norm."""
    body = DYT.splitlines()[ast.parse(DYT).body[0].end_lineno :]
    assert len([ln for ln in body if ln.strip()]) <= 30


def _spy(norm) -> list:
    """Record the modules the model asks `norm` for (the outermost call: LN's conv_layer is its
    layer, the default conv_layer of DyT wraps its layer)."""
    made, depth = [], [0]

    def spying(name, method):
        def spy(*args, **kwargs):
            depth[0] += 1
            try:
                out = method(*args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0 and out is not None and not isinstance(out, nn.Identity):
                made.append((name, out))
            return out

        return spy

    for name in ("layer", "conv_layer", "step_layer"):
        setattr(norm, name, spying(name, getattr(norm, name)))
    return made


# name -> (build(norm), one batch, loss of the output)
MODELS = {
    "mlp": (
        lambda n: MLP(20, (16, 12), 5, norm=n),
        lambda: torch.randn(8, 20),
        lambda y: y.square().mean(),
    ),
    "convnet": (
        lambda n: ConvNet(1, 8, (4, 6), 10, 5, norm=n),
        lambda: torch.randn(4, 1, 8, 8),
        lambda y: y.square().mean(),
    ),
    "lstm": (
        lambda n: LSTMLM(30, 8, 12, num_layers=2, norm=n),
        lambda: torch.randint(0, 30, (7, 4)),
        lambda y: y[0].square().mean(),
    ),
    "gru": (
        lambda n: GRU(6, 10, 2, norm=n),
        lambda: torch.randn(5, 3, 6),
        lambda y: y[0].square().mean(),
    ),
}


def _calls(name: str, norm):
    """The model of `name` with `norm`: (the norm's calls (method, input shape) in order, the
    model's parameter count, the parameters of the norm's own modules)."""
    build, batch, loss = MODELS[name]
    made = _spy(norm)
    torch.manual_seed(0)
    model = build(norm)
    norm.check_model(model)
    calls = []
    for method, module in made:
        module.register_forward_hook(
            lambda m, args, out, method=method: calls.append((method, tuple(args[0].shape)))
        )
    torch.manual_seed(1)
    out = model(batch())
    loss(out).backward()
    own = sum(p.numel() for _, m in made for p in m.parameters())
    return calls, sum(p.numel() for p in model.parameters()), own, model


@pytest.mark.parametrize("name", MODELS)
def test_dyt_from_outside_goes_where_ln_goes(plugin, monkeypatch, name):
    # the LN-LSTM's fused C++ path reads LN's parameters without calling the modules: the step
    # loop, where every norm is a module call (the same Eq. 20-22), for the comparison
    monkeypatch.setattr(fused_lstm, "applies", lambda *args: False)
    dyt = build_norm({"_target_": "dyt_ext.DyT", "alpha_init": 0.5})
    assert type(dyt).__module__ == "dyt_ext" and dyt.kind == "dyt"
    ln_calls, *_ = _calls(name, LN())
    dyt_calls, dyt_params, dyt_own, model = _calls(name, dyt)
    _, none_params, none_own, _ = _calls(name, NoNorm())
    assert dyt_calls == ln_calls and len(dyt_calls) >= 2
    assert none_own == 0 and dyt_own > 0
    assert dyt_params == none_params + dyt_own
    alphas = [p for n, p in model.named_parameters() if n.endswith("alpha")]
    assert alphas and all(a.item() == 0.5 and a.grad is not None for a in alphas)


def test_dyt_options_are_its_own(plugin):
    from lnrepro.errors import ConfigError

    assert build_norm({"_target_": "dyt_ext.DyT", "alpha_init": 0.7}).alpha_init == 0.7
    with pytest.raises(ConfigError, match=r"norm dyt does not take eps \(taken by ln, bn, rms\)"):
        build_norm({"_target_": "dyt_ext.DyT", "eps": 1e-5})
    with pytest.raises(ConfigError, match="norm.alpha_init must be a number, got 'abc'"):
        build_norm({"_target_": "dyt_ext.DyT", "alpha_init": "abc"})


def test_own_config_names_the_class_by_its_kind(plugin, compose):
    cfg = compose(["experiment=pi_mnist_cpu", "norm=own", "+norm._target_=dyt_ext.DyT"])
    assert cfg.norm.kind == "dyt"
    cfg = compose(
        ["experiment=pi_mnist_cpu", "norm=own", "+norm._target_=dyt_ext.DyT", "norm.kind=tanh"]
    )
    assert build_norm(cfg.norm).kind == "tanh"


@pytest.mark.slow  # end to end: two subprocesses
def test_dyt_through_the_entrypoint_with_no_edit_of_the_repository(plugin, tmp_path):
    """A feed-forward run from the config file on hydra.searchpath, a recurrent one from the
    command line alone; both are grouped by the short name `dyt`."""
    from test_lm import TINY_LM, write_ptb

    data = write_ptb(write_idx_mnist(tmp_path / "data"))
    env = {"PYTHONPATH": f"{plugin}"}
    ff = run_cli(
        [*TINY, "norm=dyt", f"hydra.searchpath=[file://{plugin / 'cfg'}]"],
        tmp_path,
        data,
        env=env,
    )
    assert ff.returncode == 0, ff.stderr[-3000:]
    rec = run_cli(
        [*TINY_LM, "trainer.max_steps=20", "norm=own", "+norm._target_=dyt_ext.DyT",
         "+norm.alpha_init=0.7"],
        tmp_path,
        data,
        env=env,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr[-3000:]
    runs = find_runs(tmp_path / "outputs")
    assert sorted(r.name for r in runs) == ["lm_ptb_char_cpu", "pi_mnist_cpu"]
    for r in runs:
        assert r.status == "completed", r.path
        assert r.get("norm.kind") == r.summary["norm"] == "dyt"
        assert "_dyt_bs" in r.path.name
        assert r.summary["final"], r.summary
        assert len(seed_groups([r])) == 1
    lm = next(r for r in runs if r.name == "lm_ptb_char_cpu")
    assert lm.get("norm._target_") == "dyt_ext.DyT" and lm.get("norm.alpha_init") == 0.7
    saved = json.loads((lm.path / "summary.json").read_text())
    assert saved["norm"] == "dyt"


@pytest.mark.slow  # end to end: a subprocess
def test_a_model_that_never_wraps_its_weights_stops_under_wn(tmp_path, tiny_mnist):
    """Weight norm sits on the weights: the MLP built without `wrap_weight` (here: a model file
    of one's own) is one line at build time, not a run of plain norm=none."""
    (tmp_path / "nowrap.py").write_text(
        textwrap.dedent(
            """\
            from torch import nn


            class Net(nn.Module):
                def __init__(self, in_dim, hidden, out_dim, norm, activation="relu", norm_logits=()):
                    super().__init__()
                    self.net = nn.Sequential(nn.Linear(in_dim, out_dim), norm.layer(out_dim))

                def forward(self, x):
                    return self.net(x)
            """
        )
    )
    p = run_cli(
        [*TINY, "norm=wn", "model._target_=nowrap.Net"],
        tmp_path,
        tiny_mnist,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if "wrap_weight" in ln]
    assert len(lines) == 1 and "it would train as norm=none" in lines[0], p.stderr[-2000:]


def test_runs_saved_before_target_group_with_the_runs_since(tmp_path):
    """A run folder written before `_target_` (norm: {kind, eps, gain_init}) loads, is selected
    by its short name and is a repetition of the same norm's runs since (one seed group)."""
    from test_compare import write_run

    from lnrepro.runs import select_runs

    write_run(tmp_path / "old", norm="ln", seed=1)
    new = write_run(tmp_path / "new", norm="ln", seed=2)
    cfg_file = new / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["norm"] = {"_target_": "lnrepro.nn.norm.LN", **cfg["norm"], "gain_init": 1.0}
    cfg_file.write_text(yaml.safe_dump(cfg))
    old = yaml.safe_load((tmp_path / "old" / ".hydra" / "config.yaml").read_text())
    old["norm"]["gain_init"] = 1.0
    (tmp_path / "old" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(old))
    runs = find_runs(tmp_path)
    assert len(select_runs(runs, norm=["ln"])) == 2
    assert [len(g) for g in seed_groups(runs)] == [2]
    assert build_norm(old["norm"]) == build_norm(cfg["norm"]) == LN()
