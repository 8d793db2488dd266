"""A new experiment is five files: a config, a model, a data module, a task and a test.

This test writes the first four for a toy problem (is x1 * x2 > 0?) outside the repository, puts
them on the config search path and PYTHONPATH, and trains it through the one entrypoint with
every norm: nothing of the repository (no registry, no list of experiments) is edited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from helpers import ROOT

FILES = {
    "cfg/experiment/toy_quadrants.yaml": """\
        # @package _global_
        # The whole experiment in one file: data, model and task as inline nodes (no group files).
        name: toy_quadrants
        data:
          _target_: toy_ext.data.quadrants
          n: 512
          batch_size: 32
        model:
          _target_: toy_ext.model.TwoLayer
          in_dim: ???            # the data module fills it (model_kwargs)
          hidden: 16
        task:
          _target_: toy_ext.task.SignTask
        trainer:
          epochs: 3
          evals_per_epoch: 1
          eval_splits: [val]
          log_every: 8
        optim:
          lr: 1.0e-2
        """,
    "toy_ext/__init__.py": "",
    "toy_ext/data.py": """\
        import torch

        from lnrepro.data.common import TensorData


        def quadrants(n, batch_size, seed, device):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(2 * n, 2, generator=g)
            y = (x[:, 0] * x[:, 1] > 0).long()
            splits = {"train": (x[:n], y[:n]), "val": (x[n:], y[n:])}
            return TensorData(splits, batch_size, seed=seed, model_kwargs={"in_dim": 2}).to(device)
        """,
    "toy_ext/model.py": """\
        from torch import nn


        class TwoLayer(nn.Module):
            def __init__(self, in_dim, hidden, norm):  # norm: a lnrepro.nn.norm.Norm
                super().__init__()
                self.fc = norm.wrap_weight(nn.Linear(in_dim, hidden, bias=norm.keeps_bias))
                self.norm, self.out = norm.layer(hidden), nn.Linear(hidden, 2)

            def forward(self, x):
                return self.out(self.norm(self.fc(x)).relu())
        """,
    "toy_ext/task.py": """\
        import torch.nn.functional as F

        from lnrepro.contracts import Task


        class SignTask(Task):
            higher_is_better = frozenset({"acc"})

            def training_step(self, model, batch):
                x, y = batch
                loss = F.cross_entropy(model(x), y)
                return loss, {"loss": loss.detach()}

            def evaluate(self, model, batches):
                right = n = 0
                for x, y in batches:
                    right += int((model(x).argmax(1) == y).sum())
                    n += len(y)
                return {"acc": 100.0 * right / n}
        """,
}


@pytest.mark.slow  # end to end: a subprocess per norm
def test_a_new_experiment_needs_only_its_own_files(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    env = {
        **os.environ,
        "LNREPRO_OUTPUTS": str(tmp_path / "outputs"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnrepro.train",
            "-m",
            "experiment=toy_quadrants",
            "norm=ln,bn,none,wn,rms",
            f"hydra.searchpath=[file://{tmp_path / 'cfg'}]",
            "logger=none",
            "threads=1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("summary.json")]
    assert sorted(s["norm"] for s in summaries) == ["bn", "ln", "none", "rms", "wn"]
    for s in summaries:
        assert s["status"] == "completed"
        assert s["best"]["val/acc"] >= s["final"]["val/acc"] > 80.0  # chance: 50 %
