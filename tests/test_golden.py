"""Golden runs: every CPU-scale experiment and norm reruns bit for bit (`make golden` records).

Against the set recorded on this machine's CPU model and capability (tests/golden/<cpu>-<capability>/,
lnrepro.golden):
other kernels on another CPU move results in the 7th digit, so a machine with no set of its own
skips these checks, saying which CPU it is, until `make golden` records one.

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
MACHINE = golden.machine_dir()
GOLDEN = sorted(MACHINE.glob("*.json"))
NO_SET = (
    f"no golden runs recorded on this CPU ({golden.cpu_name()}, {golden.cpu_capability()}): "
    "`make golden` records them"
)

# Deliberate changes since the golden files were recorded, while they are pending: new field ->
# (old field, the old code's expression of it from the new value), applied to the rerun's rows
# so the check stays bit for bit; and renamed config keys of the recorded overrides. Emptied when
# `make golden` re-records (the last use: issue 13, SentEval's errors -> accuracies, e.g.
# "senteval/mr_acc": ("senteval/mr_err", lambda v: 100.0 - v), "data.senteval." ->
# "task.senteval."; see that commit).
FIELD_MAP: dict = {}
OVERRIDE_MAP: dict[str, str] = {}


def _as_recorded(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        old, f = FIELD_MAP.get(k, (k, None))
        out[old] = f(v) if f else v
    return out


def _overrides(overrides: list[str]) -> list[str]:
    for old, new in OVERRIDE_MAP.items():
        overrides = [o.replace(old, new) if o.startswith(old) else o for o in overrides]
    return overrides


def test_golden_sets_are_named_by_their_cpu_and_hold_known_cases():
    sets = [d for d in (ROOT / "tests" / "golden").iterdir() if d.is_dir()]
    assert sets, "no golden set at all: run `make golden`"
    for d in sets:
        docs = [json.loads(p.read_text()) for p in d.glob("*.json")]
        assert {doc["case"] for doc in docs} <= set(golden.case_names()), d
        assert all(golden.machine_dir(doc["cpu"], doc["cpu_capability"]) == d for doc in docs), d


def test_every_case_has_a_golden_file():
    if not MACHINE.is_dir():
        pytest.skip(NO_SET)
    recorded = {p.stem for p in GOLDEN}
    assert recorded == set(golden.case_names()), "run `make golden` for the missing cases"


@pytest.mark.realdata  # the datasets of every case
@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_run_is_bit_identical(path: Path, tmp_path: Path):
    doc = json.loads(path.read_text())
    if doc["torch"] != torch.__version__:
        pytest.skip(
            f"recorded with torch {doc['torch']}, this is {torch.__version__}: "
            "floating-point results are only reproducible within one torch build"
        )
    rows = [_as_recorded(r) for r in golden.run_case(_overrides(doc["overrides"]), tmp_path)]
    want = doc["rows"]
    assert len(rows) == len(want), f"{len(rows)} metrics rows, golden has {len(want)}"
    for got, exp in zip(rows, want):
        assert got == exp, f"step {exp.get('step')}: {got} != {exp}"
