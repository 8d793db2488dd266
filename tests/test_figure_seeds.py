"""Seeds of the figure grids: every norm that enters a claim of the paper runs at least 3 seeds at
the CPU scale (the paper's curves are one run each; a claim here is a mean over seeds with its
interval, and one seed of a shortened run cannot tell a gap from noise), and `seeds_by_norm`
(fewer seeds for an extra curve with no claim, e.g. Figure 5's BN) launches one multirun per seed
list."""

from __future__ import annotations

import pytest
from helpers import ROOT, load_script

from lnrepro.runs import load_spec

figure = load_script("figure")
SPECS = sorted((ROOT / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_norm_in_a_claim_runs_three_seeds_at_cpu_scale(path):
    spec = load_spec(path)
    if "cpu" not in spec["scales"]:
        pytest.skip("no CPU scale")
    seeds = {n: s for norms, s in figure.multiruns(spec, "cpu") for n in norms}
    for claim in spec.get("claims") or []:
        for norm in claim.get("norms") or []:
            if claim["check"] == "not_testable" or norm not in spec["norms"]:
                continue  # a fixed bar (a float) or a converged value we cannot reach
            assert len(seeds.get(norm, [])) >= 3, (claim["id"], norm, seeds)


def _fake_popen(monkeypatch, tmp_path, returncode: int) -> list[list[str]]:
    """subprocess.Popen replaced by a process that has ended with `returncode`; returns the list
    that collects the commands launched."""
    launched: list[list[str]] = []

    class Ended:
        def __init__(self, cmd, cwd):
            launched.append(cmd)
            self.returncode = returncode

        def poll(self):
            return self.returncode

    monkeypatch.setattr(figure.subprocess, "Popen", Ended)
    monkeypatch.setenv("LNREPRO_OUTPUTS", str(tmp_path))
    return launched


def test_seeds_by_norm_launches_one_multirun_per_seed_list(monkeypatch, tmp_path):
    spec = {
        "name": "fig_seeds",
        "norms": ["ln", "none", "bn"],
        "grid": {"data.batch_size": [128, 4]},
        "scales": {
            "cpu": {"experiment": "pi_mnist_cpu", "seeds": [1, 2, 3], "seeds_by_norm": {"bn": [1]}}
        },
    }
    assert figure.multiruns(spec, "cpu") == [(["ln", "none"], [1, 2, 3]), (["bn"], [1])]
    launched = _fake_popen(monkeypatch, tmp_path, 0)
    assert figure.run(spec, "cpu", "parallel", ["trainer.max_steps=5"]) == 0
    assert len(launched) == 2
    first, second = launched
    assert "norm=ln,none" in first and "seed=1,2,3" in first
    assert "norm=bn" in second and "seed=1" in second
    for cmd in launched:  # the same sweep folder, grid, launcher and extra overrides
        assert "data.batch_size=128,4" in cmd and "hydra/launcher=parallel" in cmd
        assert "trainer.max_steps=5" in cmd and "resume=true" in cmd
        assert any(a.startswith("hydra.sweep.dir=") and a.endswith("fig_seeds/cpu") for a in cmd)


def test_a_failed_multirun_stops_the_grid(monkeypatch, tmp_path):
    spec = {
        "name": "fig_fail",
        "norms": ["ln", "bn"],
        "scales": {
            "cpu": {"experiment": "pi_mnist_cpu", "seeds": [1, 2], "seeds_by_norm": {"bn": [1]}}
        },
    }
    launched = _fake_popen(monkeypatch, tmp_path, 3)
    assert figure.run(spec, "cpu", None, []) == 3
    assert len(launched) == 1
