"""`debug=smoke` through the real entrypoint for every CPU-scale experiment (scripts/smoke.py):
a few updates and a tiny evaluation, on the real datasets under $LNREPRO_DATA; an experiment
whose dataset is absent is skipped with the loader's line."""

from __future__ import annotations

import pytest
from helpers import load_script

smoke = load_script("smoke")


def test_smoke_covers_every_cpu_experiment():
    names = smoke.experiments()
    assert "pi_mnist_cpu" in names and "reader_cpu" in names and len(names) >= 10
    assert all(n.endswith("_cpu") for n in names)


@pytest.mark.realdata  # each experiment's own files: smoke.smoke says which are absent
@pytest.mark.parametrize("name", smoke.experiments())
def test_smoke_run(name, tmp_path):
    status, why = smoke.smoke(name, "bn", tmp_path)  # bn: the norm with the most ways to fail
    if status == "skipped":
        pytest.skip(why)
    assert status == "ok", why
    rows = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    assert '"step": 5' in rows[-1] and any("val/" in r for r in rows), rows[-3:]
