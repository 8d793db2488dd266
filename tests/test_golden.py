"""Golden runs: every CPU-scale experiment and norm reruns bit for bit (`make golden` records).

A refactor must leave every field of every `metrics.jsonl` row unchanged (wall-clock times
aside). When numbers move on purpose, regenerate with `make golden` in a commit that names the
issue and why, and map renamed fields here (FIELD_MAP) so the old file still checks the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lnrepro import golden

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.json"))

# Deliberate renames since the golden files were recorded: old field -> new field.
FIELD_MAP: dict[str, str] = {}


def _mapped(row: dict) -> dict:
    return {FIELD_MAP.get(k, k): v for k, v in row.items()}


def test_every_case_has_a_golden_file():
    recorded = {p.stem for p in GOLDEN}
    assert recorded == set(golden.case_names()), "run `make golden` for the missing cases"


@pytest.mark.realdata  # the datasets of every case
@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_run_is_bit_identical(path: Path, tmp_path: Path):
    doc = json.loads(path.read_text())
    if doc["torch"] != torch.__version__:
        pytest.skip(f"recorded with torch {doc['torch']}, this is {torch.__version__}: "
                    "floating-point results are only reproducible within one torch build")
    rows = golden.run_case(doc["overrides"], tmp_path)
    want = [_mapped(r) for r in doc["rows"]]
    assert len(rows) == len(want), f"{len(rows)} metrics rows, golden has {len(want)}"
    for got, exp in zip(rows, want):
        assert got == exp, f"step {exp.get('step')}: {got} != {exp}"
